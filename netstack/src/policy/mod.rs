//! NetworkPolicy as the switch judges it (issue #17, first slice): the
//! node's compiled policies, and the verdict on a connection's first
//! packet. The runtime compiles Kubernetes NetworkPolicy objects into this
//! form — label and namespace selectors resolved to the pods' addresses,
//! named ports to numbers — so the switch matches addresses and ports only,
//! never labels.
//!
//! Semantics (networking.k8s.io/v1):
//! - a pod is isolated for a direction once any policy selecting it has that
//!   policy type ([`Isolation`]: `None` = not isolated); policies add up,
//!   so an isolated pod's allowed set is the union of its rules;
//! - a connection needs the source's egress and the destination's ingress
//!   to allow it, each judged only where that pod is isolated;
//! - a rule with no peers allows every peer, with no ports every port and
//!   protocol; a peer is an address block with exceptions or a set of pod
//!   addresses;
//! - traffic to and from the pod's own node (its gateway: probes, node
//!   ports after their proxy) is always allowed, and so is a pod's traffic
//!   to itself (Kubernetes does not let a pod block its own loopback).
//!
//! Replies of an allowed connection are the flow table's business: the
//! verdict is taken on the first packet only.
//!
//! Nothing here allocates when judging; a table is built once per policy
//! change, off the data path.

#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::Protocol;
use crate::wire::{Ipv4Address, Ipv4Cidr};

/// Which way a rule faces, from the selected pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Connections the pod accepts.
    Ingress,
    /// Connections the pod opens.
    Egress,
}

/// The ports a rule allows: one protocol, a range of destination ports
/// (`port` and `endPort`; a single port has `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The first port allowed.
    pub first: u16,
    /// The last port allowed (inclusive).
    pub last: u16,
}

impl PortRange {
    fn admits(&self, protocol: Protocol, port: u16) -> bool {
        self.protocol == protocol && (self.first..=self.last).contains(&port)
    }
}

/// Who a rule admits on the other end of the connection, resolved to
/// addresses: the compiled form of a NetworkPolicy peer (runtime's
/// `model::policy::PolicyPeer`, written with selectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedPeer {
    /// An address block, minus its exceptions (`ipBlock`).
    Block {
        /// The block.
        cidr: Ipv4Cidr,
        /// Blocks inside it that are not admitted.
        except: Vec<Ipv4Cidr>,
    },
    /// Pods, by address (`podSelector` and `namespaceSelector`, resolved).
    /// Kept sorted, so a lookup is a binary search; shared, so every pod a
    /// policy selects holds the policy's peer set once, not a copy.
    Pods(Arc<[Ipv4Address]>),
}

impl ResolvedPeer {
    /// Pods at `addresses` (sorted and deduplicated here).
    pub fn pods(mut addresses: Vec<Ipv4Address>) -> ResolvedPeer {
        addresses.sort_unstable();
        addresses.dedup();
        ResolvedPeer::Pods(addresses.into())
    }

    /// Whether the peer takes in `addr`.
    pub fn admits(&self, addr: Ipv4Address) -> bool {
        match self {
            ResolvedPeer::Block { cidr, except } => {
                cidr.contains_addr(&addr) && !except.iter().any(|e| e.contains_addr(&addr))
            }
            ResolvedPeer::Pods(addresses) => addresses.binary_search(&addr).is_ok(),
        }
    }
}

/// One rule of one direction: any of its peers, on any of its ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// Empty: every peer.
    pub peers: Vec<ResolvedPeer>,
    /// Empty: every port and protocol.
    pub ports: Vec<PortRange>,
}

impl Rule {
    /// Whether the rule admits `peer` for a packet to `port` (None for a
    /// protocol without ports, which only a rule without ports admits).
    fn admits(&self, peer: Ipv4Address, port: Option<(Protocol, u16)>) -> bool {
        // Ports first: a few comparisons that turn most rules of a busy
        // table away before any search of their peer sets.
        let port_ok = self.ports.is_empty()
            || port.is_some_and(|(protocol, port)| self.ports.iter().any(|r| r.admits(protocol, port)));
        port_ok && (self.peers.is_empty() || self.peers.iter().any(|p| p.admits(peer)))
    }
}

/// A pod's isolation: per direction, `None` when no policy of that type
/// selects it (everything allowed), else the union of the rules that do
/// (empty: nothing allowed, the "default deny").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    /// Rules for connections to the pod.
    pub ingress: Option<Vec<Rule>>,
    /// Rules for connections from the pod.
    pub egress: Option<Vec<Rule>>,
}

/// What the switch decides for a connection's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Allowed: no policy isolates either end, or the rules admit it.
    Allowed,
    /// Denied by the isolated pod's rules for this direction: the source's
    /// egress, or the destination's ingress.
    Denied(Direction),
}

/// A connection's first packet, as policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The source address.
    pub src: Ipv4Address,
    /// The destination address (after Service NAT: the backend pod).
    pub dst: Ipv4Address,
    /// Protocol and destination port; None for ICMP and other protocols.
    pub port: Option<(Protocol, u16)>,
}

/// The node's policies: the isolation of each pod that some policy
/// selects, by address, on this node or any other (a pod's egress is judged
/// on its node, its ingress on its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyTable {
    pods: BTreeMap<Ipv4Address, Isolation>,
    /// The node's own address on the pod subnet (the gateway).
    node: Option<Ipv4Address>,
}

impl PolicyTable {
    /// A table for the node whose gateway is `node`, with `pods`' isolation.
    pub fn new(node: Ipv4Address, pods: impl IntoIterator<Item = (Ipv4Address, Isolation)>) -> PolicyTable {
        // An address given twice keeps its last isolation, as a map does.
        let mut pods = pods.into_iter().collect::<BTreeMap<_, _>>();
        pods.retain(|_, i| i.ingress.is_some() || i.egress.is_some());
        PolicyTable { pods, node: Some(node) }
    }

    /// Whether no pod is isolated: the switch then skips policy entirely.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Whether `addr` is isolated in some direction (its flows need tracking
    /// so that replies pass).
    pub fn isolates(&self, addr: Ipv4Address) -> bool {
        self.pods.contains_key(&addr)
    }

    /// The verdict on a connection's first packet.
    pub fn judge(&self, c: &Connection) -> Judgement {
        if c.src == c.dst || self.node.is_some_and(|n| n == c.src || n == c.dst) {
            return Judgement::Allowed;
        }
        let admitted = |rules: &Option<Vec<Rule>>, peer| {
            rules.as_ref().is_none_or(|r| r.iter().any(|r| r.admits(peer, c.port)))
        };
        if let Some(src) = self.pods.get(&c.src)
            && !admitted(&src.egress, c.dst)
        {
            return Judgement::Denied(Direction::Egress);
        }
        if let Some(dst) = self.pods.get(&c.dst)
            && !admitted(&dst.ingress, c.src)
        {
            return Judgement::Denied(Direction::Ingress);
        }
        Judgement::Allowed
    }
}
