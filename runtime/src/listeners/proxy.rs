//! Node ports, LoadBalancer ports and host ports: real sockets in the node's
//! network namespace (the agent runs there), each accepted connection or UDP
//! flow proxied with kernel sockets to a ClusterIP or a pod. The node reaches
//! both through its `podnet0` port and the switch, so load balancing and
//! ClientIP affinity come from the switch's service path — with the node as
//! the client, as kube-proxy's SNAT makes it for externalTrafficPolicy=Cluster.
//!
//! Connection semantics survive the proxy: a FIN is passed on as a
//! half-close (shutdown of the other side's write half) in both directions,
//! a reset as a reset (SO_LINGER 0 on close), a backend that refuses makes
//! the client's connection reset at once. Bytes move by splice(2) through a
//! bounded pipe per direction (`crate::listeners::splice`; a bounded buffer where splice
//! is refused), so a slow reader stalls its writer (backpressure) instead of
//! growing memory; connections and UDP flows are capped per client (source
//! address) and node-wide, and a connection idle for
//! `limits.proxy_idle_timeout_s` is reset at both ends.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ListenError;
use super::accept;
use super::limits::{Caps, Client, Gate, Listener, Permit, Reason};
use crate::model::Protocol;
use crate::model::listeners::Owner;

/// How long connecting to the backend may take before the client is reset.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A UDP flow with no datagram either way for this long is forgotten.
pub const UDP_IDLE: Duration = Duration::from_secs(30);

/// Where a proxy listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenKey {
    /// TCP or UDP.
    pub proto: Protocol,
    /// Node address; unspecified for all of them.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for ListenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.ip.is_unspecified() {
            write!(f, "{}:", self.ip)?;
        }
        write!(f, "{}/{}", self.port, self.proto)
    }
}

/// What a listener forwards to, and for whom (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The ClusterIP and port, or the pod's IP and port.
    pub target: SocketAddr,
    /// The Service or pod it serves.
    pub owner: Owner,
}

/// A socket bound on the node, not yet serving.
pub enum Bound {
    /// A TCP listener.
    Tcp(std::net::TcpListener),
    /// A UDP socket.
    Udp(std::net::UdpSocket),
}

/// Binds `key` on the node; the error says in words why not.
pub fn bind(key: &ListenKey) -> Result<Bound, ListenError> {
    let addr = SocketAddr::from((key.ip, key.port));
    let result = match key.proto {
        // std sets SO_REUSEADDR on listeners (TIME_WAIT does not block a
        // restart); a port another socket listens on still fails.
        Protocol::Tcp => std::net::TcpListener::bind(addr).map(Bound::Tcp),
        Protocol::Udp => std::net::UdpSocket::bind(addr).map(Bound::Udp),
    };
    let bound = result.map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => ListenError::InUse(*key),
        io::ErrorKind::AddrNotAvailable => ListenError::NotOnNode(key.ip),
        _ => ListenError::Listen { key: *key, source },
    })?;
    let nonblocking = match &bound {
        // std listens with a backlog of 128: a burst of 1,000 clients
        // (bench/load) overflowed it and waited out SYN retransmits. -1 is
        // as many as the node allows (net.core.somaxconn, 4096 since Linux 5.4).
        Bound::Tcp(l) => nix::sys::socket::listen(l, nix::sys::socket::Backlog::MAXALLOWABLE)
            .map_err(io::Error::from)
            .and_then(|()| l.set_nonblocking(true)),
        Bound::Udp(s) => s.set_nonblocking(true),
    };
    nonblocking.map_err(|source| ListenError::Listen { key: *key, source })?;
    Ok(bound)
}

/// Node-wide caps shared by every proxy listener: per client and in total,
/// for TCP connections and UDP flows; and the idle timeout of connections.
#[derive(Debug, Clone)]
pub struct Limits {
    connections: Arc<Gate>,
    flows: Arc<Gate>,
    idle: Duration,
}

impl Limits {
    /// The caps of the board config's `limits` section.
    pub fn new(limits: &crate::config::LimitsConfig) -> Limits {
        let idle = Duration::from_secs(limits.proxy_idle_timeout_s);
        // Proxied bytes have no request shape: only the idle timeout applies.
        let caps = |per_client, total| Caps { per_client, total, request_timeout: idle };
        Limits {
            connections: Gate::new(
                Listener::ProxyTcp,
                caps(limits.proxied_connections_per_client(), limits.max_proxied_connections),
            ),
            flows: Gate::new(
                Listener::ProxyUdp,
                caps(limits.proxied_udp_flows_per_client(), limits.max_proxied_udp_flows),
            ),
            idle,
        }
    }
}

