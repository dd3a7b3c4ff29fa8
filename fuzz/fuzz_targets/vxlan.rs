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
use netstack::overlay::{DECAP_HEADROOM, OverlayConfig, OverlayPeer, vtep_mac};
use netstack::switch::{MIN_REPLY_LEN, PortId, PortKind, PortSpec, Switch, SwitchConfig, Verdict};
use netstack::offload::gro::{Gro, Push};
use netstack::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr, vnet};

const PEERS: [Ipv4Address; 3] = [
    Ipv4Address::new(192, 168, 250, 3),
    Ipv4Address::new(192, 168, 250, 4),
    Ipv4Address::new(192, 168, 250, 99),
];

fn subnet(n: u8) -> Ipv4Cidr {
    Ipv4Cidr::new(Ipv4Address::new(10, 244, n, 0), 24)
}

static GRO: LazyLock<Mutex<Gro>> = LazyLock::new(|| Mutex::new(Gro::new()));

static SWITCH: LazyLock<Mutex<(Switch, Vec<PortId>)>> = LazyLock::new(|| {
    let mut switch = Switch::new(SwitchConfig {
        subnet: subnet(0),
        max_ports: 4,
        overlay: OverlayConfig {
            cluster_cidr: Ipv4Cidr::new(Ipv4Address::new(10, 244, 0, 0), 16),
            vtep_mac: vtep_mac(subnet(0)),
            vni: 1,
            ..Default::default()
        },
        ..SwitchConfig::default()
    })
    .unwrap();
    let mac = |last| EthernetAddress([0x0a, 0x58, 10, 244, 0, last]);
    let ip = |last| Ipv4Address::new(10, 244, 0, last);
    let host = switch.attach(PortSpec { kind: PortKind::Host, mac: mac(1), ip: ip(1) }).unwrap();
    let pod = switch.attach(PortSpec { kind: PortKind::Pod, mac: mac(2), ip: ip(2) }).unwrap();
    let overlay = switch.attach(PortSpec {
        kind: PortKind::Overlay,
        mac: EthernetAddress([0; 6]),
        ip: Ipv4Address::UNSPECIFIED,
    });
    let peers: Vec<OverlayPeer> = (1..=2)
        .map(|n| OverlayPeer {
            subnet: subnet(n),
            underlay: PEERS[n as usize - 1],
            vtep_mac: vtep_mac(subnet(n)),
        })
        .collect();
    switch.set_overlay_peers(&peers).unwrap();
    let mut ports = vec![host, pod];
    ports.extend(overlay);
    Mutex::new((switch, ports))
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
        assert!(frame.len() <= vnet::HEADER_LEN + 14 + 65_535);
        let ip_len = u16::from_be_bytes([frame[vnet::HEADER_LEN + 16], frame[vnet::HEADER_LEN + 17]]);
        assert_eq!(usize::from(ip_len), frame.len() - vnet::HEADER_LEN - 14);
    }
}
