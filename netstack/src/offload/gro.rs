//! Receive-side coalescing (userspace GRO) for frames bound to a TAP.
//!
//! The overlay receives a TCP stream as MSS-sized segments; writing each to
//! the pod's TAP costs a syscall and a pass through the pod's TCP stack per
//! 1.4 KB. [`Gro`] merges consecutive in-order segments of one flow into a
//! TCP/IPv4 super-frame with a virtio-net header (`GSO_TCPV4`, `NEEDS_CSUM`),
//! as the kernel's `tcp_gro_receive` does for a NIC, so one write carries up
//! to 64 KiB.
//!
//! A segment joins the pending super-frame only when it is its exact
//! continuation: same Ethernet header, same IPv4 header but for length,
//! checksum and an identification one higher (or equal, with DF), same TCP
//! ports, ack, window and options, the next sequence number, a payload no
//! longer than the first segment's, and flags equal but for PSH and FIN. A
//! segment with PSH or FIN, or shorter than the first, is the last one
//! merged. Segments with a complete checksum are verified first (a bad one
//! is passed on alone, for the pod to drop); a partial one (`NEEDS_CSUM`)
//! is trusted, as the TAP would trust it.

use alloc::vec;
use alloc::vec::Vec;

use crate::wire::vnet::{self, Gso};
use crate::wire::{
    self, ETHERNET_HEADER_LEN, IpProtocol, Ipv4Packet, TCP_CHECKSUM_AT, TCP_HEADER_LEN, TcpPacket, tcp_flags,
};
use smoltcp::wire::checksum;

/// `csum_offset` of a partial TCP checksum.
const CSUM_OFFSET: u16 = TCP_CHECKSUM_AT as u16;
/// The `gso_type` bit telling the receiver CWR is on the first segment only.
const GSO_ECN: u8 = 0x80;
/// Largest IPv4 packet.
const MAX_IP_LEN: usize = 65_535;

/// What [`Gro::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The frame is held in the pending super-frame (copied): nothing to
    /// write yet.
    Held,
    /// The frame does not continue the pending one: write that one
    /// ([`Gro::finish`]) and push the frame again.
    Flush,
    /// The frame cannot be merged with anything (not a TCP data segment,
    /// a bad checksum, SYN/RST/URG, an offload of its own): write the
    /// pending frame, then this one as it is.
    Alone,
}

/// A TCP segment that may be merged, as found by [`segment`].
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Offset of the TCP header.
    tcp_at: usize,
    /// Ethernet + IPv4 + TCP header length.
    headers: usize,
    /// End of the IPv4 packet in the frame (Ethernet padding excluded).
    end: usize,
    id: u16,
    seq: u32,
    flags: u8,
    dont_frag: bool,
}

impl Segment {
    fn payload_len(&self) -> usize {
        self.end - self.headers
    }
}

/// Finds a mergeable TCP/IPv4 data segment in `frame`, verifying its
/// checksum unless `offload` marks it partial; `None` otherwise.
fn segment(frame: &[u8], offload: &vnet::Repr) -> Option<Segment> {
    if offload.gso != Gso::None {
        return None;
    }
    let ip = wire::ipv4_in(frame)?;
    let ihl = usize::from(ip.header_len());
    let total = usize::from(ip.total_len());
    if total < ihl + TCP_HEADER_LEN || ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    // More fragments or an offset: a fragment, not a segment.
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    // Malformed, or no payload (a bare ACK is never merged).
    let tcp = TcpPacket::new_checked(ip.payload()).ok().filter(|t| !t.payload().is_empty())?;
    let flags = tcp_flags::of(tcp.as_ref());
    if flags & (tcp_flags::SYN | tcp_flags::RST | tcp_flags::URG) != 0 {
        return None;
    }
    let tcp_at = ETHERNET_HEADER_LEN + ihl;
    let end = ETHERNET_HEADER_LEN + total;
    let needs_csum = offload.flags & vnet::FLAG_NEEDS_CSUM != 0;
    if needs_csum {
        if usize::from(offload.csum_start) != tcp_at || offload.csum_offset != CSUM_OFFSET {
            return None;
        }
    } else if offload.flags & vnet::FLAG_DATA_VALID == 0 {
        let pseudo = checksum::pseudo_header_v4(
            &ip.src_addr(),
            &ip.dst_addr(),
            IpProtocol::Tcp,
            (end - tcp_at) as u32,
        );
        if checksum::combine(&[pseudo, checksum::data(ip.payload())]) != 0xffff {
            return None;
        }
    }
    Some(Segment {
        tcp_at,
        headers: tcp_at + usize::from(tcp.header_len()),
        end,
        id: ip.ident(),
        seq: tcp.seq_number().0 as u32,
        flags,
        dont_frag: ip.dont_frag(),
    })
}

