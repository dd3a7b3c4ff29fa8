//! discovery.k8s.io/v1 EndpointSlices: a Service's endpoints in the shape
//! kube-proxy, CoreDNS and client libraries read since Kubernetes 1.21
//! (core/v1 Endpoints is deprecated from 1.33). podnet keeps one Endpoints
//! object per Service (`model::Endpoints`, numbered with the Service's
//! other changes); a slice is that object shown in the newer shape, so it
//! is listed, got and watched through the same change stream.
//!
//! One slice per Service: a slice has one port list, which fits every
//! Service whose target ports are the same number on all of its pods. When
//! a named targetPort resolves to different numbers on different pods, the
//! EndpointSlice controller makes one slice per port list; podnet's slice
//! holds the pods of the first list and names the others in the
//! `podnet.io/problems` annotation, as its Endpoints does for other gaps.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::objects::metadata;
use super::replicasets::{fnv, safe_encode};
use crate::model::{EndpointAddress, EndpointPort, Endpoints};

/// The group.
pub const GROUP: &str = "discovery.k8s.io";
/// The group's one version, as objects name it.
pub const API_VERSION: &str = "discovery.k8s.io/v1";
/// The label that ties a slice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// The slice's name: the Service's name and five characters, as the
/// EndpointSlice controller's `generateName` makes it (the prefix cut to
/// 58 characters), but stable: derived from the Service, not random, so a
/// restart shows the same slice.
pub fn name(e: &Endpoints) -> String {
    let mut prefix = format!("{}-", e.name);
    prefix.truncate(58);
    let key = format!("{}/{}/{}", e.namespace, e.name, e.created_at);
    prefix + &safe_encode(fnv(key.as_bytes()), 5)
}

fn endpoint(a: &EndpointAddress, namespace: &str, ready: bool) -> Value {
    json!({
        "addresses": [a.ip],
        "conditions": { "ready": ready, "serving": ready, "terminating": false },
        "targetRef": { "kind": "Pod", "name": a.pod, "namespace": namespace },
    })
}

fn port(p: &EndpointPort) -> Value {
    let mut out = json!({ "port": p.port, "protocol": p.protocol.to_string() });
    if let Some(name) = &p.name {
        out["name"] = json!(name);
    }
    out
}

/// The Service's slice as `kubectl get endpointslice -o json` shows it.
pub fn slice(e: &Endpoints, rv: u64) -> Value {
    let ports = e.subsets.first().map(|(_, ports)| ports.as_slice()).unwrap_or_default();
    let mut endpoints = Vec::new();
    let mut left_out: Vec<&str> = Vec::new();
    for (a, theirs) in &e.subsets {
        match theirs.as_slice() == ports {
            true => endpoints.push(endpoint(a, &e.namespace, true)),
            false => left_out.push(&a.pod),
        }
    }
    endpoints.extend(e.not_ready.iter().map(|a| endpoint(a, &e.namespace, false)));
    let family = match e.subsets.first().map(|(a, _)| a.ip).or(e.not_ready.first().map(|a| a.ip)) {
        Some(IpAddr::V6(_)) => "IPv6",
        _ => "IPv4",
    };
    let mut meta = metadata(&name(e), Some(&e.namespace), "", e.created_at, rv);
    meta["labels"] = json!({ SERVICE_NAME_LABEL: e.name, MANAGED_BY_LABEL: "podnet.io" });
    meta["generateName"] = json!(format!("{}-", e.name));
    let mut problems = e.problems.clone();
    if !left_out.is_empty() {
        problems.push(format!(
            "pods whose ports differ from the first pod's are not in this slice: {}",
            left_out.join(", ")
        ));
    }
    if !problems.is_empty() {
        meta["annotations"] = json!({ "podnet.io/problems": problems.join("; ") });
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": family,
        "endpoints": endpoints,
        "ports": ports.iter().map(port).collect::<Vec<_>>(),
    })
}

/// The slice of an Endpoints object already rendered at `shown` (its
/// resourceVersion is the slice's).
pub fn of(e: &Endpoints, shown: &Value) -> Value {
    let rv = shown["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
    slice(e, rv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn address(ip: &str, pod: &str) -> EndpointAddress {
        EndpointAddress { ip: ip.parse().unwrap(), pod: pod.into() }
    }

    fn http(port: u16) -> Vec<EndpointPort> {
        vec![EndpointPort { name: Some("http".into()), port, protocol: Protocol::Tcp }]
    }

    fn web() -> Endpoints {
        Endpoints {
            name: "web".into(),
            namespace: "shop".into(),
            created_at: 1_700_000_000,
            subsets: vec![
                (address("10.244.0.5", "web-a"), http(8080)),
                (address("10.244.1.7", "web-b"), http(8080)),
            ],
            not_ready: vec![address("10.244.0.9", "web-c")],
            problems: Vec::new(),
        }
    }

    #[test]
    fn a_services_endpoints_are_one_slice_labelled_with_its_name() {
        let s = slice(&web(), 42);
        assert_eq!(s["apiVersion"], "discovery.k8s.io/v1");
        assert_eq!(s["metadata"]["labels"][SERVICE_NAME_LABEL], "web");
        assert_eq!(s["metadata"]["resourceVersion"], "42");
        assert_eq!(s["addressType"], "IPv4");
        assert_eq!(s["ports"], json!([{ "name": "http", "port": 8080, "protocol": "TCP" }]));
        let eps = s["endpoints"].as_array().unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0]["addresses"], json!(["10.244.0.5"]));
        assert_eq!(eps[0]["conditions"]["ready"], true);
        assert_eq!(eps[2]["targetRef"]["name"], "web-c");
        assert_eq!(eps[2]["conditions"]["ready"], false);
        assert!(s["metadata"].get("annotations").is_none());
    }

    #[test]
    fn the_name_is_generated_once_and_stays() {
        let n = name(&web());
        assert!(n.starts_with("web-") && n.len() == 9, "{n}");
        assert_eq!(n, name(&web()), "stable");
        let mut other = web();
        other.created_at += 1;
        assert_ne!(n, name(&other), "a Service made again is a new slice");
        let mut long = web();
        long.name = "x".repeat(63);
        assert_eq!(name(&long).len(), 63);
    }

    #[test]
    fn pods_with_other_ports_are_named_not_mixed_in() {
        let mut e = web();
        e.subsets.push((address("10.244.2.2", "web-odd"), http(9090)));
        let s = slice(&e, 1);
        assert_eq!(s["endpoints"].as_array().unwrap().len(), 3);
        let note = s["metadata"]["annotations"]["podnet.io/problems"].as_str().unwrap();
        assert!(note.contains("web-odd"), "{note}");
    }
}
