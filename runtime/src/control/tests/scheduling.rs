//! Placing pods: spread over Ready nodes, pinned with nodeName, and the
//! errors when there is no room.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::api::{Request, Response};
use crate::config::Cidr;
use crate::control::harness::*;
use crate::store::State;

#[test]
fn pods_spread_over_the_nodes_with_the_fewest_pods() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.join("n2", 3);
    for name in ["a", "b", "c", "d", "e", "f"] {
        h.ok(Request::RunPod(pod(name)));
    }
    let pods = h.pods();
    for node in [SERVER, "n1", "n2"] {
        assert_eq!(pods.iter().filter(|p| p.node_name == node).count(), 2, "{node}: {pods:?}");
    }
    // A tie goes to the server's own node.
    assert_eq!(h.pod("a").node_name, SERVER);
}

#[test]
fn each_pod_gets_an_address_of_its_own_nodes_subnet() {
    let mut h = Harness::new(1);
    let subnet = h.join("n1", 2);
    h.ok(Request::RunPod(pinned("far", "n1")));
    h.ok(Request::RunPod(pinned("near", SERVER)));
    let far = h.pod("far").status.pod_ip.unwrap();
    let near = h.pod("near").status.pod_ip.unwrap();
    assert!(subnet.contains(far), "{far} in {subnet}");
    assert!(Cidr::new([10, 244, 0, 0].into(), 24).contains(near), "{near}");
    assert_ne!(subnet, Cidr::new([10, 244, 0, 0].into(), 24));
}

#[test]
fn node_name_pins_a_pod_and_an_unknown_node_is_refused() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    for i in 0..3 {
        h.ok(Request::RunPod(pinned(&format!("p{i}"), "n1")));
    }
    assert!(h.pods().iter().all(|p| p.node_name == "n1"));
    let err = h.err(Request::RunPod(pinned("lost", "nowhere")));
    assert!(err.contains("node `nowhere` not found"), "{err}");
    assert_eq!(h.pods().len(), 3, "nothing half-created");
}

#[test]
fn a_not_ready_node_gets_no_new_pods() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.advance(Duration::from_secs(7));
    h.tick();
    assert!(!h.ready("n1"));
    for name in ["a", "b", "c"] {
        h.ok(Request::RunPod(pod(name)));
    }
    assert!(h.pods().iter().all(|p| p.node_name == SERVER), "{:?}", h.pods());
}

#[test]
fn a_full_node_subnet_is_a_clear_error_and_frees_up_on_delete() {
    let mut config = config();
    config.network.node_subnet = Cidr::new([10, 244, 0, 0].into(), 29);
    let mut h = Harness::with_config(1, State::default(), FakeStore::default(), config);
    // A /29 holds 8 addresses: network, gateway and broadcast are not pods'.
    for i in 0..5 {
        h.ok(Request::RunPod(pod(&format!("p{i}"))));
    }
    let err = h.err(Request::RunPod(pod("one-too-many")));
    assert!(err.contains("subnet 10.244.0.0/29 has no free address"), "{err}");
    assert!(err.contains("network.node_subnet"), "names the fix: {err}");
    h.ok(Request::DeletePod { namespace: "default".into(), name: "p2".into() });
    h.ok(Request::RunPod(pod("one-too-many")));
}

#[test]
fn a_full_cluster_cidr_refuses_another_node() {
    let mut config = config();
    config.network.cluster_cidr = Cidr::new([10, 244, 0, 0].into(), 23);
    let mut h = Harness::with_config(1, State::default(), FakeStore::default(), config);
    assert_eq!(h.join("n1", 2), Cidr::new([10, 244, 1, 0].into(), 24));
    let err = h.connect("n2", [192, 168, 1, 3]).unwrap_err();
    assert!(err.contains("cluster CIDR 10.244.0.0/23 has no free /24"), "{err}");
    assert!(h.cp.subnet_of("n2").is_none(), "nothing half-created");
}

#[test]
fn a_missing_command_is_refused_before_anything_is_created() {
    let mut h = Harness::new(1);
    let mut spec = pod("typo");
    spec.template.command = vec!["no-such-command".into()];
    let err = h.err(Request::RunPod(spec));
    assert!(err.contains("command `no-such-command` not found"), "{err}");
    let mut spec = deployment("typo", 2);
    spec.template.command = vec!["no-such-command".into()];
    assert!(h.err(Request::CreateDeployment(spec)).contains("not found"));
    assert!(h.pods().is_empty());
    let saves = *h.store.saves.lock().unwrap();
    h.err(Request::RunPod(pinned("x", "nowhere")));
    assert_eq!(*h.store.saves.lock().unwrap(), saves, "a refused request saves nothing");
}

#[test]
fn node_local_requests_name_the_pods_node() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::RunPod(pinned("far", "n1")));
    let err = h.err(Request::Logs { namespace: "default".into(), name: "far".into() });
    assert!(err.contains("runs on node n1"), "{err}");
    let err = h.err(Request::ExecTarget { namespace: "default".into(), name: "gone".into() });
    assert!(err.contains("pod default/gone not found"), "{err}");
    assert!(h.err(Request::NodeStats).contains("answered by a node"));
    let nodes: BTreeSet<String> = match h.ok(Request::GetNodes) {
        Response::Nodes(nodes) => nodes.into_iter().map(|n| n.name).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(nodes, [SERVER.to_string(), "n1".into()].into());
}
