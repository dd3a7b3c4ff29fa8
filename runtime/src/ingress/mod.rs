//! Ingress, served by the agent on every node: the routing table
//! (`routing`), the reverse proxy (`proxy`), TLS with SNI (`tls`), the
//! board config's `[ingress]` (`config`), the counters (`stats`) and the
//! client connections' timeouts (`watch`).
//!
//! The node binds `ingress.http_port` and `ingress.https_port` on every
//! address while any Ingress of podnet's class exists, and keeps the table
//! and certificates in line with the desired state after every event-loop
//! turn, as it does the switch's tables. A port another socket holds is the
//! Ingresses' status (`<pending: port 80/TCP in use on the node>`), tried
//! again every 2 s.
//!
//! The proxy runs on threads of its own (a multi-threaded tokio runtime of
//! `ingress.threads` workers, made when the first Ingress is served): HTTP
//! and TLS work is CPU-bound and would otherwise share the agent's one
//! event-loop thread with the control plane, the listeners and the pods.

mod config;
pub mod proxy;
pub mod routing;
pub mod stats;
pub mod tls;
pub mod watch;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use config::IngressConfig;

use crate::desired::NodeDesired;
use crate::listeners::limits::{Caps, Gate, Listener, Reason};
use crate::listeners::proxy::{Bound, ListenKey};
use crate::model::ingress::Ingress;
use crate::model::secret::Secret;
use crate::model::{Endpoints, LoadBalancerStatus, Protocol, Service};
use proxy::{Scheme, Shared};

/// How long a port that could not be bound waits before the next try.
const RETRY: Duration = Duration::from_secs(2);

/// What the table and certificates are built from: podnet's Ingresses, the
/// Services they name with their endpoints, and the TLS Secrets.
type Inputs = (Vec<Ingress>, Vec<(Service, Endpoints)>, Vec<Secret>);

/// One of the two ports and its accept loop.
#[derive(Default)]
struct Port {
    port: u16,
    task: Option<JoinHandle<()>>,
    problem: Option<String>,
    retry_at: Option<Instant>,
}

impl Port {
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.problem = None;
        self.retry_at = None;
    }
}

/// The proxy's own runtime; shut down without waiting when dropped (the
/// agent drops it from inside its own runtime, where blocking is refused).
struct Threads(Option<tokio::runtime::Runtime>);

