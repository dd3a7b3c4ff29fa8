//! NetworkPolicy in the switch, in bytes: first packets judged and counted,
//! admitted connections tracked so their replies pass, Service traffic
//! judged on its backend, cluster DNS under an egress policy, the node
//! exempt, a changed policy closing what it no longer admits, and the
//! overlay judged on both nodes.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::wire::TcpControl;

use super::*;
use crate::overlay::{DECAP_HEADROOM, OverlayConfig};
use crate::policy::{Isolation, PortRange, ResolvedPeer, Rule};
use crate::service::{Affinity, Backend, ServiceKey};
use crate::testing::{self, NOW, Node, Tcp, Udp, VIP, at, ip, mac, peer, pod_ip, pod_mac, subnet, underlay};
use crate::wire::vxlan;

/// Host .1, pods .2 (a), .3 (b), .4 (c); the cluster DNS away from VIP.
fn node() -> Node {
    Node::new(
        0,
        3,
        SwitchConfig { max_ports: 8, cluster_dns: Ipv4Address::new(10, 96, 0, 53), ..testing::config(0) },
    )
}

fn syn(src: (Ipv4Address, u16), dst: (Ipv4Address, u16)) -> Vec<u8> {
    Tcp { eth_dst: mac(1), control: TcpControl::Syn, ack: None, ..Tcp::new(src, dst, &[]) }.vnet()
}

fn syn_ack(src: (Ipv4Address, u16), dst: (Ipv4Address, u16)) -> Vec<u8> {
    Tcp { eth_dst: mac(1), control: TcpControl::Syn, ack: Some(1001), ..Tcp::new(src, dst, &[]) }.vnet()
}

fn data(src: (Ipv4Address, u16), dst: (Ipv4Address, u16)) -> Vec<u8> {
    Tcp { eth_dst: mac(1), ..Tcp::new(src, dst, b"data") }.vnet()
}

fn udp(src: (Ipv4Address, u16), dst: (Ipv4Address, u16)) -> Vec<u8> {
    Udp { eth_dst: mac(1), ..Udp::new(src, dst, b"datagram") }.vnet()
}

/// A DNS query for `a.` (id 7, recursion desired) from `src` to `dns`:53.
fn dns_query(src: Ipv4Address, dns: Ipv4Address) -> Vec<u8> {
    let query = [0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1];
    Udp { eth_dst: mac(1), ..Udp::new((src, 40000), (dns, 53), &query) }.vnet()
}

fn send(n: &mut Node, last: u8, mut frame: Vec<u8>) -> Verdict {
    n.send(NOW, n.port(last), &mut frame, 512).0
}

fn fwd(n: &Node, last: u8) -> Verdict {
    Verdict::Forward { egress: n.port(last) }
}

fn stats(n: &Node, last: u8) -> PortStats {
    *n.switch.port(n.port(last)).unwrap().1
}

fn tcp_ports(first: u16, last: u16) -> PortRange {
    PortRange { protocol: Protocol::Tcp, first, last }
}

/// `pod` admits connections only as `rules` say (an empty list: none).
fn ingress_only(pod: Ipv4Address, rules: Vec<Rule>) -> PolicyTable {
    PolicyTable::new(ip(1), [(pod, Isolation { ingress: Some(rules), egress: None })])
}

/// `pod` opens connections only as `rules` say.
fn egress_only(pod: Ipv4Address, rules: Vec<Rule>) -> PolicyTable {
    PolicyTable::new(ip(1), [(pod, Isolation { ingress: None, egress: Some(rules) })])
}

#[test]
fn without_isolated_pods_nothing_is_judged_or_tracked() {
    let mut n = node();
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (ip(3), 80))), fwd(&n, 3));
    assert!(n.switch.conntrack().is_empty(), "no flow for unpoliced traffic");
    // A table isolating only pod c leaves a ↔ b untracked too.
    n.switch.set_policy(ingress_only(ip(4), vec![]));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40001), (ip(3), 80))), fwd(&n, 3));
    assert!(n.switch.conntrack().is_empty());
}

