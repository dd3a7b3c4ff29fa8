//! NetworkPolicies and namespace labels: stored and checked, numbered,
//! saved, deleted with their namespace, and sent to every member with what
//! they select.

use crate::api::changes::{ChangeType, ObjectKind};
use crate::api::{Request, Response};
use crate::control::harness::*;
use crate::model::Labels;
use crate::model::policy::{
    LabelSelector, NetworkPolicySpec, PolicyPeer, PolicyPort, PolicyRule, PolicyType, parse_block,
};
use crate::model::{ContainerPort, Protocol, TargetPort};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn policy(name: &str, namespace: &str) -> NetworkPolicySpec {
    NetworkPolicySpec {
        name: name.into(),
        namespace: namespace.into(),
        pod_selector: LabelSelector { match_labels: labels(&[("app", "db")]), ..Default::default() },
        ingress: vec![PolicyRule {
            peers: vec![PolicyPeer::Pods {
                pod_selector: Some(LabelSelector {
                    match_labels: labels(&[("app", "web")]),
                    ..Default::default()
                }),
                namespace_selector: None,
            }],
            ports: vec![PolicyPort {
                protocol: Protocol::Tcp,
                port: Some(TargetPort::Number(5432)),
                end_port: None,
            }],
        }],
        ..Default::default()
    }
}

#[test]
fn a_policy_is_stored_defaulted_numbered_and_saved() {
    let mut h = Harness::new(1);
    let since = h.cp.revision();
    let Response::NetworkPolicy(p) = h.ok(Request::CreateNetworkPolicy(policy("db", "shop"))) else {
        panic!()
    };
    assert_eq!(p.spec.policy_types, [PolicyType::Ingress], "defaulted as Kubernetes does");
    assert!(h.err(Request::CreateNetworkPolicy(policy("db", "shop"))).contains("already exists"));
    assert_eq!(
        h.store.last().unwrap().network_policies,
        std::slice::from_ref(&p),
        "saved before it is acknowledged"
    );
    let Response::Changes { changes, .. } = h.ok(Request::Changes { since }) else { panic!() };
    assert!(
        changes
            .iter()
            .any(|c| c.change == ChangeType::Added && c.object.object.kind() == ObjectKind::NetworkPolicy),
        "{changes:?}"
    );
    let mut changed = policy("db", "shop");
    changed.egress.push(PolicyRule::default());
    let Response::NetworkPolicy(q) = h.ok(Request::UpdateNetworkPolicy(changed)) else { panic!() };
    assert_eq!((q.uid.as_str(), q.spec.policy_types.len()), (p.uid.as_str(), 2), "uid kept, Egress added");
    let Response::Objects { items, .. } =
        h.ok(Request::Objects { kind: ObjectKind::NetworkPolicy, namespace: None })
    else {
        panic!()
    };
    assert_eq!(items[0].generation, 2, "a spec change is a new generation");
    let Response::NetworkPolicies(list) =
        h.ok(Request::GetNetworkPolicies { namespace: Some("other".into()) })
    else {
        panic!()
    };
    assert!(list.is_empty(), "per namespace");
    // A restart keeps it.
    let state = h.store.last().unwrap();
    let mut again = Harness::restore(2, state, FakeStore::default());
    let Response::NetworkPolicies(list) = again.ok(Request::GetNetworkPolicies { namespace: None }) else {
        panic!()
    };
    assert_eq!(list, [q]);
    again.ok(Request::DeleteNetworkPolicy { namespace: "shop".into(), name: "db".into() });
    assert!(
        again
            .err(Request::DeleteNetworkPolicy { namespace: "shop".into(), name: "db".into() })
            .contains("not found")
    );
}

#[test]
fn an_invalid_policy_is_refused_and_nothing_is_stored() {
    let mut h = Harness::new(1);
    let mut bad = policy("db", "shop");
    bad.ingress[0].peers.push(PolicyPeer::Block {
        cidr: parse_block("10.0.0.0/8").unwrap(),
        except: vec![parse_block("11.0.0.0/16").unwrap()],
    });
    let e = h.err(Request::CreateNetworkPolicy(bad));
    assert!(e.contains("spec.ingress[0].from[1].ipBlock.except") && e.contains("not strictly inside"), "{e}");
    let mut bad = policy("db", "shop");
    bad.ingress[0].ports[0].end_port = Some(10);
    assert!(h.err(Request::CreateNetworkPolicy(bad)).contains("endPort 10 is below port 5432"));
    let Response::NetworkPolicies(list) = h.ok(Request::GetNetworkPolicies { namespace: None }) else {
        panic!()
    };
    assert!(list.is_empty());
    assert!(h.store.last().is_none_or(|s| s.network_policies.is_empty()));
}

