//! A TSO super-frame's segments as VXLAN datagrams for one UDP GSO send
//! (`UDP_SEGMENT`): the kernel cuts what it is given every `segment_len`
//! bytes and gives each piece its own UDP/IP headers, so each piece must be
//! a whole VXLAN datagram (header, then a complete segment with its own
//! Ethernet, IPv4 and TCP headers). All pieces but the last of the
//! super-frame have the same length, as UDP GSO requires.
//!
//! Only headers are written: a datagram is its headers (VXLAN, Ethernet,
//! IPv4, TCP) in a small buffer followed by its payload, left where it is in
//! the super-frame, for a gathering send.

use core::ops::Range;

use super::gso::{Error, Segments};
use crate::wire::{IPV4_HEADER_LEN, UDP_HEADER_LEN, vxlan};

/// The largest UDP payload over IPv4 (65535 − 20 − 8): one GSO send's limit.
pub const MAX_UDP_PAYLOAD: usize = u16::MAX as usize - IPV4_HEADER_LEN - UDP_HEADER_LEN;
/// Most segments one UDP GSO send may carry (`UDP_MAX_SEGMENTS` of older
/// kernels; newer ones allow more).
pub const MAX_SEGMENTS: usize = 64;

/// One datagram of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Piece {
    /// Its headers, in the header buffer.
    pub header: Range<usize>,
    /// Its payload, in the super-frame.
    pub payload: Range<usize>,
}

/// Datagrams described by [`next_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Total length of the datagrams.
    pub len: usize,
    /// Length of every datagram but possibly the last (the `UDP_SEGMENT`
    /// size).
    pub segment_len: usize,
    /// Number of datagrams (of pieces filled in).
    pub count: usize,
}

/// How many datagrams of `segment_len` bytes one UDP GSO send takes.
pub fn per_send(segment_len: usize) -> usize {
    (MAX_UDP_PAYLOAD / segment_len.max(1)).clamp(1, MAX_SEGMENTS)
}

