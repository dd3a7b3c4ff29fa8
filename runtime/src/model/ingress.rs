//! Ingresses (networking.k8s.io/v1) and the Secrets they take certificates
//! from (v1, `kubernetes.io/tls` or `Opaque`), with their checks: what a user
//! may write, and the bounds that keep what one object costs every node small.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::{
    Annotations, Labels, LoadBalancerStatus, check_annotations, check_label, check_name, is_dns_label,
};

/// The one IngressClass podnet serves, and the default class.
pub const INGRESS_CLASS: &str = "podnet";
/// The IngressClass's `spec.controller`.
pub const INGRESS_CONTROLLER: &str = "podnet.io/ingress";
/// The annotation that turns a TLS host's redirect of plain HTTP off
/// (ingress-nginx's name, so manifests written for it keep their meaning).
pub const SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/ssl-redirect";

/// Most rules (hosts) one Ingress may hold.
pub const MAX_RULES: usize = 100;
/// Most paths one Ingress may hold, over all its rules.
pub const MAX_PATHS: usize = 1000;
/// Most TLS entries one Ingress may hold.
pub const MAX_TLS: usize = 50;
/// Longest path of a rule.
pub const MAX_PATH_BYTES: usize = 1024;
/// Kubernetes' bound on a Secret's data, every key and value together.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// The key of a TLS Secret's certificate chain (PEM).
pub const TLS_CERT: &str = "tls.crt";
/// The key of a TLS Secret's private key (PEM).
pub const TLS_KEY: &str = "tls.key";

/// How a path of a rule matches a request's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PathType {
    /// The whole path, case-sensitive.
    Exact,
    /// Whole `/`-separated segments from the start; a trailing `/` ignored.
    Prefix,
    /// The class decides: podnet treats it as Prefix.
    ImplementationSpecific,
}

impl PathType {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

impl std::str::FromStr for PathType {
    type Err = IngressError;
    fn from_str(s: &str) -> Result<Self, IngressError> {
        match s {
            "Exact" => Ok(PathType::Exact),
            "Prefix" => Ok(PathType::Prefix),
            "ImplementationSpecific" => Ok(PathType::ImplementationSpecific),
            _ => Err(IngressError::PathType(s.to_string())),
        }
    }
}

/// Which port of the backend Service: its number or its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackendPort {
    /// `port.number`.
    Number(u16),
    /// `port.name`.
    Name(String),
}

impl std::fmt::Display for BackendPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendPort::Number(n) => write!(f, "{n}"),
            BackendPort::Name(name) => f.write_str(name),
        }
    }
}

/// Where matching requests go: a Service of the Ingress's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IngressBackend {
    /// The Service's name.
    pub service: String,
    /// Its port.
    pub port: BackendPort,
}

impl std::fmt::Display for IngressBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.service, self.port)
    }
}

impl std::str::FromStr for IngressBackend {
    type Err = IngressError;
    /// `SERVICE:PORT`, PORT a number or a port name (kubectl's syntax).
    fn from_str(s: &str) -> Result<Self, IngressError> {
        let bad = || IngressError::Backend(s.to_string());
        let (service, port) = s.split_once(':').ok_or_else(bad)?;
        let port = match port.parse::<u16>() {
            Ok(0) => return Err(bad()),
            Ok(n) => BackendPort::Number(n),
            Err(_) if is_dns_label(port) => BackendPort::Name(port.to_string()),
            Err(_) => return Err(bad()),
        };
        if service.is_empty() {
            return Err(bad());
        }
        Ok(IngressBackend { service: service.to_string(), port })
    }
}

/// One path of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressPath {
    /// The path, starting with `/`.
    pub path: String,
    /// How it matches.
    pub path_type: PathType,
    /// Where it goes.
    pub backend: IngressBackend,
}

/// The paths of one host (or of every host, without one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRule {
    /// `shop.example`, `*.example.com` (one label), or None for any host.
    pub host: Option<String>,
    /// Its paths.
    pub paths: Vec<IngressPath>,
}

/// Hosts served over TLS with one Secret's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressTls {
    /// The hosts (empty: the certificate is the fallback for every host).
    pub hosts: Vec<String>,
    /// A `kubernetes.io/tls` Secret of the Ingress's namespace.
    pub secret_name: String,
}

/// What a user asks for when making an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressSpec {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `ingressClassName`; None takes the default class, podnet.
    pub class: Option<String>,
    /// Where requests no rule matches go.
    pub default_backend: Option<IngressBackend>,
    /// TLS hosts and their Secrets.
    pub tls: Vec<IngressTls>,
    /// Host and path rules.
    pub rules: Vec<IngressRule>,
    /// Labels of the object.
    pub labels: Labels,
    /// Annotations (`nginx.ingress.kubernetes.io/ssl-redirect`).
    pub annotations: Annotations,
}

