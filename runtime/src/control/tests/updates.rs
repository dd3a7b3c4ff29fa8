//! Objects changed in place: a deployment's template rolled over its pods,
//! a Service keeping its ClusterIP and node ports, pods' immutable fields,
//! namespaces, dry runs.

use crate::api::{Request, Response};
use crate::control::harness::*;
use crate::model::{Amount, ClusterIpRequest, Pod, ServiceType, Strategy};

fn web_pods(h: &mut Harness) -> Vec<Pod> {
    h.pods().into_iter().filter(|p| p.spec.owner.as_deref() == Some("web")).collect()
}

fn new_command() -> Vec<String> {
    vec!["sleep".into(), "1000".into()]
}

#[test]
fn a_changed_template_rolls_the_pods_keeping_three_of_four_ready() {
    let mut h = Harness::new(1);
    h.ok(Request::CreateDeployment(deployment("web", 4)));
    h.settle();
    let old: Vec<String> = web_pods(&mut h).into_iter().map(|p| p.spec.name).collect();
    assert_eq!(old.len(), 4);
    // New pods do not become ready until the test says so.
    h.local_ready = |p| p.spec.template.command != new_command();
    let mut spec = deployment("web", 4);
    spec.template.command = new_command();
    let Response::Deployment(d) = h.ok(Request::UpdateDeployment(spec.clone())) else { panic!() };
    assert_eq!(d.spec.template.command, new_command());
    for _ in 0..5 {
        h.settle();
        let pods = web_pods(&mut h);
        let ready = pods.iter().filter(|p| p.status.ready).count();
        // maxSurge 25% of 4 = 1, maxUnavailable 25% of 4 = 1.
        assert!(pods.len() <= 5, "{pods:?}");
        assert!(ready >= 3, "{pods:?}");
    }
    let pods = web_pods(&mut h);
    assert_eq!(pods.iter().filter(|p| p.spec.template.command == new_command()).count(), 2, "{pods:?}");
    // The new pods pass their checks: the rollout completes.
    h.local_ready = |_| true;
    h.settle();
    h.settle();
    let pods = web_pods(&mut h);
    assert_eq!(pods.len(), 4, "{pods:?}");
    assert!(
        pods.iter().all(|p| p.spec.template.command == new_command() && !old.contains(&p.spec.name)),
        "{pods:?}"
    );
    // Unchanged again: nothing moves, nothing waits to be saved.
    let names: Vec<String> = pods.iter().map(|p| p.spec.name.clone()).collect();
    h.ok(Request::UpdateDeployment(spec));
    h.settle();
    assert_eq!(web_pods(&mut h).into_iter().map(|p| p.spec.name).collect::<Vec<_>>(), names);
    assert!(h.cp.to_save().is_none());
}

#[test]
fn one_replica_is_replaced_only_once_its_successor_is_ready() {
    let mut h = Harness::new(2);
    h.ok(Request::CreateDeployment(deployment("web", 1)));
    h.settle();
    let old = web_pods(&mut h)[0].spec.name.clone();
    h.local_ready = |p| p.spec.template.command != new_command();
    let mut spec = deployment("web", 1);
    spec.template.command = new_command();
    h.ok(Request::UpdateDeployment(spec));
    h.settle();
    let pods = web_pods(&mut h);
    assert_eq!(pods.len(), 2, "surge of one: {pods:?}");
    assert!(pods.iter().any(|p| p.spec.name == old && p.status.ready), "the old one serves: {pods:?}");
    h.local_ready = |_| true;
    h.settle();
    let pods = web_pods(&mut h);
    assert_eq!(pods.len(), 1);
    assert_ne!(pods[0].spec.name, old);
}

