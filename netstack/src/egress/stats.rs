//! Why the egress table refused, dropped or gave up something: one named
//! counter per reason.

/// A refusal, drop or removal the table counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// A frame too short or inconsistent to be IPv4 TCP, UDP or ICMP.
    Malformed,
    /// A fragment: the endpoint does not reassemble.
    Fragment,
    /// An IP protocol other than TCP, UDP and ICMP.
    UnsupportedProtocol,
    /// An ICMP message other than an echo request.
    NotEchoRequest,
    /// A new TCP connection while the node holds its cap of them.
    TcpTableFull,
    /// A new TCP connection while its pod holds its cap of them.
    TcpPodQuota,
    /// The kernel socket for a new TCP connection could not be made.
    TcpSocketFailed,
    /// The destination refused or could not be reached (the pod got a RST).
    TcpConnectFailed,
    /// A TCP connection idle past its timeout (reset both ways).
    TcpExpired,
    /// A new UDP flow while the node holds its cap of them.
    UdpTableFull,
    /// A new UDP flow while its pod holds its cap of them.
    UdpPodQuota,
    /// The kernel socket for a new UDP flow could not be made.
    UdpSocketFailed,
    /// A UDP flow idle past its timeout.
    UdpExpired,
    /// An echo request while echo is off (no raw ICMP socket).
    EchoDisabled,
    /// A new echo identifier while the node holds its cap of them.
    EchoTableFull,
    /// A new echo identifier while its pod holds its cap of them.
    EchoPodQuota,
    /// No free echo identifier within the bounded search.
    EchoIdsExhausted,
    /// An entry (TCP, UDP or echo) freed because its pod was deleted.
    PodGone,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 18] = [
        Reason::Malformed,
        Reason::Fragment,
        Reason::UnsupportedProtocol,
        Reason::NotEchoRequest,
        Reason::TcpTableFull,
        Reason::TcpPodQuota,
        Reason::TcpSocketFailed,
        Reason::TcpConnectFailed,
        Reason::TcpExpired,
        Reason::UdpTableFull,
        Reason::UdpPodQuota,
        Reason::UdpSocketFailed,
        Reason::UdpExpired,
        Reason::EchoDisabled,
        Reason::EchoTableFull,
        Reason::EchoPodQuota,
        Reason::EchoIdsExhausted,
        Reason::PodGone,
    ];

    /// The counter's name in node stats and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Malformed => "egress_malformed",
            Reason::Fragment => "egress_fragment",
            Reason::UnsupportedProtocol => "egress_unsupported_protocol",
            Reason::NotEchoRequest => "egress_not_echo_request",
            Reason::TcpTableFull => "egress_tcp_table_full",
            Reason::TcpPodQuota => "egress_tcp_pod_quota",
            Reason::TcpSocketFailed => "egress_tcp_socket_failed",
            Reason::TcpConnectFailed => "egress_tcp_connect_failed",
            Reason::TcpExpired => "egress_tcp_expired",
            Reason::UdpTableFull => "egress_udp_table_full",
            Reason::UdpPodQuota => "egress_udp_pod_quota",
            Reason::UdpSocketFailed => "egress_udp_socket_failed",
            Reason::UdpExpired => "egress_udp_expired",
            Reason::EchoDisabled => "egress_echo_disabled",
            Reason::EchoTableFull => "egress_echo_table_full",
            Reason::EchoPodQuota => "egress_echo_pod_quota",
            Reason::EchoIdsExhausted => "egress_echo_ids_exhausted",
            Reason::PodGone => "egress_pod_gone",
        }
    }
}

/// The table's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressStats {
    counts: [u64; Reason::ALL.len()],
    /// TCP connections made (the destination accepted).
    pub tcp_opened: u64,
    /// UDP flows opened.
    pub udp_opened: u64,
}

impl EgressStats {
    /// How often `reason` happened.
    pub fn count(&self, reason: Reason) -> u64 {
        self.counts[reason as usize]
    }

    pub(super) fn add(&mut self, reason: Reason) {
        self.counts[reason as usize] += 1;
    }

    /// Every reason with a non-zero count, by name.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Reason::ALL.iter().map(|r| (r.name(), self.count(*r))).filter(|(_, n)| *n > 0)
    }
}
