//! The Kubernetes API (issue #15, first slice): HTTPS on 127.0.0.1 and the
//! node's address (`api.port`: 6443; a cluster server's cluster API shares
//! the port and hands TLS connections here), so the real kubectl lists, creates,
//! scales and deletes podnet's pods, deployments and services. It is a
//! translator in front of the agent's request channel (`agent`): it keeps
//! no cluster state of its own.
//!
//! Files: `server` (TLS + HTTP, auth, bounds), `routes` (URL → what),
//! `verbs` (what each request does), `write` (update, patch, namespaces,
//! dry runs), `patch` (JSON, merge and strategic merge patches),
//! `manifest` (files for `podnet apply`), `discovery`, `objects` (podnet →
//! Kubernetes JSON), `decode` (Kubernetes JSON → podnet), `protobuf`
//! (kubectl's protobuf bodies → JSON), `fields` (strict field validation),
//! `openapi` (what kubectl's validation and explain look for), `schemas`
//! (the objects' fields, for explain), `table`
//! (server-side printing), `select` (label and field selectors), `status`
//! (errors), `tls` (CA, serving certificate), `auth` (the admin token),
//! `kubeconfig`, `files`, `stream` (logs, followed or whole; exec and
//! port-forward over WebSocket and SPDY).
//!
//! Watch: `versioned` (objects with the control plane's revision),
//! `watch` (the hub: one per agent, fan-out), `watcher` (one watch
//! request), `replicasets`, `events`. Changes: `write` (PUT, PATCH, dry
//! runs, namespaces), `patch`. Streams: `stream/` (logs -f, exec, attach,
//! port-forward over WebSocket and SPDY).
//!
//! Not in this slice: attach's and `run -it`'s stdin (a container's own
//! stdin), streams to a pod on another node of a cluster, RBAC beyond the
//! one admin token; watching events, endpoints or namespaces; managedFields
//! (server-side apply merges the applied object like a strategic merge
//! patch, without field ownership or conflicts between managers).

pub mod agent;
pub mod auth;
pub mod configmaps;
pub mod decode;
pub mod discovery;
pub mod encode;
pub mod endpointslices;
pub mod event_history;
mod event_watch;
pub mod events;
pub mod fields;
pub mod files;
pub mod ingresses;
pub mod kubeconfig;
pub mod manifest;
pub mod netpol;
pub mod objects;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
pub mod protobuf;
pub mod replicasets;
pub mod routes;
pub mod schemas;
pub mod select;
pub mod server;
pub mod status;
pub mod stream;
pub mod table;
pub mod tls;
pub mod verbs;
pub mod versioned;
pub mod watch;
#[cfg(test)]
mod watch_tests;
pub mod watcher;
pub mod write;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::api::server::Call;
use crate::listeners::limits::{Caps, Gate, Listener};

/// The Kubernetes API's usual port.
pub const DEFAULT_PORT: u16 = 6443;

/// The config's `[api]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the Kubernetes API at all (on a standalone node or a cluster
    /// server; members leave it to their server, as k3s agents do).
    pub enabled: bool,
    /// Its port, on 127.0.0.1 and the node's address; unset: 6443. On a
    /// cluster server whose cluster API listens on the same port, the two
    /// share it (TLS goes to this API, Noise to the cluster's).
    pub port: Option<u16>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: true, port: None }
    }
}

impl ApiConfig {
    /// The port to serve on.
    pub fn port(&self) -> Result<u16, KubeError> {
        match self.port {
            Some(0) => Err(KubeError::Port),
            Some(port) => Ok(port),
            None => Ok(DEFAULT_PORT),
        }
    }
}

/// The Kubernetes API's server, for the cluster listener to hand TLS
/// connections to when both serve one port. Empty until the API serves.
#[derive(Clone, Default)]
pub struct SharedPort(Arc<OnceLock<Arc<server::Server>>>);

impl SharedPort {
    /// The API's server, once it serves through this port.
    pub fn get(&self) -> Option<Arc<server::Server>> {
        self.0.get().cloned()
    }
}

/// Why the Kubernetes API cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// A file of the API in the data dir.
    #[error("cannot write or read {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA or serving certificate.
    #[error("cannot {what} for the Kubernetes API: {reason}")]
    Certificate {
        /// The step.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The token file holds no usable token.
    #[error("{} holds no usable token: remove it to make a new one (and hand out the new kubeconfig)", .0.display())]
    BadToken(PathBuf),
    /// The kernel's random source.
    #[error(transparent)]
    Random(#[from] crate::sys::random::RandomError),
    /// Port 0 in the config.
    #[error("api.port 0 is not a port: give 1 to 65535 (default 6443), or set api.enabled = false")]
    Port,
    /// The port is taken (k3s, another agent).
    #[error(
        "cannot serve the Kubernetes API on {addr}: {source}: free the port, set another api.port in the config, or api.enabled = false"
    )]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where and as what the API serves.
pub struct ApiOptions<'a> {
    /// The `[api]` config.
    pub config: &'a ApiConfig,
    /// The data dir: the CA, keys and token go to `kube/`, the kubeconfig beside.
    pub data_dir: &'a Path,
    /// The node's name (a name in the serving certificate).
    pub node_name: &'a str,
    /// The node's address, when it has one (served on, and the kubeconfig's server).
    pub address: Option<Ipv4Addr>,
    /// Where podnet's cluster API listens here (a cluster server's), and
    /// the port it shares with this API when they have the same.
    pub cluster: Option<(SocketAddr, SharedPort)>,
    /// The listener caps and request timeout.
    pub caps: Caps,
    /// The control plane's revision, where it runs here (the watch hub
    /// wakes on it; without it, it polls).
    pub revisions: Option<tokio::sync::watch::Receiver<u64>>,
    /// Streams into members' pods, on a cluster's server.
    pub streams: Option<crate::cluster::streams::Streams>,
}

