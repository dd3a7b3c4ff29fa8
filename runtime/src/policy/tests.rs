//! The compiler against Kubernetes' semantics, judged through the switch's
//! own `judge`: selectors, AND and OR peers, ipBlock with except, named
//! ports per pod, endPort, default policyTypes, policies adding up.

use std::net::Ipv4Addr;

use netstack::policy::{Connection, Direction, Judgement};

use super::{PolicyInputs, PolicyPod, compile};
use crate::model::policy::{
    LabelSelector, NetworkPolicySpec, PolicyPeer, PolicyPort, PolicyRule, PolicyType, SelectorOperator,
    SelectorRequirement, parse_block,
};
use crate::model::{Labels, Protocol, TargetPort};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector { match_labels: labels(pairs), ..Default::default() }
}

/// Namespaces x (team=a), y (team=b), z; pods a, b, c in each, labelled
/// pod=NAME, at 10.244.0.N: x/a .11, x/b .12, x/c .13, y/a .21, ...
fn cluster() -> PolicyInputs {
    let mut pods = Vec::new();
    for (i, ns) in ["x", "y", "z"].iter().enumerate() {
        for (j, name) in ["a", "b", "c"].iter().enumerate() {
            pods.push(PolicyPod {
                ip: ip(ns, name),
                namespace: ns.to_string(),
                labels: labels(&[("pod", name)]),
                // Named port `serve` is 80 on a and b, 81 on c.
                ports: vec![("serve".into(), Protocol::Tcp, if j == 2 { 81 } else { 80 })],
            });
            let _ = i;
        }
    }
    let ns = |name: &str, extra: &[(&str, &str)]| {
        let mut l = labels(extra);
        l.insert("kubernetes.io/metadata.name".into(), name.into());
        (name.to_string(), l)
    };
    PolicyInputs {
        policies: Vec::new(),
        namespaces: vec![ns("x", &[("team", "a")]), ns("y", &[("team", "b")]), ns("z", &[])],
        pods,
    }
}

fn ip(ns: &str, pod: &str) -> Ipv4Addr {
    let n = ["x", "y", "z"].iter().position(|n| *n == ns).unwrap() as u8 + 1;
    let p = ["a", "b", "c"].iter().position(|p| *p == pod).unwrap() as u8 + 1;
    Ipv4Addr::new(10, 244, 0, n * 10 + p)
}

fn policy(
    ns: &str,
    selector: LabelSelector,
    ingress: Option<Vec<PolicyRule>>,
    egress: Option<Vec<PolicyRule>>,
) -> NetworkPolicySpec {
    let mut types = Vec::new();
    if ingress.is_some() {
        types.push(PolicyType::Ingress);
    }
    if egress.is_some() {
        types.push(PolicyType::Egress);
    }
    NetworkPolicySpec {
        name: format!("p{}", types.len()),
        namespace: ns.into(),
        pod_selector: selector,
        policy_types: types,
        ingress: ingress.unwrap_or_default(),
        egress: egress.unwrap_or_default(),
        ..Default::default()
    }
}

fn judge(
    inputs: &PolicyInputs,
    from: (&str, &str),
    to: (&str, &str),
    protocol: Protocol,
    port: u16,
) -> Judgement {
    judge_ip(inputs, ip(from.0, from.1), ip(to.0, to.1), protocol, port)
}

fn judge_ip(inputs: &PolicyInputs, src: Ipv4Addr, dst: Ipv4Addr, protocol: Protocol, port: u16) -> Judgement {
    compile(inputs, GATEWAY).judge(&Connection { src, dst, port: Some((protocol, port)) })
}

fn allowed(inputs: &PolicyInputs, from: (&str, &str), to: (&str, &str), port: u16) -> bool {
    judge(inputs, from, to, Protocol::Tcp, port) == Judgement::Allowed
}

fn from_peers(peers: Vec<PolicyPeer>) -> Vec<PolicyRule> {
    vec![PolicyRule { peers, ports: Vec::new() }]
}

fn tcp(port: TargetPort, end_port: Option<u16>) -> PolicyPort {
    PolicyPort { protocol: Protocol::Tcp, port: Some(port), end_port }
}

#[test]
fn no_policy_isolates_nothing() {
    let c = cluster();
    assert!(compile(&c, GATEWAY).is_empty());
    assert!(allowed(&c, ("x", "a"), ("y", "b"), 80));
}

#[test]
fn default_deny_ingress_isolates_the_namespace_only_for_ingress() {
    let mut c = cluster();
    c.policies.push(policy("x", LabelSelector::default(), Some(vec![]), None));
    assert_eq!(judge(&c, ("y", "a"), ("x", "a"), Protocol::Tcp, 80), Judgement::Denied(Direction::Ingress));
    assert_eq!(judge(&c, ("x", "b"), ("x", "a"), Protocol::Udp, 81), Judgement::Denied(Direction::Ingress));
    assert!(allowed(&c, ("x", "a"), ("y", "a"), 80), "egress is not governed");
    assert!(allowed(&c, ("y", "a"), ("z", "a"), 80), "other namespaces untouched");
    assert_eq!(judge_ip(&c, GATEWAY, ip("x", "a"), Protocol::Tcp, 80), Judgement::Allowed, "the node is");
}

