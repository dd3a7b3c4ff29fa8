//! The verdicts of the Kubernetes NetworkPolicy examples, on addresses:
//! pods a, b, c in namespace x and a, b in y, the node's gateway, and a lan
//! host, as the runtime would compile the policies.

use alloc::vec;
use alloc::vec::Vec;

use super::*;

const NODE: Ipv4Address = Ipv4Address::new(10, 244, 0, 1);
const XA: Ipv4Address = Ipv4Address::new(10, 244, 0, 2);
const XB: Ipv4Address = Ipv4Address::new(10, 244, 0, 3);
const XC: Ipv4Address = Ipv4Address::new(10, 244, 0, 4);
const YA: Ipv4Address = Ipv4Address::new(10, 244, 1, 2);
const YB: Ipv4Address = Ipv4Address::new(10, 244, 1, 3);
const LAN: Ipv4Address = Ipv4Address::new(192, 168, 1, 50);
const PODS: [Ipv4Address; 5] = [XA, XB, XC, YA, YB];

fn tcp(src: Ipv4Address, dst: Ipv4Address, port: u16) -> Connection {
    Connection { src, dst, port: Some((Protocol::Tcp, port)) }
}

fn udp(src: Ipv4Address, dst: Ipv4Address, port: u16) -> Connection {
    Connection { src, dst, port: Some((Protocol::Udp, port)) }
}

fn ping(src: Ipv4Address, dst: Ipv4Address) -> Connection {
    Connection { src, dst, port: None }
}

fn ports(protocol: Protocol, first: u16, last: u16) -> PortRange {
    PortRange { protocol, first, last }
}

fn cidr(a: [u8; 4], len: u8) -> Ipv4Cidr {
    Ipv4Cidr::new(Ipv4Address::from(a), len)
}

fn ingress(rules: Vec<Rule>) -> Isolation {
    Isolation { ingress: Some(rules), egress: None }
}

fn egress(rules: Vec<Rule>) -> Isolation {
    Isolation { ingress: None, egress: Some(rules) }
}

/// Every ordered pair of distinct pods on port 80/TCP, allowed or not.
fn matrix(table: &PolicyTable) -> Vec<(Ipv4Address, Ipv4Address, bool)> {
    let mut out = Vec::new();
    for src in PODS {
        for dst in PODS.into_iter().filter(|d| *d != src) {
            out.push((src, dst, table.judge(&tcp(src, dst, 80)) == Judgement::Allowed));
        }
    }
    out
}

#[test]
fn without_policies_everything_is_allowed_and_the_table_is_empty() {
    let table = PolicyTable::new(NODE, [(XA, Isolation::default())]);
    assert!(table.is_empty(), "a pod no policy isolates is not kept");
    assert!(matrix(&table).iter().all(|(_, _, ok)| *ok));
    assert_eq!(table.judge(&ping(XA, LAN)), Judgement::Allowed);
}

#[test]
fn default_deny_ingress_isolates_one_direction_only() {
    let table = PolicyTable::new(NODE, [(XA, ingress(vec![]))]);
    assert!(table.isolates(XA) && !table.isolates(XB));
    for (src, dst, ok) in matrix(&table) {
        assert_eq!(ok, dst != XA, "{src} -> {dst}");
    }
    assert_eq!(table.judge(&tcp(XB, XA, 80)), Judgement::Denied(Direction::Ingress));
    assert_eq!(table.judge(&udp(XB, XA, 53)), Judgement::Denied(Direction::Ingress));
    assert_eq!(table.judge(&ping(YA, XA)), Judgement::Denied(Direction::Ingress));
    assert_eq!(table.judge(&tcp(XA, LAN, 443)), Judgement::Allowed, "its egress is not isolated");
}

#[test]
fn default_deny_egress_stops_everything_the_pod_opens_even_dns() {
    let table = PolicyTable::new(NODE, [(XA, egress(vec![]))]);
    for (src, dst, ok) in matrix(&table) {
        assert_eq!(ok, src != XA, "{src} -> {dst}");
    }
    // DNS to the cluster DNS is egress like any other (the switch answers
    // it, but Kubernetes asks for an allow all the same).
    let dns = Ipv4Address::new(10, 96, 0, 10);
    assert_eq!(table.judge(&udp(XA, dns, 53)), Judgement::Denied(Direction::Egress));
    assert_eq!(table.judge(&tcp(XA, LAN, 80)), Judgement::Denied(Direction::Egress));
}

#[test]
fn the_node_and_the_pod_itself_are_always_allowed() {
    let table = PolicyTable::new(NODE, [(XA, Isolation { ingress: Some(vec![]), egress: Some(vec![]) })]);
    assert_eq!(table.judge(&tcp(NODE, XA, 8080)), Judgement::Allowed, "probes");
    assert_eq!(table.judge(&tcp(XA, NODE, 10250)), Judgement::Allowed);
    assert_eq!(table.judge(&tcp(XA, XA, 80)), Judgement::Allowed, "loopback through its own IP");
    assert_eq!(table.judge(&tcp(XB, XA, 80)), Judgement::Denied(Direction::Ingress));
}