#[test]
fn default_deny_ingress_drops_and_counts_on_both_pods() {
    let mut n = node();
    n.switch.set_policy(ingress_only(ip(3), vec![]));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (ip(3), 80))), Verdict::Drop(DropReason::PolicyIngress));
    assert_eq!(send(&mut n, 2, udp((ip(2), 40000), (ip(3), 53))), Verdict::Drop(DropReason::PolicyIngress));
    assert_eq!(stats(&n, 2).dropped(DropReason::PolicyIngress), 2, "on the port it came in by");
    assert_eq!(stats(&n, 3).ingress_denied, 2, "on the pod whose policy refused it");
    assert_eq!(stats(&n, 3).rx_packets + stats(&n, 3).tx_packets, 0, "nothing reached b");
    // b itself may still open connections: it is isolated for ingress only,
    // and a's reply is a reply.
    assert_eq!(send(&mut n, 3, syn((ip(3), 41000), (ip(2), 80))), fwd(&n, 2));
    assert_eq!(send(&mut n, 2, syn_ack((ip(2), 80), (ip(3), 41000))), fwd(&n, 3));
}

#[test]
fn an_admitted_connection_is_tracked_and_its_replies_pass() {
    let mut n = node();
    let from_a = Rule { peers: vec![ResolvedPeer::pods(vec![ip(2)])], ports: vec![tcp_ports(80, 80)] };
    // a and b are both isolated for ingress: a admits nobody, so b's reply
    // gets to it only as a reply of a tracked connection.
    n.switch.set_policy(PolicyTable::new(
        ip(1),
        [
            (ip(3), Isolation { ingress: Some(vec![from_a]), egress: None }),
            (ip(2), Isolation { ingress: Some(vec![]), egress: None }),
        ],
    ));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (ip(3), 80))), fwd(&n, 3));
    assert_eq!(n.switch.conntrack().len(), 1);
    assert_eq!(send(&mut n, 3, syn_ack((ip(3), 80), (ip(2), 40000))), fwd(&n, 2), "the reply");
    assert_eq!(send(&mut n, 2, data((ip(2), 40000), (ip(3), 80))), fwd(&n, 3));
    assert_eq!(send(&mut n, 3, data((ip(3), 80), (ip(2), 40000))), fwd(&n, 2));
    assert_eq!(n.switch.conntrack().len(), 1, "one flow for the connection");

    // Another port, another peer, or b opening to a: refused.
    let denied = Verdict::Drop(DropReason::PolicyIngress);
    assert_eq!(send(&mut n, 2, syn((ip(2), 40001), (ip(3), 81))), denied);
    assert_eq!(send(&mut n, 4, syn((ip(4), 40000), (ip(3), 80))), denied);
    assert_eq!(send(&mut n, 3, syn((ip(3), 40000), (ip(2), 80))), denied);
    // A stray segment of no connection is judged like a first packet.
    assert_eq!(send(&mut n, 3, data((ip(3), 80), (ip(2), 40002))), denied);
}

#[test]
fn the_frames_of_a_tracked_connection_are_not_rewritten() {
    let mut n = node();
    n.switch.set_policy(ingress_only(ip(3), vec![Rule::default()]));
    let first = syn((ip(2), 40000), (ip(3), 80));
    let mut frame = first.clone();
    assert_eq!(n.send(NOW, n.a, &mut frame, 128).0, fwd(&n, 3));
    let mut second = data((ip(2), 40000), (ip(3), 80));
    let before = second.clone();
    assert_eq!(n.send(NOW, n.a, &mut second, 128).0, fwd(&n, 3));
    let l2 = vnet::HEADER_LEN + 12;
    assert_eq!(second[l2..], before[l2..], "only the destination MAC changes");
}

#[test]
fn egress_isolation_judges_the_source_and_allows_listed_blocks() {
    let mut n = node();
    let lan = Ipv4Cidr::new(Ipv4Address::new(192, 168, 0, 0), 16);
    let except = Ipv4Cidr::new(Ipv4Address::new(192, 168, 9, 0), 24);
    let to_lan = Rule { peers: vec![ResolvedPeer::Block { cidr: lan, except: vec![except] }], ports: vec![] };
    n.switch.set_policy(egress_only(ip(2), vec![to_lan]));
    let denied = Verdict::Drop(DropReason::PolicyEgress);
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (ip(3), 80))), denied);
    assert_eq!(stats(&n, 2).dropped(DropReason::PolicyEgress), 1);
    assert_eq!(stats(&n, 3).ingress_denied, 0, "an egress denial is the sender's");
    // Off the subnet: to the node's kernel (no egress endpoint here).
    let outside = Ipv4Address::new(192, 168, 1, 50);
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (outside, 443))), fwd(&n, 1));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (Ipv4Address::new(192, 168, 9, 9), 443))), denied);
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (Ipv4Address::new(1, 1, 1, 1), 443))), denied);
}

