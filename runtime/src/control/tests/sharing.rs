//! One copy of each Service and its endpoints however many hold them (issue
//! #19): the control plane's map, the last version the API lists, the change
//! log, a listing's answer and a member's desired state share them.

use std::sync::Arc;

use crate::api::changes::{Object, ObjectKind};
use crate::api::{Request, Response};
use crate::control::harness::*;

/// Services made, each selecting the same three pods.
const SERVICES: usize = 50;

fn objects(h: &mut Harness, kind: ObjectKind) -> Vec<Object> {
    match h.ok(Request::Objects { kind, namespace: None }) {
        Response::Objects { items, .. } => items.into_iter().map(|v| v.object).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn services_and_endpoints_are_shared_not_copied() {
    let mut h = Harness::new(7);
    h.join("n1", 2);
    let start = h.cp.revision();
    for i in 0..3 {
        let mut spec = pinned(&format!("web{i}"), "n1");
        spec.labels = [("app".to_string(), "web".to_string())].into();
        h.ok(Request::RunPod(spec));
    }
    for i in 0..SERVICES {
        h.ok(Request::CreateService(service(&format!("s{i}"), "web")));
    }
    h.settle();

    let desired = h.nodes["n1"].desired.clone();
    assert_eq!(desired.services.len(), SERVICES);
    assert!(desired.services.iter().all(|(_, e)| e.subsets.len() == 3), "three ready endpoints each");
    let services = objects(&mut h, ObjectKind::Service);
    let endpoints = objects(&mut h, ObjectKind::Endpoints);
    let Response::Services(list) = h.ok(Request::GetServices { namespace: None }) else { panic!() };
    let log = match h.ok(Request::Changes { since: start }) {
        Response::Changes { changes, .. } => changes,
        other => panic!("{other:?}"),
    };
    for (service, endpoint) in &desired.services {
        let name = &service.spec.name;
        let stored = &h.cp.services[&(service.spec.namespace.clone(), name.clone())];
        assert!(Arc::ptr_eq(stored, service), "{name}: the member's copy is the control plane's");
        let listed = services.iter().find(|o| o.name() == name).expect("listed");
        let Object::Service(listed) = listed else { panic!() };
        assert!(Arc::ptr_eq(stored, listed), "{name}: the last version is the control plane's");
        let got = list.iter().find(|s| s.spec.name == *name).expect("in GetServices");
        assert!(Arc::ptr_eq(stored, got), "{name}: a listing hands out the control plane's, not a copy");
        let Some(Object::Endpoints(tracked)) = endpoints.iter().find(|o| o.name() == name) else { panic!() };
        assert!(Arc::ptr_eq(tracked, endpoint), "{name}: the member's endpoints are the tracked ones");
        // Their last changes in the log hold the same allocations.
        let logged = |kind| {
            log.iter().rev().find(|c| c.object.object.kind() == kind && c.object.object.name() == name)
        };
        match logged(ObjectKind::Service).map(|c| &c.object.object) {
            Some(Object::Service(s)) => assert!(Arc::ptr_eq(s, stored), "{name}: the log's copy"),
            other => panic!("{name}: {other:?}"),
        }
        match logged(ObjectKind::Endpoints).map(|c| &c.object.object) {
            Some(Object::Endpoints(e)) => assert!(Arc::ptr_eq(e, tracked), "{name}: the log's endpoints"),
            other => panic!("{name}: {other:?}"),
        }
    }
}
