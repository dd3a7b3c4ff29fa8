//! The Ingress routing table (`runtime::ingress::routing`) and the checks
//! of what a user writes (`model::ingress`), on input from a lan client and
//! a user: the first line is a rule's host, the second its path, the third
//! a request's host, the rest the request's path.
//!
//! Checks: nothing panics; a rule the checks accept is routed for its own
//! host and path (Exact) and for any path under it (Prefix); a request for a
//! host no rule names goes to the host-less catch-all; a Prefix never
//! matches a longer segment (`/api` is not `/apix`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::ingress::routing::{Decision, Table};
use runtime::model::ingress::{
    BackendPort, Ingress, IngressBackend, IngressPath, IngressRule, IngressSpec, PathType, check_host, check_path,
};

fn ingress(name: &str, created_at: u64, host: Option<&str>, path: &str, path_type: PathType, svc: &str) -> Ingress {
    Ingress {
        uid: name.into(),
        created_at,
        spec: IngressSpec {
            name: name.into(),
            namespace: "default".into(),
            class: None,
            default_backend: None,
            tls: vec![],
            rules: vec![IngressRule {
                host: host.map(String::from),
                paths: vec![IngressPath {
                    path: path.into(),
                    path_type,
                    backend: IngressBackend { service: svc.into(), port: BackendPort::Number(80) },
                }],
            }],
            labels: Default::default(),
            annotations: Default::default(),
        },
        load_balancer: None,
    }
}

fn backend(table: &Table, host: &str, path: &str) -> Option<String> {
    match table.route(host, path) {
        Decision::Route(r) => Some(r.backends.name.clone()),
        Decision::NotFound => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(4, '\n');
    let (rule_host, rule_path) = (lines.next().unwrap_or(""), lines.next().unwrap_or("/"));
    let (req_host, req_path) = (lines.next().unwrap_or(""), lines.next().unwrap_or("/"));
    let _ = req_host.parse::<IngressBackend>();
    let valid = check_host(rule_host).is_ok() && check_path(rule_path).is_ok();
    let host = (!rule_host.is_empty()).then_some(rule_host);
    let rules = [
        ingress("exact", 1, host, rule_path, PathType::Exact, "exact"),
        ingress("prefix", 2, host, rule_path, PathType::Prefix, "prefix"),
        ingress("any", 3, None, "/", PathType::Prefix, "any"),
    ];
    let table = Table::build(&rules, &[]);
    // Arbitrary requests never panic.
    let _ = backend(&table, req_host, req_path);
    if !valid || host.is_none() || rule_host.starts_with("*.") {
        return;
    }
    assert_eq!(backend(&table, rule_host, rule_path).as_deref(), Some("default/exact:80"));
    let base = rule_path.trim_end_matches('/');
    let under = format!("{base}/x");
    assert_eq!(backend(&table, rule_host, &under).as_deref(), Some("default/prefix:80"));
    if !base.is_empty() {
        let longer = format!("{base}x");
        assert_ne!(backend(&table, rule_host, &longer).as_deref(), Some("default/prefix:80"), "{longer}");
    }
    assert_eq!(backend(&table, "", "/").as_deref(), Some("default/any:80"));
});
