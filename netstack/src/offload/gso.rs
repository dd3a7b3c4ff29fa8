//! Making offloaded frames whole for receivers without offloads.
//!
//! Pod TAPs hand over what a NIC with checksum offload and TSO would take: a
//! frame whose L4 checksum is only partial (`NEEDS_CSUM`: the pseudo-header
//! sum sits in the checksum field, the rest is left to the device), or a
//! TCP/IPv4 super-frame of up to 64 KiB to be cut into `gso_size` segments.
//! A VXLAN peer, an underlay with a 1500-byte MTU or a socket need real
//! frames: this module is the "device" that finishes them, in software.
//!
//! - [`complete_checksum`] finishes a partial checksum in place, whatever the
//!   protocol (the sum runs from `csum_start` to the end, as a NIC does);
//!   UDP's computed zero is sent as `0xffff` (RFC 768).
//! - [`Segments`] cuts a TCP/IPv4 GSO frame as Linux's `tcp_gso_segment`
//!   does: each segment repeats the Ethernet, IPv4 and TCP headers (options
//!   included), with its own IPv4 total length, identification (incremented
//!   per segment) and header checksum, its own sequence number, FIN and PSH
//!   on the last segment only, CWR on the first only, and a full TCP
//!   checksum.
//!
//! Frames here are Ethernet frames without their virtio-net header; the
//! offload parameters come from the header's [`vnet::Repr`].

use core::fmt;
use core::ops::Range;

use crate::wire::vnet::{self, Gso};
use crate::wire::{
    self, ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol, IPV4_HEADER_LEN, IpProtocol, Ipv4Address,
    Ipv4Packet, TCP_CHECKSUM_AT, TCP_HEADER_LEN, TcpPacket, UDP_CHECKSUM_AT, UDP_HEADER_LEN, UdpPacket,
    tcp_flags,
};
use smoltcp::wire::{TcpSeqNumber, checksum};

/// Why a frame cannot be finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Headers too short, inconsistent with the frame, or offload offsets
    /// outside it.
    Malformed,
    /// An offload this module does not perform (TCP/IPv6 or UDP GSO, a
    /// fragmented or non-TCP super-frame).
    Unsupported,
    /// The output buffer cannot hold a segment.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Malformed => "malformed offloaded frame",
            Error::Unsupported => "unsupported offload",
            Error::BufferTooSmall => "segment buffer too small",
        })
    }
}

/// What a frame needs before it can leave through a port without offloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Nothing: checksums are complete and the frame is one packet.
    None,
    /// A partial L4 checksum to complete ([`complete_checksum`]).
    Checksum,
    /// A TCP/IPv4 super-frame to cut ([`Segments`]).
    SegmentTcpV4,
}

/// What `offload` asks of a frame, or why it cannot be done.
pub fn work(offload: &vnet::Repr) -> Result<Work, Error> {
    match offload.gso {
        Gso::None if needs_csum(offload) => Ok(Work::Checksum),
        Gso::None => Ok(Work::None),
        Gso::TcpV4 => Ok(Work::SegmentTcpV4),
        Gso::TcpV6 | Gso::Udp | Gso::Unknown(_) => Err(Error::Unsupported),
    }
}

fn needs_csum(offload: &vnet::Repr) -> bool {
    offload.flags & vnet::FLAG_NEEDS_CSUM != 0
}