#[test]
fn replicas_and_labels_change_and_the_selector_cannot() {
    let mut h = Harness::new(3);
    h.ok(Request::CreateDeployment(deployment("web", 2)));
    h.settle();
    let names: Vec<String> = web_pods(&mut h).into_iter().map(|p| p.spec.name).collect();
    let mut spec = deployment("web", 3);
    spec.annotations.insert("note".into(), "x".into());
    spec.object_labels = Some([("team".to_string(), "a".to_string())].into());
    let Response::Deployment(d) = h.ok(Request::UpdateDeployment(spec.clone())) else { panic!() };
    assert_eq!(d.spec.annotations["note"], "x");
    assert_eq!(d.spec.object_labels()["team"], "a");
    h.settle();
    let pods = web_pods(&mut h);
    assert_eq!(pods.len(), 3);
    assert!(names.iter().all(|n| pods.iter().any(|p| &p.spec.name == n)), "a scale keeps the pods");
    spec.selector = Some([("app".to_string(), "other".to_string())].into());
    spec.labels = spec.selector.clone().unwrap();
    let e = h.err(Request::UpdateDeployment(spec));
    assert!(e.starts_with("spec.selector: Invalid value: field is immutable"), "{e}");
    let e = h.err(Request::UpdateDeployment(deployment("nope", 1)));
    assert!(e.contains("not found"), "{e}");
}

#[test]
fn a_service_keeps_its_cluster_ip_and_node_ports() {
    let mut h = Harness::new(4);
    let Response::Service(s) = h.ok(Request::CreateService(node_port_service("web", "web", None))) else {
        panic!()
    };
    let (ip, node_port) = (s.cluster_ip.unwrap(), s.spec.ports[0].node_port.unwrap());
    // The port the listeners hold is the Service's own: no "in use".
    h.host.taken.lock().unwrap().insert((crate::model::Protocol::Tcp, node_port));
    let mut spec = node_port_service("web", "web", None);
    spec.selector = [("app".to_string(), "api".to_string())].into();
    spec.cluster_ip = ClusterIpRequest::Fixed(ip);
    let Response::Service(s) = h.ok(Request::UpdateService(spec.clone())) else { panic!() };
    assert_eq!((s.cluster_ip, s.spec.ports[0].node_port), (Some(ip), Some(node_port)));
    assert_eq!(s.spec.selector["app"], "api");
    spec.cluster_ip = ClusterIpRequest::Fixed(std::net::Ipv4Addr::new(10, 96, 0, 99).into());
    let e = h.err(Request::UpdateService(spec.clone()));
    assert!(e.starts_with("spec.clusterIP: Invalid value: field is immutable"), "{e}");
    // Back to ClusterIP: the node port goes, also when the client sends
    // it back (a patch of the type alone).
    let mut plain = service("web", "web");
    plain.service_type = ServiceType::ClusterIP;
    plain.ports[0].node_port = Some(node_port);
    let Response::Service(s) = h.ok(Request::UpdateService(plain)) else { panic!() };
    assert_eq!((s.cluster_ip, s.spec.ports[0].node_port), (Some(ip), None));
}

#[test]
fn a_pod_changes_labels_and_annotations_only() {
    let mut h = Harness::new(5);
    h.ok(Request::RunPod(pod("p")));
    let mut spec = pod("p");
    spec.labels.insert("tier".into(), "front".into());
    spec.annotations.insert("a".into(), "b".into());
    spec.node_name = Some(SERVER.into());
    let Response::Pod(p) = h.ok(Request::UpdatePod(spec.clone())) else { panic!() };
    assert_eq!((p.spec.labels["tier"].as_str(), p.spec.annotations["a"].as_str()), ("front", "b"));
    spec.template.command = new_command();
    let e = h.err(Request::UpdatePod(spec));
    assert!(e.starts_with("spec.containers[0].command: Forbidden"), "{e}");
    let mut big = pod("p");
    big.annotations.insert("big".into(), "x".repeat(300 * 1024));
    assert!(h.err(Request::UpdatePod(big)).contains("256 KiB"));
    assert_eq!(h.pod("p").spec.annotations["a"], "b", "nothing half-changed");
}

