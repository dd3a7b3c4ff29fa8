//! Node ports and host ports: allocated from the range, conflicts refused
//! with the owner named, ports other processes hold skipped or refused.

use crate::api::{Request, Response};
use crate::control::harness::*;
use crate::model::{HostPort, Protocol, Service, ServiceType};

fn create(h: &mut Harness, spec: crate::model::ServiceSpec) -> Service {
    match h.ok(Request::CreateService(spec)) {
        Response::Service(s) => s,
        other => panic!("{other:?}"),
    }
}

fn host_port(port: u16) -> HostPort {
    HostPort { host_ip: None, host_port: port, port: 80, protocol: Protocol::Tcp }
}

#[test]
fn node_ports_come_from_the_range_and_differ() {
    let mut h = Harness::new(1);
    let a = create(&mut h, node_port_service("a", "a", None));
    let b = create(&mut h, node_port_service("b", "b", None));
    let (pa, pb) = (a.spec.ports[0].node_port.unwrap(), b.spec.ports[0].node_port.unwrap());
    assert!((30_000..=30_009).contains(&pa) && (30_000..=30_009).contains(&pb));
    assert_ne!(pa, pb);
}

#[test]
fn an_explicit_node_port_outside_the_range_is_refused() {
    let mut h = Harness::new(1);
    let err = h.err(Request::CreateService(node_port_service("a", "a", Some(8080))));
    assert!(err.contains("node port 8080 is outside the node port range 30000-30009"), "{err}");
    let mut spec = service("c", "c");
    spec.ports[0].node_port = Some(30_001);
    assert!(h.err(Request::CreateService(spec)).contains("--node-port needs --type NodePort"));
}

#[test]
fn a_node_port_another_service_uses_is_refused_with_its_owner() {
    let mut h = Harness::new(1);
    create(&mut h, node_port_service("a", "a", Some(30_005)));
    let err = h.err(Request::CreateService(node_port_service("b", "b", Some(30_005))));
    assert!(err.contains("node port 30005/TCP is already used by service default/a"), "{err}");
    // UDP is another port.
    let mut udp = node_port_service("u", "u", Some(30_005));
    udp.ports[0].protocol = Protocol::Udp;
    create(&mut h, udp);
    // Freed with its service.
    h.ok(Request::DeleteService { namespace: "default".into(), name: "a".into() });
    create(&mut h, node_port_service("b", "b", Some(30_005)));
}

#[test]
fn a_node_port_another_process_holds_is_refused_or_skipped() {
    let mut h = Harness::new(1);
    h.host.taken.lock().unwrap().extend((30_000..=30_008).map(|p| (Protocol::Tcp, p)));
    let err = h.err(Request::CreateService(node_port_service("a", "a", Some(30_003))));
    assert!(err.contains("node port 30003/TCP") && err.contains("another process holds it"), "{err}");
    let s = create(&mut h, node_port_service("b", "b", None));
    assert_eq!(s.spec.ports[0].node_port, Some(30_009), "the only port nobody holds");
}

#[test]
fn an_exhausted_node_port_range_is_a_clear_error() {
    let mut h = Harness::new(1);
    for i in 0..10 {
        create(&mut h, node_port_service(&format!("s{i}"), "a", None));
    }
    let err = h.err(Request::CreateService(node_port_service("full", "a", None)));
    assert!(err.contains("has no free TCP port") && err.contains("network.node_port_range"), "{err}");
    let Response::Services(list) = h.ok(Request::GetServices { namespace: None }) else { panic!() };
    assert_eq!(list.len(), 10, "nothing half-created");
}

#[test]
fn a_load_balancer_takes_its_port_on_every_node() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    let mut lb = node_port_service("lb", "lb", None);
    lb.service_type = ServiceType::LoadBalancer;
    lb.ports[0].port = 8080;
    let lb = create(&mut h, lb);
    assert!(lb.spec.ports[0].node_port.is_some(), "a LoadBalancer has a node port too");
    let mut spec = pinned("web", "n1");
    spec.template.host_ports = vec![host_port(8080)];
    let err = h.err(Request::RunPod(spec));
    assert!(err.contains("host port") && err.contains("service default/lb"), "{err}");
    let mut none = node_port_service("x", "x", None);
    none.service_type = ServiceType::LoadBalancer;
    none.cluster_ip = crate::model::ClusterIpRequest::None;
    assert!(h.err(Request::CreateService(none)).contains("needs a ClusterIP"));
}

#[test]
fn host_ports_conflict_on_one_node_but_not_across_nodes() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    let with_port = |name: &str, node: &str| {
        let mut spec = pinned(name, node);
        spec.template.host_ports = vec![host_port(8080)];
        spec
    };
    h.ok(Request::RunPod(with_port("a", "n1")));
    let err = h.err(Request::RunPod(with_port("b", "n1")));
    assert!(err.contains("host port") && err.contains("conflicts") && err.contains("pod default/a"), "{err}");
    h.ok(Request::RunPod(with_port("c", SERVER)));
    h.ok(Request::DeletePod { namespace: "default".into(), name: "a".into() });
    h.ok(Request::RunPod(with_port("b", "n1")));
}

#[test]
fn a_host_port_another_process_holds_on_the_server_is_refused() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.host.taken.lock().unwrap().insert((Protocol::Tcp, 8080));
    let mut spec = pinned("a", SERVER);
    spec.template.host_ports = vec![host_port(8080)];
    let err = h.err(Request::RunPod(spec.clone()));
    assert!(err.contains("host port") && err.contains("in use"), "{err}");
    // The probe is of the server's node: a member's ports are its own.
    spec.node_name = Some("n1".into());
    h.ok(Request::RunPod(spec));
}
