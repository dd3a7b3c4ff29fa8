//! One thread per resource running its list-then-watch loop (`watch.rs`
//! decides, `client.rs` requests), sending each change to the agent.
//! Blocking threads rather than tasks: a watch is one long read, and six
//! threads cost less than an async client would in binary size.

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::KubernetesError;
use super::client::{Client, transport_io};
use super::objects::{self, Object};
use super::stats::Count;
use super::watch::{Change, Step, Watch, WatchError};

/// The most objects kept of one kind (the control plane's `max_cluster_pods`
/// order of magnitude: an edge cluster has hundreds).
pub const MAX_OBJECTS: usize = 8192;
/// The largest watch event taken (an object is at most ~1.5 MiB in etcd).
const MAX_EVENT_BYTES: usize = 2 << 20;
/// Retries back off from 1 s to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
    /// networking.k8s.io/v1 ingresses.
    Ingresses,
    /// core/v1 secrets of type kubernetes.io/tls (a field selector: the
    /// others, Helm's releases among them, are never read).
    TlsSecrets,
}

impl Kind {
    /// Every resource, watched at once.
    pub const ALL: [Kind; 8] = [
        Kind::Nodes,
        Kind::Services,
        Kind::EndpointSlices,
        Kind::Pods,
        Kind::Namespaces,
        Kind::NetworkPolicies,
        Kind::Ingresses,
        Kind::TlsSecrets,
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
            Kind::Ingresses => "ingresses",
            Kind::TlsSecrets => "secrets",
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
            Kind::Ingresses => "/apis/networking.k8s.io/v1/ingresses",
            Kind::TlsSecrets => "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Ftls",
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
    /// Ingresses.
    Ingresses(Change<objects::Ingress>),
    /// TLS Secrets.
    TlsSecrets(Change<objects::Secret>),
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
                Kind::Ingresses => drop(run(&client, kind, kind.path(), &updates, Changed::Ingresses)),
                Kind::TlsSecrets => drop(run(&client, kind, kind.path(), &updates, Changed::TlsSecrets)),
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
}