/// Completes the partial L4 checksum of `frame` (an Ethernet frame) as
/// `offload` describes it; a frame without `NEEDS_CSUM` is left alone.
pub fn complete_checksum(frame: &mut [u8], offload: &vnet::Repr) -> Result<(), Error> {
    if !needs_csum(offload) {
        return Ok(());
    }
    let start = usize::from(offload.csum_start);
    let field = start + usize::from(offload.csum_offset);
    if start < ETHERNET_HEADER_LEN || field + 2 > frame.len() {
        return Err(Error::Malformed);
    }
    // The field holds the pseudo-header sum: summing over it completes it.
    let mut value = !checksum::data(&frame[start..]);
    if value == 0 && is_udp(frame, start, field) {
        value = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// True when the checksum at `field` is the one of a UDP header at `start`.
/// Only the EtherType and the IPv4 protocol byte are read: the rest of the
/// IPv4 header need not be whole for a checksum the sender left partial.
fn is_udp(frame: &[u8], start: usize, field: usize) -> bool {
    /// Where the IPv4 header's protocol byte ends.
    const PROTOCOL_END: usize = 10;
    field == start + UDP_CHECKSUM_AT
        && EthernetFrame::new_checked(frame).is_ok_and(|eth| {
            eth.ethertype() == EthernetProtocol::Ipv4
                && eth.payload().len() >= PROTOCOL_END
                && Ipv4Packet::new_unchecked(eth.payload()).next_header() == IpProtocol::Udp
        })
}

/// Recognises a frame whose L4 checksum was left partial by a sender on the
/// same machine and never completed: its TCP or UDP checksum field holds
/// exactly the pseudo-header sum, as Linux stores it for offload. Such
/// frames reach the overlay socket when the peer's vxlan device, a veth, or
/// a virtio NIC between VMs on one host passes checksum offload along
/// (`CHECKSUM_PARTIAL`) and the kernel hands the datagram to a socket
/// as is. Returns the `NEEDS_CSUM` header to pass it on with, so the
/// receiver completes (or trusts) it instead of dropping it; `None` for
/// complete checksums and anything that is not an unfragmented TCP or UDP
/// packet over IPv4. A complete checksum that happens to equal the
/// pseudo-header sum (1 in 65536) is valid anyway, so passing it on as
/// partial loses nothing.
pub fn partial_checksum(frame: &[u8]) -> Option<vnet::Repr> {
    let ip = wire::ipv4_in(frame)?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let l4 = ip.payload();
    let (proto, offset, field) = match ip.next_header() {
        IpProtocol::Tcp if l4.len() >= TCP_HEADER_LEN => {
            (IpProtocol::Tcp, TCP_CHECKSUM_AT, TcpPacket::new_unchecked(l4).checksum())
        }
        IpProtocol::Udp if l4.len() >= UDP_HEADER_LEN => {
            (IpProtocol::Udp, UDP_CHECKSUM_AT, UdpPacket::new_unchecked(l4).checksum())
        }
        _ => return None,
    };
    if proto == IpProtocol::Udp && field == 0 {
        return None;
    }
    let pseudo = checksum::pseudo_header_v4(&ip.src_addr(), &ip.dst_addr(), proto, l4.len() as u32);
    crate::checksum::sums_equal(field, pseudo).then_some(vnet::Repr {
        flags: vnet::FLAG_NEEDS_CSUM,
        csum_start: (ETHERNET_HEADER_LEN + usize::from(ip.header_len())) as u16,
        csum_offset: offset as u16,
        ..vnet::Repr::PLAIN
    })
}

/// The segments of a TCP/IPv4 GSO super-frame, produced one at a time into
/// a buffer of the caller's.
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    frame: &'a [u8],
    /// Offset of the TCP header (Ethernet + IPv4 header lengths).
    tcp_at: usize,
    /// Ethernet + IPv4 + TCP header lengths: what every segment repeats.
    headers: usize,
    /// End of the IPv4 packet inside `frame` (Ethernet padding excluded).
    end: usize,
    mss: usize,
    /// Offset of the next segment's payload in `frame`.
    next: usize,
    index: u16,
    done: bool,
    src: Ipv4Address,
    dst: Ipv4Address,
}

impl<'a> Segments<'a> {
    /// Checks `frame` (an Ethernet frame) and `offload` and prepares the cut.
    pub fn new(frame: &'a [u8], offload: &vnet::Repr) -> Result<Segments<'a>, Error> {
        if offload.gso != Gso::TcpV4 {
            return Err(Error::Unsupported);
        }
        let eth = EthernetFrame::new_checked(frame).map_err(|_| Error::Malformed)?;
        if frame.len() < ETHERNET_HEADER_LEN + IPV4_HEADER_LEN || eth.ethertype() != EthernetProtocol::Ipv4 {
            return Err(Error::Malformed);
        }
        // Unchecked: the total length may be 0 here (see `end`).
        let ip = Ipv4Packet::new_unchecked(eth.payload());
        let ihl = usize::from(ip.header_len());
        if ip.version() != 4 || ihl < IPV4_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if ip.next_header() != IpProtocol::Tcp {
            return Err(Error::Unsupported);
        }
        // More fragments or a fragment offset: not a whole TCP super-frame.
        if ip.more_frags() || ip.frag_offset() != 0 {
            return Err(Error::Unsupported);
        }
        let total = usize::from(ip.total_len());
        let tcp_at = ETHERNET_HEADER_LEN + ihl;
        // Linux writes the super-frame's own length; a frame longer than the
        // field can hold (or that leaves it 0) runs to the end of the buffer.
        let end = match total {
            0 => frame.len(),
            t if ETHERNET_HEADER_LEN + t <= frame.len() => ETHERNET_HEADER_LEN + t,
            _ => return Err(Error::Malformed),
        };
        if tcp_at + TCP_HEADER_LEN > end {
            return Err(Error::Malformed);
        }
        let thl = usize::from(TcpPacket::new_unchecked(&frame[tcp_at..end]).header_len());
        if thl < TCP_HEADER_LEN || tcp_at + thl > end {
            return Err(Error::Malformed);
        }
        let mss = usize::from(offload.gso_size);
        if mss == 0 {
            return Err(Error::Malformed);
        }
        let headers = tcp_at + thl;
        Ok(Segments {
            frame,
            tcp_at,
            headers,
            end,
            mss,
            next: headers,
            index: 0,
            done: false,
            src: ip.src_addr(),
            dst: ip.dst_addr(),
        })
    }

    /// Length of the longest segment (headers plus one MSS of payload).
    pub fn max_len(&self) -> usize {
        self.headers + self.mss.min(self.end - self.headers)
    }

    /// How many segments the frame makes (at least one).
    pub fn count(&self) -> usize {
        (self.end - self.headers).div_ceil(self.mss).max(1)
    }

    /// Writes the next segment, a complete Ethernet frame, at the start of
    /// `out` and returns its length; `None` when every segment was written.
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<Result<usize, Error>> {
        if !self.done && out.len() < self.headers + self.mss.min(self.end - self.next) {
            return Some(Err(Error::BufferTooSmall));
        }
        let (headers, payload) = match self.next_header(out)? {
            Ok(next) => next,
            Err(e) => return Some(Err(e)),
        };
        let len = headers + payload.len();
        let Some(body) = out.get_mut(headers..len) else {
            return Some(Err(Error::BufferTooSmall));
        };
        body.copy_from_slice(&self.frame[payload]);
        Some(Ok(len))
    }

    /// Writes the headers of the next segment (Ethernet, IPv4, TCP, with
    /// the TCP checksum over the payload too) at the start of `out` and
    /// returns their length and where the segment's payload lies in the
    /// super-frame: a segment is the headers followed by that payload, so it
    /// can be sent from two buffers without copying the payload. `None` when
    /// every segment was written.
    pub fn next_header(&mut self, out: &mut [u8]) -> Option<Result<(usize, Range<usize>), Error>> {
        if self.done {
            return None;
        }
        let payload_len = self.mss.min(self.end - self.next);
        let len = self.headers + payload_len;
        let Some(out) = out.get_mut(..self.headers) else {
            return Some(Err(Error::BufferTooSmall));
        };
        let first = self.index == 0;
        let last = self.next + payload_len >= self.end;
        let offset = self.next - self.headers;
        let payload = self.next..self.next + payload_len;
        out.copy_from_slice(&self.frame[..self.headers]);

        // IPv4: length, identification, checksum.
        let mut ip = Ipv4Packet::new_unchecked(&mut out[ETHERNET_HEADER_LEN..self.tcp_at]);
        ip.set_total_len((len - ETHERNET_HEADER_LEN) as u16);
        ip.set_ident(ip.ident().wrapping_add(self.index));
        ip.fill_checksum();

        // TCP: sequence number, flags, checksum.
        let tcp_at = self.tcp_at;
        if !last {
            tcp_flags::clear(&mut out[tcp_at..], tcp_flags::FIN | tcp_flags::PSH);
        }
        if !first {
            tcp_flags::clear(&mut out[tcp_at..], tcp_flags::CWR);
        }
        let mut tcp = TcpPacket::new_unchecked(&mut out[tcp_at..]);
        let seq = (tcp.seq_number().0 as u32).wrapping_add(offset as u32);
        tcp.set_seq_number(TcpSeqNumber(seq as i32));
        tcp.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(&self.src, &self.dst, IpProtocol::Tcp, (len - tcp_at) as u32);
        // The TCP header is a multiple of 4 bytes long, so the payload's sum
        // starts on an even offset and combines with the header's.
        let tcp_sum = !checksum::combine(&[
            pseudo,
            checksum::data(tcp.as_ref()),
            checksum::data(&self.frame[payload.clone()]),
        ]);
        tcp.set_checksum(tcp_sum);

        self.next += payload_len;
        self.index = self.index.wrapping_add(1);
        // A super-frame without payload (a bare ACK) is one segment.
        self.done = self.next >= self.end;
        Some(Ok((self.headers, payload)))
    }

    /// How many segments are still to be written.
    pub fn remaining(&self) -> usize {
        if self.done { 0 } else { (self.end - self.next).div_ceil(self.mss).max(1) }
    }

    /// True when every segment carries a full MSS (the payload is a
    /// multiple of it, and not empty): all segments have [`Self::max_len`].
    pub fn all_full(&self) -> bool {
        let payload = self.end - self.headers;
        payload > 0 && payload.is_multiple_of(self.mss)
    }

    /// Ethernet + IPv4 + TCP header length of every segment.
    pub fn header_len(&self) -> usize {
        self.headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Checksum, Tcp, Udp, cut, mac, payload, pod_ip};
    use alloc::vec;
    use alloc::vec::Vec;
    use smoltcp::wire::IpAddress;

    const SRC: Ipv4Address = pod_ip(0, 2);
    const DST: Ipv4Address = pod_ip(1, 3);

    /// A TCP/IPv4 frame as a pod kernel hands it over with TSO: full
    /// length in the IP header, the pseudo-header sum in the TCP checksum.
    fn tso_frame(data: &[u8], flags: u8, options: bool) -> (Vec<u8>, vnet::Repr) {
        Tcp {
            eth_dst: mac(1),
            seq: 0xffff_f000,
            ack: Some(1234),
            window: 502,
            timestamp: options.then_some((7, 9)),
            flags,
            ident: 0xfffe,
            dont_frag: true,
            checksum: Checksum::Partial,
            ..Tcp::new((SRC, 40000), (DST, 80), data)
        }
        .tso(1448)
    }

    /// Checks every segment with smoltcp and returns (ip id, seq, flags, payload) per segment.
    fn check(segments: &[Vec<u8>], mss: usize) -> Vec<(u16, u32, u8, Vec<u8>)> {
        segments
            .iter()
            .map(|s| {
                let eth = EthernetFrame::new_checked(&s[..]).unwrap();
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                assert!(ip.verify_checksum(), "IPv4 header checksum");
                assert_eq!(usize::from(ip.total_len()), s.len() - 14);
                assert!(ip.dont_frag());
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(tcp.verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST)), "TCP checksum");
                assert!(tcp.payload().len() <= mss);
                (ip.ident(), tcp.seq_number().0 as u32, ip.payload()[13], tcp.payload().to_vec())
            })
            .collect()
    }

    #[test]
    fn a_super_frame_becomes_mss_sized_segments() {
        let data = payload(10_000);
        let (frame, offload) = tso_frame(&data, tcp_flags::PSH | tcp_flags::FIN | tcp_flags::CWR, true);
        let segments = cut(&frame, &offload);
        assert_eq!(segments.len(), 7, "10000 bytes in 1448-byte segments");
        let seen = check(&segments, 1448);
        let joined: Vec<u8> = seen.iter().flat_map(|s| s.3.clone()).collect();
        assert_eq!(joined, data, "payload intact, in order");
        for (i, (id, seq, flags, body)) in seen.iter().enumerate() {
            assert_eq!(*id, 0xfffe_u16.wrapping_add(i as u16), "IP id increments (and wraps)");
            assert_eq!(*seq, 0xffff_f000_u32.wrapping_add((i * 1448) as u32), "seq advances (and wraps)");
            let last = i == seen.len() - 1;
            assert_eq!(flags & tcp_flags::FIN != 0, last, "FIN on the last only");
            assert_eq!(flags & tcp_flags::PSH != 0, last, "PSH on the last only");
            assert_eq!(flags & tcp_flags::CWR != 0, i == 0, "CWR on the first only");
            assert!(flags & 0x10 != 0, "ACK everywhere");
            assert_eq!(body.len(), if last { 10_000 - 6 * 1448 } else { 1448 });
        }
        // Headers (options included) are repeated.
        for s in &segments {
            assert_eq!(s[..14], frame[..14], "Ethernet header");
            assert_eq!(s[34 + 20..34 + 32], frame[34 + 20..34 + 32], "TCP timestamp option");
        }
    }

    #[test]
    fn exact_multiples_and_small_frames() {
        let data = payload(3 * 1448);
        let (frame, offload) = tso_frame(&data, tcp_flags::PSH, false);
        let seen = check(&cut(&frame, &offload), 1448);
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.3.len() == 1448));
        assert_eq!(seen.iter().map(|s| s.2 & tcp_flags::PSH != 0).collect::<Vec<_>>(), [false, false, true]);

        let (frame, offload) = tso_frame(&payload(100), tcp_flags::PSH, false);
        let seen = check(&cut(&frame, &offload), 1448);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].2 & tcp_flags::PSH, tcp_flags::PSH);
        assert_eq!(seen[0].3, payload(100));
    }

    #[test]
    fn remaining_counts_down_and_full_frames_are_recognised() {
        let (frame, offload) = tso_frame(&payload(3 * 1448), 0, false);
        let mut segments = Segments::new(&frame, &offload).unwrap();
        assert!(segments.all_full());
        let mut out = vec![0u8; 2000];
        for left in (1..=3).rev() {
            assert_eq!(segments.remaining(), left);
            segments.next_into(&mut out).unwrap().unwrap();
        }
        assert_eq!(segments.remaining(), 0);
        let (frame, offload) = tso_frame(&payload(3 * 1448 + 1), 0, false);
        let segments = Segments::new(&frame, &offload).unwrap();
        assert!(!segments.all_full());
        assert_eq!(segments.remaining(), 4);
        let (frame, offload) = tso_frame(&[], 0, false);
        let segments = Segments::new(&frame, &offload).unwrap();
        assert!(!segments.all_full(), "a bare ACK is short");
        assert_eq!(segments.remaining(), 1);
    }

    #[test]
    fn a_super_frame_without_payload_is_one_segment() {
        let (frame, offload) = tso_frame(&[], 0, false);
        let seen = check(&cut(&frame, &offload), 1448);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].3.is_empty());
    }

    #[test]
    fn other_mss_values() {
        let data = payload(65_000);
        for mss in [536u16, 1398, 1400, 8948] {
            let (frame, mut offload) = tso_frame(&data, 0, true);
            offload.gso_size = mss;
            let seen = check(&cut(&frame, &offload), usize::from(mss));
            assert_eq!(seen.len(), 65_000usize.div_ceil(usize::from(mss)));
            assert_eq!(seen.iter().flat_map(|s| s.3.clone()).collect::<Vec<u8>>(), data);
        }
    }

    #[test]
    fn ethernet_padding_after_the_ip_packet_is_not_payload() {
        let (mut frame, offload) = tso_frame(&payload(10), 0, false);
        frame.extend_from_slice(&[0; 6]);
        let seen = check(&cut(&frame, &offload), 1448);
        assert_eq!(seen[0].3, payload(10));
    }

    #[test]
    fn bad_frames_are_refused() {
        let (frame, offload) = tso_frame(&payload(3000), 0, false);
        assert_eq!(Segments::new(&frame[..40], &offload).unwrap_err(), Error::Malformed, "cut in TCP header");
        assert_eq!(
            Segments::new(&frame[..2000], &offload).unwrap_err(),
            Error::Malformed,
            "shorter than IP says"
        );
        let mut zero = offload;
        zero.gso_size = 0;
        assert_eq!(Segments::new(&frame, &zero).unwrap_err(), Error::Malformed);
        let mut v6 = offload;
        v6.gso = Gso::TcpV6;
        assert_eq!(Segments::new(&frame, &v6).unwrap_err(), Error::Unsupported);
        assert_eq!(work(&v6), Err(Error::Unsupported));
        let mut udp = frame.clone();
        udp[14 + 9] = 17;
        assert_eq!(Segments::new(&udp, &offload).unwrap_err(), Error::Unsupported);
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(Segments::new(&arp, &offload).unwrap_err(), Error::Malformed);
        let mut small = Segments::new(&frame, &offload).unwrap();
        assert_eq!(small.next_into(&mut [0u8; 100]), Some(Err(Error::BufferTooSmall)));
    }

    #[test]
    fn work_follows_the_header() {
        assert_eq!(work(&vnet::Repr::PLAIN), Ok(Work::None));
        let (_, tso) = tso_frame(&[], 0, false);
        assert_eq!(work(&tso), Ok(Work::SegmentTcpV4));
        let csum = vnet::Repr { gso: Gso::None, ..tso };
        assert_eq!(work(&csum), Ok(Work::Checksum));
    }

    /// A UDP/IPv4 frame with the partial checksum a pod kernel leaves.
    fn udp_frame(data: &[u8]) -> (Vec<u8>, vnet::Repr) {
        let udp = Udp { checksum: Checksum::Partial, ..Udp::new((SRC, 5353), (DST, 9000), data) };
        (udp.frame(), udp.partial_header())
    }

    #[test]
    fn partial_udp_checksums_are_completed() {
        for len in [0, 1, 2, 3, 100, 1471] {
            let (mut frame, offload) = udp_frame(&payload(len));
            complete_checksum(&mut frame, &offload).unwrap();
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST)), "len {len}");
            assert_ne!(udp.checksum(), 0);
        }
    }

    #[test]
    fn a_udp_checksum_that_computes_to_zero_is_sent_as_ffff() {
        // Choose the last payload word so that the whole sum is 0xffff.
        let mut data = payload(8);
        data[6..].fill(0);
        let (frame, _) = udp_frame(&data);
        let pseudo = checksum::pseudo_header_v4(&SRC, &DST, IpProtocol::Udp, 16);
        let partial = checksum::combine(&[pseudo, checksum::data(&frame[34..34 + 6]), checksum::data(&data)]);
        let word = !partial;
        data[6..].copy_from_slice(&word.to_be_bytes());
        let (mut frame, offload) = udp_frame(&data);
        complete_checksum(&mut frame, &offload).unwrap();
        assert_eq!(frame[40..42], [0xff, 0xff]);
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert!(
            UdpPacket::new_checked(ip.payload())
                .unwrap()
                .verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST))
        );
    }

    #[test]
    fn partial_tcp_checksums_are_completed() {
        for len in [0, 1, 1447, 1448] {
            let (mut frame, mut offload) = tso_frame(&payload(len), tcp_flags::PSH, true);
            offload.gso = Gso::None;
            complete_checksum(&mut frame, &offload).unwrap();
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(tcp.verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST)), "len {len}");
        }
    }

    #[test]
    fn partial_checksums_are_recognised_and_complete_ones_are_not() {
        let (frame, offload) = udp_frame(&payload(100));
        assert_eq!(partial_checksum(&frame), Some(offload));
        let (mut frame, _) = tso_frame(&payload(1000), tcp_flags::PSH, true);
        let partial = partial_checksum(&frame).unwrap();
        assert_eq!((partial.flags, partial.csum_start, partial.csum_offset), (vnet::FLAG_NEEDS_CSUM, 34, 16));
        complete_checksum(&mut frame, &partial).unwrap();
        assert_eq!(partial_checksum(&frame), None, "complete now");
        let (mut frame, offload) = udp_frame(&payload(100));
        complete_checksum(&mut frame, &offload).unwrap();
        assert_eq!(partial_checksum(&frame), None);
        frame[40..42].fill(0);
        assert_eq!(partial_checksum(&frame), None, "UDP without checksum");
        let (mut frame, _) = udp_frame(&payload(100));
        frame[14 + 6] = 0x20;
        assert_eq!(partial_checksum(&frame), None, "a fragment");
        assert_eq!(partial_checksum(&frame[..30]), None);
    }

    #[test]
    fn complete_frames_are_left_alone_and_bad_offsets_refused() {
        let (mut frame, offload) = udp_frame(&payload(10));
        let before = frame.clone();
        complete_checksum(&mut frame, &vnet::Repr::PLAIN).unwrap();
        assert_eq!(frame, before);
        let far = vnet::Repr { csum_offset: 200, ..offload };
        assert_eq!(complete_checksum(&mut frame, &far), Err(Error::Malformed));
        let inside_eth = vnet::Repr { csum_start: 4, ..offload };
        assert_eq!(complete_checksum(&mut frame, &inside_eth), Err(Error::Malformed));
    }
}