/// The pending super-frame's bookkeeping.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The first segment's header offsets.
    first: Segment,
    /// The first segment's own virtio-net header, kept for a frame that
    /// stays a single segment.
    offload: vnet::Repr,
    /// Payload length of the first segment: the `gso_size`.
    mss: usize,
    segments: usize,
    next_seq: u32,
    last_id: u16,
    /// PSH/FIN of the last segment merged.
    last_flags: u8,
    /// No more segments may join (PSH, FIN or a short segment was merged).
    closed: bool,
}

/// A coalescer holding at most one pending super-frame.
#[derive(Debug, Clone)]
pub struct Gro {
    /// The virtio-net header, then the frame.
    buf: Vec<u8>,
    /// Bytes of `buf` in use.
    len: usize,
    pending: Option<Pending>,
}

impl Default for Gro {
    fn default() -> Self {
        Gro::new()
    }
}

impl Gro {
    /// A coalescer with room for a 64 KiB IPv4 packet.
    pub fn new() -> Gro {
        Gro { buf: vec![0u8; vnet::HEADER_LEN + ETHERNET_HEADER_LEN + MAX_IP_LEN], len: 0, pending: None }
    }

    /// True when a super-frame is pending.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Offers `frame` (an Ethernet frame, without virtio-net header) whose
    /// header says `offload`. See [`Push`] for what the caller does next.
    pub fn push(&mut self, frame: &[u8], offload: &vnet::Repr) -> Push {
        let Some(seg) = segment(frame, offload) else {
            return Push::Alone;
        };
        let Some(p) = self.pending.as_mut() else {
            let at = vnet::HEADER_LEN;
            self.buf[at..at + seg.end].copy_from_slice(&frame[..seg.end]);
            self.len = at + seg.end;
            self.pending = Some(Pending {
                first: seg,
                offload: *offload,
                mss: seg.payload_len(),
                segments: 1,
                next_seq: seg.seq.wrapping_add(seg.payload_len() as u32),
                last_id: seg.id,
                last_flags: seg.flags,
                closed: seg.flags & (tcp_flags::PSH | tcp_flags::FIN) != 0,
            });
            return Push::Held;
        };
        let held = &self.buf[vnet::HEADER_LEN..self.len];
        let payload = seg.payload_len();
        if p.closed
            || payload > p.mss
            || self.len + payload > vnet::HEADER_LEN + ETHERNET_HEADER_LEN + MAX_IP_LEN
            || !continues(held, &p.first, p, frame, &seg)
        {
            return Push::Flush;
        }
        self.buf[self.len..self.len + payload].copy_from_slice(&frame[seg.headers..seg.end]);
        self.len += payload;
        p.segments += 1;
        p.next_seq = seg.seq.wrapping_add(payload as u32);
        p.last_id = seg.id;
        p.last_flags = seg.flags;
        p.closed = payload < p.mss || seg.flags & (tcp_flags::PSH | tcp_flags::FIN) != 0;
        Push::Held
    }

