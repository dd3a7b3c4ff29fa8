//! Arbitrary bytes as what a client of the Kubernetes API sends after the
//! token check (issue #15: "fuzz the request decoding"): the first byte
//! picks the shape, the rest is
//! - a request body, as JSON or as kubectl's protobuf envelope, decoded and
//!   then read as a Pod, a Deployment, a Service and a scale, with the
//!   strict-field check, as the server does for each kind;
//! - a URL path, routed;
//! - a label and a field selector, parsed and matched against an object;
//! - a PATCH body, applied as each kind of patch to a live Deployment and
//!   the result decoded, as an update does;
//! - a manifest for `podnet apply` (YAML documents, lists).
//!
//! Checks: nothing panics, and refusals are Status errors (a 4xx), never a
//! crash; the counting allocator bounds what decoding may hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::kube::patch::{self, PatchKind};
use runtime::kube::{decode, fields, manifest, protobuf, routes, select};
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: podnet_fuzz::Counting = podnet_fuzz::Counting;

/// What a 1 MiB body (the server's cap) may cost to decode, all told.
const BUDGET: usize = 64 << 20;

fn read_as_every_kind(body: &Value) {
    for kind in ["Pod", "Deployment", "Service"] {
        let _ = fields::unknown(kind, body);
    }
    let _ = decode::pod(body, "default");
    let _ = decode::deployment(body, "default");
    let _ = decode::service(body, "default");
    let _ = decode::replicas(body, "web");
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else { return };
    let base = podnet_fuzz::start_measuring();
    match shape % 6 {
        0 => {
            if let Ok(body) = serde_json::from_slice::<Value>(rest) {
                read_as_every_kind(&body);
            }
        }
        1 => {
            if let Ok(body) = protobuf::decode(rest) {
                read_as_every_kind(&body);
            }
        }
        2 => {
            if let Ok(path) = std::str::from_utf8(rest) {
                let _ = routes::route(path);
            }
        }
        4 => {
            if let Ok(body) = serde_json::from_slice::<Value>(rest) {
                let live = json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": { "name": "web", "namespace": "default", "labels": { "app": "web" } },
                    "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } }, "template": {
                        "metadata": { "labels": { "app": "web" } },
                        "spec": { "containers": [{ "name": "app", "image": "app:v1", "ports": [{ "containerPort": 80 }] }] } } } });
                for kind in [PatchKind::Json, PatchKind::Merge, PatchKind::Strategic, PatchKind::Apply] {
                    if let Ok(object) = patch::apply(kind, &live, &body) {
                        let _ = fields::unknown("Deployment", &object);
                        let _ = decode::deployment(&object, "default");
                    }
                }
            }
        }
        5 => {
            let _ = manifest::read(&String::from_utf8_lossy(rest), "default");
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let (labels, fields_text) = text.split_once('\n').unwrap_or((&text, ""));
            let object = json!({
                "metadata": { "name": "web-1", "namespace": "default", "labels": { "app": "web", "tier": "a" } },
                "spec": { "nodeName": "pi1" },
                "status": { "phase": "Running" },
            });
            if let Ok(selector) = select::LabelSelector::parse(labels) {
                let _ = selector.matches(&object);
            }
            if let Ok(selector) = select::FieldSelector::parse(fields_text, "Pod") {
                let _ = selector.matches(&object);
            }
        }
    }
    let peak = podnet_fuzz::peak_since(base);
    assert!(peak <= BUDGET, "decoding {} bytes held {peak} bytes", data.len());
});
