//! The encapsulation step against a simulated socket: datagrams compared
//! byte for byte with an independent cut of the same frames.

use alloc::vec;
use alloc::vec::Vec;

use super::DECAP_HEADROOM;
use super::transmit::{Encapsulator, Fallback, Plan, SendError, Transmit};
use crate::offload::gso::Segments;
use crate::offload::vxlan_batch::{MAX_SEGMENTS, MAX_UDP_PAYLOAD};
use crate::testing::{overlay_tso, pod_ip, underlay, with_vnet};
use crate::wire::vnet;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket, checksum};

const VNI: u32 = 0x00ab_cdef;
const SRC: Ipv4Address = pod_ip(0, 2);
const DST: Ipv4Address = pod_ip(1, 2);
const PEER: Ipv4Address = underlay(1);
const OTHER: Ipv4Address = underlay(2);
const MSS: u16 = 1398;
/// VXLAN + Ethernet + IPv4 + TCP: 1398 + 62 = 1460, 44 to a send.
const SEGMENT_LEN: usize = 1460;

/// A TSO super-frame behind its virtio-net header: `data` in `mss`-sized
/// segments, TCP sequence `seq`, partial checksum.
fn tso(data: &[u8], mss: u16, seq: u32) -> Vec<u8> {
    let (frame, offload) = overlay_tso(data, mss, seq);
    with_vnet(&offload, &frame)
}

fn payload(len: usize, salt: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256 + salt) as u8).collect()
}

fn vxlan_header() -> [u8; 8] {
    let v = VNI.to_be_bytes();
    [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// What the peer must receive for `buf`: each segment (cut independently)
/// behind a VXLAN header.
fn expected(buf: &[u8]) -> Vec<Vec<u8>> {
    let offload = vnet::Repr::parse(&vnet::Header::new_checked(buf).unwrap());
    let frame = &buf[vnet::HEADER_LEN..];
    let mut segments = Segments::new(frame, &offload).unwrap();
    let mut out = vec![0u8; 70_000];
    let mut all = Vec::new();
    while let Some(len) = segments.next_into(&mut out) {
        all.push([&vxlan_header()[..], &out[..len.unwrap()]].concat());
    }
    all
}

/// One send the simulated socket saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    tx: Transmit,
    /// The datagrams, cut as the kernel cuts a UDP GSO send.
    datagrams: Vec<Vec<u8>>,
}

/// Runs `plan` against a socket answering with `answer` (per send, in
/// order); returns every send and the plan's error count.
fn run(mut plan: Plan<'_>, answer: &mut dyn FnMut(&Transmit) -> Result<(), SendError>) -> (Vec<Sent>, u32) {
    let mut sends = Vec::new();
    while let Some(tx) = plan.next() {
        let gathered: Vec<u8> = plan.parts().iter().flat_map(|p| plan.bytes(p).to_vec()).collect();
        assert_eq!(gathered.len(), tx.len);
        let datagrams: Vec<Vec<u8>> = match tx.segment_len {
            Some(size) => {
                assert!(tx.len <= MAX_UDP_PAYLOAD && tx.datagrams <= MAX_SEGMENTS && tx.datagrams > 1);
                gathered.chunks(usize::from(size)).map(<[u8]>::to_vec).collect()
            }
            None => vec![gathered],
        };
        assert_eq!(datagrams.len(), tx.datagrams);
        let result = answer(&tx);
        sends.push(Sent { tx, datagrams });
        plan.sent(result);
    }
    (sends, plan.errors())
}

fn ok(_: &Transmit) -> Result<(), SendError> {
    Ok(())
}

fn all_datagrams(sends: &[Sent]) -> Vec<Vec<u8>> {
    sends.iter().flat_map(|s| s.datagrams.clone()).collect()
}

#[test]
fn a_plain_frame_is_one_datagram_behind_a_vxlan_header() {
    let frame: Vec<u8> = (0..60).map(|i| i as u8).collect();
    let mut buf = with_vnet(&vnet::Repr::PLAIN, &frame);
    let mut enc = Encapsulator::new(VNI);
    let (sends, errors) = run(enc.encapsulate(PEER, &mut buf), &mut ok);
    assert_eq!(errors, 0);
    assert_eq!(sends.len(), 1);
    let tx = sends[0].tx;
    assert_eq!((tx.to, tx.segment_len, tx.datagrams, tx.retry), (PEER, None, 1, false));
    assert_eq!(sends[0].datagrams[0], [&vxlan_header()[..], &frame].concat());
    assert_eq!(buf[..DECAP_HEADROOM], [0, 0], "written after the headroom only");
}

#[test]
fn a_partial_checksum_is_completed_before_sending() {
    // UDP/IPv4 with the pseudo-header sum in its checksum field.
    let data = payload(33, 1);
    let mut f = vec![0u8; 14 + 20 + 8];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((28 + data.len()) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&SRC.octets());
    f[30..34].copy_from_slice(&DST.octets());
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..34]);
    ip.fill_checksum();
    f[34..36].copy_from_slice(&5353u16.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    let pseudo = checksum::pseudo_header_v4(&SRC, &DST, IpProtocol::Udp, (8 + data.len()) as u32);
    f[40..42].copy_from_slice(&pseudo.to_be_bytes());
    f.extend_from_slice(&data);
    let offload =
        vnet::Repr { flags: vnet::FLAG_NEEDS_CSUM, csum_start: 34, csum_offset: 6, ..vnet::Repr::PLAIN };
    let mut buf = with_vnet(&offload, &f);
    let mut enc = Encapsulator::new(VNI);
    let (sends, errors) = run(enc.encapsulate(PEER, &mut buf), &mut ok);
    assert_eq!((sends.len(), errors), (1, 0));
    let datagram = &sends[0].datagrams[0];
    let ip = Ipv4Packet::new_checked(&datagram[8 + 14..]).unwrap();
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST)));
    assert_eq!(udp.payload(), &data[..]);
}

