//! Outbound overlay batching (issue #12): frames from pods, TSO
//! super-frames included, through netstack's encapsulation step
//! (`overlay::transmit`: segmentation, UDP GSO batches, the carry of
//! full-size tails, the fall-back to datagram-by-datagram sends).
//!
//! Input: `[control][outcomes: 4][header: 10][frame...]`. `control` bit 0
//! picks one of two peers, bit 1 flushes the carry after the frame, bit 2
//! starts a fresh encapsulator (one is kept across inputs, so a hostile
//! frame meets a real carry), bit 3 replaces the virtio-net header with a
//! TCP/IPv4 GSO one whose `gso_size` is the header's first two bytes. Each
//! send is answered by the next outcome byte: success, a full socket, GSO
//! refused, or another error.
//!
//! Checks: every part lies in its buffer and adds up to the send's length;
//! a GSO send holds 2..=64 datagrams, at most 65507 bytes, each but the
//! last exactly `UDP_SEGMENT` long; every datagram starts with a VXLAN
//! header of our VNI and, for a cut super-frame, holds one whole IPv4
//! packet with a valid header checksum; no datagram is lost or doubled:
//! what was sent, lost to a full socket and held back adds up to what the
//! frame makes.
#![no_main]

use std::sync::LazyLock;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use netstack::offload::gso::{self, Segments, Work};
use netstack::offload::vxlan_batch::{MAX_SEGMENTS, MAX_UDP_PAYLOAD};
use netstack::overlay::transmit::{Buffer, Encapsulator, Plan, SendError};
use netstack::testing::underlay;
use netstack::wire::{Ipv4Address, Ipv4Packet, vnet, vxlan};

const VNI: u32 = 0x0012_3456;
const PEERS: [Ipv4Address; 2] = [underlay(1), underlay(2)];

static ENCAP: LazyLock<Mutex<Encapsulator>> = LazyLock::new(|| Mutex::new(Encapsulator::new(VNI)));

/// How many datagrams `buf` makes, as the encapsulation step should see it.
fn expected(buf: &[u8]) -> usize {
    let Ok(header) = vnet::Header::new_checked(buf) else { return 0 };
    let offload = vnet::Repr::parse(&header);
    let mut frame = buf[vnet::HEADER_LEN..].to_vec();
    match gso::work(&offload) {
        Ok(Work::None) => 1,
        Ok(Work::Checksum) => usize::from(gso::complete_checksum(&mut frame, &offload).is_ok()),
        Ok(Work::SegmentTcpV4) => Segments::new(&frame, &offload).map_or(0, |s| s.count()),
        Err(_) => 0,
    }
}

/// Runs a plan, checking every send; returns datagrams sent or lost.
fn drive(mut plan: Plan<'_>, frame_len: usize, cut: bool, outcomes: &[u8]) -> usize {
    let mut out = 0;
    let mut sends = 0usize;
    while let Some(tx) = plan.next() {
        let mut gathered = Vec::with_capacity(tx.len);
        for part in plan.parts() {
            assert!(part.range.start <= part.range.end);
            if part.buffer == Buffer::Frame {
                assert!(part.range.end <= frame_len, "frame part out of bounds");
            }
            if part.buffer == Buffer::Carry {
                assert!(part.range.end <= MAX_UDP_PAYLOAD, "carry beyond one send");
            }
            gathered.extend_from_slice(plan.bytes(part));
        }
        assert_eq!(gathered.len(), tx.len);
        let size = match tx.segment_len {
            Some(size) => {
                assert!((2..=MAX_SEGMENTS).contains(&tx.datagrams), "{} datagrams", tx.datagrams);
                assert!(tx.len <= MAX_UDP_PAYLOAD);
                usize::from(size)
            }
            None => {
                assert_eq!(tx.datagrams, 1);
                tx.len
            }
        };
        let datagrams: Vec<&[u8]> = gathered.chunks(size.max(1)).collect();
        assert_eq!(datagrams.len(), tx.datagrams);
        for d in &datagrams {
            let vx = vxlan::Packet::new_checked(*d).expect("a VXLAN header");
            assert_eq!(vxlan::Repr::parse(&vx), Ok(vxlan::Repr { vni: VNI }));
            // A cut segment, or a carried one (always cut), is a whole packet.
            if cut || tx.segment_len.is_some() {
                let ip = Ipv4Packet::new_checked(&d[vxlan::HEADER_LEN + 14..]).expect("an IPv4 header");
                assert!(ip.verify_checksum());
                assert_eq!(usize::from(ip.total_len()), d.len() - vxlan::HEADER_LEN - 14);
            }
        }
        let answer = outcomes[sends % outcomes.len()];
        sends += 1;
        let result = match answer % 8 {
            5 => Err(SendError::Full),
            6 => Err(SendError::GsoRefused),
            7 => Err(SendError::Other),
            _ => Ok(()),
        };
        // A refused GSO send comes again one by one: counted then.
        let retried = tx.segment_len.is_some() && matches!(result, Err(SendError::GsoRefused | SendError::Other));
        if !retried {
            out += tx.datagrams;
        }
        plan.sent(result);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 15 {
        return;
    }
    let control = data[0];
    let outcomes = &data[1..5];
    let mut buf = data[5..].to_vec();
    if control & 8 != 0 {
        let gso_size = u16::from_le_bytes([buf[0], buf[1]]);
        let tso = vnet::Repr {
            flags: vnet::FLAG_NEEDS_CSUM,
            gso: vnet::Gso::TcpV4,
            ecn: false,
            hdr_len: 54,
            gso_size,
            csum_start: 34,
            csum_offset: 16,
        };
        tso.emit(&mut vnet::Header::new_checked(&mut buf[..]).unwrap());
    }
    let mut encap = ENCAP.lock().unwrap();
    if control & 4 != 0 {
        *encap = Encapsulator::new(VNI);
    }
    let want = expected(&buf);
    let cut = vnet::Header::new_checked(&buf[..]).is_ok_and(|h| vnet::Repr::parse(&h).gso != vnet::Gso::None);
    let held_before = encap.held();
    let frame_len = buf.len();
    let peer = PEERS[usize::from(control & 1)];
    let mut out = drive(encap.encapsulate(peer, &mut buf), frame_len, cut, outcomes);
    if control & 2 != 0 {
        out += drive(encap.flush(), 0, true, outcomes);
        assert_eq!(encap.held(), 0);
    }
    assert!(encap.held() < MAX_SEGMENTS);
    assert_eq!(out + encap.held(), held_before + want, "datagrams lost or doubled");
});