impl IngressSpec {
    /// Whether podnet serves it: its class is podnet's, or none (the default).
    pub fn is_podnet(&self) -> bool {
        self.class.as_deref().is_none_or(|c| c == INGRESS_CLASS)
    }

    /// Whether a TLS host's plain HTTP requests are redirected (the default).
    pub fn ssl_redirect(&self) -> bool {
        self.annotations.get(SSL_REDIRECT).is_none_or(|v| v != "false")
    }

    /// Every host its rules and TLS entries name, in order, once each.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = Vec::new();
        for host in self.rules.iter().filter_map(|r| r.host.as_deref()) {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }

    /// Every Service it sends to.
    pub fn backends(&self) -> impl Iterator<Item = &IngressBackend> {
        self.default_backend.iter().chain(self.rules.iter().flat_map(|r| r.paths.iter().map(|p| &p.backend)))
    }
}

/// An Ingress as stored and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Desired state.
    pub spec: IngressSpec,
    /// Which node addresses serve it, or why none does (filled in when reported).
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerStatus>,
}

/// A Secret's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecretType {
    /// `Opaque`: any keys.
    Opaque,
    /// `kubernetes.io/tls`: `tls.crt` and `tls.key`, checked.
    Tls,
    /// Another type, stored as given (podnet reads only TLS Secrets).
    Other(String),
}

impl SecretType {
    /// Its name in the API.
    pub fn as_str(&self) -> &str {
        match self {
            SecretType::Opaque => "Opaque",
            SecretType::Tls => "kubernetes.io/tls",
            SecretType::Other(t) => t,
        }
    }

    /// The type of an API string (empty: Opaque, as the API defaults it).
    pub fn parse(s: &str) -> SecretType {
        match s {
            "" | "Opaque" => SecretType::Opaque,
            "kubernetes.io/tls" => SecretType::Tls,
            other => SecretType::Other(other.to_string()),
        }
    }
}

/// What a user asks for when making a Secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Its type.
    pub secret_type: SecretType,
    /// Keys and their bytes.
    pub data: BTreeMap<String, Vec<u8>>,
    /// Labels of the object.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Annotations,
}

impl std::fmt::Debug for SecretSpec {
    /// Never the bytes: keys and sizes only (logs and panics must not leak keys).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<&str, usize> = self.data.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        f.debug_struct("SecretSpec")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("secret_type", &self.secret_type)
            .field("data_sizes", &sizes)
            .finish()
    }
}

/// A Secret as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Desired state.
    pub spec: SecretSpec,
}

/// A Secret as listed: its keys and their sizes, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Its type.
    pub secret_type: SecretType,
    /// Each key and the size of its value.
    pub keys: Vec<(String, u64)>,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Annotations,
    /// A digest of the data, to tell a changed Secret from the same one.
    pub digest: String,
}

impl Secret {
    /// What listing shows of it.
    pub fn info(&self) -> SecretInfo {
        use sha2::Digest;
        let mut sha = sha2::Sha256::new();
        for (k, v) in &self.spec.data {
            sha.update((k.len() as u64).to_be_bytes());
            sha.update(k.as_bytes());
            sha.update((v.len() as u64).to_be_bytes());
            sha.update(v);
        }
        let digest: String = sha.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        SecretInfo {
            uid: self.uid.clone(),
            created_at: self.created_at,
            name: self.spec.name.clone(),
            namespace: self.spec.namespace.clone(),
            secret_type: self.spec.secret_type.clone(),
            keys: self.spec.data.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect(),
            labels: self.spec.labels.clone(),
            annotations: self.spec.annotations.clone(),
            digest,
        }
    }
}