#[test]
fn deleting_a_namespace_deletes_what_is_in_it() {
    let mut h = Harness::new(6);
    let Response::Namespace(ns) = h.ok(Request::CreateNamespace {
        name: "shop".into(),
        labels: Default::default(),
        annotations: Default::default(),
    }) else {
        panic!()
    };
    assert_eq!(ns.name, "shop");
    assert!(
        h.err(Request::CreateNamespace {
            name: "shop".into(),
            labels: Default::default(),
            annotations: Default::default()
        })
        .contains("already exists")
    );
    let mut d = deployment("web", 2);
    d.namespace = "shop".into();
    h.ok(Request::CreateDeployment(d));
    let mut s = service("web", "web");
    s.namespace = "shop".into();
    h.ok(Request::CreateService(s));
    h.ok(Request::RunPod(pod("keep")));
    h.settle();
    assert_eq!(h.pods().len(), 3);
    h.ok(Request::DeleteNamespace { name: "shop".into() });
    h.settle();
    let left: Vec<String> = h.pods().into_iter().map(|p| p.spec.name).collect();
    assert_eq!(left, ["keep"]);
    let Response::Services(services) = h.ok(Request::GetServices { namespace: None }) else { panic!() };
    assert!(services.is_empty());
    let Response::Namespaces(list) = h.ok(Request::GetNamespaces) else { panic!() };
    assert!(list.is_empty());
    assert!(h.err(Request::DeleteNamespace { name: "shop".into() }).contains("not found"));
    assert!(h.err(Request::DeleteNamespace { name: "default".into() }).contains("may not be deleted"));
    // Saved: a restart keeps a made namespace.
    h.ok(Request::CreateNamespace {
        name: "kept".into(),
        labels: Default::default(),
        annotations: Default::default(),
    });
    assert_eq!(h.store.last().unwrap().namespaces[0].name, "kept");
}

#[test]
fn a_dry_run_answers_and_changes_nothing() {
    let mut h = Harness::new(7);
    h.ok(Request::CreateDeployment(deployment("web", 1)));
    h.settle();
    // The last reports' revision goes out with the next save: saved first.
    h.cp.commit(&mut h.store).unwrap();
    let before = h.cp.state();
    let saves = *h.store.saves.lock().unwrap();
    let Response::Deployment(d) =
        h.ok(Request::DryRun(Box::new(Request::UpdateDeployment(deployment("web", 5)))))
    else {
        panic!()
    };
    assert_eq!(d.spec.replicas, 5);
    let Response::Pod(p) = h.ok(Request::DryRun(Box::new(Request::RunPod(pod("x"))))) else { panic!() };
    assert_eq!(p.spec.name, "x");
    assert!(h.err(Request::DryRun(Box::new(Request::RunPod(pod("Bad"))))).contains("invalid pod name"));
    assert_eq!(h.cp.state(), before);
    assert_eq!(*h.store.saves.lock().unwrap(), saves, "nothing saved");
    // Names after a dry run are the ones they would have been.
    let Response::Pod(real) = h.ok(Request::RunPod(pod("x"))) else { panic!() };
    assert_eq!(real.spec.name, "x");
}

#[test]
fn recreate_and_explicit_bounds_are_honoured() {
    let mut h = Harness::new(8);
    let mut spec = deployment("web", 2);
    spec.strategy = Strategy::Recreate;
    h.ok(Request::CreateDeployment(spec.clone()));
    h.settle();
    h.local_ready = |p| p.spec.template.command != new_command();
    spec.template.command = new_command();
    h.ok(Request::UpdateDeployment(spec.clone()));
    // Recreate: the old pods go first; the new ones come on the next turn.
    assert!(web_pods(&mut h).is_empty());
    h.settle();
    assert_eq!(web_pods(&mut h).len(), 2);
    // maxSurge 1, maxUnavailable 0: one new pod at a time, no old one
    // goes while the new are not ready.
    h.local_ready = |p| p.spec.template.command == new_command();
    h.settle();
    spec.strategy =
        Strategy::RollingUpdate { max_surge: Amount::Count(1), max_unavailable: Amount::Count(0) };
    spec.template.command = vec!["sleep".into(), "3".into()];
    h.ok(Request::UpdateDeployment(spec));
    for _ in 0..3 {
        h.settle();
        let pods = web_pods(&mut h);
        assert_eq!(pods.len(), 3, "{pods:?}");
        assert_eq!(pods.iter().filter(|p| p.spec.template.command == new_command()).count(), 2, "{pods:?}");
    }
}
