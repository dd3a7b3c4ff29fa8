//! What the switch decided about one frame, and why frames are dropped.

use super::PortId;
use super::dns::DnsUpstream;
use crate::wire::Ipv4Address;

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
    /// A cluster DNS query for a name outside the zone: relay the DNS
    /// message ([`DnsUpstream::query`], inside the input frame) to the
    /// upstream resolver, then answer the client with the frame
    /// [`super::Switch::dns_reply_frame`] builds from the response.
    /// Nothing has been sent; the input frame goes nowhere else.
    Upstream(DnsUpstream),
    /// Send the (rewritten) input frame to another node: complete its
    /// offloads, prepend a VXLAN header and send it to `peer`, the node's
    /// underlay address. Counted as sent on the overlay port.
    Encapsulate {
        /// The peer node's underlay address.
        peer: Ipv4Address,
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
    /// A new connection to a Service was refused: the port already holds its
    /// quota of live flows (a pod flooding connections fills its own share).
    FlowQuota,
    /// To a service address but not servable: neither TCP nor UDP, an IP
    /// fragment, or a stray RST for no tracked connection.
    ServiceUnsupported,
    /// UDP to the cluster DNS address, port 53, with bad IPv4 or UDP
    /// headers, a bad checksum, fragmented, or offloaded as several datagrams.
    DnsMalformed,
    /// A datagram to the cluster DNS port that is no query the zone answers:
    /// shorter than a DNS header, or a response (answering those invites
    /// loops); or the reply buffer cannot hold even a truncated answer.
    DnsUnanswerable,
    /// A VXLAN packet from an address that is not an overlay peer.
    UnknownPeer,
    /// A VXLAN packet with another VNI than this cluster's.
    WrongVni,
    /// From the node port but not from the node's gateway address: traffic
    /// the node's kernel forwarded from elsewhere (pods are not reachable
    /// from outside except through node ports and host ports).
    NotFromNode,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 17] = [
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
        DropReason::FlowQuota,
        DropReason::ServiceUnsupported,
        DropReason::DnsMalformed,
        DropReason::DnsUnanswerable,
        DropReason::UnknownPeer,
        DropReason::WrongVni,
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
            DropReason::FlowQuota => "flow_quota",
            DropReason::ServiceUnsupported => "service_unsupported",
            DropReason::DnsMalformed => "dns_malformed",
            DropReason::DnsUnanswerable => "dns_unanswerable",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::WrongVni => "wrong_vni",
            DropReason::NotFromNode => "not_from_node",
        }
    }
}
