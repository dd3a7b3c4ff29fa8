//! The requests: a blocking HTTPS client of one API server (ureq on
//! rustls, as image pulls: no new dependency), with the kubeconfig's CA and
//! credential, mapping the API's refusals to typed errors.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::KubernetesError;
use super::kubeconfig::{Access, Auth};
use super::objects::{self, List};
use super::watcher::Kind;

/// Objects asked for per list page.
const PAGE: usize = 500;
/// The largest list page body taken.
const MAX_PAGE_BYTES: u64 = 16 << 20;
/// How long the server keeps a watch open before the client watches again.
const WATCH_SECONDS: u64 = 240;
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An HTTPS client of one API server.
pub struct Client {
    access: Access,
    /// For lists: a stalled server is given up on after 30 s.
    lists: ureq::Agent,
    /// For watches: quiet for minutes between events.
    watches: ureq::Agent,
}

impl Client {
    /// A client for `access`.
    pub fn new(access: Access) -> Result<Client, KubernetesError> {
        let tls = tls_config(&access)?;
        let agent = |per_read: Duration| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(10)))
                .timeout_per_read(Some(per_read))
                .max_redirects(0)
                .user_agent(concat!("podnet/", env!("CARGO_PKG_VERSION")))
                .tls_config(tls.clone())
                .build()
                .new_agent()
        };
        Ok(Client {
            lists: agent(Duration::from_secs(30)),
            watches: agent(Duration::from_secs(WATCH_SECONDS + 60)),
            access,
        })
    }

    /// The server's URL.
    pub fn server(&self) -> &str {
        &self.access.server
    }

    fn get(&self, agent: &ureq::Agent, kind: Kind, path: &str) -> Result<ureq::Body, KubernetesError> {
        let server = || self.access.server.clone();
        let mut request =
            agent.get(format!("{}{path}", self.access.server)).header("Accept", "application/json");
        let token = match &self.access.auth {
            Auth::Token(t) => Some(t.clone()),
            Auth::TokenFile(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| KubernetesError::KubeconfigUnreadable {
                        path: file.clone(),
                        message: format!("its tokenFile: {e}"),
                    })?
                    .trim()
                    .to_string(),
            ),
            _ => None,
        };
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| transport(&self.access.server, e))?;
        let code = response.status().as_u16();
        let body = response.into_body();
        match code {
            200..=299 => Ok(body),
            401 => Err(KubernetesError::Unauthorized { server: server() }),
            403 => Err(KubernetesError::Forbidden { server: server(), resource: kind.resource() }),
            410 => Err(KubernetesError::Gone),
            _ => {
                let mut text = String::new();
                let _ = body.into_reader().take(4096).read_to_string(&mut text);
                let status: objects::Status = serde_json::from_str(&text).unwrap_or_default();
                let message =
                    if status.message.is_empty() { text.trim().to_string() } else { status.message };
                Err(KubernetesError::Status { server: server(), path: path.to_string(), code, message })
            }
        }
    }

    /// One list page of `path`.
    pub(super) fn list(
        &self,
        kind: Kind,
        path: &str,
        next: Option<&str>,
    ) -> Result<List<serde_json::Value>, KubernetesError> {
        let mut query = format!("{path}{}limit={PAGE}", separator(path));
        if let Some(next) = next {
            query.push_str("&continue=");
            query.push_str(&crate::url::percent_encode(next));
        }
        let body = self.get(&self.lists, kind, &query)?;
        let mut bytes = Vec::new();
        body.into_reader()
            .take(MAX_PAGE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| transport_io(&self.access.server, e))?;
        let bad = |message: String| KubernetesError::Answer {
            server: self.access.server.clone(),
            what: "list",
            message,
        };
        if bytes.len() as u64 > MAX_PAGE_BYTES {
            return Err(bad(format!("a page over {MAX_PAGE_BYTES} bytes")));
        }
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
    }

    /// Opens a watch of `path` from `resource_version`.
    pub(super) fn watch(
        &self,
        kind: Kind,
        path: &str,
        resource_version: &str,
    ) -> Result<impl BufRead + use<>, KubernetesError> {
        let query = format!(
            "{path}{}watch=true&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
            separator(path),
            crate::url::percent_encode(resource_version)
        );
        Ok(BufReader::new(self.get(&self.watches, kind, &query)?.into_reader()))
    }
}

/// The TLS settings: the kubeconfig's CA (else the system's), its client
/// certificate, or no verification when it says so.
fn tls_config(access: &Access) -> Result<TlsConfig, KubernetesError> {
    let certs = |pem: &[u8], what: &'static str| -> Result<Vec<Certificate<'static>>, KubernetesError> {
        let certs: Vec<_> = ureq::tls::parse_pem(pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(KubernetesError::Pem { what, message: "no PEM certificate in it".into() });
        }
        Ok(certs)
    };
    let roots = match &access.ca {
        Some(pem) => certs(pem, "certificate-authority")?,
        None => std::fs::read(SYSTEM_CAS)
            .map(|pem| {
                ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut builder = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .disable_verification(access.insecure);
    if let Auth::ClientCert { cert, key } = &access.auth {
        let chain = certs(cert, "client-certificate")?;
        let key = PrivateKey::from_pem(key)
            .map_err(|e| KubernetesError::Pem { what: "client-key", message: e.to_string() })?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

fn transport(server: &str, e: ureq::Error) -> KubernetesError {
    let text = e.to_string();
    let tls = matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_))
        || text.to_lowercase().contains("certificate");
    if tls {
        KubernetesError::Tls { server: server.to_string(), message: text }
    } else {
        KubernetesError::Unreachable { server: server.to_string(), message: text }
    }
}

pub(super) fn transport_io(server: &str, e: std::io::Error) -> KubernetesError {
    KubernetesError::Unreachable { server: server.to_string(), message: e.to_string() }
}

/// What joins a path and more query parameters: a path may carry its own
/// (the TLS Secrets' field selector).
fn separator(path: &str) -> char {
    if path.contains('?') { '&' } else { '?' }
}
