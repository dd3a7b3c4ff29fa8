//! Ingresses and Secrets in the control plane: checked, saved, numbered,
//! and handed to every node — of the Secrets only the TLS ones podnet's
//! Ingresses name.

use crate::api::changes::ObjectKind;
use crate::api::{Request, Response};
use crate::control::harness::*;
use crate::model::ingress::{
    BackendPort, IngressBackend, IngressPath, IngressRule, IngressSpec, IngressTls, PathType,
};
use crate::model::secret::{SecretSpec, TLS_KEY};

fn ingress(name: &str, secret: Option<&str>) -> IngressSpec {
    IngressSpec {
        name: name.into(),
        namespace: "default".into(),
        class: None,
        default_backend: None,
        tls: secret
            .map(|s| vec![IngressTls { hosts: vec!["shop.example".into()], secret_name: s.into() }])
            .unwrap_or_default(),
        rules: vec![IngressRule {
            host: Some("shop.example".into()),
            paths: vec![IngressPath {
                path: "/".into(),
                path_type: PathType::Prefix,
                backend: IngressBackend { service: "web".into(), port: BackendPort::Number(80) },
            }],
        }],
        labels: Default::default(),
        annotations: Default::default(),
    }
}

fn tls_secret(name: &str) -> SecretSpec {
    SecretSpec::self_signed(name, "shop.example")
}

#[test]
fn ingresses_and_secrets_are_saved_numbered_and_restored() {
    let mut h = Harness::new(1);
    h.ok(Request::CreateSecret(tls_secret("shop-tls")));
    h.ok(Request::CreateIngress(ingress("shop", Some("shop-tls"))));
    let saved = h.store.last().unwrap();
    assert_eq!((saved.ingresses.len(), saved.secrets.len()), (1, 1));
    let Response::Objects { items, .. } =
        h.ok(Request::Objects { kind: ObjectKind::Ingress, namespace: None })
    else {
        panic!()
    };
    assert_eq!(items.len(), 1);
    let first = items[0].revision;
    // A change bumps its revision; the same spec again changes nothing.
    let mut changed = ingress("shop", Some("shop-tls"));
    changed.rules[0].paths[0].path = "/v2".into();
    h.ok(Request::UpdateIngress(changed.clone()));
    let Response::Objects { items, .. } =
        h.ok(Request::Objects { kind: ObjectKind::Ingress, namespace: None })
    else {
        panic!()
    };
    assert!(items[0].revision > first);
    assert_eq!(items[0].generation, 2);

    let restored = Harness::restore(2, h.store.last().unwrap(), FakeStore::default());
    let desired = restored.cp.desired_for(SERVER);
    assert_eq!(desired.ingresses.len(), 1);
    assert_eq!(desired.ingresses[0].spec, changed);
}

#[test]
fn nodes_get_only_the_tls_secrets_podnets_ingresses_name() {
    let mut h = Harness::new(1);
    h.join("n1", 2);
    h.ok(Request::CreateSecret(tls_secret("shop-tls")));
    h.ok(Request::CreateSecret(tls_secret("unused-tls")));
    h.ok(Request::CreateSecret(opaque_secret("db")));
    h.ok(Request::CreateIngress(ingress("shop", Some("shop-tls"))));
    let mut other = ingress("other", Some("unused-tls"));
    other.class = Some("nginx".into());
    h.ok(Request::CreateIngress(other));
    h.converge();
    let member = &h.nodes["n1"].desired;
    assert_eq!(member.ingresses.len(), 2, "every Ingress goes to every node");
    let names: Vec<&str> = member.secrets.iter().map(|s| s.spec.name.as_str()).collect();
    assert_eq!(names, ["shop-tls"]);
    // Listing shows keys and sizes, never the bytes.
    let Response::Secrets(list) = h.ok(Request::GetSecrets { namespace: None }) else { panic!() };
    let db = list.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(db.keys, vec![("password".to_string(), 7)]);
    assert!(!format!("{list:?}").contains("hunter2"));
}

#[test]
fn bad_or_duplicate_objects_are_refused_and_change_nothing() {
    let mut h = Harness::new(1);
    let before = h.cp.state();
    let mut bad = tls_secret("mismatch");
    let other = tls_secret("x");
    bad.data.insert(TLS_KEY.into(), other.data[TLS_KEY].clone());
    assert!(h.err(Request::CreateSecret(bad)).contains("tls.key is not the key of tls.crt"));
    let mut wild = ingress("wild", None);
    wild.rules[0].host = Some("*".into());
    assert!(h.err(Request::CreateIngress(wild)).contains("wildcard of one leading label"));
    let mut relative = ingress("rel", None);
    relative.rules[0].paths[0].path = "api".into();
    assert!(h.err(Request::CreateIngress(relative)).contains("must start with `/`"));
    assert_eq!(h.cp.state(), before);
    h.ok(Request::CreateIngress(ingress("shop", None)));
    assert!(h.err(Request::CreateIngress(ingress("shop", None))).contains("already exists"));
    assert!(h.err(Request::UpdateIngress(ingress("nope", None))).contains("ingress default/nope not found"));
    assert!(
        h.err(Request::DeleteSecret { namespace: "default".into(), name: "nope".into() })
            .contains("not found")
    );
}

