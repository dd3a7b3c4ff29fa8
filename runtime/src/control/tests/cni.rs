//! CNI attachments: a container another runtime runs is a pod of the node
//! whose plugin was called, with an address of its subnet; ADD of an
//! existing attachment fails, DEL is idempotent and works after a restart,
//! GC frees what the runtime no longer lists, the node's pod limit holds.

use crate::api::{CniAdd, Request, Response};
use crate::control::ControlError;
use crate::control::harness::*;
use crate::model::cni::CniAttachment;
use crate::model::{Pod, PodSpec};

/// A CNI request made on the server's node, answered as the agent does.
fn cni(h: &mut Harness, request: Request) -> Result<Response, ControlError> {
    let response = h.cp.cni(h.now, SERVER, request)?;
    h.cp.commit(&mut h.store)?;
    h.converge();
    Ok(response)
}

fn attachment(id: &str, ifname: &str, network: &str) -> CniAttachment {
    CniAttachment {
        container_id: id.into(),
        ifname: ifname.into(),
        netns: format!("/run/netns/cni-{id}").into(),
        network: network.into(),
    }
}

fn add(h: &mut Harness, id: &str, name: Option<&str>) -> Result<Pod, ControlError> {
    let request = Request::CniAdd(CniAdd {
        attachment: attachment(id, "eth0", "podnet"),
        name: name.map(String::from),
        namespace: None,
    });
    match cni(h, request)? {
        Response::Pod(pod) => Ok(pod),
        other => panic!("{other:?}"),
    }
}

fn del(h: &mut Harness, id: &str) {
    let request = Request::CniDel { container_id: id.into(), ifname: "eth0".into() };
    assert!(matches!(cni(h, request), Ok(Response::Done)));
}

fn names(h: &mut Harness) -> Vec<String> {
    h.pods().into_iter().map(|p| p.spec.name).collect()
}

#[test]
fn an_attachment_is_a_pod_of_the_node_named_by_the_runtime() {
    let mut h = Harness::new(1);
    let cam = add(&mut h, "0123456789abcdef", Some("cam")).unwrap();
    assert_eq!((cam.spec.namespace.as_str(), cam.spec.name.as_str()), ("default", "cam"));
    assert_eq!(cam.node_name, SERVER);
    assert!(cam.spec.template.command.is_empty() && cam.spec.template.image.is_none());
    let ip = cam.status.pod_ip.unwrap();
    assert!(crate::config::Cidr::new([10, 244, 0, 0].into(), 24).contains(ip), "{ip}");
    // No K8S_POD_NAME: the container id.
    let other = add(&mut h, "FEDCBA9876543210", None).unwrap();
    assert_eq!(other.spec.name, "cni-fedcba9876543210");
    assert_ne!(other.status.pod_ip, Some(ip));
    assert!(h.pod("cam").status.ready, "the node reports it running");
}

#[test]
fn add_of_an_existing_attachment_fails_and_del_is_idempotent() {
    let mut h = Harness::new(1);
    add(&mut h, "c1", Some("cam")).unwrap();
    let again = add(&mut h, "c1", Some("cam")).unwrap_err().to_string();
    assert!(again.contains("already has interface eth0") && again.contains("DEL"), "{again}");
    del(&mut h, "c1");
    assert!(names(&mut h).is_empty());
    // Again, and for a container podnet never saw: still success.
    del(&mut h, "c1");
    del(&mut h, "never-seen");
    // The name is free again.
    add(&mut h, "c2", Some("cam")).unwrap();
}

#[test]
fn del_works_after_a_restart_from_the_saved_state() {
    let mut h = Harness::new(1);
    add(&mut h, "c1", Some("cam")).unwrap();
    let (state, store) = (h.store.last().unwrap(), h.store.clone());
    let mut h = Harness::restore(2, state, store);
    let check = Request::CniCheck { container_id: "c1".into(), ifname: "eth0".into() };
    assert!(matches!(cni(&mut h, check.clone()), Ok(Response::Pods(p)) if p.len() == 1));
    del(&mut h, "c1");
    assert!(names(&mut h).is_empty());
    assert!(h.store.last().unwrap().pods.is_empty(), "the DEL is saved");
    assert!(matches!(cni(&mut h, check), Ok(Response::Pods(p)) if p.is_empty()));
}

#[test]
fn gc_frees_the_attachments_of_its_network_not_listed() {
    let mut h = Harness::new(1);
    add(&mut h, "keep", Some("keep")).unwrap();
    add(&mut h, "stale", Some("stale")).unwrap();
    let other = CniAdd {
        attachment: attachment("other", "eth0", "elsewhere"),
        name: Some("other".into()),
        namespace: None,
    };
    cni(&mut h, Request::CniAdd(other)).unwrap();
    h.ok(Request::RunPod(pod("web")));
    let gc = Request::CniGc { network: "podnet".into(), valid: vec![("keep".into(), "eth0".into())] };
    cni(&mut h, gc).unwrap();
    let mut left = names(&mut h);
    left.sort();
    assert_eq!(left, ["keep", "other", "web"]);
}

#[test]
fn the_nodes_pod_limit_bounds_attachments() {
    let mut config = config();
    config.limits.max_pods = 2;
    let mut h = Harness::with_config(1, Default::default(), FakeStore::default(), config);
    h.ok(Request::RunPod(pod("web")));
    add(&mut h, "c1", None).unwrap();
    let full = add(&mut h, "c2", None).unwrap_err().to_string();
    assert!(full.contains("limits.max_pods"), "{full}");
    assert_eq!(names(&mut h).len(), 2, "nothing half-made");
}

#[test]
fn labels_put_an_attachment_behind_a_service_and_keep_it_attached() {
    let mut h = Harness::new(1);
    let ip = add(&mut h, "c1", Some("cam")).unwrap().status.pod_ip.unwrap();
    // As the Kubernetes API decodes a pod: no attachment in it.
    let mut spec = PodSpec { attachment: None, ..h.pod("cam").spec };
    spec.labels.insert("app".into(), "cam".into());
    h.ok(Request::UpdatePod(spec));
    assert!(h.pod("cam").spec.attachment.is_some());
    h.ok(Request::CreateService(service("cam", "cam")));
    assert_eq!(h.ready_ips("cam"), [ip]);
}

#[test]
fn bad_input_from_the_runtime_is_refused_whole() {
    let mut h = Harness::new(1);
    let bad = CniAdd { attachment: attachment("c1", "eth0/x", "podnet"), name: None, namespace: None };
    let e = cni(&mut h, Request::CniAdd(bad)).unwrap_err().to_string();
    assert!(e.contains("CNI_IFNAME"), "{e}");
    let bad = CniAdd {
        attachment: attachment("c1", "eth0", "podnet"),
        name: Some("Not A Name!".into()),
        namespace: Some("UPPER".into()),
    };
    let e = cni(&mut h, Request::CniAdd(bad)).unwrap_err().to_string();
    assert!(e.contains("namespace"), "{e}");
    assert!(names(&mut h).is_empty());
}
