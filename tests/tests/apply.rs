//! `podnet apply -f FILE|-`: the manifests kubectl takes (several YAML
//! documents, JSON, `kind: List`), read with the Kubernetes API's decoder,
//! create and then update podnet's objects; bad input is a one-line error
//! naming the document and the field, and nothing of the file is applied.
//! Pods here are command pods (no image): podnet's own, run on the node.

use std::io::Write;
use std::process::{Command, Stdio};

use podnet_e2e::{Node, podnet_bin, stderr, stdout};
use serde_json::Value;

/// A Deployment of `replicas` sleeping pods with the label `tier`, a
/// NodePort Service for them, and a Namespace.
fn manifest(replicas: u32, tier: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n  annotations: {{owner: team-a}}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web, tier: {tier}}}\n    spec:\n      containers:\n      - name: app\n        command: [sleep, \"3600\"]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  type: NodePort\n  selector: {{app: web}}\n  ports:\n  - port: 80\n"
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `podnet apply -f -` with `text` on stdin.
fn apply_stdin(node: &Node, text: &str) -> std::process::Output {
    let mut child = Command::new(podnet_bin())
        .args(["apply", "-f", "-"])
        .env("PODNET_SOCKET", &node.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run podnet");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn shop_pods(node: &Node) -> Vec<Value> {
    node.pods().into_iter().filter(|p| p["metadata"]["namespace"] == "shop").collect()
}

#[test]
fn podnet_apply_creates_then_updates_and_refuses_bad_manifests_whole() {
    let node = Node::start("apply");
    let file = node.dir.join("app.yaml");
    let f = file.to_str().unwrap();
    std::fs::write(&file, manifest(2, "a")).unwrap();
    assert_eq!(
        node.ok(&["apply", "-f", f]),
        "namespace/shop created\ndeployment.apps/web created\nservice/web created\n"
    );
    assert_eq!(shop_pods(&node).len(), 2);
    let svc = json(&node.ok(&["get", "svc", "web", "-n", "shop", "-o", "json"]));
    let node_port = svc["spec"]["ports"][0]["nodePort"].clone();
    assert!(node_port.is_u64(), "{svc}");
    assert_eq!(
        node.ok(&["apply", "-f", f]),
        "namespace/shop unchanged\ndeployment.apps/web unchanged\nservice/web unchanged\n"
    );

    // An update from stdin: three replicas, a changed template (the pods
    // are replaced), the Service's node port kept.
    let old: Vec<Value> = shop_pods(&node).iter().map(|p| p["metadata"]["name"].clone()).collect();
    let out = apply_stdin(&node, &manifest(3, "b"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "namespace/shop unchanged\ndeployment.apps/web configured\nservice/web unchanged\n"
    );
    podnet_e2e::eventually(std::time::Duration::from_secs(30), "3 pods of tier b", || {
        let pods = shop_pods(&node);
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| p["metadata"]["labels"]["tier"] == "b" && !old.contains(&p["metadata"]["name"])))
        .then_some(())
    });
    let svc = json(&node.ok(&["get", "svc", "web", "-n", "shop", "-o", "json"]));
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], node_port);

    // JSON and `kind: List` too.
    let list = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"solo","labels":{"x":"1"}},"spec":{"containers":[{"name":"solo","command":["sleep","3600"]}]}}]}"#;
    let out = apply_stdin(&node, list);
    assert_eq!(stdout(&out), "pod/solo created\n", "{}", stderr(&out));
    let relabelled = list.replace(r#""x":"1""#, r#""x":"2""#);
    assert_eq!(stdout(&apply_stdin(&node, &relabelled)), "pod/solo configured\n");
    let moved = relabelled.replace(r#""sleep","3600""#, r#""sleep","7200""#);
    let out = apply_stdin(&node, &moved);
    let err = stderr(&out);
    assert!(!out.status.success() && err.lines().count() == 1, "{err}");
    assert!(
        err.contains("stdin: pod/solo: ") && err.contains("spec.containers[0].command: Forbidden"),
        "{err}"
    );

    // Bad input: one line naming the document and the field; a bad third
    // document leaves the first two unapplied.
    let bad = manifest(5, "c").replace("port: 80", "port: 70000");
    std::fs::write(&file, &bad).unwrap();
    let err = node.fails(&["apply", "-f", f], "document 3: Service \"web\" is invalid: spec.ports[0].port");
    assert!(err.starts_with(&format!("error: {f}: ")), "{err}");
    assert_eq!(shop_pods(&node).len(), 3, "nothing of the file was applied");
    std::fs::write(&file, "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: s}\n").unwrap();
    node.fails(&["apply", "-f", f], "document 1: podnet applies v1 Pods");
    std::fs::write(&file, "kind: [").unwrap();
    node.fails(&["apply", "-f", f], "document 1 is not YAML or JSON");
    std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
    node.fails(&["apply", "-f", f], "not UTF-8");
    node.fails(&["apply", "-f", "/nonexistent/app.yaml"], "cannot read it");
}