    /// Completes the pending frame and returns it, virtio-net header first,
    /// ready for a TAP; the coalescer is empty afterwards. A single segment
    /// comes back as it went in, with its own header.
    pub fn finish(&mut self) -> Option<&[u8]> {
        let p = self.pending.take()?;
        let len = core::mem::take(&mut self.len);
        let (head, frame) = self.buf.split_at_mut(vnet::HEADER_LEN);
        let frame = &mut frame[..len - vnet::HEADER_LEN];
        let mut header = vnet::Header::new_checked(head).expect("buffer holds the header");
        if p.segments == 1 {
            p.offload.emit(&mut header);
            return Some(&self.buf[..len]);
        }
        let tcp_at = p.first.tcp_at;
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
        ip.set_total_len(ip.as_ref().len() as u16);
        ip.fill_checksum();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let tcp_len = (frame.len() - tcp_at) as u32;
        tcp_flags::set(&mut frame[tcp_at..], p.last_flags & (tcp_flags::PSH | tcp_flags::FIN));
        // The pseudo-header sum, as a TSO sender leaves it for the device.
        let mut tcp = TcpPacket::new_unchecked(&mut frame[tcp_at..]);
        tcp.set_checksum(checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, tcp_len));
        vnet::Repr {
            flags: vnet::FLAG_NEEDS_CSUM,
            gso: Gso::TcpV4,
            ecn: false,
            hdr_len: p.first.headers as u16,
            gso_size: p.mss as u16,
            csum_start: tcp_at as u16,
            csum_offset: CSUM_OFFSET,
        }
        .emit(&mut header);
        if p.first.flags & tcp_flags::CWR != 0 {
            self.buf[1] |= GSO_ECN;
        }
        Some(&self.buf[..len])
    }
}

