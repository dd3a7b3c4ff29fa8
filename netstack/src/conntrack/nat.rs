//! Reading a packet's 5-tuple and rewriting it to another one in place, with
//! incremental checksum updates that keep virtio checksum offload valid.
//!
//! The IPv4 header checksum is always a full one. The L4 checksum is either
//! full, or — on a `NEEDS_CSUM` frame — the partial pseudo-header sum the
//! kernel completes over `[csum_start, end)`. The ports lie inside that range,
//! so for a partial sum only the addresses (pseudo-header) are updated; for a
//! full checksum addresses and ports both are. A UDP checksum of 0 means
//! "none" and stays 0. Lengths never change, so `csum_start`/`csum_offset`
//! stay right.

use super::FlowKey;
use crate::Protocol;
use crate::checksum::{update_checksum, update_partial};
use crate::wire::{
    IpAddress, IpProtocol, Ipv4Packet, TCP_CHECKSUM_AT, TCP_HEADER_LEN, TcpPacket, UDP_CHECKSUM_AT,
    UDP_HEADER_LEN, UdpPacket, ipv4_of, tcp_flags,
};

/// The IPv4 header checksum and the two addresses, rewritten together.
const IP_CHECKSUM: core::ops::Range<usize> = 10..12;
const IP_ADDRS: core::ops::Range<usize> = 12..20;

/// Offset of the checksum field inside the L4 header.
pub fn l4_checksum_offset(proto: Protocol) -> usize {
    match proto {
        Protocol::Tcp => TCP_CHECKSUM_AT,
        Protocol::Udp => UDP_CHECKSUM_AT,
    }
}

/// The 5-tuple and TCP flags (0 for UDP) of a TCP or UDP packet. `None`
/// for other protocols, fragments (only the first has ports, and podnet
/// does not reassemble) and truncated transport headers.
pub fn flow_key(ip: &Ipv4Packet<&[u8]>) -> Option<(FlowKey, u8)> {
    let proto = match ip.next_header() {
        IpProtocol::Tcp => Protocol::Tcp,
        IpProtocol::Udp => Protocol::Udp,
        _ => return None,
    };
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let l4 = ip.payload();
    let (src_port, dst_port, flags) = match proto {
        Protocol::Tcp if l4.len() >= TCP_HEADER_LEN => {
            let tcp = TcpPacket::new_unchecked(l4);
            (tcp.src_port(), tcp.dst_port(), tcp_flags::of(l4))
        }
        Protocol::Udp if l4.len() >= UDP_HEADER_LEN => {
            let udp = UdpPacket::new_unchecked(l4);
            (udp.src_port(), udp.dst_port(), 0)
        }
        _ => return None,
    };
    let key = FlowKey { proto, src: ip.src_addr().into(), src_port, dst: ip.dst_addr().into(), dst_port };
    Some((key, flags))
}

/// The key's addresses as they sit in the IPv4 header, source first.
fn addrs(src: IpAddress, dst: IpAddress) -> [u8; 8] {
    let mut out = [0; 8];
    out[..4].copy_from_slice(&ipv4_of(src).octets());
    out[4..].copy_from_slice(&ipv4_of(dst).octets());
    out
}

/// Rewrites the TCP/UDP packet `ip` (whose tuple is `from`, as given by
/// [`flow_key`]) to carry `to`. `partial` says the L4 checksum field holds a
/// `NEEDS_CSUM` pseudo-header sum rather than a full checksum.
pub fn rewrite(ip: &mut [u8], from: &FlowKey, to: &FlowKey, partial: bool) {
    let header_len = usize::from(Ipv4Packet::new_unchecked(&*ip).header_len());
    let (old_addrs, new_addrs) = (addrs(from.src, from.dst), addrs(to.src, to.dst));

    // Incremental updates over the raw fields: the addresses change as one
    // 8-byte run, so the checksums are updated for that run at once.
    let ip_sum = u16::from_be_bytes([ip[IP_CHECKSUM.start], ip[IP_CHECKSUM.start + 1]]);
    let ip_sum = update_checksum(ip_sum, &old_addrs, &new_addrs);
    ip[IP_CHECKSUM].copy_from_slice(&ip_sum.to_be_bytes());
    ip[IP_ADDRS].copy_from_slice(&new_addrs);

    let l4 = &mut ip[header_len..];
    let at = l4_checksum_offset(from.proto);
    let sum = u16::from_be_bytes([l4[at], l4[at + 1]]);
    let old_ports: [u8; 4] = l4[..4].try_into().expect("length checked by flow_key");
    let mut new_ports = [0u8; 4];
    new_ports[..2].copy_from_slice(&to.src_port.to_be_bytes());
    new_ports[2..].copy_from_slice(&to.dst_port.to_be_bytes());
    l4[..4].copy_from_slice(&new_ports);

    let sum = if partial {
        update_partial(sum, &old_addrs, &new_addrs)
    } else if from.proto == Protocol::Udp && sum == 0 {
        0
    } else {
        let mut old = [0u8; 12];
        old[..8].copy_from_slice(&old_addrs);
        old[8..].copy_from_slice(&old_ports);
        let mut new = [0u8; 12];
        new[..8].copy_from_slice(&new_addrs);
        new[8..].copy_from_slice(&new_ports);
        match update_checksum(sum, &old, &new) {
            // A computed UDP checksum of 0 is sent as 0xffff (RFC 768).
            0 if from.proto == Protocol::Udp => 0xffff,
            sum => sum,
        }
    };
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}