#[test]
fn a_super_frame_leaves_in_two_gso_sends_byte_for_byte() {
    let mut buf = tso(&payload(65_000, 0), MSS, 7);
    let want = expected(&buf);
    let mut enc = Encapsulator::new(VNI);
    let (sends, errors) = run(enc.encapsulate(PEER, &mut buf), &mut ok);
    assert_eq!(errors, 0);
    // Not all full-size (65000 % 1398 != 0): nothing held back.
    assert_eq!(enc.held(), 0);
    let shape: Vec<_> = sends.iter().map(|s| (s.tx.segment_len, s.tx.datagrams)).collect();
    assert_eq!(shape, [(Some(SEGMENT_LEN as u16), 44), (Some(SEGMENT_LEN as u16), 3)]);
    assert_eq!(all_datagrams(&sends), want);
    for d in &want {
        let ip = Ipv4Packet::new_checked(&d[8 + 14..]).unwrap();
        assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST)));
    }
}

#[test]
fn full_size_tails_are_carried_into_the_next_send_to_the_peer() {
    // 46 full segments a frame: 44 + 2 would make a send of 2 each time.
    let frames: Vec<Vec<u8>> =
        (0..3).map(|i| tso(&payload(46 * usize::from(MSS), i), MSS, 1 + (i * 46 * 1398) as u32)).collect();
    let want: Vec<Vec<u8>> = frames.iter().flat_map(|f| expected(f)).collect();
    let mut enc = Encapsulator::new(VNI);
    let mut sends = Vec::new();
    let mut counts = Vec::new();
    for f in &frames {
        let mut buf = f.clone();
        let (s, errors) = run(enc.encapsulate(PEER, &mut buf), &mut ok);
        assert_eq!(errors, 0);
        counts.push((s.iter().map(|s| s.tx.datagrams).collect::<Vec<_>>(), enc.held()));
        sends.extend(s);
    }
    assert_eq!(counts, [(vec![44], 2), (vec![44], 4), (vec![44], 6)]);
    let (s, errors) = run(enc.flush(), &mut ok);
    assert_eq!((s.len(), s[0].tx.datagrams, s[0].tx.to, errors), (1, 6, PEER, 0));
    assert_eq!(enc.held(), 0);
    sends.extend(s);
    assert_eq!(all_datagrams(&sends), want, "every datagram once, in order");
    assert!(run(enc.flush(), &mut ok).0.is_empty(), "nothing left to flush");
}

