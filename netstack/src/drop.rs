//! Why a frame or a message was dropped: one vocabulary for the switch's
//! per-port counters and the DNS zone, generated from one table so the
//! variant, its counter index and its name cannot drift apart.

/// Declares [`DropReason`] from `Variant => "name"` rows, in counter order.
macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])+ $variant:ident => $name:literal, )+) => {
        /// Why a frame was dropped. Each reason has its own counter on every port.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: [DropReason; DropReason::COUNT] = [$(DropReason::$variant),+];

            /// Number of reasons (size of a counter array).
            pub const COUNT: usize = [$($name),+].len();

            /// A stable snake_case name for counters and logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)+
                }
            }
        }
    };
}

drop_reasons! {
    /// Too short or inconsistent headers.
    Malformed => "malformed",
    /// Source MAC is not the port's own.
    SpoofedMac => "spoofed_mac",
    /// Source IP (or ARP sender) is not the port's own.
    SpoofedIp => "spoofed_ip",
    /// Broadcast or multicast that is neither ARP nor meant for the switch.
    Broadcast => "broadcast",
    /// No port owns the destination address.
    NoSuchHost => "no_such_host",
    /// No route for the destination from this port.
    NoRoute => "no_route",
    /// An ARP reply or announcement: the switch answers ARP itself.
    UnsolicitedArp => "unsolicited_arp",
    /// An EtherType the switch does not carry (IPv6 among others).
    UnsupportedProtocol => "unsupported_protocol",
    /// The ingress port is not (or no longer) attached.
    UnknownPort => "unknown_port",
    /// A new connection to a Service was refused: the flow table is full of
    /// live flows (or, rarely, no NAT source port was free).
    FlowTableFull => "flow_table_full",
    /// A new connection to a Service was refused: the port already holds its
    /// quota of live flows (a pod flooding connections fills its own share).
    FlowQuota => "flow_quota",
    /// To a service address but not servable: neither TCP nor UDP, an IP
    /// fragment, or a stray RST for no tracked connection.
    ServiceUnsupported => "service_unsupported",
    /// UDP to the cluster DNS address, port 53, with bad IPv4 or UDP
    /// headers, a bad checksum, fragmented, or offloaded as several datagrams.
    DnsMalformed => "dns_malformed",
    /// A datagram to the cluster DNS port that is no query the zone answers:
    /// shorter than a DNS header, or a response (answering those invites
    /// loops); or the reply buffer cannot hold even a truncated answer.
    DnsUnanswerable => "dns_unanswerable",
    /// A VXLAN packet from an address that is not an overlay peer.
    UnknownPeer => "unknown_peer",
    /// A VXLAN packet with another VNI than this cluster's.
    WrongVni => "wrong_vni",
    /// From the node port but not from the node's gateway address: traffic
    /// the node's kernel forwarded from elsewhere (pods are not reachable
    /// from outside except through node ports and host ports).
    NotFromNode => "not_from_node",
    /// UDP from a pod to the overlay's port on a peer node (or on loopback):
    /// the peer would take it as VXLAN from this node, with whatever inner
    /// frame and source the pod wrote (Calico drops VXLAN from workloads for
    /// the same reason).
    OverlayBypass => "overlay_bypass",
    /// From a pod to 127.0.0.0/8 or 0.0.0.0/8, which a pod's own kernel keeps
    /// on its loopback: only a frame written by hand gets here, and egress
    /// would deliver it to the node's loopback services (a kernel drops such
    /// martians on any interface but `lo`).
    MartianDestination => "martian_destination",
    /// A connection's first packet that the destination pod's NetworkPolicy
    /// ingress rules do not admit.
    PolicyIngress => "policy_ingress",
    /// A connection's first packet that the source pod's NetworkPolicy
    /// egress rules do not admit.
    PolicyEgress => "policy_egress",
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    #[test]
    fn counter_index_is_the_position_in_the_table() {
        for (index, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index, "{reason:?}");
        }
        assert_eq!(DropReason::COUNT, 21);
    }

    #[test]
    fn names_are_distinct_snake_case() {
        for (i, a) in DropReason::ALL.iter().enumerate() {
            assert!(a.name().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{a:?}");
            for b in &DropReason::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
        assert_eq!(DropReason::SpoofedMac.name(), "spoofed_mac");
        assert_eq!(DropReason::NotFromNode.name(), "not_from_node");
    }
}
