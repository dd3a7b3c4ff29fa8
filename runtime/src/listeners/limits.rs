//! Caps on the connections a listener holds — per client and in total — and
//! the counters of what each listener refused or closed, by reason. A
//! connection holds a [`Permit`] for as long as it lives; dropping it gives
//! the slot back. The table of clients only holds clients with a connection
//! open, so it is bounded by the total cap, whatever a client does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A listener of the agent, as named in `podnet node stats` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Listener {
    /// Cluster DNS over TCP, on the pods' gateway.
    DnsTcp,
    /// The cluster API of a server (`--cluster-init`).
    ClusterApi,
    /// The Prometheus endpoint (`--metrics-addr`).
    Metrics,
    /// The control socket of the CLI.
    Control,
    /// Node ports, LoadBalancer ports and host ports over TCP.
    ProxyTcp,
    /// Node ports, LoadBalancer ports and host ports over UDP (flows).
    ProxyUdp,
    /// The Kubernetes API (`api.port`).
    KubeApi,
    /// The Ingress proxy (`ingress.http_port`, `ingress.https_port`).
    Ingress,
}

impl Listener {
    /// Every listener, in the order they are shown.
    pub const ALL: [Listener; 8] = [
        Listener::DnsTcp,
        Listener::ClusterApi,
        Listener::Metrics,
        Listener::Control,
        Listener::ProxyTcp,
        Listener::ProxyUdp,
        Listener::KubeApi,
        Listener::Ingress,
    ];

    /// The name shown to people and scrapers.
    pub fn name(self) -> &'static str {
        match self {
            Listener::DnsTcp => "dns_tcp",
            Listener::ClusterApi => "cluster_api",
            Listener::Metrics => "metrics",
            Listener::Control => "control",
            Listener::ProxyTcp => "proxy_tcp",
            Listener::ProxyUdp => "proxy_udp",
            Listener::KubeApi => "kube_api",
            Listener::Ingress => "ingress",
        }
    }

    /// This listener's process-wide counters.
    pub fn counters(self) -> &'static Counters {
        &COUNTERS[self as usize]
    }
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a connection was refused or closed by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The client already holds as many connections as one client may.
    PerClientLimit,
    /// The listener holds as many connections as it may.
    TotalLimit,
    /// accept(2) failed (out of descriptors or memory); the loop backed off.
    AcceptFailed,
    /// A request was not complete within the request timeout.
    RequestTimeout,
    /// Nothing moved for longer than the idle timeout.
    IdleTimeout,
    /// The cluster API: the peer failed the Noise handshake (another
    /// cluster's token, not Noise at all, or it hung up or stalled in it).
    HandshakeFailed,
    /// The cluster API: the server refused a node's join (bad address,
    /// name taken, a failed save).
    JoinRefused,
    /// The cluster API: the peer speaks another control protocol version.
    VersionMismatch,
    /// A message announced more bytes than a message may have.
    OversizedMessage,
    /// A message did not decrypt, decode or end where it said.
    MalformedMessage,
    /// A request without the admin token, or with another; a node's
    /// password that is not the one pinned to its name.
    Unauthorized,
    /// The cluster API: a member node asked to change the cluster (a node
    /// may read it, not change it).
    Forbidden,
    /// The Kubernetes API: a watch past the watcher bounds (in all, or
    /// from one client).
    WatchRefused,
    /// The Kubernetes API: a watcher that did not keep up, closed.
    SlowWatcher,
    /// The Kubernetes API: a watch from a revision no longer kept (410).
    WatchExpired,
    /// The Kubernetes API: a streaming connection (SPDY) opened more
    /// streams than one may hold.
    StreamLimit,
}

impl Reason {
    /// Every reason, in the order they are shown.
    pub const ALL: [Reason; 16] = [
        Reason::PerClientLimit,
        Reason::TotalLimit,
        Reason::AcceptFailed,
        Reason::RequestTimeout,
        Reason::IdleTimeout,
        Reason::HandshakeFailed,
        Reason::JoinRefused,
        Reason::VersionMismatch,
        Reason::OversizedMessage,
        Reason::MalformedMessage,
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::WatchRefused,
        Reason::SlowWatcher,
        Reason::WatchExpired,
        Reason::StreamLimit,
    ];

