//! Members: joining, heartbeats, partitions and resync, node records that
//! must not break the overlay, names two agents claim, deleting a node.

use std::time::Duration;

use crate::api::Request;
use crate::cluster::password::PasswordDigest;
use crate::config::Cidr;
use crate::control::ControlError;
use crate::control::harness::*;

#[test]
fn a_member_gets_a_subnet_of_its_own_and_keeps_it_when_it_returns() {
    let mut h = Harness::new(1);
    let s1 = h.join("n1", 2);
    let s2 = h.join("n2", 3);
    assert_eq!((s1, s2), (Cidr::new([10, 244, 1, 0].into(), 24), Cidr::new([10, 244, 2, 0].into(), 24)));
    h.disconnect("n1");
    assert_eq!(h.join("n1", 2), s1, "same subnet on return");
    assert_eq!(h.cp.node_infos().len(), 3, "no duplicate record");
}

#[test]
fn a_node_is_not_ready_only_after_the_heartbeat_timeout() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.advance(Duration::from_secs(5));
    h.tick();
    assert!(h.ready("n1"), "5 s of silence is within the timeout");
    h.advance(Duration::from_secs(2));
    h.tick();
    assert!(!h.ready("n1"), "7 s is not");
    assert!(h.ready(SERVER), "the server's own node has no heartbeat to miss");
    h.reports();
    assert!(h.ready("n1"));
}

#[test]
fn a_member_reporting_every_heartbeat_stays_ready() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.run_for(60);
    assert!(h.ready("n1"));
}

/// Issue #12 item 7: a report that waits in the queue behind a slow turn
/// is a heartbeat all the same; the check must not run before it.
#[test]
fn a_report_queued_before_the_heartbeat_check_counts() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.advance(Duration::from_secs(5));
    h.queue_report("n1");
    h.advance(Duration::from_secs(2));
    h.tick();
    assert!(h.ready("n1"), "the queued report came in 2 s ago");
}

#[test]
fn a_member_back_from_a_partition_gets_the_latest_state_once() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::RunPod(pinned("a", "n1")));
    h.settle();
    let received = h.nodes["n1"].received;
    h.disconnect("n1");
    // Several changes while it is away.
    h.ok(Request::RunPod(pinned("b", "n1")));
    h.ok(Request::RunPod(pinned("c", "n1")));
    h.ok(Request::DeletePod { namespace: "default".into(), name: "a".into() });
    h.ok(Request::CreateService(service("web", "b")));
    h.run_for(10);
    assert_eq!(h.nodes["n1"].received, received, "nothing reaches a partitioned member");
    assert!(!h.ready("n1"));

    h.join("n1", 2);
    h.converge();
    let node = &h.nodes["n1"];
    assert_eq!(node.received, received + 1, "one desired state: the latest");
    let mut names: Vec<&str> = node.desired.pods.iter().map(|p| p.spec.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["b", "c"]);
    assert!(node.desired.services.iter().any(|(s, _)| s.spec.name == "web"));
    // Its reports count again.
    h.reports();
    assert!(h.pod("b").status.ready && h.ready("n1"));
    assert_eq!(h.ready_ips("web"), [h.pod("b").status.pod_ip.unwrap()]);
}

#[test]
fn reports_of_a_replaced_connection_are_ignored() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::RunPod(pinned("a", "n1")));
    h.settle();
    assert!(h.pod("a").status.ready);
    // A new connection of the same node: the old one's reports are stale.
    h.queue_report("n1");
    h.join("n1", 2);
    h.nodes.get_mut("n1").unwrap().pods_ready = false;
    h.reports();
    assert!(!h.pod("a").status.ready, "the current connection's report wins");
}

#[test]
fn every_member_learns_the_other_nodes_as_peers() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.join("n2", 3);
    h.converge();
    let peers: Vec<(String, std::net::IpAddr)> =
        h.nodes["n1"].desired.peers.iter().map(|p| (p.node.clone(), p.address)).collect();
    let at = |a: [u8; 4]| std::net::IpAddr::from(a);
    assert_eq!(peers, [("n2".to_string(), at([192, 168, 1, 3])), (SERVER.into(), at([192, 168, 1, 1]))]);
}