/// Why an Ingress or a Secret is refused; each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    /// A pathType.
    #[error("pathType `{0}` is not one of Exact, Prefix, ImplementationSpecific")]
    PathType(String),
    /// A path that is not absolute or too long.
    #[error("path `{0}` must start with `/` and have at most 1024 printable characters without spaces")]
    Path(String),
    /// A host that is not a DNS name or one leading `*.` wildcard.
    #[error(
        "host `{0}` must be a lowercase DNS name (shop.example) or a wildcard of one leading label (*.example.com); not an IP, a port or `*`"
    )]
    Host(String),
    /// A backend reference.
    #[error("backend `{0}` is not SERVICE:PORT with a port number or name (e.g. web:80)")]
    Backend(String),
    /// A rule without paths, or an Ingress with nothing to route.
    #[error("ingress {0} has no rules and no default backend: give --rule or --default-backend")]
    Empty(String),
    /// A rule without paths.
    #[error("rule for host `{0}` has no paths: give it at least one")]
    NoPaths(String),
    /// Past the bounds on rules, paths or TLS entries.
    #[error("ingress has {count} {what}: at most {max} are allowed, split it into several Ingresses")]
    TooMany {
        /// What.
        what: &'static str,
        /// How many it has.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The same host and path twice in one Ingress.
    #[error("path {path} ({path_type}) of host `{host}` is given twice")]
    PathTwice {
        /// Host (`*` for any).
        host: String,
        /// Path.
        path: String,
        /// Its type.
        path_type: &'static str,
    },
    /// A Secret's data past the Kubernetes bound.
    #[error("secret data is {0} bytes: at most 1048576 (1 MiB) are allowed")]
    SecretTooLarge(usize),
    /// A Secret's key name.
    #[error("invalid secret key `{0}`: use letters, digits, '-', '_' or '.'")]
    SecretKey(String),
    /// A TLS Secret without one of its keys.
    #[error("a kubernetes.io/tls secret needs `{0}`: give --cert and --key (PEM files)")]
    TlsKeyMissing(&'static str),
    /// A TLS Secret's certificate or key that does not parse or match.
    #[error("tls secret {name}: {problem}")]
    Tls {
        /// The Secret.
        name: String,
        /// What is wrong and the fix.
        problem: String,
    },
}

/// The crypto provider a certificate and key are checked with: ring, the
/// one the TLS listeners serve with.
#[allow(deprecated)]
fn provider() -> CryptoProvider {
    tokio_rustls::rustls::crypto::ring::default_provider()
}

/// Checks an Ingress: names, hosts, paths, backends and the size bounds.
pub fn check_ingress(spec: &IngressSpec) -> Result<(), super::ModelError> {
    check_name("ingress", &spec.name, 253)?;
    check_name("namespace", &spec.namespace, 63)?;
    for (k, v) in &spec.labels {
        check_label(k, v)?;
    }
    check_annotations(&spec.annotations)?;
    Ok(check_routes(spec)?)
}

fn check_routes(spec: &IngressSpec) -> Result<(), IngressError> {
    if spec.rules.is_empty() && spec.default_backend.is_none() {
        return Err(IngressError::Empty(spec.name.clone()));
    }
    let too_many = |what, count, max| match count > max {
        true => Err(IngressError::TooMany { what, count, max }),
        false => Ok(()),
    };
    too_many("rules", spec.rules.len(), MAX_RULES)?;
    too_many("paths", spec.rules.iter().map(|r| r.paths.len()).sum(), MAX_PATHS)?;
    too_many("tls entries", spec.tls.len(), MAX_TLS)?;
    for backend in spec.backends() {
        check_backend(backend)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for rule in &spec.rules {
        let host = rule.host.as_deref().unwrap_or("*");
        if let Some(h) = &rule.host {
            check_host(h)?;
        }
        if rule.paths.is_empty() {
            return Err(IngressError::NoPaths(host.to_string()));
        }
        for p in &rule.paths {
            check_path(&p.path)?;
            if !seen.insert((host, p.path.as_str(), p.path_type)) {
                return Err(IngressError::PathTwice {
                    host: host.to_string(),
                    path: p.path.clone(),
                    path_type: p.path_type.as_str(),
                });
            }
        }
    }
    for tls in &spec.tls {
        tls.hosts.iter().try_for_each(|h| check_host(h))?;
        check_name("secret", &tls.secret_name, 253).map_err(|_| IngressError::Tls {
            name: tls.secret_name.clone(),
            problem: "is not a valid secret name".into(),
        })?;
    }
    Ok(())
}

fn check_backend(backend: &IngressBackend) -> Result<(), IngressError> {
    let ok = check_name("service", &backend.service, 63).is_ok()
        && match &backend.port {
            BackendPort::Number(n) => *n > 0,
            BackendPort::Name(name) => super::check_port_name(name).is_ok(),
        };
    match ok {
        true => Ok(()),
        false => Err(IngressError::Backend(backend.to_string())),
    }
}

/// Checks a rule's host: a lowercase DNS name, or `*.` and one.
pub fn check_host(host: &str) -> Result<(), IngressError> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let ip = name.parse::<std::net::Ipv4Addr>().is_ok();
    let ok = !ip
        && !name.ends_with('.')
        && super::is_dns_name(name)
        && !name.bytes().any(|b| b.is_ascii_uppercase());
    match ok {
        true => Ok(()),
        false => Err(IngressError::Host(host.to_string())),
    }
}

/// Checks a rule's path: absolute, printable, bounded.
pub fn check_path(path: &str) -> Result<(), IngressError> {
    let ok =
        path.starts_with('/') && path.len() <= MAX_PATH_BYTES && path.bytes().all(|b| b.is_ascii_graphic());
    match ok {
        true => Ok(()),
        false => Err(IngressError::Path(path.to_string())),
    }
}

/// Checks a Secret: its name, keys and size, and for a TLS Secret that its
/// certificate chain and key parse and belong together.
pub fn check_secret(spec: &SecretSpec) -> Result<(), super::ModelError> {
    check_name("secret", &spec.name, 253)?;
    check_name("namespace", &spec.namespace, 63)?;
    for (k, v) in &spec.labels {
        check_label(k, v)?;
    }
    check_annotations(&spec.annotations)?;
    let mut total = 0;
    for (key, value) in &spec.data {
        let ok = !key.is_empty()
            && key.len() <= 253
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(IngressError::SecretKey(key.clone()).into());
        }
        total += key.len() + value.len();
    }
    if total > MAX_SECRET_BYTES {
        return Err(IngressError::SecretTooLarge(total).into());
    }
    if spec.secret_type == SecretType::Tls {
        certified_key(spec)?;
    }
    Ok(())
}

