//! TLS for the ingress: rustls (1.2 and 1.3, ring) with a resolver that
//! picks the certificate by SNI from the Ingresses' TLS entries: an exact
//! host, then a `*.example.com` entry (one label), then the first TLS
//! Secret as the fallback (a client without SNI, or a host no entry names).
//! The resolver's set is swapped whole when a Secret or an Ingress changes:
//! new handshakes see the new certificate, open connections keep theirs.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::model::ingress::Ingress;
use crate::model::secret::{Secret, SecretType, certified_key};

/// The certificates to serve, by host.
#[derive(Debug, Default)]
pub struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    fallback: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    /// The certificates of `ingresses`' TLS entries (podnet's class, the
    /// older Ingress first), from `secrets`; an entry whose Secret is missing
    /// or unusable is skipped with a warning (the Secret was checked when
    /// stored, so that is a Secret deleted or of another type).
    pub fn build(ingresses: &[Ingress], secrets: &[Secret]) -> Certificates {
        let mut ingresses: Vec<&Ingress> = ingresses.iter().filter(|i| i.spec.is_podnet()).collect();
        ingresses.sort_by_key(|i| (i.created_at, i.spec.namespace.clone(), i.spec.name.clone()));
        let mut loaded: HashMap<(&str, &str), Option<Arc<CertifiedKey>>> = HashMap::new();
        let mut out = Certificates::default();
        for ingress in ingresses {
            let ns = ingress.spec.namespace.as_str();
            for tls in &ingress.spec.tls {
                let key = loaded
                    .entry((ns, tls.secret_name.as_str()))
                    .or_insert_with(|| load(ns, &tls.secret_name, secrets))
                    .clone();
                let Some(key) = key else { continue };
                out.fallback.get_or_insert_with(|| key.clone());
                for host in &tls.hosts {
                    let map = match host.strip_prefix("*.") {
                        Some(suffix) => out.wildcard.entry(suffix.to_string()),
                        None => out.exact.entry(host.clone()),
                    };
                    map.or_insert_with(|| key.clone());
                }
            }
        }
        out
    }

    /// The certificate for a client that asked for `sni` (None: no SNI).
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_name = sni.map(str::to_ascii_lowercase).and_then(|host| {
            self.exact
                .get(&host)
                .or_else(|| host.split_once('.').and_then(|(_, suffix)| self.wildcard.get(suffix)))
                .cloned()
        });
        by_name.or_else(|| self.fallback.clone())
    }

    /// Whether there is any certificate to serve.
    pub fn is_empty(&self) -> bool {
        self.fallback.is_none()
    }
}

fn load(namespace: &str, name: &str, secrets: &[Secret]) -> Option<Arc<CertifiedKey>> {
    let secret = secrets.iter().find(|s| s.spec.namespace == namespace && s.spec.name == name);
    let Some(secret) = secret.filter(|s| s.spec.secret_type == SecretType::Tls) else {
        tracing::warn!(
            "ingress TLS: secret {namespace}/{name} is missing or not kubernetes.io/tls; its hosts get the fallback certificate"
        );
        return None;
    };
    match certified_key(&secret.spec) {
        Ok(key) => Some(Arc::new(key)),
        Err(e) => {
            tracing::warn!("ingress TLS: {e}");
            None
        }
    }
}

/// The SNI resolver rustls asks at each handshake.
#[derive(Debug, Default)]
pub struct Resolver {
    current: RwLock<Arc<Certificates>>,
}

impl Resolver {
    /// Serves `certificates` to new handshakes from now on.
    pub fn set(&self, certificates: Certificates) {
        *self.current.write().expect("resolver lock") = Arc::new(certificates);
    }

    /// Whether any certificate is loaded.
    pub fn is_empty(&self) -> bool {
        self.current.read().expect("resolver lock").is_empty()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().expect("resolver lock").clone();
        current.pick(hello.server_name())
    }
}

/// The server config: TLS 1.2 and 1.3, ALPN h2 then http/1.1, certificates
/// from `resolver`.
pub fn server_config(resolver: Arc<Resolver>) -> Arc<rustls::ServerConfig> {
    // ring, as the Kubernetes API's TLS (see `kube::tls::provider`).
    let mut config = rustls::ServerConfig::builder_with_provider(crate::kube::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ingress::{IngressSpec, IngressTls};
    use crate::model::secret::SecretSpec;

    fn secret(name: &str, host: &str) -> Secret {
        Secret { uid: name.into(), created_at: 0, spec: SecretSpec::self_signed(name, host) }
    }

    fn ingress(tls: &[(&[&str], &str)]) -> Ingress {
        Ingress {
            uid: "u".into(),
            created_at: 0,
            spec: IngressSpec {
                name: "a".into(),
                namespace: "default".into(),
                class: None,
                default_backend: None,
                tls: tls
                    .iter()
                    .map(|(hosts, secret)| IngressTls {
                        hosts: hosts.iter().map(|h| h.to_string()).collect(),
                        secret_name: secret.to_string(),
                    })
                    .collect(),
                rules: vec![],
                labels: Default::default(),
                annotations: Default::default(),
            },
            load_balancer: None,
        }
    }

    #[test]
    fn sni_picks_by_host_then_wildcard_then_the_first_secret() {
        let secrets = [secret("shop", "shop.example"), secret("wild", "x.example.com")];
        let certs = Certificates::build(
            &[ingress(&[
                (&["shop.example"], "shop"),
                (&["*.example.com"], "wild"),
                (&["gone.example"], "missing"),
            ])],
            &secrets,
        );
        let cert_of = |sni| certs.pick(sni).unwrap().cert[0].clone();
        let shop = cert_of(Some("shop.example"));
        let wild = cert_of(Some("blog.example.com"));
        assert_ne!(shop, wild);
        assert_eq!(cert_of(Some("SHOP.example")), shop, "SNI is case-insensitive");
        assert_eq!(cert_of(Some("a.b.example.com")), shop, "a wildcard is one label: the fallback");
        assert_eq!(cert_of(None), shop, "no SNI: the first secret");
        assert_eq!(cert_of(Some("gone.example")), shop, "a missing secret: the fallback");
        assert!(Certificates::build(&[ingress(&[])], &secrets).is_empty());
    }
}