#[test]
fn addresses_other_nodes_cannot_reach_are_refused_on_join() {
    let mut h = Harness::new(1);
    for (address, what) in [
        ([0, 0, 0, 0], "unspecified"),
        ([127, 0, 0, 1], "loopback"),
        ([224, 0, 0, 5], "multicast"),
        ([255, 255, 255, 255], "broadcast"),
    ] {
        let err = h.connect("bad", address).unwrap_err();
        assert!(err.contains(what) && err.contains("--node-ip"), "{err}");
    }
    assert!(h.cp.subnet_of("bad").is_none(), "no record");
    let v6: std::net::IpAddr = "fd00::2".parse().unwrap();
    let err = h.connect("v6", v6).unwrap_err();
    assert!(
        err.contains("IPv6 is not supported yet: node v6's address = fd00::2; use an IPv4 address"),
        "{err}"
    );
    assert!(h.cp.subnet_of("v6").is_none(), "no record");
}

#[test]
fn another_nodes_address_is_refused_on_join() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    let err = h.connect("n2", [192, 168, 1, 2]).unwrap_err();
    assert!(err.contains("node n1 has it") && err.contains("podnet delete node n1"), "{err}");
    let err = h.connect("n3", [192, 168, 1, 1]).unwrap_err();
    assert!(err.contains(&format!("node {SERVER} has it")), "{err}");
    let err = h.connect(SERVER, [192, 168, 1, 9]).unwrap_err();
    assert!(err.contains("is the server's own"), "{err}");
}

#[test]
fn a_second_agent_with_a_live_nodes_name_is_refused_and_takes_over_once_it_is_gone() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::RunPod(pinned("a", "n1")));
    h.settle();
    let err = h.connect("n1", [192, 168, 1, 7]).unwrap_err();
    assert!(err.contains("in use by a live node at 192.168.1.2") && err.contains("another --name"), "{err}");
    assert_eq!(h.nodes["n1"].desired.pods.len(), 1, "the first keeps its pods");
    assert_eq!(h.nodes["n1"].address, std::net::Ipv4Addr::new(192, 168, 1, 2));
    // Once the first is silent past the timeout, the name is free.
    h.advance(Duration::from_secs(7));
    h.tick();
    h.connect("n1", [192, 168, 1, 7]).unwrap();
    h.converge();
    assert_eq!(h.nodes["n1"].desired.pods.len(), 1, "the pod moves to the new agent");
}

#[test]
fn deleting_a_node_frees_its_subnet_and_moves_its_replicas() {
    let mut h = Harness::new(1);
    let subnet = h.join("n1", 2);
    h.join("n2", 3);
    h.ok(Request::CreateDeployment(deployment("web", 3)));
    h.ok(Request::RunPod(pinned("pinned", "n1")));
    h.settle();
    h.ok(Request::DeleteNode { name: "n1".into() });
    h.settle();
    let pods = h.pods();
    assert!(pods.iter().all(|p| p.node_name != "n1"), "{pods:?}");
    assert_eq!(pods.iter().filter(|p| p.spec.owner.is_some()).count(), 3, "replicas recreated elsewhere");
    assert!(!pods.iter().any(|p| p.spec.name == "pinned"), "its own pods went with it");
    assert!(h.nodes["n1"].desired.pods.is_empty(), "the deleted node is told to stop them");
    assert!(h.nodes["n2"].desired.peers.iter().all(|p| p.node != "n1"), "no longer a peer");
    assert_eq!(h.join("n3", 4), subnet, "its subnet is free again");
}

#[test]
fn deleting_the_server_or_an_unknown_node_is_refused() {
    let mut h = Harness::new(1);
    let err = h.err(Request::DeleteNode { name: SERVER.into() });
    assert!(err.contains("control plane's own node"), "{err}");
    let err = h.err(Request::DeleteNode { name: "ghost".into() });
    assert!(err.contains("node `ghost` not found") && err.contains("podnet get nodes"), "{err}");
}

