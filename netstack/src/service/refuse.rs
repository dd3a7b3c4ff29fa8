//! Refusals for connections to a Service port nobody serves: a TCP RST for
//! TCP, an ICMP port unreachable for UDP. Clients fail at once instead of
//! retrying into silence (kube-proxy installs REJECT rules for the same
//! reason). Both are built in the caller's reply buffer, sent from the VIP.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Packet,
    Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, checksum,
};

use crate::wire::{ETHERNET_HEADER_LEN, ICMPV4_HEADER_LEN, IPV4_HEADER_LEN, MAX_IPV4_HEADER_LEN, vnet};
/// An ICMP error quotes the offending IP header and 8 bytes past it (RFC 792).
const QUOTED_PAYLOAD: usize = 8;

/// Smallest reply buffer [`crate::switch::Switch::process`] needs: an ICMP
/// error quoting an IPv4 header with full options (60 bytes) plus 8 bytes,
/// behind a virtio-net header. A TCP RST (64) and an ARP reply (52) are smaller.
pub const MIN_REPLY_LEN: usize = vnet::HEADER_LEN
    + ETHERNET_HEADER_LEN
    + IPV4_HEADER_LEN
    + ICMPV4_HEADER_LEN
    + MAX_IPV4_HEADER_LEN
    + QUOTED_PAYLOAD;

/// Writes virtio, Ethernet and IPv4 headers of a reply to `ip` into `out`
/// and returns where the IP payload starts.
fn emit_headers(
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    ip: &Ipv4Packet<&[u8]>,
    proto: IpProtocol,
    payload_len: usize,
    out: &mut [u8],
) -> usize {
    vnet::Repr::PLAIN.emit(&mut vnet::Header::new_checked(&mut out[..]).expect("sized by caller"));
    let eth = EthernetRepr { src_addr: eth_src, dst_addr: eth_dst, ethertype: EthernetProtocol::Ipv4 };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut out[vnet::HEADER_LEN..]));
    let repr = Ipv4Repr {
        // From the address the client tried, so its stack matches the answer.
        src_addr: ip.dst_addr(),
        dst_addr: ip.src_addr(),
        next_header: proto,
        payload_len,
        hop_limit: 64,
    };
    let at = vnet::HEADER_LEN + ETHERNET_HEADER_LEN;
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut out[at..at + IPV4_HEADER_LEN + payload_len]),
        &ChecksumCapabilities::default(),
    );
    at + IPV4_HEADER_LEN
}

/// Builds, in `out`, the RST a closed port answers the TCP segment in `ip`
/// with (RFC 9293 3.10.7.1). Returns the reply length, or `None` when the
/// segment is itself a RST (never answered), is unparsable, or `out` is short.
/// `eth_src`/`eth_dst` are the reply's MACs (the incoming frame's, swapped).
pub fn tcp_reset(
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    ip: &Ipv4Packet<&[u8]>,
    out: &mut [u8],
) -> Option<usize> {
    let segment = TcpPacket::new_checked(ip.payload()).ok()?;
    if segment.rst() {
        return None;
    }
    let (seq_number, ack_number) = if segment.ack() {
        (segment.ack_number(), None)
    } else {
        let len = segment.segment_len();
        (TcpSeqNumber(0), Some(segment.seq_number() + len))
    };
    let repr = TcpRepr {
        src_port: segment.dst_port(),
        dst_port: segment.src_port(),
        control: TcpControl::Rst,
        seq_number,
        ack_number,
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let len = vnet::HEADER_LEN + ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + repr.header_len();
    let out = out.get_mut(..len)?;
    let at = emit_headers(eth_src, eth_dst, ip, IpProtocol::Tcp, repr.header_len(), out);
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut out[at..]),
        &IpAddress::Ipv4(ip.dst_addr()),
        &IpAddress::Ipv4(ip.src_addr()),
        &ChecksumCapabilities::default(),
    );
    Some(len)
}

/// Builds, in `out`, an ICMP destination unreachable / port unreachable for
/// the datagram in `ip`, quoting its IP header and first 8 payload bytes.
/// Returns the reply length, or `None` when `out` is too short.
pub fn port_unreachable(
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    ip: &Ipv4Packet<&[u8]>,
    out: &mut [u8],
) -> Option<usize> {
    let header_len = usize::from(ip.header_len());
    let quoted = header_len + ip.payload().len().min(QUOTED_PAYLOAD);
    let icmp_len = ICMPV4_HEADER_LEN + quoted;
    let len = vnet::HEADER_LEN + ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + icmp_len;
    let out = out.get_mut(..len)?;
    let at = emit_headers(eth_src, eth_dst, ip, IpProtocol::Icmp, icmp_len, out);
    let icmp = &mut out[at..];
    // Type 3 (destination unreachable), code 3 (port unreachable), unused word.
    icmp[..ICMPV4_HEADER_LEN].copy_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
    icmp[ICMPV4_HEADER_LEN..].copy_from_slice(&ip.as_ref()[..quoted]);
    let sum = !checksum::data(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(len)
}