#[test]
fn default_deny_egress_and_default_policy_types() {
    let mut c = cluster();
    c.policies.push(policy("x", LabelSelector::default(), None, Some(vec![])));
    assert_eq!(judge(&c, ("x", "a"), ("y", "a"), Protocol::Tcp, 80), Judgement::Denied(Direction::Egress));
    assert!(allowed(&c, ("y", "a"), ("x", "a"), 80), "ingress is not governed");
    // policyTypes left out with egress rules: both directions, defaulted.
    let mut d = cluster();
    let mut p = NetworkPolicySpec {
        name: "p".into(),
        namespace: "x".into(),
        egress: from_peers(vec![PolicyPeer::Pods { pod_selector: Some(sel(&[])), namespace_selector: None }]),
        ..Default::default()
    };
    p.default_policy_types();
    d.policies.push(p);
    assert!(!allowed(&d, ("y", "a"), ("x", "a"), 80), "Ingress is always a default type");
    // Egress within the namespace passes; x/b's own (default) ingress isolation then decides.
    assert_eq!(judge(&d, ("x", "a"), ("x", "b"), Protocol::Tcp, 80), Judgement::Denied(Direction::Ingress));
    assert_eq!(judge(&d, ("x", "a"), ("y", "b"), Protocol::Tcp, 80), Judgement::Denied(Direction::Egress));
}

#[test]
fn pod_selectors_choose_targets_and_peers_in_the_policy_namespace() {
    let mut c = cluster();
    let rules = from_peers(vec![PolicyPeer::Pods {
        pod_selector: Some(sel(&[("pod", "b")])),
        namespace_selector: None,
    }]);
    c.policies.push(policy("x", sel(&[("pod", "a")]), Some(rules), None));
    assert!(allowed(&c, ("x", "b"), ("x", "a"), 80));
    assert!(!allowed(&c, ("x", "c"), ("x", "a"), 80));
    assert!(!allowed(&c, ("y", "b"), ("x", "a"), 80), "a podSelector alone is the policy's namespace");
    assert!(allowed(&c, ("x", "c"), ("x", "b"), 80), "x/b is not selected");
}

#[test]
fn namespace_selectors_and_both_in_one_peer_are_and_two_peers_are_or() {
    let team_b = || Some(sel(&[("team", "b")]));
    let mut and = cluster();
    let peer = PolicyPeer::Pods { pod_selector: Some(sel(&[("pod", "b")])), namespace_selector: team_b() };
    and.policies.push(policy("x", sel(&[("pod", "a")]), Some(from_peers(vec![peer])), None));
    assert!(allowed(&and, ("y", "b"), ("x", "a"), 80));
    assert!(!allowed(&and, ("y", "c"), ("x", "a"), 80), "both must hold");
    assert!(!allowed(&and, ("x", "b"), ("x", "a"), 80), "x is not team=b");
    let mut or = cluster();
    let peers = vec![
        PolicyPeer::Pods { pod_selector: Some(sel(&[("pod", "b")])), namespace_selector: None },
        PolicyPeer::Pods { pod_selector: None, namespace_selector: team_b() },
    ];
    or.policies.push(policy("x", sel(&[("pod", "a")]), Some(from_peers(peers)), None));
    assert!(allowed(&or, ("y", "c"), ("x", "a"), 80), "every pod of y");
    assert!(allowed(&or, ("x", "b"), ("x", "a"), 80), "x/b by pod selector");
    assert!(!allowed(&or, ("z", "b"), ("x", "a"), 80));
    // Selecting namespaces by their name label, with an expression.
    let mut by_name = cluster();
    let ns = LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![SelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: SelectorOperator::NotIn,
            values: vec!["y".into()],
        }],
    };
    let peer = PolicyPeer::Pods { pod_selector: None, namespace_selector: Some(ns) };
    by_name.policies.push(policy("x", sel(&[]), Some(from_peers(vec![peer])), None));
    assert!(allowed(&by_name, ("z", "c"), ("x", "a"), 80));
    assert!(!allowed(&by_name, ("y", "c"), ("x", "a"), 80));
}

