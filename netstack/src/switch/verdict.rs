//! What the switch decided about one frame, and why frames are dropped.

use super::PortId;

/// The outcome of [`super::Switch::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly rewritten) input frame out of `egress`.
    Forward {
        /// The port to send the frame to.
        egress: PortId,
    },
    /// Send the first `len` bytes of the reply buffer back out of the ingress port.
    Reply {
        /// Length of the reply, virtio-net header included.
        len: usize,
    },
    /// Drop the frame; the reason has been counted on the ingress port.
    Drop(DropReason),
}

/// Why a frame was dropped. Each reason has its own counter on every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DropReason {
    /// Too short or inconsistent headers.
    Malformed,
    /// Source MAC is not the port's own.
    SpoofedMac,
    /// Source IP (or ARP sender) is not the port's own.
    SpoofedIp,
    /// Broadcast or multicast that is neither ARP nor meant for the switch.
    Broadcast,
    /// No port owns the destination address.
    NoSuchHost,
    /// No route for the destination from this port.
    NoRoute,
    /// An ARP reply or announcement: the switch answers ARP itself.
    UnsolicitedArp,
    /// An EtherType the switch does not carry (IPv6 among others).
    UnsupportedProtocol,
    /// The ingress port is not (or no longer) attached.
    UnknownPort,
    /// A new connection to a Service was refused: the flow table is full of
    /// live flows (or, rarely, no NAT source port was free).
    FlowTableFull,
    /// To a service address but not servable: neither TCP nor UDP, an IP
    /// fragment, or a stray RST for no tracked connection.
    ServiceUnsupported,
    /// From the node port but not from the node's gateway address: traffic
    /// the node's kernel forwarded from elsewhere (pods are not reachable
    /// from outside except through node ports and host ports).
    NotFromNode,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::Broadcast,
        DropReason::NoSuchHost,
        DropReason::NoRoute,
        DropReason::UnsolicitedArp,
        DropReason::UnsupportedProtocol,
        DropReason::UnknownPort,
        DropReason::FlowTableFull,
        DropReason::ServiceUnsupported,
        DropReason::NotFromNode,
    ];

    /// Number of reasons (size of a counter array).
    pub const COUNT: usize = Self::ALL.len();

    /// A stable snake_case name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::Broadcast => "broadcast",
            DropReason::NoSuchHost => "no_such_host",
            DropReason::NoRoute => "no_route",
            DropReason::UnsolicitedArp => "unsolicited_arp",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::UnknownPort => "unknown_port",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::ServiceUnsupported => "service_unsupported",
            DropReason::NotFromNode => "not_from_node",
        }
    }
}
