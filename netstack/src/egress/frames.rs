//! Building frames toward the pods: the virtio-net and Ethernet headers in
//! front of an IP packet, and the IPv4/UDP headers of datagrams the
//! endpoint writes itself.

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, UdpPacket};

use super::table::Tuple;
use crate::wire::{ETHERNET_HEADER_LEN, EthernetAddress, IPV4_HEADER_LEN, Ipv4Address, UDP_HEADER_LEN, vnet};

/// virtio-net and Ethernet headers in front of every IP packet.
pub const HEADERS: usize = vnet::HEADER_LEN + ETHERNET_HEADER_LEN;
/// IPv4 (no options) and UDP headers.
pub(super) const IPV4_UDP_LEN: usize = IPV4_HEADER_LEN + UDP_HEADER_LEN;
/// The largest frame the endpoint handles: a 64 KiB IP packet behind the
/// headers.
pub const FRAME_CAPACITY: usize = HEADERS + 65_535;

pub(super) use crate::mac::of_ip as pod_mac;

/// Fills the virtio-net and Ethernet headers in front of the IP packet at
/// `frame[HEADERS..]`, sent from `mac`.
pub(super) fn frame_headers(frame: &mut [u8], mac: EthernetAddress) {
    vnet::Repr::PLAIN.emit(&mut vnet::Header::new_checked(&mut frame[..]).expect("sized"));
    let dst = Ipv4Packet::new_checked(&frame[HEADERS..]).map_or(Ipv4Address::UNSPECIFIED, |p| p.dst_addr());
    let mut eth = EthernetFrame::new_unchecked(&mut frame[vnet::HEADER_LEN..]);
    // The switch sets the destination MAC itself; the pod's is right anyway.
    eth.set_dst_addr(pod_mac(dst));
    eth.set_src_addr(mac);
    eth.set_ethertype(EthernetProtocol::Ipv4);
}

/// Writes the IPv4 and UDP headers of a datagram from the destination of
/// `tuple` to its pod, in front of the `len` payload bytes already at
/// `packet[IPV4_UDP_LEN..]`.
pub(super) fn udp_reply(packet: &mut [u8], tuple: Tuple, len: usize) {
    write_ipv4_udp(packet, tuple.remote, tuple.remote_port, tuple.pod, tuple.pod_port, len);
    let mut udp = UdpPacket::new_unchecked(&mut packet[IPV4_HEADER_LEN..]);
    udp.fill_checksum(&IpAddress::Ipv4(tuple.remote), &IpAddress::Ipv4(tuple.pod));
}

/// The headers of the pod's own datagram, for an ICMP error to quote.
pub(super) fn udp_original(packet: &mut [u8; IPV4_UDP_LEN], tuple: Tuple) {
    write_ipv4_udp(packet, tuple.pod, tuple.pod_port, tuple.remote, tuple.remote_port, 0);
}

fn write_ipv4_udp(
    packet: &mut [u8],
    src: Ipv4Address,
    src_port: u16,
    dst: Ipv4Address,
    dst_port: u16,
    len: usize,
) {
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_dscp(0);
    ip.set_ecn(0);
    ip.set_total_len((IPV4_UDP_LEN + len) as u16);
    ip.set_ident(0);
    ip.clear_flags();
    ip.set_dont_frag(true);
    ip.set_frag_offset(0);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Udp);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    let mut udp = UdpPacket::new_unchecked(&mut packet[IPV4_HEADER_LEN..]);
    udp.set_src_port(src_port);
    udp.set_dst_port(dst_port);
    udp.set_len((8 + len) as u16);
    udp.set_checksum(0);
}