/// Writes the headers of the next segments of `segments`, each behind a
/// VXLAN header for `vni`, one after the other into `headers`, and
/// describes each datagram in `pieces`: as many as one UDP GSO send takes
/// and the buffers hold. `None` when every segment was written.
pub fn next_batch(
    segments: &mut Segments<'_>,
    vni: u32,
    headers: &mut [u8],
    pieces: &mut [Piece],
) -> Option<Result<Batch, Error>> {
    let header_len = vxlan::HEADER_LEN + segments.header_len();
    let segment_len = vxlan::HEADER_LEN + segments.max_len();
    // At least one datagram, even one too large for a GSO send: the socket
    // refuses it then, and the caller counts the error.
    let most = per_send(segment_len).min(pieces.len());
    let mut batch = Batch { len: 0, segment_len, count: 0 };
    while batch.count < most {
        let at = batch.count * header_len;
        let Some(out) = headers.get_mut(at..at + header_len) else {
            if batch.count == 0 {
                return Some(Err(Error::BufferTooSmall));
            }
            break;
        };
        let payload = match segments.next_header(&mut out[vxlan::HEADER_LEN..]) {
            None => break,
            Some(Ok((_, payload))) => payload,
            Some(Err(e)) => return Some(Err(e)),
        };
        vxlan::Repr { vni }.emit(&mut vxlan::Packet::new_unchecked(&mut out[..vxlan::HEADER_LEN]));
        let len = header_len + payload.len();
        pieces[batch.count] = Piece { header: at..at + header_len, payload };
        batch.len += len;
        batch.count += 1;
        if len < segment_len {
            // A short segment is the last of the super-frame.
            break;
        }
    }
    (batch.count > 0).then_some(Ok(batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use crate::wire::vnet;
    use alloc::vec;
    use alloc::vec::Vec;
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, TcpPacket};

    const SRC: Ipv4Address = testing::pod_ip(0, 2);
    const DST: Ipv4Address = testing::pod_ip(1, 2);

    /// A TSO super-frame of `data` with `mss`: Ethernet, IPv4 (id 100, DF),
    /// TCP with PSH, partial checksum.
    fn tso(data: &[u8], mss: u16) -> (Vec<u8>, vnet::Repr) {
        testing::overlay_tso(data, mss, 7)
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
    }

    /// Splits batches as the kernel would and checks every datagram.
    fn datagrams(frame: &[u8], offload: &vnet::Repr, header_room: usize) -> (Vec<Batch>, Vec<Vec<u8>>) {
        let mut segments = Segments::new(frame, offload).unwrap();
        let mut headers = vec![0u8; header_room];
        let mut pieces = vec![Piece::default(); 2 * MAX_SEGMENTS];
        let (mut batches, mut all) = (Vec::new(), Vec::new());
        while let Some(batch) = next_batch(&mut segments, 0x123456, &mut headers, &mut pieces) {
            let batch = batch.unwrap();
            assert!(batch.len <= MAX_UDP_PAYLOAD && batch.count <= MAX_SEGMENTS);
            // What the kernel sees: the pieces gathered, cut every segment_len.
            let gathered: Vec<u8> = pieces[..batch.count]
                .iter()
                .flat_map(|p| [&headers[p.header.clone()], &frame[p.payload.clone()]].concat())
                .collect();
            assert_eq!(gathered.len(), batch.len);
            let cut: Vec<&[u8]> = gathered.chunks(batch.segment_len).collect();
            assert_eq!(cut.len(), batch.count);
            for p in cut {
                let vx = vxlan::Packet::new_checked(p).unwrap();
                assert_eq!(vxlan::Repr::parse(&vx), Ok(vxlan::Repr { vni: 0x123456 }));
                let ip = Ipv4Packet::new_checked(&vx.payload()[14..]).unwrap();
                assert!(ip.verify_checksum());
                assert_eq!(usize::from(ip.total_len()), p.len() - 8 - 14, "a whole packet per piece");
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(tcp.verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST)));
                all.push(p.to_vec());
            }
            batches.push(batch);
        }
        (batches, all)
    }

    #[test]
    fn a_super_frame_fits_two_sends_with_a_short_last_datagram() {
        let data = payload(65_000);
        let (frame, offload) = tso(&data, 1398);
        let (batches, all) = datagrams(&frame, &offload, 1 << 16);
        // 1398 + 54 + 8 = 1460 bytes per datagram: 44 fit in 65507.
        assert_eq!(batches.iter().map(|b| b.count).collect::<Vec<_>>(), [44, 3]);
        assert!(batches.iter().all(|b| b.segment_len == 1460));
        assert_eq!(all.len(), 65_000usize.div_ceil(1398));
        assert_eq!(all.last().unwrap().len(), 8 + 54 + 65_000 % 1398, "the last one is shorter");
        let joined: Vec<u8> = all.iter().flat_map(|p| p[8 + 54..].to_vec()).collect();
        assert_eq!(joined, data);
        // IP ids increment across batches; PSH on the very last only.
        for (i, p) in all.iter().enumerate() {
            assert_eq!(u16::from_be_bytes([p[8 + 18], p[8 + 19]]), 100 + i as u16);
            assert_eq!(p[8 + 47] & 0x08 != 0, i == all.len() - 1);
        }
    }

    #[test]
    fn exact_multiples_and_single_segments() {
        let (frame, offload) = tso(&payload(3 * 1000), 1000);
        let (batches, all) = datagrams(&frame, &offload, 1 << 16);
        assert_eq!(batches, [Batch { len: 3 * 1062, segment_len: 1062, count: 3 }]);
        assert_eq!(all.len(), 3);
        let (frame, offload) = tso(&payload(10), 1398);
        let (batches, _) = datagrams(&frame, &offload, 1 << 16);
        assert_eq!(batches, [Batch { len: 72, segment_len: 72, count: 1 }]);
    }

    #[test]
    fn a_small_header_buffer_makes_more_batches() {
        let (frame, offload) = tso(&payload(10_000), 1000);
        let (batches, all) = datagrams(&frame, &offload, 2 * 62 + 61);
        assert_eq!(batches.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 2, 2, 2, 2]);
        assert_eq!(all.len(), 10);
        let mut segments = Segments::new(&frame, &offload).unwrap();
        let mut pieces = [Piece::default(), Piece::default()];
        assert_eq!(
            next_batch(&mut segments, 1, &mut [0u8; 61], &mut pieces),
            Some(Err(Error::BufferTooSmall))
        );
        let (batches, _) = datagrams(&frame, &offload, 1 << 16);
        assert_eq!(batches.len(), 1);
    }

    #[test]
    fn per_send_follows_the_udp_limit() {
        assert_eq!(per_send(1460), 44);
        assert_eq!(per_send(598), MAX_SEGMENTS);
        assert_eq!(per_send(70_000), 1);
        assert_eq!(per_send(0), MAX_SEGMENTS);
    }

    #[test]
    fn at_most_max_segments_per_send() {
        let (frame, offload) = tso(&payload(60_000), 536);
        let (batches, _) = datagrams(&frame, &offload, 1 << 16);
        assert_eq!(batches[0].count, MAX_SEGMENTS);
    }
}