/// True when `seg` in `frame` is the exact continuation of the pending
/// super-frame whose headers (the first segment's) start `held`.
fn continues(held: &[u8], first: &Segment, p: &Pending, frame: &[u8], seg: &Segment) -> bool {
    let (tcp, headers) = (first.tcp_at, first.headers);
    if seg.tcp_at != tcp || seg.headers != headers {
        return false;
    }
    let id_ok = seg.id == p.last_id.wrapping_add(1) || (seg.dont_frag && seg.id == p.last_id);
    // CWR only ever on the first segment of a super-frame.
    let flags_ok = seg.flags & tcp_flags::CWR == 0
        && seg.flags & !(tcp_flags::PSH | tcp_flags::FIN)
            == first.flags & !(tcp_flags::PSH | tcp_flags::FIN | tcp_flags::CWR);
    // Compared as bytes: the header regions that must be equal, by offset.
    let ip = ETHERNET_HEADER_LEN;
    id_ok
        && flags_ok
        && seg.seq == p.next_seq
        // Ethernet; IPv4 version/IHL/TOS; flags, TTL, protocol; addresses
        // and options.
        && frame[..ip + 2] == held[..ip + 2]
        && frame[ip + 6..ip + 10] == held[ip + 6..ip + 10]
        && frame[ip + 12..tcp] == held[ip + 12..tcp]
        // TCP ports; ack, data offset; window; urgent pointer and options.
        && frame[tcp..tcp + 4] == held[tcp..tcp + 4]
        && frame[tcp + 8..tcp + 13] == held[tcp + 8..tcp + 13]
        && frame[tcp + 14..tcp + 16] == held[tcp + 14..tcp + 16]
        && frame[tcp + 18..headers] == held[tcp + 18..headers]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Tcp, mac, payload, pod_ip, refill_ipv4_checksum};
    use smoltcp::wire::{IpAddress, Ipv4Address};

    const SRC: Ipv4Address = pod_ip(1, 3);
    const DST: Ipv4Address = pod_ip(0, 2);
    const MSS: usize = 1398;

    /// A TSO super-frame (full checksum, DF, ids from 0xfff0).
    fn tso(data: &[u8], seq: u32, flags: u8, src_port: u16) -> (Vec<u8>, vnet::Repr) {
        Tcp {
            eth_src: mac(1),
            eth_dst: mac(2),
            seq,
            ack: Some(777),
            window: 1000,
            timestamp: Some((11, 22)),
            flags,
            hop_limit: 63,
            ident: 0xfff0,
            dont_frag: true,
            ..Tcp::new((SRC, src_port), (DST, 5201), data)
        }
        .tso(MSS as u16)
    }

    /// The wire segments of a super-frame (complete checksums).
    fn cut(data: &[u8], seq: u32, flags: u8, src_port: u16) -> Vec<Vec<u8>> {
        let (frame, offload) = tso(data, seq, flags, src_port);
        testing::cut(&frame, &offload)
    }

    /// What the pod's kernel would do with a GRO frame: cut it again.
    fn recut(gro_frame: &[u8]) -> Vec<Vec<u8>> {
        let offload = vnet::Repr::parse(&vnet::Header::new_checked(gro_frame).unwrap());
        let frame = &gro_frame[vnet::HEADER_LEN..];
        if offload.gso == Gso::None {
            return vec![frame.to_vec()];
        }
        testing::cut(frame, &offload)
    }

    /// Pushes every frame; returns the frames written, in order.
    fn run(gro: &mut Gro, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut written = Vec::new();
        for f in frames {
            loop {
                match gro.push(f, &vnet::Repr::PLAIN) {
                    Push::Held => break,
                    Push::Flush => written.push(gro.finish().unwrap().to_vec()),
                    Push::Alone => {
                        written.extend(gro.finish().map(<[u8]>::to_vec));
                        let mut alone = vec![0u8; vnet::HEADER_LEN];
                        alone.extend_from_slice(f);
                        written.push(alone);
                        break;
                    }
                }
            }
        }
        written.extend(gro.finish().map(<[u8]>::to_vec));
        written
    }

    fn header(frame: &[u8]) -> vnet::Repr {
        vnet::Repr::parse(&vnet::Header::new_checked(frame).unwrap())
    }

    #[test]
    fn segments_of_one_super_frame_merge_back_into_it() {
        let data = payload(30 * MSS + 100);
        let segments = cut(&data, 0xffff_f000, tcp_flags::PSH, 40000);
        let written = run(&mut Gro::new(), &segments);
        assert_eq!(written.len(), 1, "one write");
        let out = &written[0];
        let h = header(out);
        assert_eq!((h.gso, h.flags, h.gso_size), (Gso::TcpV4, vnet::FLAG_NEEDS_CSUM, MSS as u16));
        assert_eq!((h.hdr_len, h.csum_start, h.csum_offset), (66, 34, 16));
        let frame = &out[vnet::HEADER_LEN..];
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), frame.len() - 14);
        assert_eq!(ip.ident(), 0xfff0, "the first segment's id");
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.payload(), &data[..]);
        assert!(tcp.psh(), "PSH of the last");
        let pseudo = checksum::pseudo_header_v4(&SRC, &DST, IpProtocol::Tcp, ip.payload().len() as u32);
        assert_eq!(tcp.checksum(), pseudo, "partial, for the pod to trust");
        // Cut again, it is byte for byte what was sent.
        assert_eq!(recut(out), segments);
    }

    #[test]
    fn a_single_segment_passes_unchanged() {
        let segments = cut(&payload(500), 1, 0, 40000);
        let written = run(&mut Gro::new(), &segments);
        assert_eq!(written.len(), 1);
        assert_eq!(header(&written[0]), vnet::Repr::PLAIN);
        assert_eq!(written[0][vnet::HEADER_LEN..], segments[0][..]);
    }

    #[test]
    fn psh_fin_and_short_segments_end_a_super_frame() {
        for flags in [tcp_flags::PSH, tcp_flags::FIN | tcp_flags::PSH] {
            let mut frames = cut(&payload(3 * MSS), 1000, flags, 40000);
            frames.extend(cut(&payload(2 * MSS), 1000 + 3 * MSS as u32, 0, 40000));
            let written = run(&mut Gro::new(), &frames);
            assert_eq!(written.len(), 2, "nothing merged after flags {flags:#x}");
            assert_eq!(recut(&written[0]), frames[..3]);
            assert_eq!(recut(&written[1]), frames[3..]);
        }
        // A short segment in the middle: the super-frame ends with it.
        let mut frames = cut(&payload(MSS + 10), 1000, 0, 40000);
        frames.extend(cut(&payload(2 * MSS), 1000 + (MSS + 10) as u32, 0, 40000));
        let written = run(&mut Gro::new(), &frames);
        assert_eq!(written.len(), 2);
        assert_eq!(recut(&written[0]), frames[..2]);
        assert_eq!(recut(&written[1]), frames[2..]);
    }

    #[test]
    fn a_longer_segment_starts_a_new_super_frame() {
        let mut frames = cut(&payload(500), 1000, 0, 40000);
        frames.extend(cut(&payload(2 * MSS), 1500, 0, 40000));
        let written = run(&mut Gro::new(), &frames);
        assert_eq!(written.len(), 2);
        assert_eq!(recut(&written[1]), frames[1..]);
    }

    #[test]
    fn out_of_order_and_other_flows_are_not_merged() {
        let frames = cut(&payload(4 * MSS), 1000, 0, 40000);
        let swapped = vec![frames[0].clone(), frames[2].clone(), frames[1].clone(), frames[3].clone()];
        let written = run(&mut Gro::new(), &swapped);
        let again: Vec<Vec<u8>> = written.iter().flat_map(|w| recut(w)).collect();
        assert_eq!(again, swapped, "order kept, nothing lost");
        assert!(written.len() >= 3, "no merge across the gap");

        let other = cut(&payload(2 * MSS), 1000 + MSS as u32, 0, 40001);
        let mixed = vec![frames[0].clone(), other[0].clone(), frames[1].clone(), other[1].clone()];
        let written = run(&mut Gro::new(), &mixed);
        assert_eq!(written.len(), 4);
        let again: Vec<Vec<u8>> = written.iter().flat_map(|w| recut(w)).collect();
        assert_eq!(again, mixed);
    }

    #[test]
    fn header_differences_prevent_merging() {
        let frames = cut(&payload(2 * MSS), 1000, 0, 40000);
        let tweak = |at: usize, v: u8| {
            let mut f = frames[1].clone();
            f[at] ^= v;
            // Keep the checksums valid so only the tweaked field differs.
            refill_ipv4_checksum(&mut f);
            let mut tcp = TcpPacket::new_unchecked(&mut f[34..]);
            tcp.fill_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST));
            f
        };
        for (what, at, v) in [
            ("ack", 34 + 11, 1),
            ("window", 34 + 15, 1),
            ("timestamp", 34 + 25, 1),
            ("ttl", 14 + 8, 1),
            ("tos", 14 + 1, 4),
            ("ip id", 14 + 5, 2),
            ("ECE", 34 + 13, 0x40),
            ("CWR", 34 + 13, 0x80),
            ("mac", 5, 1),
        ] {
            let written = run(&mut Gro::new(), &[frames[0].clone(), tweak(at, v)]);
            assert_eq!(written.len(), 2, "{what} differs");
        }
        // The same id with DF set is a fixed-id sender: merged.
        let mut same_id = frames[1].clone();
        same_id[18..20].copy_from_slice(&frames[0][18..20]);
        refill_ipv4_checksum(&mut same_id);
        assert_eq!(run(&mut Gro::new(), &[frames[0].clone(), same_id.clone()]).len(), 1);
        // Without DF it must increment.
        let mut no_df = [frames[0].clone(), same_id];
        for f in &mut no_df {
            Ipv4Packet::new_unchecked(&mut f[14..]).set_dont_frag(false);
            refill_ipv4_checksum(f);
        }
        assert_eq!(run(&mut Gro::new(), &no_df).len(), 2);
    }

    #[test]
    fn bad_checksums_and_non_data_segments_go_alone() {
        let mut frames = cut(&payload(3 * MSS), 1000, 0, 40000);
        frames[1][100] ^= 0xff;
        let written = run(&mut Gro::new(), &frames);
        assert_eq!(written.len(), 3, "the corrupt segment alone, unmerged");
        assert_eq!(written[1][vnet::HEADER_LEN..], frames[1][..]);

        let ack = cut(&[], 5000, 0, 40000);
        assert_eq!(Gro::new().push(&ack[0], &vnet::Repr::PLAIN), Push::Alone, "a bare ACK");
        let mut syn = cut(&payload(10), 5000, 0, 40000);
        syn[0][34 + 13] |= tcp_flags::SYN;
        assert_eq!(Gro::new().push(&syn[0], &vnet::Repr::PLAIN), Push::Alone);
        for len in [0, 13, 33, 40, 54] {
            assert_eq!(Gro::new().push(&frames[0][..len], &vnet::Repr::PLAIN), Push::Alone, "cut at {len}");
        }
        let mut udp = frames[0].clone();
        udp[14 + 9] = 17;
        assert_eq!(Gro::new().push(&udp, &vnet::Repr::PLAIN), Push::Alone);
        let mut frag = frames[0].clone();
        frag[14 + 6] |= 0x20;
        assert_eq!(Gro::new().push(&frag, &vnet::Repr::PLAIN), Push::Alone);
        let mut long = frames[0].clone();
        long[14 + 2] = 0xff;
        assert_eq!(Gro::new().push(&long, &vnet::Repr::PLAIN), Push::Alone, "IP longer than the frame");
        let (tso_frame, tso_offload) = tso(&payload(10), 1, 0, 1);
        assert_eq!(Gro::new().push(&tso_frame, &tso_offload), Push::Alone, "already GSO");
    }

    #[test]
    fn partial_checksums_are_trusted_and_merged() {
        let frames = cut(&payload(3 * MSS), 1000, 0, 40000);
        let partial =
            vnet::Repr { flags: vnet::FLAG_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..vnet::Repr::PLAIN };
        let mut gro = Gro::new();
        for f in &frames {
            let mut f = f.clone();
            let pseudo = checksum::pseudo_header_v4(&SRC, &DST, IpProtocol::Tcp, (f.len() - 34) as u32);
            f[50..52].copy_from_slice(&pseudo.to_be_bytes());
            assert_eq!(gro.push(&f, &partial), Push::Held);
        }
        assert_eq!(recut(gro.finish().unwrap()), frames);
        let wrong_start = vnet::Repr { csum_start: 30, ..partial };
        assert_eq!(Gro::new().push(&frames[0], &wrong_start), Push::Alone);
    }

    #[test]
    fn a_super_frame_stops_at_64_kib() {
        let data = payload(60 * MSS);
        let mut frames = cut(&data[..40 * MSS], 1000, 0, 40000);
        frames.extend(cut(&data[40 * MSS..], 1000 + (40 * MSS) as u32, 0, 40000));
        // Fix the ids of the second half so only size stops the merge.
        for (i, f) in frames.iter_mut().enumerate() {
            let id = 0xfff0u16.wrapping_add(i as u16);
            Ipv4Packet::new_unchecked(&mut f[14..]).set_ident(id);
            refill_ipv4_checksum(f);
        }
        let written = run(&mut Gro::new(), &frames);
        assert_eq!(written.len(), 2);
        assert!(written.iter().all(|w| w.len() - vnet::HEADER_LEN - ETHERNET_HEADER_LEN <= MAX_IP_LEN));
        let again: Vec<Vec<u8>> = written.iter().flat_map(|w| recut(w)).collect();
        assert_eq!(again, frames);
    }

    #[test]
    fn cwr_on_the_first_sets_the_ecn_bit() {
        let frames = cut(&payload(3 * MSS), 1000, tcp_flags::CWR, 40000);
        let written = run(&mut Gro::new(), &frames);
        assert_eq!(written.len(), 1);
        assert!(header(&written[0]).ecn);
        assert_eq!(recut(&written[0]), frames);
    }
}