/// The certificate and key of a TLS Secret, ready to serve: the chain must
/// hold at least one certificate, the key must parse, and the key must be
/// the first certificate's.
pub fn certified_key(spec: &SecretSpec) -> Result<CertifiedKey, IngressError> {
    let tls = |problem: String| IngressError::Tls { name: spec.name.clone(), problem };
    let cert = spec.data.get(TLS_CERT).ok_or(IngressError::TlsKeyMissing(TLS_CERT))?;
    let key = spec.data.get(TLS_KEY).ok_or(IngressError::TlsKeyMissing(TLS_KEY))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| tls(format!("tls.crt is not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(tls("tls.crt holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|_| tls("tls.key is not a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)".into()))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        tls(match e {
            tokio_rustls::rustls::Error::InconsistentKeys(_) => {
                "tls.key is not the key of tls.crt's first certificate: give the matching key".to_string()
            }
            e => format!("the certificate or key cannot be used ({e})"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_one_leading_wildcard() {
        for good in ["shop.example", "a.b.example.com", "*.example.com", "localhost"] {
            assert!(check_host(good).is_ok(), "{good}");
        }
        for bad in [
            "*",
            "*.com.",
            "a.*.example",
            "**.example",
            "10.0.0.1",
            "shop.example:80",
            "Shop.example",
            "*example.com",
            "",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_absolute() {
        assert!(check_path("/").is_ok());
        assert!(check_path("/api/v1").is_ok());
        assert!(check_path("api").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_path(&format!("/{}", "a".repeat(MAX_PATH_BYTES))).is_err());
    }

    #[test]
    fn backends_parse_kubectl_syntax() {
        assert_eq!(
            "web:80".parse::<IngressBackend>().unwrap(),
            IngressBackend { service: "web".into(), port: BackendPort::Number(80) }
        );
        assert_eq!("web:http".parse::<IngressBackend>().unwrap().port, BackendPort::Name("http".into()));
        for bad in ["web", "web:0", ":80", "web:Bad_Name"] {
            assert!(bad.parse::<IngressBackend>().is_err(), "{bad}");
        }
    }

    fn tls_spec(cert: &str, key: &str) -> SecretSpec {
        SecretSpec {
            name: "shop-tls".into(),
            namespace: "default".into(),
            secret_type: SecretType::Tls,
            data: [
                (TLS_CERT.to_string(), cert.as_bytes().to_vec()),
                (TLS_KEY.to_string(), key.as_bytes().to_vec()),
            ]
            .into(),
            labels: Labels::new(),
            annotations: Annotations::new(),
        }
    }

    #[test]
    fn a_tls_secret_needs_a_chain_and_its_own_key() {
        let a = rcgen::generate_simple_self_signed(vec!["shop.example".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["other.example".to_string()]).unwrap();
        let spec = tls_spec(&a.cert.pem(), &a.key_pair.serialize_pem());
        assert!(check_secret(&spec).is_ok());
        let mismatched = tls_spec(&a.cert.pem(), &b.key_pair.serialize_pem());
        let e = check_secret(&mismatched).unwrap_err().to_string();
        assert!(e.contains("not the key of tls.crt"), "{e}");
        let e = check_secret(&tls_spec("junk", &a.key_pair.serialize_pem())).unwrap_err().to_string();
        assert!(e.contains("tls.crt holds no PEM certificate"), "{e}");
        let e = check_secret(&tls_spec(&a.cert.pem(), "junk")).unwrap_err().to_string();
        assert!(e.contains("tls.key is not a PEM private key"), "{e}");
        let mut missing = spec.clone();
        missing.data.remove(TLS_KEY);
        assert!(check_secret(&missing).unwrap_err().to_string().contains("needs `tls.key`"));
        // Never the key's bytes in a debug print.
        assert!(!format!("{spec:?}").contains("PRIVATE KEY"));
    }
}
