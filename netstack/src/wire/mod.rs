//! Packet views that smoltcp's `wire` module does not have, plus re-exports of
//! the ones it does, so the rest of netstack names one module for formats
//! and one place for header lengths.

pub mod tcp_flags;
pub mod vnet;
pub mod vxlan;

pub use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IPV4_HEADER_LEN, IpAddress, IpCidr, IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet,
    TCP_HEADER_LEN, TcpPacket, UDP_HEADER_LEN, UdpPacket,
};

/// The IPv4 address behind a family-generic key's address. netstack is
/// built for IPv4 only (smoltcp's `proto-ipv4`), so this cannot fail today;
/// building with IPv6 turns it into a compile error wherever a key's
/// address is written into an IPv4 header, which is where dual-stack needs
/// its decisions.
pub const fn ipv4_of(addr: IpAddress) -> Ipv4Address {
    match addr {
        IpAddress::Ipv4(v4) => v4,
    }
}

/// Length of an ICMPv4 header (type, code, checksum and the 4-byte rest of
/// header); smoltcp exports no constant for it.
pub const ICMPV4_HEADER_LEN: usize = 8;

/// The IPv4 packet an Ethernet frame carries, as a checked view over the
/// same bytes (`Ipv4Packet::new_checked`: header and total length consistent
/// with the buffer), or `None` for another EtherType, another IP version or
/// a malformed header. The view runs to the frame's end, Ethernet padding
/// included; [`Ipv4Packet::payload`] stops at the total length.
pub fn ipv4_in(frame: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).ok()?;
    (ip.version() == 4).then_some(ip)
}

/// Longest IPv4 header: 20 bytes and 40 of options (IHL 15).
pub const MAX_IPV4_HEADER_LEN: usize = 60;
/// Longest TCP header: 20 bytes and 40 of options (data offset 15).
pub const MAX_TCP_HEADER_LEN: usize = 60;

/// Offset of the checksum field in the TCP header (a `csum_offset`).
pub const TCP_CHECKSUM_AT: usize = 16;
/// Offset of the checksum field in the UDP header (a `csum_offset`).
pub const UDP_CHECKSUM_AT: usize = 6;