#[test]
fn the_node_is_exempt_both_ways() {
    let mut n = node();
    n.switch.set_policy(PolicyTable::new(
        ip(1),
        [(ip(3), Isolation { ingress: Some(vec![]), egress: Some(vec![]) })],
    ));
    let mut probe = Tcp {
        eth_src: mac(1),
        eth_dst: mac(3),
        control: TcpControl::Syn,
        ack: None,
        ..Tcp::new((ip(1), 50000), (ip(3), 8080), &[])
    }
    .vnet();
    assert_eq!(n.send(NOW, n.host, &mut probe, 128).0, fwd(&n, 3), "a probe from the node");
    assert_eq!(send(&mut n, 3, syn_ack((ip(3), 8080), (ip(1), 50000))), fwd(&n, 1));
    assert!(n.switch.conntrack().is_empty(), "node traffic is never judged, so never tracked");
}

#[test]
fn service_traffic_is_judged_on_the_backend_it_picks() {
    let mut n = node();
    let key = ServiceKey { vip: VIP.into(), port: 80, proto: Protocol::Tcp };
    n.switch.upsert_service(key, &[Backend { ip: ip(3).into(), port: 8080 }], Affinity::None).unwrap();
    // b admits a on 8080 — the backend's port, not the Service's.
    let rule = Rule { peers: vec![ResolvedPeer::pods(vec![ip(2)])], ports: vec![tcp_ports(8080, 8080)] };
    n.switch.set_policy(ingress_only(ip(3), vec![rule]));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (VIP, 80))), fwd(&n, 3));
    assert_eq!(send(&mut n, 3, syn_ack((ip(3), 8080), (ip(2), 40000))), fwd(&n, 2), "un-NAT'd reply");
    assert_eq!(send(&mut n, 4, syn((ip(4), 40000), (VIP, 80))), Verdict::Drop(DropReason::PolicyIngress));
    assert_eq!(stats(&n, 3).ingress_denied, 1);
    assert_eq!(n.switch.conntrack().len(), 1, "no flow for the refused connection");
}

#[test]
fn cluster_dns_needs_an_egress_allow_under_an_egress_policy() {
    let mut n = node();
    let dns = Ipv4Address::new(10, 96, 0, 53);
    n.switch.set_policy(egress_only(ip(2), vec![]));
    assert_eq!(send(&mut n, 2, dns_query(ip(2), dns)), Verdict::Drop(DropReason::PolicyEgress));
    let dns_port = PortRange { protocol: Protocol::Udp, first: 53, last: 53 };
    n.switch.set_policy(egress_only(ip(2), vec![Rule { peers: vec![], ports: vec![dns_port] }]));
    // Out of the zone, so relayed upstream: past policy.
    assert!(matches!(send(&mut n, 2, dns_query(ip(2), dns)), Verdict::Upstream(_)));
    assert!(n.switch.conntrack().is_empty(), "the switch's own answer needs no flow");
}

#[test]
fn a_changed_policy_closes_the_flows_it_no_longer_admits() {
    let mut n = node();
    let from = |last| Rule { peers: vec![ResolvedPeer::pods(vec![ip(last)])], ports: vec![] };
    n.switch.set_policy(ingress_only(ip(3), vec![from(2), from(4)]));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (ip(3), 80))), fwd(&n, 3));
    assert_eq!(send(&mut n, 4, syn((ip(4), 40000), (ip(3), 80))), fwd(&n, 3));
    assert_eq!(n.switch.set_policy(ingress_only(ip(3), vec![from(4)])), 1, "a's flow went");
    assert_eq!(send(&mut n, 2, data((ip(2), 40000), (ip(3), 80))), Verdict::Drop(DropReason::PolicyIngress));
    assert_eq!(send(&mut n, 4, data((ip(4), 40000), (ip(3), 80))), fwd(&n, 3), "c's goes on");
    // Policy gone: the remaining flow is harmless and everything passes.
    assert_eq!(n.switch.set_policy(PolicyTable::default()), 0);
    assert_eq!(send(&mut n, 2, data((ip(2), 40000), (ip(3), 80))), fwd(&n, 3));
}