/// Binds the API's ports, makes (or loads) its CA, certificate and token,
/// writes the kubeconfig, and serves on tasks of their own. Errors come
/// before anything is served, for the agent to report at start. An address
/// that is not up (loopback down in a fresh namespace) is skipped with a
/// warning; a port in use is an error.
pub async fn start(options: ApiOptions<'_>, calls: mpsc::Sender<Call>) -> Result<(), KubeError> {
    let config = options.config;
    if !config.enabled {
        forget_kubeconfig(options.data_dir);
        return Ok(());
    }
    let port = config.port()?;
    let shared = options.cluster.as_ref().filter(|(listen, _)| listen.port() == port);
    let mut addrs = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))];
    addrs.extend(options.address.filter(|a| !a.is_loopback()).map(|a| SocketAddr::from((a, port))));
    // The addresses the cluster listener already takes for both APIs.
    let covered = |addr: &SocketAddr| {
        shared.is_some_and(|(listen, _)| listen.ip().is_unspecified() || listen.ip() == addr.ip())
    };
    let mut listeners = Vec::new();
    let mut served = None;
    for addr in &addrs {
        if covered(addr) {
            served = Some(*addr);
            continue;
        }
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                served = listener.local_addr().ok();
                listeners.push(listener);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => tracing::warn!(
                "the Kubernetes API is not served on {addr}: the address is not up on this node (for 127.0.0.1: `ip link set lo up`)"
            ),
            Err(source) => return Err(KubeError::Listen { addr: *addr, source }),
        }
    }
    let Some(served) = served else {
        tracing::warn!(
            "the Kubernetes API is not served: none of its addresses is up on this node; no kubeconfig written"
        );
        forget_kubeconfig(options.data_dir);
        return Ok(());
    };
    let url = format!("https://{served}");
    let dir = options.data_dir.join("kube");
    let token = auth::Token::admin(options.data_dir)?;
    let ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    let tls = tls::load(&dir, options.node_name, &ips)?;
    kubeconfig::write(options.data_dir, &url, &tls.ca_pem, token.as_str())?;

    let agent = agent::Agent::new(calls, options.caps.request_timeout);
    let server = Arc::new(server::Server {
        watch: watch::Hub::new(
            agent.clone(),
            watch::Limits::for_caps(&options.caps),
            Listener::KubeApi.counters(),
        )
        .waking_on(options.revisions),
        verbs: verbs::Verbs::new(agent),
        token,
        tls: tokio_rustls::TlsAcceptor::from(tls.config),
        counters: Listener::KubeApi.counters(),
        request_timeout: options.caps.request_timeout,
        node: options.node_name.to_string(),
        streams: options.streams,
    });
    if let Some((_, port)) = shared {
        // Set once per agent: the agent starts the API once.
        let _ = port.0.set(server.clone());
    }
    let gate = Gate::new(Listener::KubeApi, options.caps);
    for listener in listeners {
        tokio::spawn(server::serve(listener, server.clone(), gate.clone()));
    }
    tracing::info!(server = %url, kubeconfig = %options.data_dir.join(kubeconfig::FILE).display(), "Kubernetes API ready");
    Ok(())
}

/// Removes a kubeconfig left by an earlier start: it exists only while the
/// API is served (the token in `kube/` is kept for the next time).
pub fn forget_kubeconfig(data_dir: &Path) {
    let path = data_dir.join(kubeconfig::FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!("cannot remove {}: {e}", path.display())
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn options<'a>(config: &'a ApiConfig, dir: &'a Path) -> ApiOptions<'a> {
        let caps = Caps { per_client: 4, total: 4, request_timeout: Duration::from_millis(300) };
        ApiOptions {
            config,
            data_dir: dir,
            node_name: "t",
            address: None,
            cluster: None,
            caps,
            revisions: None,
            streams: None,
        }
    }

    #[tokio::test]
    async fn a_port_in_use_is_a_clear_error_and_nothing_is_written() {
        let dir = std::env::temp_dir().join(format!("podnet-kube-start-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ApiConfig { enabled: true, port: Some(taken.local_addr().unwrap().port()) };
        let (calls, _requests) = mpsc::channel(1);
        let e = start(options(&config, &dir), calls.clone()).await.unwrap_err();
        assert!(matches!(e, KubeError::Listen { .. }), "{e}");
        assert!(e.to_string().contains("set another api.port"), "{e}");
        assert!(!dir.join(kubeconfig::FILE).exists(), "nothing half-made");
        let zero = ApiConfig { enabled: true, port: Some(0) };
        assert!(matches!(start(options(&zero, &dir), calls).await, Err(KubeError::Port)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_port_is_6443_unless_set() {
        assert_eq!(ApiConfig::default().port().unwrap(), 6443);
        assert_eq!(ApiConfig { enabled: true, port: Some(7000) }.port().unwrap(), 7000);
        assert!(matches!(ApiConfig { enabled: true, port: Some(0) }.port(), Err(KubeError::Port)));
    }
}
