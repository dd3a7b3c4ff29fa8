//! Saving: nothing is acknowledged unsaved, a failed save (a full disk)
//! changes nothing, a restart restores everything, and a seed replays.

use std::time::Duration;

use crate::api::{Request, Response};
use crate::control::harness::*;
use crate::store::State;

fn full_disk(h: &Harness) {
    h.store.fail_with(libc::ENOSPC);
}

fn assert_disk_full(err: &str) {
    assert!(err.contains("disk holding /fake/data is full") && err.contains("free space"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn every_acknowledged_change_is_saved() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::RunPod(pod("a")));
    h.ok(Request::CreateService(service("web", "a")));
    let saved = h.store.last().unwrap();
    assert_eq!(saved, h.cp.state());
    assert_eq!(saved.pods.len(), 1);
    assert_eq!(saved.services.len(), 1);
    assert_eq!(saved.nodes.len(), 2);
}

#[test]
fn a_failed_save_leaves_the_state_exactly_as_before() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::CreateDeployment(deployment("web", 2)));
    h.ok(Request::CreateService(node_port_service("np", "web", Some(30_001))));
    h.ok(Request::RunPod(pod("keep")));
    h.settle();
    let before = h.cp.state();
    let pods_before = h.pods();
    full_disk(&h);
    let scale = Request::ScaleDeployment { namespace: "default".into(), name: "web".into(), replicas: 5 };
    for request in [
        Request::RunPod(pod("new")),
        Request::DeletePod { namespace: "default".into(), name: "keep".into() },
        Request::CreateDeployment(deployment("more", 2)),
        scale,
        Request::DeleteDeployment { namespace: "default".into(), name: "web".into() },
        Request::CreateService(node_port_service("np2", "web", None)),
        Request::DeleteService { namespace: "default".into(), name: "np".into() },
        Request::DeleteNode { name: "n1".into() },
    ] {
        let err = h.err(request.clone());
        assert_disk_full(&err);
        assert_eq!(h.cp.state(), before, "{request:?} left a change behind");
    }
    assert_eq!(h.pods(), pods_before, "statuses too");
    // A join is refused, with the reason, and leaves no record.
    let err = h.connect("n2", [192, 168, 1, 3]).unwrap_err();
    assert_disk_full(&err);
    assert!(h.cp.subnet_of("n2").is_none());
    // Space is back: the same requests work, with the address the failed one would have had.
    h.store.heal();
    h.ok(Request::RunPod(pod("new")));
    h.ok(Request::CreateService(node_port_service("np2", "web", Some(30_001 + 1))));
    h.join("n2", 3);
    assert_eq!(h.store.last().unwrap(), h.cp.state());
}

#[test]
fn replicas_that_cannot_be_saved_are_retried_when_space_is_back() {
    let mut h = Harness::new(1);
    h.ok(Request::CreateDeployment(deployment("web", 1)));
    let victim = h.pods()[0].spec.name.clone();
    h.ok(Request::DeletePod { namespace: "default".into(), name: victim });
    full_disk(&h);
    h.tick();
    assert!(h.pods().is_empty(), "a replica that is not saved does not exist");
    h.store.heal();
    h.tick();
    assert_eq!(h.pods().len(), 1);
    assert_eq!(h.store.last().unwrap().pods.len(), 1);
}

#[test]
fn the_control_plane_starts_and_serves_on_a_full_disk() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::RunPod(pod("a")));
    let state = h.store.last().unwrap();
    let store = FakeStore::default();
    store.fail_with(libc::ENOSPC);
    let mut h = Harness::restore(2, state.clone(), store.clone());
    assert_eq!(h.pods().len(), 1, "reads work");
    h.join("n1", 2);
    assert!(h.ready("n1"), "a returning node is admitted: nothing new to save");
    assert_disk_full(&h.err(Request::RunPod(pod("b"))));
    store.heal();
    h.ok(Request::RunPod(pod("b")));
    assert_eq!(store.last().unwrap().pods.len(), 2);
}

