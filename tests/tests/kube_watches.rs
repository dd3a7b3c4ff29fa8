//! `kubectl get KIND -w` for the kinds whose watches are not the pods'
//! (issue #15): events, endpoints, namespaces, secrets and ingresses (#16).
//! Each watch is opened before the change and must show it. Needs root and
//! kubectl.

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
fn kubectl_watches_events_endpoints_namespaces_secrets_and_ingresses() {
    require(KUBECTL, "kubectl");
    let node = node_with_address("kubewatch", None);
    let namespaces = Watch::start(&node, "namespaces", &[]);
    let endpoints = Watch::start(&node, "endpoints", &[]);
    let events = Watch::start(&node, "events", &[]);
    let secrets = Watch::start(&node, "secrets", &[]);
    let ingresses = Watch::start(&node, "ingresses", &[]);
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
    // An Ingress shows up with its class and host, then the node's address
    // once the node serves it, then goes.
    ok(&node, &["create", "ingress", "shop", "--class", "podnet", "--rule", "shop.example/*=web:80"]);
    ingresses.saw("ADDED", &["shop", "podnet", "shop.example"]);
    ingresses.saw("", &["shop", NODE_IP]);
    ok(&node, &["delete", "ingress", "shop"]);
    ingresses.saw("DELETED", &["shop"]);
    ok(&node, &["delete", "namespace", "shop"]);
    namespaces.saw("DELETED", &["shop"]);
}

#[test]
fn an_events_watch_from_a_lists_version_replays_what_came_after_it() {
    require(KUBECTL, "kubectl");
    let node = node_with_address("kubeevrv", None);
    node.named_web("web", 1, 8080, &[]);
    let node = &node;
    let has = |name: &'static str| {
        move || ok(node, &["get", "events"]).contains(&format!("pod/{name}")).then_some(())
    };
    podnet_e2e::eventually(Duration::from_secs(40), "web's events", has("web-"));
    // The list kubectl makes before it watches: its version (the API's
    // list, not the List kubectl prints).
    let list = json(&ok(node, &["get", "--raw", "/api/v1/namespaces/default/events"]));
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert!(rv.parse::<u64>().is_ok_and(|rv| rv > 0), "{list}");
    node.named_web("late", 1, 8081, &[]);
    podnet_e2e::eventually(Duration::from_secs(40), "late's events", has("late-"));

    // A watch from the list's version: what came after it, not what the
    // list held.
    let url = format!("/api/v1/namespaces/default/events?watch=1&resourceVersion={rv}&timeoutSeconds=3");
    let replayed = ok(node, &["get", "--raw", &url]);
    let added: Vec<&str> = replayed.lines().filter(|l| l.contains("\"type\":\"ADDED\"")).collect();
    assert!(added.iter().any(|l| l.contains("\"name\":\"late-")), "late's events replayed: {replayed}");
    assert!(
        !added.iter().any(|l| l.contains("\"name\":\"web-")),
        "web's listed events not sent again: {replayed}"
    );
    // From before every list kept: 410, and the client lists again.
    let out = kubectl_with(
        node,
        KUBECTL,
        &["get", "--raw", "/api/v1/namespaces/default/events?watch=1&resourceVersion=1"],
    );
    let err = podnet_e2e::stderr(&out);
    assert!(!out.status.success() && (err.contains("Expired") || err.contains("too old")), "{err}");
}
