//! Deployments kept at their replica count, over the nodes.

use std::collections::BTreeSet;

use crate::api::{Request, Response};
use crate::control::harness::*;

fn replica_names(h: &mut Harness) -> BTreeSet<String> {
    h.pods().into_iter().filter(|p| p.spec.owner.as_deref() == Some("web")).map(|p| p.spec.name).collect()
}

#[test]
fn a_deployment_creates_its_replicas_one_per_node() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.join("n2", 3);
    let Response::Deployment(d) = h.ok(Request::CreateDeployment(deployment("web", 3))) else { panic!() };
    assert_eq!(d.replicas, 3);
    h.settle();
    let pods = h.pods();
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node_name.as_str()).collect();
    assert_eq!(nodes.len(), 3, "{pods:?}");
    assert!(pods.iter().all(|p| p.spec.name.starts_with("web-") && p.spec.labels["app"] == "web"));
    assert!(pods.iter().all(|p| p.status.ready), "every node reported its replica: {pods:?}");
    let Response::Deployments(list) = h.ok(Request::GetDeployments { namespace: None }) else { panic!() };
    assert_eq!(list[0].ready_replicas, 3);
}

#[test]
fn scaling_down_removes_the_youngest_and_scaling_up_adds() {
    let mut h = Harness::new(1);
    h.ok(Request::CreateDeployment(deployment("web", 2)));
    let first = replica_names(&mut h);
    h.advance(std::time::Duration::from_secs(10));
    let scale =
        |replicas| Request::ScaleDeployment { namespace: "default".into(), name: "web".into(), replicas };
    h.ok(scale(4));
    assert_eq!(replica_names(&mut h).len(), 4);
    h.ok(scale(2));
    assert_eq!(replica_names(&mut h), first, "the two oldest stay");
    h.ok(scale(0));
    assert!(replica_names(&mut h).is_empty());
}

#[test]
fn a_deleted_replica_is_replaced_on_the_next_turn() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::CreateDeployment(deployment("web", 2)));
    let before = replica_names(&mut h);
    let victim = before.iter().next().unwrap().clone();
    h.ok(Request::DeletePod { namespace: "default".into(), name: victim.clone() });
    assert_eq!(replica_names(&mut h).len(), 1);
    h.tick();
    let after = replica_names(&mut h);
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&victim), "a new name: {after:?}");
}

#[test]
fn deleting_a_deployment_removes_its_pods_from_every_node() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::CreateDeployment(deployment("web", 2)));
    h.ok(Request::RunPod(pod("other")));
    h.settle();
    assert_eq!(h.nodes["n1"].desired.pods.len(), 1, "one replica on n1");
    h.ok(Request::DeleteDeployment { namespace: "default".into(), name: "web".into() });
    h.settle();
    assert!(replica_names(&mut h).is_empty());
    assert!(h.nodes["n1"].desired.pods.is_empty(), "n1 told to stop its replica");
    assert_eq!(h.pods().len(), 1, "other pods stay");
    let err = h.err(Request::DeleteDeployment { namespace: "default".into(), name: "web".into() });
    assert!(err.contains("deployment default/web not found"), "{err}");
}

#[test]
fn host_ports_limit_a_deployment_to_one_replica() {
    let mut h = Harness::new(1);
    let mut spec = deployment("web", 2);
    spec.template.host_ports = vec![crate::model::HostPort {
        host_ip: None,
        host_port: 8080,
        port: 80,
        protocol: crate::model::Protocol::Tcp,
    }];
    let err = h.err(Request::CreateDeployment(spec.clone()));
    assert!(err.contains("one replica"), "{err}");
    spec.replicas = 1;
    h.ok(Request::CreateDeployment(spec));
    let scale = Request::ScaleDeployment { namespace: "default".into(), name: "web".into(), replicas: 3 };
    assert!(h.err(scale).contains("one replica"));
    assert_eq!(replica_names(&mut h).len(), 1);
}