/// A serving listener. Stopping it stops accepting; connections already
/// proxied run to their end.
struct Running {
    forward: Forward,
    task: JoinHandle<()>,
}

/// Every listener of the node.
pub struct Proxies {
    running: BTreeMap<ListenKey, Running>,
    /// Wanted but not bound, with the reason.
    failed: BTreeMap<ListenKey, String>,
    limits: Limits,
    last_retry: Option<Instant>,
}

/// How often listeners that could not bind are tried again.
const RETRY: Duration = Duration::from_secs(2);

impl Proxies {
    /// No listeners yet.
    pub fn new(limits: Limits) -> Proxies {
        Proxies { running: BTreeMap::new(), failed: BTreeMap::new(), limits, last_retry: None }
    }

    /// Starts serving a socket bound with [`bind`].
    pub fn start(&mut self, key: ListenKey, forward: Forward, bound: Bound) {
        self.failed.remove(&key);
        match spawn(bound, forward.target, self.limits.clone()) {
            Ok(task) => {
                tracing::info!(listen = %key, target = %forward.target, owner = %forward.owner, "proxying");
                self.running.insert(key, Running { forward, task });
            }
            Err(e) => {
                self.failed.insert(key, format!("cannot serve {key}: {e}"));
            }
        }
    }

    /// Makes the listeners those of `desired`: stops the others, starts the
    /// missing ones (binding again what failed at most every two seconds).
    /// Stopped listeners have closed their sockets when this returns, so
    /// their ports can be bound again at once.
    pub async fn sync(&mut self, desired: &BTreeMap<ListenKey, Forward>) {
        let stale: Vec<ListenKey> = self
            .running
            .iter()
            .filter(|(k, r)| desired.get(k) != Some(&r.forward))
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(running) = self.running.remove(&key) {
                running.task.abort();
                tracing::info!(listen = %key, owner = %running.forward.owner, "stopped proxying");
                // The aborted task has dropped its socket once awaited.
                let _ = running.task.await;
            }
        }
        self.failed.retain(|k, _| desired.contains_key(k));
        let now = Instant::now();
        let retry = self.last_retry.is_none_or(|t| now.duration_since(t) >= RETRY);
        let mut tried = false;
        for (key, forward) in desired {
            if self.running.contains_key(key) || (self.failed.contains_key(key) && !retry) {
                continue;
            }
            tried |= self.failed.contains_key(key);
            match bind(key) {
                Ok(bound) => self.start(*key, forward.clone(), bound),
                Err(e) => {
                    // Kept as text: it is what `get svc` shows as the problem.
                    if self.failed.insert(*key, e.to_string()).is_none() {
                        tracing::warn!(owner = %forward.owner, "{e}");
                    }
                }
            }
        }
        if tried || self.last_retry.is_none() {
            self.last_retry = Some(now);
        }
    }

    /// Whether `key` is being served.
    pub fn serving(&self, key: &ListenKey) -> bool {
        self.running.contains_key(key)
    }

    /// Why `key` is not served, if it is wanted and not served.
    pub fn problem(&self, key: &ListenKey) -> Option<&str> {
        self.failed.get(key).map(String::as_str)
    }

    /// The caps and counters.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

fn spawn(bound: Bound, target: SocketAddr, limits: Limits) -> io::Result<JoinHandle<()>> {
    Ok(match bound {
        Bound::Tcp(listener) => tokio::spawn(serve_tcp(TcpListener::from_std(listener)?, target, limits)),
        Bound::Udp(socket) => tokio::spawn(serve_udp(Arc::new(UdpSocket::from_std(socket)?), target, limits)),
    })
}

async fn serve_tcp(listener: TcpListener, target: SocketAddr, limits: Limits) {
    let idle = limits.idle;
    accept::serve(listener, limits.connections, move |client, permit| relay_tcp(client, target, idle, permit))
        .await
}

