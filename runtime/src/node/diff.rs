//! Which Services differ between the list a node last applied and the one
//! the control plane sends now: the node programs only those into its
//! service table and DNS zone, and holds the list it applied as shared
//! pointers (the control plane's own), not as a copy of every entry.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::model::{Endpoints, Service};

/// A Service with its endpoints, as the control plane sends them.
pub(super) type Served = (Arc<Service>, Arc<Endpoints>);

/// One Service that differs: as last applied (None: it is new) and as
/// wanted now (None: it is gone).
pub(super) type Difference<'a> = (Option<&'a Served>, Option<&'a Served>);

fn key(served: &Served) -> (&str, &str) {
    (&served.0.spec.namespace, &served.0.spec.name)
}

/// `list` in (namespace, name) order: the control plane's lists already
/// are (then this only checks), a list from elsewhere is sorted.
pub(super) fn in_order(list: &[Served]) -> Vec<Served> {
    let mut out = list.to_vec();
    out.sort_by(|a, b| key(a).cmp(&key(b)));
    out
}

/// Whether two versions are the same: unchanged Services and endpoints
/// are the same `Arc`s, so this is mostly a pointer comparison.
fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// The Services that differ between `held` and `wanted`, both in key order
/// ([`in_order`]).
pub(super) fn differences<'a>(held: &'a [Served], wanted: &'a [Served]) -> Vec<Difference<'a>> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    loop {
        let step = match (held.get(i), wanted.get(j)) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(h), Some(w)) => key(h).cmp(&key(w)),
        };
        match step {
            Ordering::Less => {
                out.push((held.get(i), None));
                i += 1;
            }
            Ordering::Greater => {
                out.push((None, wanted.get(j)));
                j += 1;
            }
            Ordering::Equal => {
                let (h, w) = (&held[i], &wanted[j]);
                if !(same(&h.0, &w.0) && same(&h.1, &w.1)) {
                    out.push((Some(h), Some(w)));
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// A ClusterIP Service `name` at 10.96.0.`last` and its endpoints (tests).
#[cfg(test)]
pub(super) fn served(name: &str, last: u8, backends: &[u8]) -> Served {
    use crate::model::{ClusterIpRequest, EndpointAddress, Protocol, ServicePort, ServiceSpec, TargetPort};
    use std::net::Ipv4Addr;
    let service = Service {
        uid: name.into(),
        created_at: 0,
        cluster_ip: Some(Ipv4Addr::new(10, 96, 0, last).into()),
        spec: ServiceSpec {
            name: name.into(),
            namespace: "default".into(),
            cluster_ip: ClusterIpRequest::Auto,
            ports: vec![ServicePort {
                name: None,
                port: 80,
                target_port: TargetPort::Number(80),
                protocol: Protocol::Tcp,
                node_port: None,
            }],
            selector: [("app".to_string(), name.to_string())].into(),
            session_affinity: Default::default(),
            external_name: None,
            service_type: Default::default(),
            labels: Default::default(),
            annotations: Default::default(),
        },
        load_balancer: None,
    };
    let endpoints = Endpoints {
        name: name.into(),
        namespace: "default".into(),
        created_at: 0,
        subsets: backends
            .iter()
            .map(|b| {
                let address =
                    EndpointAddress { ip: Ipv4Addr::new(10, 244, 0, *b).into(), pod: format!("p{b}") };
                (address, Vec::new())
            })
            .collect(),
        not_ready: Vec::new(),
        problems: Vec::new(),
    };
    (Arc::new(service), Arc::new(endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(differences: &[Difference<'_>]) -> Vec<(Option<String>, Option<String>)> {
        let name = |s: Option<&Served>| s.map(|(s, _)| s.spec.name.clone());
        differences.iter().map(|(a, b)| (name(*a), name(*b))).collect()
    }

    #[test]
    fn only_what_changed_differs() {
        let (a, b, c) = (served("a", 1, &[1]), served("b", 2, &[2]), served("c", 3, &[3]));
        let held = in_order(&[c.clone(), a.clone(), b.clone()]);
        assert_eq!(held.iter().map(|(s, _)| s.spec.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(differences(&held, &held.clone()).is_empty(), "the same Arcs: nothing");

        // b's endpoints change, c goes, d comes; a is the same Arcs.
        let b2 = (b.0.clone(), served("b", 2, &[2, 4]).1);
        let d = served("d", 4, &[5]);
        let wanted = in_order(&[a.clone(), b2, d]);
        let found = differences(&held, &wanted);
        let some = |n: &str| Some(n.to_string());
        assert_eq!(names(&found), [(some("b"), some("b")), (some("c"), None), (None, some("d"))]);

        // Equal copies (a member's, decoded) are not differences either.
        let copies: Vec<Served> =
            held.iter().map(|(s, e)| (Arc::new(Service::clone(s)), Arc::new(Endpoints::clone(e)))).collect();
        assert!(differences(&held, &copies).is_empty());
    }
}