#[test]
fn a_restart_restores_pods_services_and_subnets_and_nodes_rejoin() {
    let mut h = Harness::new(1);
    let subnet = h.join("n1", 2);
    h.ok(Request::CreateDeployment(deployment("web", 2)));
    let Response::Service(svc) = h.ok(Request::CreateService(node_port_service("web", "web", None))) else {
        panic!()
    };
    h.settle();
    let pods = h.pods();
    let state: State = h.store.last().unwrap();

    let mut h = Harness::restore(99, state, FakeStore::default());
    let after = h.pods();
    assert_eq!(
        after.iter().map(|p| (&p.uid, &p.spec.name, &p.node_name, p.status.pod_ip)).collect::<Vec<_>>(),
        pods.iter().map(|p| (&p.uid, &p.spec.name, &p.node_name, p.status.pod_ip)).collect::<Vec<_>>(),
    );
    let Response::Services(list) = h.ok(Request::GetServices { namespace: None }) else { panic!() };
    assert_eq!(list[0].cluster_ip, svc.cluster_ip);
    assert_eq!(list[0].spec.ports[0].node_port, svc.spec.ports[0].node_port);
    assert!(!h.ready("n1"), "NotReady until it is heard from");
    h.settle();
    assert_eq!(h.pods().len(), 2, "no duplicate replicas after a restart");
    assert_eq!(h.join("n1", 2), subnet);
    // A new pod does not take a restored pod's address.
    h.ok(Request::RunPod(pinned("new", "n1")));
    let ips: std::collections::BTreeSet<_> = h.pods().iter().map(|p| p.status.pod_ip).collect();
    assert_eq!(ips.len(), 3);
}

/// What a run chose: pod uids and names, ClusterIPs, node ports.
type Choices = (Vec<(String, String)>, Vec<Option<std::net::IpAddr>>, Vec<Option<u16>>);

fn scripted(seed: u64) -> Choices {
    let mut h = Harness::new(seed);
    h.join("n1", 2);
    h.ok(Request::CreateDeployment(deployment("web", 3)));
    h.ok(Request::RunPod(pod("single")));
    for name in ["a", "b"] {
        h.ok(Request::CreateService(node_port_service(name, "web", None)));
    }
    h.advance(Duration::from_secs(3));
    h.settle();
    let pods = h.pods().into_iter().map(|p| (p.uid, p.spec.name)).collect();
    let Response::Services(list) = h.ok(Request::GetServices { namespace: None }) else { panic!() };
    let ips = list.iter().map(|s| s.cluster_ip).collect();
    let ports = list.iter().map(|s| s.spec.ports[0].node_port).collect();
    (pods, ips, ports)
}

#[test]
fn a_fixed_seed_replays_uids_names_addresses_and_ports() {
    assert_eq!(scripted(7), scripted(7));
    let (a, _, _) = scripted(7);
    let (b, _, _) = scripted(8);
    assert_ne!(a, b, "another seed, other uids and names");
    assert!(a.iter().all(|(uid, _)| uid.len() == 32 && uid.chars().all(|c| c.is_ascii_hexdigit())));
}

#[test]
fn unsaved_start_up_changes_do_not_fail_reads_on_a_full_disk() {
    let store = FakeStore::default();
    store.fail_with(libc::ENOSPC);
    // A fresh server registers its own node: a change it cannot save yet.
    let mut h = Harness::restore(1, State::default(), store.clone());
    assert!(h.pods().is_empty());
    assert!(h.ready(SERVER));
    assert_disk_full(&h.err(Request::RunPod(pod("a"))));
    assert!(h.cp.subnet_of(SERVER).is_some(), "its own node stays registered");
    store.heal();
    h.ok(Request::RunPod(pod("a")));
    let saved = store.last().unwrap();
    assert_eq!((saved.nodes.len(), saved.pods.len()), (1, 1), "saved with the next change");
}
