//! The requests: a blocking HTTPS client (ureq on rustls, as image pulls)
//! and one thread per resource running its list-then-watch loop
//! (`watch.rs`), sending each change to the agent. Blocking threads rather
//! than tasks: a watch is one long read, the HTTP client is already in the
//! binary, and six threads cost less than an async client would in size.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::KubernetesError;
use super::kubeconfig::{Access, Auth};
use super::objects::{self, List, Object};
use super::stats::Count;
use super::watch::{Change, Step, Watch, WatchError};

/// The most objects kept of one kind (the control plane's `max_cluster_pods`
/// order of magnitude: an edge cluster has hundreds).
pub const MAX_OBJECTS: usize = 8192;
/// Objects asked for per list page.
const PAGE: usize = 500;
/// The largest list page body taken.
const MAX_PAGE_BYTES: u64 = 16 << 20;
/// The largest watch event taken (an object is at most ~1.5 MiB in etcd).
const MAX_EVENT_BYTES: usize = 2 << 20;
/// How long the server keeps a watch open before the client watches again.
const WATCH_SECONDS: u64 = 240;
/// Retries back off from 1 s to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A resource podnet watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 nodes.
    Nodes,
    /// core/v1 services.
    Services,
    /// discovery.k8s.io/v1 endpointslices (core/v1 endpoints when the
    /// server has no slices).
    EndpointSlices,
    /// core/v1 pods.
    Pods,
    /// core/v1 namespaces.
    Namespaces,
    /// networking.k8s.io/v1 networkpolicies.
    NetworkPolicies,
}

impl Kind {
    /// Every resource, watched at once.
    pub const ALL: [Kind; 6] = [
        Kind::Nodes,
        Kind::Services,
        Kind::EndpointSlices,
        Kind::Pods,
        Kind::Namespaces,
        Kind::NetworkPolicies,
    ];

    /// Its resource name.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Nodes => "nodes",
            Kind::Services => "services",
            Kind::EndpointSlices => "endpointslices",
            Kind::Pods => "pods",
            Kind::Namespaces => "namespaces",
            Kind::NetworkPolicies => "networkpolicies",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Nodes => "/api/v1/nodes",
            Kind::Services => "/api/v1/services",
            Kind::EndpointSlices => "/apis/discovery.k8s.io/v1/endpointslices",
            Kind::Pods => "/api/v1/pods",
            Kind::Namespaces => "/api/v1/namespaces",
            Kind::NetworkPolicies => "/apis/networking.k8s.io/v1/networkpolicies",
        }
    }
}

/// A change of one resource's objects, as the agent takes it.
#[derive(Debug, Clone)]
pub enum Changed {
    /// Nodes.
    Nodes(Change<objects::Node>),
    /// Services.
    Services(Change<objects::Service>),
    /// EndpointSlices.
    EndpointSlices(Change<objects::EndpointSlice>),
    /// Pods.
    Pods(Change<objects::Pod>),
    /// Namespaces.
    Namespaces(Change<objects::Namespace>),
    /// NetworkPolicies.
    NetworkPolicies(Change<objects::NetworkPolicy>),
}