#[test]
fn a_pod_selector_allows_only_its_pods_on_any_port() {
    // x/a accepts from x/b only (podSelector app=b in namespace x).
    let table = PolicyTable::new(
        NODE,
        [(XA, ingress(vec![Rule { peers: vec![ResolvedPeer::pods(vec![XB])], ports: vec![] }]))],
    );
    for (src, dst, ok) in matrix(&table) {
        assert_eq!(ok, dst != XA || src == XB, "{src} -> {dst}");
    }
    assert_eq!(table.judge(&udp(XB, XA, 9999)), Judgement::Allowed, "no ports: every port and protocol");
    assert_eq!(table.judge(&ping(XB, XA)), Judgement::Allowed);
}

#[test]
fn a_namespace_selector_resolves_to_every_pod_of_the_namespaces() {
    // x/a accepts from namespace y (namespaceSelector ns=y).
    let table = PolicyTable::new(
        NODE,
        [(XA, ingress(vec![Rule { peers: vec![ResolvedPeer::pods(vec![YB, YA, YA])], ports: vec![] }]))],
    );
    assert_eq!(table.judge(&tcp(YA, XA, 80)), Judgement::Allowed);
    assert_eq!(table.judge(&tcp(YB, XA, 80)), Judgement::Allowed);
    assert_eq!(table.judge(&tcp(XB, XA, 80)), Judgement::Denied(Direction::Ingress));
}

#[test]
fn ports_and_end_ports_limit_the_rule_and_icmp_needs_a_rule_without_ports() {
    let rule =
        Rule { peers: vec![], ports: vec![ports(Protocol::Tcp, 80, 80), ports(Protocol::Udp, 5000, 5010)] };
    let table = PolicyTable::new(NODE, [(XA, ingress(vec![rule]))]);
    assert_eq!(table.judge(&tcp(XB, XA, 80)), Judgement::Allowed);
    assert_eq!(table.judge(&tcp(XB, XA, 81)), Judgement::Denied(Direction::Ingress));
    assert_eq!(table.judge(&udp(XB, XA, 80)), Judgement::Denied(Direction::Ingress), "protocol matters");
    for port in [5000, 5005, 5010] {
        assert_eq!(table.judge(&udp(XB, XA, port)), Judgement::Allowed, "{port}");
    }
    assert_eq!(table.judge(&udp(XB, XA, 5011)), Judgement::Denied(Direction::Ingress));
    assert_eq!(table.judge(&ping(XB, XA)), Judgement::Denied(Direction::Ingress));
}

#[test]
fn an_ip_block_admits_its_range_minus_the_exceptions() {
    let block =
        ResolvedPeer::Block { cidr: cidr([192, 168, 0, 0], 16), except: vec![cidr([192, 168, 1, 0], 24)] };
    let table = PolicyTable::new(NODE, [(XA, egress(vec![Rule { peers: vec![block], ports: vec![] }]))]);
    assert_eq!(table.judge(&tcp(XA, Ipv4Address::new(192, 168, 7, 9), 443)), Judgement::Allowed);
    assert_eq!(table.judge(&tcp(XA, LAN, 443)), Judgement::Denied(Direction::Egress), "in the exception");
    assert_eq!(
        table.judge(&tcp(XA, Ipv4Address::new(10, 1, 1, 1), 443)),
        Judgement::Denied(Direction::Egress)
    );
    assert_eq!(
        table.judge(&tcp(XA, XB, 80)),
        Judgement::Denied(Direction::Egress),
        "pods too are outside it"
    );
}

#[test]
fn policies_add_up_and_a_connection_needs_both_ends() {
    // Two policies select x/a for ingress: from x/b on 80, from x/c on 81.
    let a = ingress(vec![
        Rule { peers: vec![ResolvedPeer::pods(vec![XB])], ports: vec![ports(Protocol::Tcp, 80, 80)] },
        Rule { peers: vec![ResolvedPeer::pods(vec![XC])], ports: vec![ports(Protocol::Tcp, 81, 81)] },
    ]);
    // x/b may only open connections to x/c.
    let b = egress(vec![Rule { peers: vec![ResolvedPeer::pods(vec![XC])], ports: vec![] }]);
    let table = PolicyTable::new(NODE, [(XA, a), (XB, b)]);
    assert_eq!(table.judge(&tcp(XC, XA, 81)), Judgement::Allowed);
    assert_eq!(table.judge(&tcp(XC, XA, 80)), Judgement::Denied(Direction::Ingress));
    // a's ingress admits b on 80, but b's egress does not admit a.
    assert_eq!(table.judge(&tcp(XB, XA, 80)), Judgement::Denied(Direction::Egress));
    assert_eq!(table.judge(&tcp(XB, XC, 80)), Judgement::Allowed);
    assert_eq!(table.judge(&tcp(YA, XB, 80)), Judgement::Allowed, "b's ingress is not isolated");
}

#[test]
fn a_rule_with_a_peer_and_no_ports_and_one_with_ports_and_no_peer_differ() {
    let table = PolicyTable::new(
        NODE,
        [(XA, ingress(vec![Rule { peers: vec![], ports: vec![ports(Protocol::Tcp, 443, 443)] }]))],
    );
    assert_eq!(table.judge(&tcp(LAN, XA, 443)), Judgement::Allowed, "every peer on 443");
    assert_eq!(table.judge(&tcp(YB, XA, 443)), Judgement::Allowed);
    assert_eq!(table.judge(&tcp(YB, XA, 80)), Judgement::Denied(Direction::Ingress));
}