#[test]
fn admitted_flows_count_against_the_senders_quota() {
    let mut n = Node::new(
        0,
        3,
        SwitchConfig {
            max_ports: 8,
            services: crate::service::ServiceConfig { max_flows_per_pod: 2, ..Default::default() },
            ..testing::config(0)
        },
    );
    n.switch.set_policy(ingress_only(ip(3), vec![Rule::default()]));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40000), (ip(3), 80))), fwd(&n, 3));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40001), (ip(3), 80))), fwd(&n, 3));
    assert_eq!(send(&mut n, 2, syn((ip(2), 40002), (ip(3), 80))), Verdict::Drop(DropReason::FlowQuota));
    assert_eq!(send(&mut n, 4, syn((ip(4), 40000), (ip(3), 80))), fwd(&n, 3), "c has its own share");
    // Flows expire like any other; then there is room again.
    n.switch.expire_flows(at(3600));
    assert_eq!(n.send(at(3600), n.a, &mut syn((ip(2), 40002), (ip(3), 80)), 128).0, fwd(&n, 3));
}

/// Node `n` with an overlay port to the other of nodes 0 and 1.
fn overlay_node(n: u8) -> Node {
    let config = SwitchConfig { max_ports: 8, ..testing::config(n) };
    let config = SwitchConfig { overlay: OverlayConfig { vni: 1, ..config.overlay }, ..config };
    Node::with_overlay(n, 2, config, &[peer(1 - n)])
}

/// Hands node `to` the datagram its peer `from` sends for `frame`.
fn across(to: &mut Node, from: u8, frame: &[u8]) -> Verdict {
    let mut datagram = frame[DECAP_HEADROOM..].to_vec();
    vxlan::Repr { vni: 1 }.emit(&mut vxlan::Packet::new_unchecked(&mut datagram[..]));
    let mut buf = vec![0u8; DECAP_HEADROOM];
    buf.extend_from_slice(&datagram);
    let mut reply = [0u8; 128];
    to.switch.process_overlay(NOW, underlay(from), &mut buf, &mut reply)
}

#[test]
fn across_the_overlay_each_node_judges_and_tracks() {
    let (mut n0, mut n1) = (overlay_node(0), overlay_node(1));
    // Pod 0.3 admits 1.2 only; both nodes hold the same table.
    let rule = Rule { peers: vec![ResolvedPeer::pods(vec![pod_ip(1, 2)])], ports: vec![] };
    for n in [&mut n0, &mut n1] {
        n.switch.set_policy(PolicyTable::new(
            n.switch.gateway(),
            [(pod_ip(0, 3), Isolation { ingress: Some(vec![rule.clone()]), egress: None })],
        ));
    }
    let tcp = |src, dst, control| {
        Tcp {
            eth_src: pod_mac(subnet_of(src), src.octets()[3]),
            eth_dst: pod_mac(subnet_of(src), 1),
            control,
            ack: None,
            ..Tcp::new((src, 40000), (dst, 80), &[])
        }
        .vnet()
    };
    // 1.3 → 0.3: refused on the source's node already.
    let mut frame = tcp(pod_ip(1, 3), pod_ip(0, 3), TcpControl::Syn);
    assert_eq!(n1.send(NOW, n1.b, &mut frame, 128).0, Verdict::Drop(DropReason::PolicyIngress));
    // 1.2 → 0.3: admitted on node 1, sent across, admitted again on node 0.
    let mut frame = tcp(pod_ip(1, 2), pod_ip(0, 3), TcpControl::Syn);
    assert_eq!(n1.send(NOW, n1.a, &mut frame, 128).0, Verdict::Encapsulate { peer: underlay(0) });
    assert_eq!(across(&mut n0, 1, &frame), Verdict::Forward { egress: n0.b });
    assert_eq!(n0.switch.conntrack().len(), 1, "tracked on the destination's node");
    // A node whose table is stale or forged by its pods' sender cannot
    // get past the destination's node: node 1 without policy sends, node 0 drops.
    n1.switch.set_policy(PolicyTable::default());
    let mut frame = tcp(pod_ip(1, 3), pod_ip(0, 3), TcpControl::Syn);
    assert_eq!(n1.send(NOW, n1.b, &mut frame, 128).0, Verdict::Encapsulate { peer: underlay(0) });
    assert_eq!(across(&mut n0, 1, &frame), Verdict::Drop(DropReason::PolicyIngress));
    let overlay = n0.overlay_port();
    assert_eq!(n0.switch.port(overlay).unwrap().1.dropped(DropReason::PolicyIngress), 1);
    assert_eq!(n0.switch.port(n0.b).unwrap().1.ingress_denied, 1);
}

/// The node number of a test pod address (10.244.n.x).
fn subnet_of(ip: Ipv4Address) -> u8 {
    let n = ip.octets()[2];
    debug_assert!(subnet(n).contains_addr(&ip));
    n
}