#[test]
fn held_datagrams_never_wait_behind_other_traffic() {
    let full = tso(&payload(46 * usize::from(MSS), 0), MSS, 1);
    let mut enc = Encapsulator::new(VNI);
    let tail = expected(&full)[44..].to_vec();
    run(enc.encapsulate(PEER, &mut full.clone()), &mut ok);
    assert_eq!(enc.held(), 2);
    // A plain frame: the carry leaves first, alone.
    let mut plain = with_vnet(&vnet::Repr::PLAIN, &[0x11; 60]);
    let (sends, _) = run(enc.encapsulate(PEER, &mut plain), &mut ok);
    assert_eq!(sends.len(), 2);
    assert_eq!((sends[0].tx.to, sends[0].datagrams.clone()), (PEER, tail.clone()));
    assert_eq!(sends[1].datagrams, [[&vxlan_header()[..], &[0x11; 60]].concat()]);
    // A super-frame to another peer: the carry goes to its own peer first.
    run(enc.encapsulate(PEER, &mut full.clone()), &mut ok);
    let mut other = tso(&payload(3000, 5), MSS, 1);
    let (sends, _) = run(enc.encapsulate(OTHER, &mut other), &mut ok);
    assert_eq!(sends[0].tx.to, PEER);
    assert_eq!(sends[0].datagrams, tail);
    assert!(sends[1..].iter().all(|s| s.tx.to == OTHER));
    assert_eq!(all_datagrams(&sends[1..]), expected(&other));
    // Another segment size to the same peer: flushed too.
    run(enc.encapsulate(PEER, &mut full.clone()), &mut ok);
    let mut small = tso(&payload(4 * 500, 5), 500, 1);
    let (sends, _) = run(enc.encapsulate(PEER, &mut small), &mut ok);
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].datagrams, tail);
    assert_eq!(enc.held(), 4, "a whole frame smaller than a send, all full-size, is held in turn");
    let (sends, _) = run(enc.flush(), &mut ok);
    assert_eq!(all_datagrams(&sends), expected(&small));
}

#[test]
fn a_refused_gso_send_is_retried_one_by_one_and_gso_given_up() {
    let mut buf = tso(&payload(10 * usize::from(MSS) + 1, 0), MSS, 1);
    let want = expected(&buf);
    let mut enc = Encapsulator::new(VNI);
    let mut plan = enc.encapsulate(PEER, &mut buf);
    let first = plan.next().unwrap();
    assert_eq!(first.datagrams, 11);
    assert_eq!(plan.sent(Err(SendError::GsoRefused)), Fallback::GsoOff);
    let (sends, errors) = run(plan, &mut ok);
    assert_eq!(errors, 0, "delivered after all");
    assert!(sends.iter().all(|s| s.tx.segment_len.is_none() && s.tx.retry));
    assert_eq!(all_datagrams(&sends), want);
    assert!(!enc.udp_gso());
    // From now on one by one from the start, nothing held back (a carry
    // only fills GSO sends).
    let mut buf = tso(&payload(46 * usize::from(MSS), 0), MSS, 1);
    let want = expected(&buf);
    let (sends, _) = run(enc.encapsulate(PEER, &mut buf), &mut ok);
    assert_eq!(enc.held(), 0);
    assert!(sends.iter().all(|s| s.tx.segment_len.is_none() && !s.tx.retry));
    assert_eq!(all_datagrams(&sends), want);
}