/// What a watcher thread tells the agent.
#[derive(Debug)]
pub enum Update {
    /// Objects changed.
    Changed(Changed),
    /// A request failed; it is tried again after `retry`.
    Failed {
        /// The resource.
        kind: Kind,
        /// Why.
        error: KubernetesError,
        /// When the watcher tries again.
        retry: Duration,
    },
}

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
    fn list(
        &self,
        kind: Kind,
        path: &str,
        next: Option<&str>,
    ) -> Result<List<serde_json::Value>, KubernetesError> {
        let mut query = format!("{path}?limit={PAGE}");
        if let Some(next) = next {
            query.push_str("&continue=");
            query.push_str(&percent_encode(next));
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
    fn watch(
        &self,
        kind: Kind,
        path: &str,
        resource_version: &str,
    ) -> Result<impl BufRead + use<>, KubernetesError> {
        let query = format!(
            "{path}?watch=true&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
            percent_encode(resource_version)
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

fn transport_io(server: &str, e: std::io::Error) -> KubernetesError {
    KubernetesError::Unreachable { server: server.to_string(), message: e.to_string() }
}

/// Query values are resourceVersions and continue tokens: opaque, base64
/// in practice.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts one watcher thread per resource.
pub fn spawn_all(client: Arc<Client>, updates: mpsc::Sender<Update>) {
    for kind in Kind::ALL {
        let (client, updates) = (client.clone(), updates.clone());
        let spawned = std::thread::Builder::new().name(format!("kube-{}", kind.resource())).spawn(move || {
            match kind {
                Kind::Nodes => drop(run(&client, kind, kind.path(), &updates, Changed::Nodes)),
                Kind::Services => drop(run(&client, kind, kind.path(), &updates, Changed::Services)),
                Kind::EndpointSlices => {
                    let fallback = run(&client, kind, kind.path(), &updates, Changed::EndpointSlices);
                    if fallback {
                        tracing::info!(
                            "the Kubernetes API serves no EndpointSlices (discovery.k8s.io/v1): reading core/v1 Endpoints"
                        );
                        let endpoints = |c: Change<objects::Endpoints>| {
                            Changed::EndpointSlices(map_change(c, objects::EndpointSlice::from))
                        };
                        run(&client, kind, "/api/v1/endpoints", &updates, endpoints);
                    }
                }
                Kind::Pods => drop(run(&client, kind, kind.path(), &updates, Changed::Pods)),
                Kind::Namespaces => drop(run(&client, kind, kind.path(), &updates, Changed::Namespaces)),
                Kind::NetworkPolicies => drop(run(&client, kind, kind.path(), &updates, Changed::NetworkPolicies)),
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the {} watcher: {e}", kind.resource());
        }
    }
}

fn map_change<A, B>(change: Change<A>, f: impl Fn(A) -> B) -> Change<B> {
    match change {
        Change::Replace(all) => Change::Replace(all.into_iter().map(f).collect()),
        Change::Upsert(one) => Change::Upsert(f(one)),
        Change::Delete(key) => Change::Delete(key),
    }
}

/// The list-then-watch loop of one resource, until the agent is gone.
/// Returns true when the server does not serve `path` at all (404 on the
/// first list), so the caller may read an older shape instead.
fn run<T: Object>(
    client: &Client,
    kind: Kind,
    path: &str,
    updates: &mpsc::Sender<Update>,
    wrap: impl Fn(Change<T>) -> Changed,
) -> bool {
    let mut watch = Watch::<T>::new(MAX_OBJECTS);
    let mut backoff = Duration::from_secs(1);
    let send = |update| updates.blocking_send(update).is_ok();
    loop {
        let failure = match watch.step() {
            Step::List { next } => match client.list(kind, path, next.as_deref()) {
                Ok(page) => match watch.on_page(page) {
                    Ok(Some(change)) => {
                        backoff = Duration::from_secs(1);
                        if !send(Update::Changed(wrap(change))) {
                            return false;
                        }
                        continue;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        count(&e);
                        KubernetesError::Answer {
                            server: client.server().into(),
                            what: "list",
                            message: e.to_string(),
                        }
                    }
                },
                Err(KubernetesError::Status { code: 404, .. }) if !watch.listed() && next.is_none() => {
                    if kind == Kind::EndpointSlices && path == Kind::EndpointSlices.path() {
                        return true;
                    }
                    KubernetesError::Status {
                        server: client.server().into(),
                        path: path.into(),
                        code: 404,
                        message: format!("the server does not serve {}", kind.resource()),
                    }
                }
                Err(KubernetesError::Gone) => {
                    // An expired continue token: the list starts over.
                    Count::Relists.add();
                    watch.on_gone();
                    continue;
                }
                Err(e) => {
                    watch.restart_list();
                    e
                }
            },
            Step::Watch { resource_version } => match client.watch(kind, path, &resource_version) {
                Ok(mut stream) => match follow(client.server(), &mut stream, &mut watch, &send, &wrap) {
                    Ok(Some(true)) => {
                        backoff = Duration::from_secs(1);
                        continue;
                    }
                    // A watch that ended with nothing taken (a quiet
                    // timeout, a server closing at once, an event too
                    // large) is not retried at once: a server that keeps
                    // ending watches cannot make the watcher spin.
                    Ok(Some(false)) => {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                    Ok(None) => return false,
                    Err(e) => e,
                },
                Err(KubernetesError::Gone) => {
                    Count::Relists.add();
                    watch.on_gone();
                    continue;
                }
                Err(e) => e,
            },
        };
        if !send(Update::Failed { kind, error: failure, retry: backoff }) {
            return false;
        }
        Count::Reconnects.add();
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads one watch stream to its end: Some(whether an event came) when it
/// ended (the server's timeout, or an event that ends it), None when the
/// agent is gone, an error when the connection failed.
fn follow<T: Object>(
    server: &str,
    stream: &mut impl BufRead,
    watch: &mut Watch<T>,
    send: &impl Fn(Update) -> bool,
    wrap: &impl Fn(Change<T>) -> Changed,
) -> Result<Option<bool>, KubernetesError> {
    let mut line = Vec::new();
    let mut progress = false;
    loop {
        line.clear();
        let read = stream
            .by_ref()
            .take(MAX_EVENT_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| transport_io(server, e))?;
        if read == 0 {
            return Ok(Some(progress));
        }
        if line.len() > MAX_EVENT_BYTES {
            Count::BadAnswers.add();
            tracing::warn!("a watch event over {MAX_EVENT_BYTES} bytes: watching again");
            return Ok(Some(progress));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        progress = true;
        match watch.on_event(&line) {
            Ok(Some(change)) => {
                Count::Events.add();
                if !send(Update::Changed(wrap(change))) {
                    return Ok(None);
                }
            }
            Ok(None) => {}
            Err(e) => {
                count(&e);
                if e.ends_watch() {
                    if e != WatchError::Gone {
                        tracing::warn!("{e}: watching again");
                    }
                    return Ok(Some(progress));
                }
                tracing::warn!("{e}");
            }
        }
    }
}

fn count(e: &WatchError) {
    match e {
        WatchError::Gone => Count::Relists.add(),
        WatchError::TooMany { .. } => Count::ObjectsRefused.add(),
        WatchError::Decode(_) | WatchError::Status { .. } => Count::BadAnswers.add(),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io::Cursor;

    use super::*;

    fn stream(lines: &[String]) -> Cursor<Vec<u8>> {
        Cursor::new(lines.join("\n").into_bytes())
    }

    fn line(kind: &str, name: &str, rv: &str) -> String {
        serde_json::json!({ "type": kind, "object": { "metadata": {
            "name": name, "namespace": "default", "resourceVersion": rv } } })
        .to_string()
    }

    fn listed() -> Watch<objects::Service> {
        let mut watch = Watch::new(10);
        let page = serde_json::from_str(r#"{"metadata":{"resourceVersion":"5"},"items":[]}"#).unwrap();
        assert!(watch.on_page(page).unwrap().is_some());
        watch
    }

    #[test]
    fn a_watch_stream_is_followed_to_its_end_blank_lines_and_bookmarks_included() {
        let mut watch = listed();
        let sent = RefCell::new(Vec::new());
        let send = |u: Update| {
            sent.borrow_mut().push(u);
            true
        };
        let mut s = stream(&[line("ADDED", "a", "6"), String::new(), line("BOOKMARK", "", "9")]);
        assert_eq!(follow("https://x", &mut s, &mut watch, &send, &Changed::Services).unwrap(), Some(true));
        assert_eq!(sent.borrow().len(), 1, "the add; the bookmark only moves the version");
        assert_eq!(watch.step(), Step::Watch { resource_version: "9".into() });
    }

    #[test]
    fn a_410_event_ends_the_stream_and_the_next_step_is_a_list() {
        let mut watch = listed();
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}"#.to_string();
        let mut s = stream(&[gone, line("ADDED", "never", "7")]);
        let send = |_: Update| true;
        assert_eq!(follow("https://x", &mut s, &mut watch, &send, &Changed::Services).unwrap(), Some(true));
        assert_eq!(watch.step(), Step::List { next: None });
    }

    #[test]
    fn an_oversized_event_restarts_the_watch_from_the_last_version() {
        let mut watch = listed();
        let huge =
            format!("{{\"type\":\"ADDED\",\"object\":{{\"pad\":\"{}\"}}}}", "x".repeat(MAX_EVENT_BYTES));
        let mut s = stream(&[huge, line("ADDED", "after", "8")]);
        let sent = RefCell::new(0);
        let send = |_: Update| {
            *sent.borrow_mut() += 1;
            true
        };
        assert_eq!(follow("https://x", &mut s, &mut watch, &send, &Changed::Services).unwrap(), Some(false));
        assert_eq!(*sent.borrow(), 0, "nothing after the oversized line is taken from that stream");
        assert_eq!(watch.step(), Step::Watch { resource_version: "5".into() });
    }

    #[test]
    fn the_agent_gone_stops_the_watcher() {
        let mut watch = listed();
        let mut s = stream(&[line("ADDED", "a", "6")]);
        let send = |_: Update| false;
        assert_eq!(follow("https://x", &mut s, &mut watch, &send, &Changed::Services).unwrap(), None);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("eyJ2Ijo+/=="), "eyJ2Ijo%2B%2F%3D%3D");
        assert_eq!(percent_encode("123"), "123");
    }
}