#[test]
fn namespaces_carry_labels_and_their_name_label() {
    let mut h = Harness::new(1);
    let Response::Namespace(ns) = h.ok(Request::CreateNamespace {
        name: "shop".into(),
        labels: labels(&[("team", "a")]),
        annotations: Default::default(),
    }) else {
        panic!()
    };
    assert_eq!(ns.all_labels(), labels(&[("team", "a"), ("kubernetes.io/metadata.name", "shop")]));
    // `default` and a namespace that only holds objects take labels too.
    h.ok(Request::UpdateNamespace {
        name: "default".into(),
        labels: labels(&[("team", "b")]),
        annotations: Default::default(),
    });
    assert!(
        h.err(Request::UpdateNamespace {
            name: "nope".into(),
            labels: Labels::new(),
            annotations: Default::default()
        })
        .contains("not found")
    );
    let e = h.err(Request::UpdateNamespace {
        name: "shop".into(),
        labels: labels(&[("bad key", "x")]),
        annotations: Default::default(),
    });
    assert!(e.contains("invalid label"), "{e}");
    // The name label is the name's, whatever a user writes.
    let Response::Namespace(ns) = h.ok(Request::UpdateNamespace {
        name: "shop".into(),
        labels: labels(&[("kubernetes.io/metadata.name", "other")]),
        annotations: Default::default(),
    }) else {
        panic!()
    };
    assert_eq!(ns.all_labels()["kubernetes.io/metadata.name"], "shop");
    let Response::Namespaces(list) = h.ok(Request::GetNamespaces) else { panic!() };
    assert_eq!(list.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["default", "shop"]);
    assert_eq!(h.store.last().unwrap().namespaces.len(), 2, "saved");
}

#[test]
fn deleting_a_namespace_deletes_its_policies() {
    let mut h = Harness::new(1);
    h.ok(Request::CreateNetworkPolicy(policy("db", "shop")));
    assert!(
        h.err(Request::CreateNamespace {
            name: "shop".into(),
            labels: Labels::new(),
            annotations: Default::default()
        })
        .contains("already exists")
    );
    h.ok(Request::DeleteNamespace { name: "shop".into() });
    let Response::NetworkPolicies(list) = h.ok(Request::GetNetworkPolicies { namespace: None }) else {
        panic!()
    };
    assert!(list.is_empty());
}

#[test]
fn members_get_the_policies_with_every_pod_and_namespace_they_select() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    let mut db = pinned("db", "n1");
    db.namespace = "shop".into();
    db.labels = labels(&[("app", "db")]);
    db.template.ports = vec![ContainerPort { name: Some("pg".into()), port: 5432, protocol: Protocol::Tcp }];
    h.ok(Request::RunPod(db));
    h.ok(Request::RunPod(pinned("web", SERVER)));
    h.settle();
    assert_eq!(h.nodes["n1"].desired.policy, Default::default(), "nothing to compile without a policy");
    h.ok(Request::CreateNetworkPolicy(policy("db", "shop")));
    h.settle();
    let inputs = &h.nodes["n1"].desired.policy;
    assert_eq!(inputs.policies.len(), 1);
    assert_eq!(inputs.pods.len(), 2, "every node's pods: ingress is judged where the pod runs");
    let db = inputs.pods.iter().find(|p| p.namespace == "shop").unwrap();
    assert_eq!(db.ports, [("pg".to_string(), Protocol::Tcp, 5432)]);
    let names: Vec<&str> = inputs.namespaces.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["default", "shop"]);
    assert_eq!(inputs.namespaces[1].1["kubernetes.io/metadata.name"], "shop");
    // A label change reaches members.
    h.ok(Request::UpdateNamespace {
        name: "shop".into(),
        labels: labels(&[("team", "a")]),
        annotations: Default::default(),
    });
    h.settle();
    assert_eq!(h.nodes["n1"].desired.policy.namespaces[1].1["team"], "a");
    h.ok(Request::DeleteNetworkPolicy { namespace: "shop".into(), name: "db".into() });
    h.settle();
    assert_eq!(h.nodes["n1"].desired.policy, Default::default());
}