    /// The name shown to people and scrapers.
    pub fn name(self) -> &'static str {
        match self {
            Reason::PerClientLimit => "per_client_limit",
            Reason::TotalLimit => "total_limit",
            Reason::AcceptFailed => "accept_failed",
            Reason::RequestTimeout => "request_timeout",
            Reason::IdleTimeout => "idle_timeout",
            Reason::HandshakeFailed => "handshake_failed",
            Reason::JoinRefused => "join_refused",
            Reason::VersionMismatch => "version_mismatch",
            Reason::OversizedMessage => "oversized_message",
            Reason::MalformedMessage => "malformed_message",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::WatchRefused => "watch_refused",
            Reason::SlowWatcher => "slow_watcher",
            Reason::WatchExpired => "watch_expired",
            Reason::StreamLimit => "stream_limit",
        }
    }
}

/// One listener's open connections and refusals by reason.
#[derive(Debug)]
pub struct Counters {
    open: AtomicU64,
    counts: [AtomicU64; Reason::ALL.len()],
}

impl Counters {
    /// All zero.
    pub const fn new() -> Counters {
        Counters { open: AtomicU64::new(0), counts: [const { AtomicU64::new(0) }; Reason::ALL.len()] }
    }

    /// Counts one refusal or close for `reason`.
    pub fn count(&self, reason: Reason) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many times `reason` happened.
    pub fn get(&self, reason: Reason) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }

    /// Connections (or flows) open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// The non-zero reasons, named.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Reason::ALL.iter().map(|r| (r.name(), self.get(*r))).filter(|(_, n)| *n > 0)
    }
}

impl Default for Counters {
    fn default() -> Self {
        Counters::new()
    }
}

static COUNTERS: [Counters; Listener::ALL.len()] = [const { Counters::new() }; Listener::ALL.len()];

/// Who is connecting, for the per-client cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// A TCP peer, by source address (a pod, a node, a lan host).
    Ip(IpAddr),
    /// A peer of a unix socket, by user id.
    Uid(u32),
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Ip(ip) => write!(f, "{ip}"),
            Client::Uid(uid) => write!(f, "uid {uid}"),
        }
    }
}

/// How many connections a listener takes, and how long a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections open at once from one client.
    pub per_client: u32,
    /// Connections open at once in total.
    pub total: u32,
    /// Longest a request (one whole message) may take to arrive or be
    /// answered once it started.
    pub request_timeout: Duration,
}

impl Caps {
    /// The caps of the agent's own listeners (DNS over TCP, cluster API,
    /// metrics) from the board config.
    pub fn listener(limits: &crate::config::LimitsConfig) -> Caps {
        Caps {
            per_client: limits.max_listener_connections_per_client,
            total: limits.max_listener_connections,
            request_timeout: Duration::from_millis(limits.request_timeout_ms),
        }
    }
}

/// The admission gate of one listener: counts connections per client and in
/// total, refuses (and counts) past the caps.
#[derive(Debug)]
pub struct Gate {
    listener: Listener,
    caps: Caps,
    clients: Mutex<Open>,
    counters: &'static Counters,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    per_client: HashMap<Client, u32>,
}

impl Gate {
    /// A gate for `listener`, counting into its process-wide counters.
    pub fn new(listener: Listener, caps: Caps) -> Arc<Gate> {
        Gate::with_counters(listener, caps, listener.counters())
    }

    /// A gate counting into `counters` (tests keep theirs apart).
    pub fn with_counters(listener: Listener, caps: Caps, counters: &'static Counters) -> Arc<Gate> {
        Arc::new(Gate { listener, caps, clients: Mutex::new(Open::default()), counters })
    }

    /// Which listener this gate guards.
    pub fn listener(&self) -> Listener {
        self.listener
    }