impl Threads {
    /// A runtime of `threads` workers (0: one per CPU).
    fn start(threads: u16) -> std::io::Result<Threads> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all().thread_name("podnet-ingress");
        if threads > 0 {
            builder.worker_threads(threads as usize);
        }
        Ok(Threads(Some(builder.build()?)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("running until dropped").handle()
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The node's Ingress proxy.
pub struct IngressServer {
    shared: Arc<Shared>,
    resolver: Arc<tls::Resolver>,
    acceptor: TlsAcceptor,
    gate: Arc<Gate>,
    http: Port,
    https: Port,
    /// What the table and certificates were built from.
    built: Option<Inputs>,
    host_interface: String,
    /// Made when the first port is bound.
    threads: Option<Threads>,
}

impl IngressServer {
    /// A proxy with the board config's ports and limits, serving nothing yet.
    pub fn new(config: &IngressConfig, host_interface: &str) -> IngressServer {
        let resolver = Arc::new(tls::Resolver::default());
        let acceptor = TlsAcceptor::from(tls::server_config(resolver.clone()));
        let caps = Caps {
            per_client: config.max_connections_per_client,
            total: config.max_connections,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        };
        let shared = Arc::new(Shared {
            table: RwLock::new(Arc::new(routing::Table::default())),
            pool: proxy::Pool::default(),
            config: config.clone(),
            stats: stats::Stats::default(),
        });
        IngressServer {
            shared,
            resolver,
            acceptor,
            gate: Gate::new(Listener::Ingress, caps),
            http: Port { port: config.http_port, ..Port::default() },
            https: Port { port: config.https_port, ..Port::default() },
            built: None,
            host_interface: host_interface.to_string(),
            threads: None,
        }
    }

    /// Brings the table, the certificates and the listeners in line with
    /// `desired`.
    pub async fn sync(&mut self, desired: &NodeDesired) {
        let ingresses: Vec<Ingress> =
            desired.ingresses.iter().filter(|i| i.spec.is_podnet()).cloned().collect();
        let wanted = !ingresses.is_empty();
        let used: Vec<(Service, Endpoints)> = desired
            .services
            .iter()
            .filter(|(s, _)| {
                ingresses.iter().any(|i| {
                    i.spec.namespace == s.spec.namespace
                        && i.spec.backends().any(|b| b.service == s.spec.name)
                })
            })
            .map(|(s, e)| (Service::clone(s), Endpoints::clone(e)))
            .collect();
        let inputs = (ingresses, used, desired.secrets.clone());
        if self.built.as_ref() != Some(&inputs) {
            let (ingresses, services, secrets) = &inputs;
            let table = routing::Table::build(ingresses, services);
            let endpoints: HashSet<_> = services
                .iter()
                .flat_map(|(_, e)| {
                    e.subsets
                        .iter()
                        .flat_map(|(a, ports)| ports.iter().map(|p| std::net::SocketAddr::new(a.ip, p.port)))
                })
                .collect();
            self.shared.pool.retain(&endpoints);
            let prefixes: Vec<String> =
                ingresses.iter().map(|i| format!("{}/{} ", i.spec.namespace, i.spec.name)).collect();
            self.shared.stats.retain(|rule| prefixes.iter().any(|p| rule.starts_with(p.as_str())));
            *self.shared.table.write().expect("table lock") = Arc::new(table);
            self.resolver.set(tls::Certificates::build(ingresses, secrets));
            self.built = Some(inputs);
        }
        for scheme in [Scheme::Http, Scheme::Https] {
            let port = match scheme {
                Scheme::Http => &mut self.http,
                Scheme::Https => &mut self.https,
            };
            if !wanted || port.port == 0 {
                port.stop().await;
                continue;
            }
            if port.task.as_ref().is_some_and(|t| !t.is_finished())
                || port.retry_at.is_some_and(|at| Instant::now() < at)
            {
                continue;
            }
            if self.threads.is_none() {
                match Threads::start(self.shared.config.threads) {
                    Ok(threads) => self.threads = Some(threads),
                    Err(e) => {
                        port.problem = Some(format!("cannot start the ingress threads: {e}"));
                        port.retry_at = Some(Instant::now() + RETRY);
                        continue;
                    }
                }
            }
            let runtime = self.threads.as_ref().expect("started above").handle();
            // The listener belongs to the proxy's runtime (its reactor).
            let _in_runtime = runtime.enter();
            let key = ListenKey { proto: Protocol::Tcp, ip: Ipv4Addr::UNSPECIFIED.into(), port: port.port };
            match crate::listeners::proxy::bind(&key).map(|bound| match bound {
                Bound::Tcp(listener) => tokio::net::TcpListener::from_std(listener),
                Bound::Udp(_) => unreachable!("bound TCP"),
            }) {
                Ok(Ok(listener)) => {
                    let (shared, gate, acceptor) =
                        (self.shared.clone(), self.gate.clone(), self.acceptor.clone());
                    port.task = Some(runtime.spawn(accept(listener, scheme, shared, gate, acceptor)));
                    port.problem = None;
                    port.retry_at = None;
                    tracing::info!("ingress: serving {} on port {}", scheme_name(scheme), port.port);
                }
                Ok(Err(e)) | Err(crate::listeners::ListenError::Listen { source: e, .. }) => {
                    port.problem = Some(format!("cannot listen on {key}: {e}"));
                    port.retry_at = Some(Instant::now() + RETRY);
                }
                Err(e) => {
                    if port.problem.is_none() {
                        tracing::warn!("ingress: {e}; trying again every {} s", RETRY.as_secs());
                    }
                    port.problem = Some(e.to_string());
                    port.retry_at = Some(Instant::now() + RETRY);
                }
            }
        }
    }

    /// Why this node does not serve its Ingress ports: a port it could not
    /// bind, or the proxy's threads it could not start. What it reports to
    /// the control plane.
    pub fn problem(&self) -> Option<String> {
        self.http.problem.clone().or_else(|| self.https.problem.clone())
    }

    /// An Ingress as users see it from this node: the control plane's view
    /// (the Ready nodes that serve it, and why others do not) when the
    /// cluster has addresses; else this node's own addresses, or why it
    /// does not serve them.
    pub fn reported(&self, ingress: &Ingress) -> Ingress {
        let mut out = ingress.clone();
        if !ingress.spec.is_podnet()
            || ingress.load_balancer.as_ref().is_some_and(|lb| !lb.ingress.is_empty() || lb.problem.is_some())
        {
            return out;
        }
        let problem = self.problem();
        let serving = self.http.task.is_some() || self.https.task.is_some();
        let addresses = match (serving, &problem) {
            (true, None) => crate::listeners::proxy::node_addresses(&self.host_interface),
            _ => Vec::new(),
        };
        let problem = problem.or_else(|| (!serving).then(|| "not bound yet".to_string()));
        out.load_balancer = Some(LoadBalancerStatus { ingress: addresses, problem });
        out
    }

    /// The ports served (for `get ingress`'s PORTS column): 80, or 80, 443.
    pub fn ports(&self) -> Vec<u16> {
        [&self.http, &self.https].iter().filter(|p| p.port != 0).map(|p| p.port).collect()
    }

    /// The counters, for `podnet node stats`.
    pub fn stats(&self) -> Vec<(String, u64)> {
        self.shared.stats.report()
    }
}

fn scheme_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Http => "HTTP",
        Scheme::Https => "HTTPS",
    }
}

/// One port's accept loop: HTTPS connections do their handshake (within
/// the request timeout) on their own task first.
async fn accept(
    listener: tokio::net::TcpListener,
    scheme: Scheme,
    shared: Arc<Shared>,
    gate: Arc<Gate>,
    acceptor: TlsAcceptor,
) {
    let handshake = Duration::from_millis(shared.config.request_timeout_ms);
    crate::listeners::accept::serve(listener, gate, move |stream, permit| {
        let (shared, acceptor) = (shared.clone(), acceptor.clone());
        async move {
            let _ = stream.set_nodelay(true);
            match scheme {
                Scheme::Http => proxy::serve(stream, false, permit, scheme, shared).await,
                Scheme::Https => match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        proxy::serve(tls, h2, permit, scheme, shared).await
                    }
                    Ok(Err(e)) => {
                        shared.stats.tls_failed();
                        permit.count(Reason::HandshakeFailed);
                        tracing::debug!(client = %permit.client(), "ingress: TLS handshake failed: {e}");
                    }
                    Err(_) => {
                        shared.stats.tls_failed();
                        permit.count(Reason::RequestTimeout);
                    }
                },
            }
        }
    })
    .await
}
