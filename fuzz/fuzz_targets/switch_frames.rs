//! Frames from hostile ports through `Switch::process`.
//!
//! Input: records of `[sel][dt][len_lo][len_hi][len bytes of frame]` (the last
//! record takes what is left). `sel & 7` picks the ingress port (host, three
//! pods, or one never attached); `dt` advances the clock by `dt` × 100 ms, and
//! expired flows are swept. `sel >= 0xf8` turns the record into a control
//! change instead (service backends, affinity, a pod leaving and coming
//! back, a NetworkPolicy table isolating some pods), so frames meet the tables in every state the agent can put them in.
//! Checks: nothing panics, a reply fits the reply buffer, a forward goes to an
//! attached port.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use netstack::conntrack::{Timeouts};
use netstack::Protocol;
use netstack::policy::{Isolation, ResolvedPeer, PolicyTable, PortRange, Rule};
use netstack::service::{Affinity, Backend, ServiceConfig, ServiceKey};
use netstack::switch::{MIN_REPLY_LEN, PortId, PortKind, PortSpec, Switch, SwitchConfig, Verdict};
use netstack::testing::{self, Node, VIP, ip, mac};
use netstack::wire::Ipv4Address;
use netstack::{Duration, Instant};

const EMPTY_VIP: Ipv4Address = Ipv4Address::new(10, 96, 0, 11);

fn pod(last: u8) -> PortSpec {
    PortSpec { kind: PortKind::Pod, mac: mac(last), ip: ip(last).into() }
}

fn backends(mask: u8) -> Vec<Backend> {
    (2..=4u8).filter(|i| mask & (1 << (i - 2)) != 0).map(|i| Backend { ip: ip(i).into(), port: 8080 }).collect()
}

fn keys() -> [ServiceKey; 3] {
    [
        ServiceKey { vip: VIP.into(), port: 80, proto: Protocol::Tcp },
        ServiceKey { vip: VIP.into(), port: 53, proto: Protocol::Udp },
        ServiceKey { vip: EMPTY_VIP.into(), port: 80, proto: Protocol::Tcp },
    ]
}

fn switch() -> (Switch, [PortId; 5]) {
    let config = SwitchConfig {
        max_ports: 6,
        // Small tables, short timeouts: full tables and expiry are reachable.
        services: ServiceConfig {
            max_services: 4,
            max_backends: 4,
            max_flows: 16,
            // Below the table: both a pod's quota and a full table are reachable.
            max_flows_per_pod: 6,
            max_affinities: 4,
            timeouts: Timeouts {
                tcp_syn: Duration::from_secs(2),
                tcp_established: Duration::from_secs(20),
                tcp_closing: Duration::from_secs(5),
                tcp_closed: Duration::from_secs(1),
                udp: Duration::from_secs(3),
            },
            hash_seed: 0x5eed,
        },
        ..testing::config(0)
    };
    // Host .1, pods .2, .3, .4.
    let Node { mut switch, host, pods, .. } = Node::new(0, 3, config);
    let [a, b, c] = [pods[0], pods[1], pods[2]];
    let [tcp, udp, empty] = keys();
    switch.upsert_service(tcp, &backends(0b111), Affinity::None).unwrap();
    switch.upsert_service(udp, &backends(0b011), Affinity::None).unwrap();
    switch.upsert_service(empty, &[], Affinity::None).unwrap();
    (switch, [host, a, b, c, PortId(5)])
}

fn control(switch: &mut Switch, ports: &mut [PortId; 5], op: &[u8]) {
    let (Some(&what), arg) = (op.first(), op.get(1).copied().unwrap_or(0)) else { return };
    let key = keys()[usize::from(arg >> 6) % 3];
    match what % 6 {
        0 => {
            let _ = switch.upsert_service(key, &backends(arg), Affinity::None);
        }
        1 => {
            let timeout = Duration::from_secs(u64::from(arg & 0x3f));
            let _ = switch.set_service_affinity(key, Affinity::ClientIp { timeout });
        }
        2 => {
            let _ = switch.remove_service(&key);
        }
        3 => {
            // Pod c leaves (its flows stay in conntrack) and comes back.
            if switch.detach(ports[3]).is_some() {
                ports[3] = switch.attach(pod(4)).unwrap();
            }
        }
        5 => {
            let _ = switch.set_policy(policy(arg));
        }
        _ => {
            let _ = switch.upsert_service(
                key,
                &backends(arg),
                Affinity::ClientIp { timeout: Duration::from_secs(10) },
            );
        }
    }
}

/// A policy table from one byte: bits 0-2 isolate pods .2-.4 for ingress,
/// bits 3-5 for egress; bit 6 gives each isolated pod a rule admitting pod
/// .2 on TCP 8080, bit 7 one admitting any peer on UDP 53.
fn policy(bits: u8) -> PolicyTable {
    let mut rules = Vec::new();
    if bits & 0x40 != 0 {
        let port = PortRange { protocol: Protocol::Tcp, first: 8080, last: 8080 };
        rules.push(Rule { peers: vec![ResolvedPeer::pods(vec![ip(2)])], ports: vec![port] });
    }
    if bits & 0x80 != 0 {
        rules.push(Rule { peers: vec![], ports: vec![PortRange { protocol: Protocol::Udp, first: 53, last: 53 }] });
    }
    let pods = (0..3u8).map(|i| {
        let side = |bit: u8| (bits & (1 << bit) != 0).then(|| rules.clone());
        (ip(2 + i), Isolation { ingress: side(i), egress: side(i + 3) })
    });
    PolicyTable::new(ip(1), pods)
}

/// `FUZZ_DEBUG=1` prints every verdict (to check what a seed exercises).
static DEBUG: LazyLock<bool> = LazyLock::new(|| std::env::var_os("FUZZ_DEBUG").is_some());

fuzz_target!(|data: &[u8]| {
    let (mut switch, mut ports) = switch();
    let mut reply = [0u8; MIN_REPLY_LEN];
    let mut now = Instant::from_secs(1);
    let mut rest = data;
    while rest.len() >= 2 {
        let (sel, dt) = (rest[0], rest[1]);
        rest = &rest[2..];
        let len = match rest {
            [lo, hi, tail @ ..] => {
                rest = tail;
                usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len())
            }
            _ => rest.len(),
        };
        let (frame, tail) = rest.split_at(len);
        rest = tail;

        now += Duration::from_millis(u64::from(dt) * 100);
        switch.expire_flows(now);
        if sel >= 0xf8 {
            control(&mut switch, &mut ports, frame);
            continue;
        }
        let ingress = ports[usize::from(sel & 7) % ports.len()];
        let mut frame = frame.to_vec();
        let verdict = switch.process(now, ingress, &mut frame, &mut reply);
        if *DEBUG {
            eprintln!("{now}: {} bytes on {ingress:?} -> {verdict:?}", frame.len());
        }
        match verdict {
            Verdict::Reply { len } => {
                assert!(len <= reply.len(), "reply of {len} bytes overflows the buffer")
            }
            Verdict::Forward { egress } => {
                assert!(switch.port(egress).is_some(), "forward to a detached port")
            }
            Verdict::Upstream(up) => {
                assert!(up.range().end <= frame.len(), "upstream query outside the frame")
            }
            Verdict::Encapsulate { .. } | Verdict::Drop(_) => {}
        }
    }
});