#[test]
fn other_send_errors_retry_once_and_keep_gso() {
    let mut buf = tso(&payload(3000, 0), MSS, 1);
    let mut enc = Encapsulator::new(VNI);
    let mut calls = 0;
    let (sends, errors) = run(enc.encapsulate(PEER, &mut buf), &mut |_| {
        calls += 1;
        if calls == 1 { Err(SendError::Other) } else { Ok(()) }
    });
    assert_eq!(errors, 0);
    assert_eq!(sends.iter().map(|s| s.tx.datagrams).collect::<Vec<_>>(), [3, 1, 1, 1]);
    assert!(enc.udp_gso());
    // One lost datagram in the retry makes the frame one error.
    let mut buf = tso(&payload(3000, 0), MSS, 1);
    let mut calls = 0;
    let (_, errors) = run(enc.encapsulate(PEER, &mut buf), &mut |_| {
        calls += 1;
        if calls <= 2 { Err(SendError::Other) } else { Ok(()) }
    });
    assert_eq!(errors, 1);
}

#[test]
fn a_full_socket_loses_the_send_without_retrying() {
    let mut buf = tso(&payload(3000, 0), MSS, 1);
    let mut enc = Encapsulator::new(VNI);
    let (sends, errors) = run(enc.encapsulate(PEER, &mut buf), &mut |_| Err(SendError::Full));
    assert_eq!((sends.len(), errors), (1, 1));
    assert!(enc.udp_gso());
    // A failed flush of held datagrams counts on its own.
    let mut full = tso(&payload(46 * usize::from(MSS), 0), MSS, 1);
    run(enc.encapsulate(PEER, &mut full), &mut ok);
    let mut plain = with_vnet(&vnet::Repr::PLAIN, &[0x22; 60]);
    let (sends, errors) = run(enc.encapsulate(PEER, &mut plain), &mut |_| Err(SendError::Full));
    assert_eq!((sends.len(), errors), (2, 2));
    assert_eq!(enc.held(), 0, "lost, not kept");
}

#[test]
fn frames_that_cannot_be_finished_are_one_error_and_send_nothing() {
    let mut enc = Encapsulator::new(VNI);
    let mut full = tso(&payload(46 * usize::from(MSS), 0), MSS, 1);
    run(enc.encapsulate(PEER, &mut full), &mut ok);
    let good = tso(&payload(3000, 0), MSS, 1);
    let mut v6 = good.clone();
    v6[1] = 4; // gso_type TCPV6
    let mut udp = good.clone();
    udp[vnet::HEADER_LEN + 14 + 9] = 17;
    let mut cut = good.clone();
    cut.truncate(vnet::HEADER_LEN + 40);
    let mut bad_csum = with_vnet(
        &vnet::Repr { flags: vnet::FLAG_NEEDS_CSUM, csum_start: 34, csum_offset: 200, ..vnet::Repr::PLAIN },
        &[0u8; 60],
    );
    for buf in [&mut v6, &mut udp, &mut cut, &mut bad_csum, &mut vec![0u8; 4]] {
        let (sends, errors) = run(enc.encapsulate(PEER, buf), &mut ok);
        assert_eq!((sends.len(), errors), (0, 1));
    }
    assert_eq!(enc.held(), 2, "the carry waits for the next good frame or flush");
}

#[test]
fn small_segments_stop_at_the_segment_limit() {
    let mut buf = tso(&payload(60_000, 0), 536, 1);
    let want = expected(&buf);
    let mut enc = Encapsulator::new(VNI);
    let (sends, _) = run(enc.encapsulate(PEER, &mut buf), &mut ok);
    assert_eq!(sends[0].tx.datagrams, MAX_SEGMENTS);
    let (flushed, _) = run(enc.flush(), &mut ok);
    let mut all = all_datagrams(&sends);
    all.extend(all_datagrams(&flushed));
    assert_eq!(all, want);
}