/// Proxies one accepted connection to `target`, holding `permit` until it
/// ends; idle for `idle`, both ends are reset.
async fn relay_tcp(client: TcpStream, target: SocketAddr, idle: Duration, permit: Permit) {
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(server)) => server,
        _ => {
            // Refused, unreachable or too slow: the client hears a reset now
            // rather than waiting on a connection that leads nowhere.
            reset(client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // EOF on one side shuts down the other side's write half and relaying
    // goes on the other way (half-close); an error on either side ends both.
    if let Err(e) = crate::listeners::splice::relay(&client, &server, idle).await {
        if e.kind() == io::ErrorKind::TimedOut {
            permit.count(Reason::IdleTimeout);
        }
        reset(client);
        reset(server);
    }
}

/// Closes with a RST instead of a FIN.
pub fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// One client's flow through a UDP listener.
struct Flow {
    socket: Arc<UdpSocket>,
    last: AtomicU64,
    closed: AtomicBool,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

async fn serve_udp(listener: Arc<UdpSocket>, target: SocketAddr, limits: Limits) {
    let flows: Flows = Arc::default();
    let epoch = Instant::now();
    loop {
        if listener.readable().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        // Not held across an await: the buffer lives on the worker's stack.
        let mut buf = [0u8; 65_536];
        let (len, client) = match listener.try_recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => continue,
        };
        let existing = flows.lock().expect("flows lock").get(&client).cloned();
        let flow = match existing.filter(|f| !f.closed.load(Ordering::Relaxed)) {
            Some(flow) => flow,
            None => match open_flow(&listener, client, target, &limits, &flows, epoch).await {
                Some(flow) => flow,
                None => continue,
            },
        };
        flow.last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        // A fresh socket's write readiness is not known yet: await, not try.
        let _ = flow.socket.send(&buf[..len]).await;
    }
}

async fn open_flow(
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    target: SocketAddr,
    limits: &Limits,
    flows: &Flows,
    epoch: Instant,
) -> Option<Arc<Flow>> {
    // Refusals are counted by the gate.
    let permit = limits.flows.admit(Client::Ip(client.ip())).ok()?;
    let any: IpAddr =
        if target.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let socket = UdpSocket::bind((any, 0)).await.ok()?;
    socket.connect(target).await.ok()?;
    let now = AtomicU64::new(epoch.elapsed().as_millis() as u64);
    let flow = Arc::new(Flow { socket: Arc::new(socket), last: now, closed: AtomicBool::new(false) });
    flows.lock().expect("flows lock").insert(client, flow.clone());
    // Flows hold the listener weakly: stopping it closes its port at once.
    let (listener, flows, task_flow) = (Arc::downgrade(listener), flows.clone(), flow.clone());
    tokio::spawn(async move {
        let flow = task_flow;
        loop {
            let idle_for = Duration::from_millis(
                (epoch.elapsed().as_millis() as u64).saturating_sub(flow.last.load(Ordering::Relaxed)),
            );
            let Some(left) = UDP_IDLE.checked_sub(idle_for).filter(|d| !d.is_zero()) else { break };
            match tokio::time::timeout(left, flow.socket.readable()).await {
                Err(_) => continue,
                Ok(Err(_)) => break,
                Ok(Ok(())) => {}
            }
            let datagram = {
                let mut buf = [0u8; 65_536];
                flow.socket.try_recv(&mut buf).map(|len| buf[..len].to_vec())
            };
            match datagram {
                Ok(datagram) => {
                    flow.last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    let Some(listener) = listener.upgrade() else { break };
                    let _ = listener.send_to(&datagram, client).await;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // ICMP port unreachable from the backend side: end the flow,
                // the next datagram opens a new one.
                Err(_) => break,
            }
        }
        flow.closed.store(true, Ordering::Relaxed);
        let mut table = flows.lock().expect("flows lock");
        if table.get(&client).is_some_and(|f| Arc::ptr_eq(f, &flow)) {
            table.remove(&client);
        }
        drop(permit);
    });
    Some(flow)
}

/// The node's own IPv4 addresses: every interface but `lo` and `except`
/// (the node's port into the switch). LoadBalancer services are served on them.
pub fn node_addresses(except: &str) -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut out: Vec<IpAddr> = addrs
        .filter(|a| a.interface_name != "lo" && a.interface_name != except)
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
        .collect();
    out.sort();
    out.dedup();
    out
}
