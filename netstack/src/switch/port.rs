//! A switch port: who may send on it, and what it has seen.

use super::verdict::{DropReason, Verdict};
use crate::wire::{EthernetAddress, IpAddress};

/// Index of a port in the switch's port table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

/// What sits behind a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A pod's `eth0`: may only send from its own MAC and IP.
    Pod,
    /// The node's own kernel, which is also the pod subnet's gateway. It may
    /// reach pods only from the gateway address: what it would forward from
    /// elsewhere (the LAN) is dropped, so nothing outside reaches a pod
    /// except through the agent's node ports and host ports.
    Host,
    /// The VXLAN overlay to other nodes: at most one, owning no address of
    /// the subnet. Its frames enter through `Switch::process_overlay`.
    Overlay,
    /// The agent's egress endpoint: it terminates pod connections to
    /// addresses outside the cluster and re-originates them from the node.
    /// It owns no subnet address; it sends only from off-subnet addresses
    /// (the remote ends it stands for), with the gateway's MAC.
    Egress,
}

/// A port's identity as the switch enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Pod or host.
    pub kind: PortKind,
    /// The only source MAC accepted on this port.
    pub mac: EthernetAddress,
    /// The port's IP: the pod's address, the gateway for the host port;
    /// unspecified for the overlay port, ignored for the egress port.
    pub ip: IpAddress,
}

/// Packet and byte counters of one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received from the port.
    pub rx_packets: u64,
    /// Bytes received from the port (virtio-net header excluded).
    pub rx_bytes: u64,
    /// Frames the switch sent to the port.
    pub tx_packets: u64,
    /// Bytes the switch sent to the port.
    pub tx_bytes: u64,
    /// Frames received and dropped, per [`DropReason`].
    pub drops: [u64; DropReason::COUNT],
    /// Frames to this pod its NetworkPolicy ingress rules refused (each is
    /// also a `policy_ingress` drop on the port it came in by).
    pub ingress_denied: u64,
}

impl PortStats {
    /// Dropped frames of one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Dropped frames of every reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(super) fn count_drop(&mut self, reason: DropReason) -> Verdict {
        self.drops[reason as usize] += 1;
        Verdict::Drop(reason)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Port {
    pub spec: PortSpec,
    pub stats: PortStats,
}