/// The status podnet writes back: every Ready node's address, in order; a
/// node going NotReady is a change of the Ingress that watchers see.
#[test]
fn the_status_lists_the_ready_nodes_addresses_and_follows_them() {
    use std::net::Ipv4Addr;
    let mut h = Harness::new(1);
    let addresses = |h: &mut Harness| {
        let Response::Ingresses { items, .. } = h.ok(Request::GetIngresses { namespace: None }) else {
            panic!("a list")
        };
        items[0].load_balancer.as_ref().map(|lb| lb.ingress.clone())
    };
    let Response::Ingress(created) = h.ok(Request::CreateIngress(ingress("shop", None))) else { panic!() };
    let server = std::net::IpAddr::from(Ipv4Addr::new(192, 168, 1, 1));
    assert_eq!(created.load_balancer.unwrap().ingress, vec![server]);
    h.join("n2", 9);
    h.join("n1", 5);
    h.settle();
    let all = vec![server, Ipv4Addr::new(192, 168, 1, 5).into(), Ipv4Addr::new(192, 168, 1, 9).into()];
    assert_eq!(addresses(&mut h), Some(all.clone()));
    let Response::Objects { items, revision } =
        h.ok(Request::Objects { kind: ObjectKind::Ingress, namespace: None })
    else {
        panic!()
    };
    let crate::api::changes::Object::Ingress(watched) = &items[0].object else { panic!() };
    assert_eq!(watched.load_balancer.as_ref().unwrap().ingress, all, "watchers see the status");

    h.disconnect("n1");
    h.run_for(10);
    assert_eq!(addresses(&mut h), Some(vec![server, Ipv4Addr::new(192, 168, 1, 9).into()]));
    let Response::Changes { changes, .. } = h.ok(Request::Changes { since: revision }) else { panic!() };
    assert!(
        changes.iter().any(|c| matches!(&c.object.object, crate::api::changes::Object::Ingress(i)
            if i.load_balancer.as_ref().unwrap().ingress.len() == 2)),
        "NotReady is a change of the Ingress"
    );

    // Another class is not podnet's: no status.
    let mut other = ingress("other", None);
    other.class = Some("nginx".into());
    let Response::Ingress(other) = h.ok(Request::CreateIngress(other)) else { panic!() };
    assert_eq!(other.load_balancer, None);
}

/// A member whose Ingress port another socket holds is not an address of
/// the Ingress: its report takes it out, names it and the port, and puts
/// it back once the port is free; watchers see both changes.
#[test]
fn a_members_held_port_takes_its_address_out_of_the_status() {
    use std::net::{IpAddr, Ipv4Addr};
    let mut h = Harness::new(1);
    let status = |h: &mut Harness| {
        let Response::Ingresses { items, .. } = h.ok(Request::GetIngresses { namespace: None }) else {
            panic!("a list")
        };
        items[0].load_balancer.clone().expect("podnet's class has a status")
    };
    h.ok(Request::CreateIngress(ingress("shop", None)));
    h.join("n1", 5);
    h.settle();
    let (server, n1): (IpAddr, IpAddr) =
        (Ipv4Addr::new(192, 168, 1, 1).into(), Ipv4Addr::new(192, 168, 1, 5).into());
    assert_eq!((status(&mut h).ingress, status(&mut h).problem), (vec![server, n1], None));
    let Response::Objects { revision, .. } =
        h.ok(Request::Objects { kind: ObjectKind::Ingress, namespace: None })
    else {
        panic!()
    };

    h.nodes.get_mut("n1").unwrap().ingress_problem = Some("port 80/TCP in use on the node".into());
    h.reports();
    let held = status(&mut h);
    assert_eq!(held.ingress, vec![server]);
    assert_eq!(held.problem.as_deref(), Some("port 80/TCP in use on the node (n1)"));
    let Response::Changes { changes, .. } = h.ok(Request::Changes { since: revision }) else { panic!() };
    assert!(
        changes.iter().any(|c| matches!(&c.object.object, crate::api::changes::Object::Ingress(i)
            if i.load_balancer.as_ref().is_some_and(|lb| lb.ingress == vec![server]))),
        "a held port is a change of the Ingress"
    );

    h.nodes.get_mut("n1").unwrap().ingress_problem = None;
    h.reports();
    assert_eq!((status(&mut h).ingress, status(&mut h).problem), (vec![server, n1], None));
}