#[test]
fn a_bad_node_record_in_a_saved_state_costs_one_peer_not_the_peer_set() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.join("n2", 3);
    let mut state = h.store.last().unwrap();
    // Records written before joins were checked, or by hand.
    let mut bad = state.nodes.iter().find(|n| n.name == "n2").unwrap().clone();
    for (name, subnet, address) in [("lo", 10, [127, 0, 0, 1]), ("twin", 11, [192, 168, 1, 3])] {
        bad.name = name.into();
        bad.subnet = Cidr::new([10, 244, subnet, 0].into(), 24);
        bad.address = Some(address.into());
        state.nodes.push(bad.clone());
    }
    let mut h = Harness::restore(1, state, FakeStore::default());
    let subnet = h.join("n1", 2);
    h.converge();
    let desired = &h.nodes["n1"].desired;
    assert_eq!(desired.peers.len(), 4, "the server sends every record");
    let usable = crate::desired::overlay_peers(
        &desired.peers,
        &[],
        crate::config::NodeConfig::default().network.cluster_cidr,
        subnet,
    );
    let names: Vec<&str> = usable
        .iter()
        .filter_map(|o| {
            desired
                .peers
                .iter()
                .find(|p| netstack::wire::IpCidr::from(p.subnet.ipv4()) == o.subnet)
                .map(|p| p.node.as_str())
        })
        .collect();
    assert_eq!(names, ["n2", SERVER], "the loopback record and n2's twin are skipped");
}

/// Issue #15's trust model: the first join pins the node's password to its
/// name; another machine with the join token cannot take the name, its
/// subnet or its pods, even once the node is gone, until the admin deletes
/// the node.
#[test]
fn a_name_is_pinned_to_the_password_it_first_joined_with() {
    let mut h = Harness::new(1);
    let subnet = h.join("n1", 2);
    h.ok(Request::RunPod(pinned("a", "n1")));
    h.settle();
    let stranger = PasswordDigest::of("another machine");
    h.disconnect("n1");
    h.advance(Duration::from_secs(7));
    h.tick();
    for address in [[192, 168, 1, 2], [192, 168, 1, 9]] {
        let err = h.connect_with("n1", address, &stranger).unwrap_err();
        assert!(err.contains("joined before with another node password"), "{err}");
        assert!(err.contains("podnet delete node n1"), "{err}");
    }
    assert!(matches!(h.cp.authenticate("n1", &stranger), Err(ControlError::NodePassword(_))));
    assert!(h.cp.authenticate("n1", &password_of("n1")).is_ok());
    assert!(matches!(h.cp.authenticate("ghost", &stranger), Err(ControlError::NoNode(_))));
    assert_eq!(h.join("n1", 2), subnet, "the node itself comes back");
    h.converge();
    assert_eq!(h.nodes["n1"].desired.pods.len(), 1, "with its pods");
    // The admin frees the name: the new machine joins it afresh.
    h.ok(Request::DeleteNode { name: "n1".into() });
    h.connect_with("n1", [192, 168, 1, 9], &stranger).unwrap();
    assert!(h.cp.authenticate("n1", &stranger).is_ok());
}

#[test]
fn a_node_from_before_passwords_is_pinned_at_its_next_join() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    let mut state = h.store.last().unwrap();
    state.nodes.iter_mut().for_each(|n| n.password = None);
    let mut h = Harness::restore(1, state, FakeStore::default());
    h.join("n1", 2);
    let saved = h.store.last().expect("the pin is saved");
    let n1 = saved.nodes.iter().find(|n| n.name == "n1").unwrap();
    assert_eq!(n1.password.as_ref(), Some(&password_of("n1")));
    let err = h.connect_with("n1", [192, 168, 1, 2], &PasswordDigest::of("x")).unwrap_err();
    assert!(err.contains("another node password"), "{err}");
}
