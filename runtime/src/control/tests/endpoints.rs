//! Endpoints: a pod serves once its node reports it ready, and only while
//! its node is Ready.

use std::time::Duration;

use crate::api::Request;
use crate::control::harness::*;

#[test]
fn a_pod_is_an_endpoint_once_its_node_reports_it_ready() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::CreateService(service("web", "web")));
    h.ok(Request::RunPod(pinned("web", "n1")));
    let ip = h.pod("web").status.pod_ip.unwrap();
    assert!(h.ready_ips("web").is_empty(), "not reported yet");
    assert_eq!(h.endpoints("web").not_ready.len(), 1);
    h.settle();
    assert_eq!(h.ready_ips("web"), [ip]);
}

#[test]
fn a_pod_failing_its_readiness_is_not_an_endpoint() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.nodes.get_mut("n1").unwrap().pods_ready = false;
    h.ok(Request::CreateService(service("web", "web")));
    h.ok(Request::RunPod(pinned("web", "n1")));
    h.settle();
    assert!(h.ready_ips("web").is_empty());
    h.nodes.get_mut("n1").unwrap().pods_ready = true;
    h.settle();
    assert_eq!(h.ready_ips("web").len(), 1);
}

#[test]
fn a_silent_node_loses_its_endpoints_and_gets_them_back_with_a_heartbeat() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::CreateService(service("web", "app")));
    let mut far = pinned("far", "n1");
    far.labels = [("app".to_string(), "app".to_string())].into();
    let mut near = pinned("near", SERVER);
    near.labels = far.labels.clone();
    h.ok(Request::RunPod(far));
    h.ok(Request::RunPod(near));
    h.settle();
    assert_eq!(h.ready_ips("web").len(), 2);
    let near_ip = h.pod("near").status.pod_ip.unwrap();

    // n1 goes silent: after the heartbeat timeout only the server's pod serves.
    h.disconnect("n1");
    h.advance(Duration::from_secs(7));
    h.tick();
    h.converge();
    assert!(!h.ready("n1"));
    assert_eq!(h.ready_ips("web"), [near_ip]);

    // Back: one report makes it Ready and its pod an endpoint again.
    h.join("n1", 2);
    h.converge();
    h.reports();
    assert!(h.ready("n1"));
    assert_eq!(h.ready_ips("web").len(), 2);
}

#[test]
fn every_member_is_told_the_endpoints_of_every_service() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.join("n2", 3);
    h.ok(Request::CreateService(service("web", "web")));
    h.ok(Request::RunPod(pinned("web", "n2")));
    h.settle();
    for node in ["n1", "n2"] {
        let desired = &h.nodes[node].desired;
        let (service, endpoints) = desired.services.iter().find(|(s, _)| s.spec.name == "web").unwrap();
        assert!(service.cluster_ip.is_some());
        assert_eq!(endpoints.subsets.len(), 1, "{node}");
        assert_eq!(desired.pod_ips.len(), 1, "{node}: pod DNS records of the whole cluster");
    }
    h.ok(Request::DeletePod { namespace: "default".into(), name: "web".into() });
    h.settle();
    assert!(
        h.nodes["n1"].desired.services.iter().all(|(_, e)| e.subsets.is_empty() && e.not_ready.is_empty())
    );
}
