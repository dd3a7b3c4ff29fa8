//! VXLAN datagrams from anyone on the underlay through
//! `Switch::process_overlay`.
//!
//! Input: `[sender][datagram...]`: the first byte picks the sender (one of
//! two peers, or a stranger), the rest is the UDP payload as the overlay
//! socket receives it. Checks: nothing panics, and anything forwarded goes
//! to an attached pod port. Forwarded frames then go through the receive
//! coalescer (`offload::gro`) as the data plane does, one pending super-frame
//! kept across inputs, so hostile segments meet real pending ones.
#![no_main]

use std::sync::LazyLock;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use netstack::Instant;
use netstack::offload::gro::{Gro, Push};
use netstack::overlay::DECAP_HEADROOM;
use netstack::switch::{MIN_REPLY_LEN, PortId, Switch, SwitchConfig, Verdict};
use netstack::testing::{self, Node, peer, underlay};
use netstack::wire::{ETHERNET_HEADER_LEN, Ipv4Address, Ipv4Packet, vnet};

/// Node 1, node 2 and a stranger.
const PEERS: [Ipv4Address; 3] = [underlay(1), underlay(2), Ipv4Address::new(192, 168, 250, 99)];

static GRO: LazyLock<Mutex<Gro>> = LazyLock::new(|| Mutex::new(Gro::new()));

static SWITCH: LazyLock<Mutex<(Switch, Vec<PortId>)>> = LazyLock::new(|| {
    // Host .1, pods .2 and .3, the overlay port; peers nodes 1 and 2.
    let node = Node::with_overlay(0, 2, SwitchConfig { max_ports: 4, ..testing::config(0) }, &[peer(1), peer(2)]);
    let mut ports = vec![node.host];
    ports.extend(&node.pods);
    ports.extend(node.overlay);
    Mutex::new((node.switch, ports))
});

fuzz_target!(|data: &[u8]| {
    let Some((&sel, datagram)) = data.split_first() else { return };
    let from = PEERS[sel as usize % PEERS.len()];
    let mut buf = vec![0u8; DECAP_HEADROOM + datagram.len()];
    buf[DECAP_HEADROOM..].copy_from_slice(datagram);
    let mut reply = vec![0u8; MIN_REPLY_LEN];
    let mut guard = SWITCH.lock().unwrap();
    let (switch, ports) = &mut *guard;
    if let Verdict::Forward { egress } = switch.process_overlay(Instant::ZERO, from, &mut buf, &mut reply) {
        assert!(ports.contains(&egress), "forwarded to an unattached port {egress:?}");
        let offload = vnet::Repr::parse(&vnet::Header::new_checked(&buf[..]).expect("a header on Forward"));
        let mut gro = GRO.lock().unwrap();
        for _ in 0..2 {
            match gro.push(&buf[vnet::HEADER_LEN..], &offload) {
                Push::Held => break,
                Push::Flush => check_finished(gro.finish()),
                Push::Alone => {
                    check_finished(gro.finish());
                    break;
                }
            }
        }
        if sel & 0x80 != 0 {
            check_finished(gro.finish());
        }
    }
});

/// A finished super-frame fits one IPv4 packet behind its headers.
fn check_finished(frame: Option<&[u8]>) {
    if let Some(frame) = frame {
        let headers = vnet::HEADER_LEN + ETHERNET_HEADER_LEN;
        assert!(frame.len() <= headers + 65_535);
        let ip = Ipv4Packet::new_unchecked(&frame[headers..]);
        assert_eq!(usize::from(ip.total_len()), frame.len() - headers);
    }
}