#[test]
fn ip_blocks_with_except() {
    let mut c = cluster();
    let peer = PolicyPeer::Block {
        cidr: parse_block("10.244.0.0/27").unwrap(),
        except: vec![parse_block("10.244.0.20/31").unwrap()],
    };
    c.policies.push(policy("z", sel(&[]), None, Some(from_peers(vec![peer]))));
    assert!(allowed(&c, ("z", "a"), ("x", "a"), 80), ".11 is in the block");
    assert!(!allowed(&c, ("z", "a"), ("y", "a"), 80), ".21 is excepted");
    assert!(allowed(&c, ("z", "a"), ("y", "c"), 80), ".23 is past the exception");
    assert!(!allowed(&c, ("z", "a"), ("z", "b"), 80), ".32 is outside the /27");
    let outside = Ipv4Addr::new(192, 168, 1, 9);
    assert_eq!(judge_ip(&c, ip("z", "a"), outside, Protocol::Tcp, 80), Judgement::Denied(Direction::Egress));
}

#[test]
fn ports_protocols_and_end_port() {
    let mut c = cluster();
    let rules = vec![PolicyRule {
        peers: Vec::new(),
        ports: vec![
            tcp(TargetPort::Number(80), None),
            PolicyPort {
                protocol: Protocol::Udp,
                port: Some(TargetPort::Number(1000)),
                end_port: Some(1010),
            },
            PolicyPort { protocol: Protocol::Udp, port: None, end_port: None },
        ],
    }];
    c.policies.push(policy("x", sel(&[("pod", "a")]), Some(rules), None));
    assert!(allowed(&c, ("y", "a"), ("x", "a"), 80));
    assert!(!allowed(&c, ("y", "a"), ("x", "a"), 81));
    assert_eq!(judge(&c, ("y", "a"), ("x", "a"), Protocol::Udp, 81), Judgement::Allowed, "every UDP port");
    let mut range = cluster();
    let rules = vec![PolicyRule { peers: Vec::new(), ports: vec![tcp(TargetPort::Number(80), Some(81))] }];
    range.policies.push(policy("x", sel(&[("pod", "a")]), Some(rules), None));
    assert!(allowed(&range, ("y", "a"), ("x", "a"), 81));
    assert!(!allowed(&range, ("y", "a"), ("x", "a"), 82));
    assert_eq!(
        judge(&range, ("y", "a"), ("x", "a"), Protocol::Udp, 80),
        Judgement::Denied(Direction::Ingress)
    );
}

#[test]
fn named_ports_resolve_per_pod() {
    // Ingress: the selected pod's own number (x/c serves `serve` on 81).
    let mut c = cluster();
    let rules =
        vec![PolicyRule { peers: Vec::new(), ports: vec![tcp(TargetPort::Name("serve".into()), None)] }];
    c.policies.push(policy("x", sel(&[]), Some(rules), None));
    assert!(allowed(&c, ("y", "a"), ("x", "a"), 80));
    assert!(!allowed(&c, ("y", "a"), ("x", "a"), 81));
    assert!(allowed(&c, ("y", "a"), ("x", "c"), 81));
    assert!(!allowed(&c, ("y", "a"), ("x", "c"), 80));
    // Egress: the peer's number, one range per distinct number.
    let mut e = cluster();
    let rules = vec![PolicyRule {
        peers: vec![PolicyPeer::Pods { pod_selector: None, namespace_selector: Some(sel(&[("team", "b")])) }],
        ports: vec![tcp(TargetPort::Name("serve".into()), None)],
    }];
    e.policies.push(policy("x", sel(&[("pod", "a")]), None, Some(rules)));
    assert!(allowed(&e, ("x", "a"), ("y", "a"), 80));
    assert!(!allowed(&e, ("x", "a"), ("y", "a"), 81));
    assert!(allowed(&e, ("x", "a"), ("y", "c"), 81));
    assert!(!allowed(&e, ("x", "a"), ("y", "c"), 80));
    assert!(!allowed(&e, ("x", "a"), ("z", "a"), 80), "z is no peer");
    // A name no pod declares admits nothing (not every port).
    let mut none = cluster();
    let rules =
        vec![PolicyRule { peers: Vec::new(), ports: vec![tcp(TargetPort::Name("nope".into()), None)] }];
    none.policies.push(policy("x", sel(&[]), Some(rules), None));
    assert!(!allowed(&none, ("y", "a"), ("x", "a"), 80));
}

#[test]
fn policies_add_up() {
    let mut c = cluster();
    let only_b = from_peers(vec![PolicyPeer::Pods {
        pod_selector: Some(sel(&[("pod", "b")])),
        namespace_selector: None,
    }]);
    let only_c = from_peers(vec![PolicyPeer::Pods {
        pod_selector: Some(sel(&[("pod", "c")])),
        namespace_selector: None,
    }]);
    c.policies.push(policy("x", sel(&[("pod", "a")]), Some(only_b), None));
    c.policies.push(policy("x", sel(&[]), Some(only_c), None));
    assert!(allowed(&c, ("x", "b"), ("x", "a"), 80));
    assert!(allowed(&c, ("x", "c"), ("x", "a"), 80));
    assert!(!allowed(&c, ("x", "a"), ("x", "b"), 80), "x/b is isolated by the second only");
    assert!(allowed(&c, ("x", "a"), ("x", "a"), 80), "a pod reaching itself");
}
