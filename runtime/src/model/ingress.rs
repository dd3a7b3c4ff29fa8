//! Ingresses (networking.k8s.io/v1) with their checks: what a user may
//! write, and the bounds that keep what one object costs every node small.
//! The Secrets they take certificates from are in `secret.rs`.

use serde::{Deserialize, Serialize};

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

/// Why an Ingress is refused; each message names the field and the fix.
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
    /// A TLS entry's Secret name.
    #[error("tls secretName `{0}` is not a valid Secret name")]
    SecretName(String),
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
        check_name("secret", &tls.secret_name, 253)
            .map_err(|_| IngressError::SecretName(tls.secret_name.clone()))?;
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
}