    /// The caps and timeout.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The counters this gate counts into.
    pub fn counters(&self) -> &'static Counters {
        self.counters
    }

    /// A slot for a connection from `client`, or the reason there is none
    /// (counted).
    pub fn admit(self: &Arc<Gate>, client: Client) -> Result<Permit, Reason> {
        let mut open = self.clients.lock().expect("gate lock");
        let held = open.per_client.get(&client).copied().unwrap_or(0);
        let refused = if held >= self.caps.per_client {
            Some(Reason::PerClientLimit)
        } else if open.total >= self.caps.total {
            Some(Reason::TotalLimit)
        } else {
            None
        };
        if let Some(reason) = refused {
            drop(open);
            self.counters.count(reason);
            return Err(reason);
        }
        open.total += 1;
        *open.per_client.entry(client).or_insert(0) += 1;
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        Ok(Permit { gate: self.clone(), client })
    }
}

/// One admitted connection's slot; given back on drop.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    client: Client,
}

impl Permit {
    /// Who holds it.
    pub fn client(&self) -> Client {
        self.client
    }

    /// The listener's caps and timeout.
    pub fn caps(&self) -> Caps {
        self.gate.caps
    }

    /// Counts a close of this connection for `reason`.
    pub fn count(&self, reason: Reason) {
        self.gate.counters.count(reason);
    }

    /// Runs `work` (reading or answering one request) within the request
    /// timeout; None, counted as `request_timeout`, when it took longer.
    pub async fn within<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        match tokio::time::timeout(self.gate.caps.request_timeout, work).await {
            Ok(value) => Some(value),
            Err(_) => {
                self.count(Reason::RequestTimeout);
                None
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.gate.clients.lock().expect("gate lock");
        open.total -= 1;
        if let Some(held) = open.per_client.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                open.per_client.remove(&self.client);
            }
        }
        self.gate.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every listener's counters, for `podnet node stats` and the metrics.
pub fn report() -> Vec<crate::api::ListenerCounters> {
    Listener::ALL
        .iter()
        .map(|l| {
            let counters = l.counters();
            crate::api::ListenerCounters {
                listener: l.name().to_string(),
                open: counters.open(),
                counts: counters.nonzero().map(|(r, n)| (r.to_string(), n)).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn counters() -> &'static Counters {
        Box::leak(Box::new(Counters::new()))
    }

    fn ip(last: u8) -> Client {
        Client::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    fn caps(per_client: u32, total: u32) -> Caps {
        Caps { per_client, total, request_timeout: Duration::from_millis(100) }
    }

    #[test]
    fn one_client_past_its_cap_is_refused_while_others_get_in() {
        let counters = counters();
        let gate = Gate::with_counters(Listener::ProxyTcp, caps(2, 10), counters);
        let a: Vec<Permit> = (0..2).map(|_| gate.admit(ip(1)).unwrap()).collect();
        assert_eq!(gate.admit(ip(1)).unwrap_err(), Reason::PerClientLimit);
        let b = gate.admit(ip(2)).expect("another client still gets in");
        assert_eq!(counters.open(), 3);
        assert_eq!(counters.get(Reason::PerClientLimit), 1);
        drop(a);
        // The slots came back: the first client gets in again.
        let _again = gate.admit(ip(1)).unwrap();
        drop(b);
        assert_eq!(counters.open(), 1);
        assert_eq!(gate.clients.lock().unwrap().per_client.len(), 1, "closed clients are forgotten");
    }

    #[test]
    fn the_total_cap_holds_across_clients() {
        let counters = counters();
        let gate = Gate::with_counters(Listener::DnsTcp, caps(5, 3), counters);
        let held: Vec<Permit> = (1..=3).map(|i| gate.admit(ip(i)).unwrap()).collect();
        assert_eq!(gate.admit(ip(4)).unwrap_err(), Reason::TotalLimit);
        assert_eq!(counters.get(Reason::TotalLimit), 1);
        assert_eq!(counters.nonzero().collect::<Vec<_>>(), vec![("total_limit", 1)]);
        drop(held);
        assert!(gate.admit(ip(4)).is_ok());
    }

    #[tokio::test]
    async fn a_request_past_its_timeout_is_cut_and_counted() {
        let counters = counters();
        let gate = Gate::with_counters(Listener::Metrics, caps(1, 1), counters);
        let permit = gate.admit(Client::Uid(0)).unwrap();
        assert_eq!(permit.within(async { 7 }).await, Some(7));
        assert_eq!(permit.within(std::future::pending::<()>()).await, None);
        assert_eq!(counters.get(Reason::RequestTimeout), 1);
    }
}
