//! `kubectl get KIND -w` for the kinds whose watches are not the pods'
//! (issue #15): events, endpoints, namespaces and secrets. Each watch is
//! opened before the change and must show it. Needs root and kubectl.

use std::process::{Child, Stdio};
use std::time::Duration;

use podnet_e2e::kubectl::*;
use podnet_e2e::{Node, require};

/// `kubectl get KIND -w --output-watch-events`, its output in a file.
struct Watch {
    child: Child,
    out: std::path::PathBuf,
}

impl Watch {
    fn start(node: &Node, kind: &str, extra: &[&str]) -> Watch {
        let out = node.dir.join(format!("watch-{kind}.out"));
        let mut args = vec!["get", kind, "-w", "--output-watch-events"];
        args.extend_from_slice(extra);
        let child = kubectl_command(node, KUBECTL, &args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        Watch { child, out }
    }

    /// Waits for a line with `event` first and all of `words`.
    fn saw(&self, event: &str, words: &[&str]) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            if let Some(l) =
                text.lines().find(|l| l.starts_with(event) && words.iter().all(|w| l.contains(w)))
            {
                return l.to_string();
            }
            let errors = std::fs::read_to_string(self.out.with_extension("err")).unwrap_or_default();
            assert!(std::time::Instant::now() < deadline, "no {event} {words:?} in:\n{text}\n{errors}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kubectl_watches_events_endpoints_namespaces_and_secrets() {
    require(KUBECTL, "kubectl");
    let node = node_with_address("kubewatch", None);
    let namespaces = Watch::start(&node, "namespaces", &[]);
    let endpoints = Watch::start(&node, "endpoints", &[]);
    let events = Watch::start(&node, "events", &[]);
    let secrets = Watch::start(&node, "secrets", &[]);
    // Each starts with what is there (a list), then changes.
    namespaces.saw("ADDED", &["default", "Active"]);

    ok(&node, &["create", "namespace", "shop"]);
    namespaces.saw("ADDED", &["shop"]);
    node.named_web("web", 1, 8080, &[]);
    node.ok(&["expose", "deployment", "web", "--port", "80", "--target-port", "8080"]);
    endpoints.saw("ADDED", &["web", ":8080"]);
    // A second ready pod: its address joins the Service's endpoints.
    ok(&node, &["scale", "deployment", "web", "--replicas=2"]);
    endpoints.saw("MODIFIED", &["web", ":8080,"]);
    events.saw("ADDED", &["Started", "pod/web-"]);
    ok(&node, &["create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
    secrets.saw("ADDED", &["db", "Opaque"]);
    ok(&node, &["delete", "secret", "db"]);
    secrets.saw("DELETED", &["db"]);
    ok(&node, &["delete", "namespace", "shop"]);
    namespaces.saw("DELETED", &["shop"]);
}
