//! The real kubectl against a node's Kubernetes API (issue #15, first
//! slice): discovery, Tables, selectors, create (typed commands send
//! protobuf, `create -f` sends JSON), expose, scale, delete and Status
//! errors, checked against what `podnet` itself reports and by traffic
//! through the Service kubectl made. kubectl runs inside the node's own
//! network namespace, against the API on the node's address there (a
//! veth the test gives it) or on its loopback: no traffic leaves
//! namespaces the test created. kubectl always names an image, so its pods
//! are image pods: the app image (busybox-static, built here with umoci)
//! comes from a real registry in a lan namespace of the test's own, or, on
//! the cluster's nodes, from an archive each node imports.

use std::path::Path;
use std::time::Duration;

use podnet_e2e::kubectl::*;
use podnet_e2e::oci::{self, Scratch};
use podnet_e2e::{Cluster, Node, eventually, require, stderr, stdout};

#[test]
fn kubectl_lists_creates_scales_and_deletes_podnet_objects() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubectl");
    let (node, _lan) = node_with_registry("kubectl", &scratch);
    let image_ref = image_ref();
    let image = format!("--image={image_ref}");

    // The kubeconfig: root-only, the node's address, the CA and a token.
    let path = kubeconfig(&node);
    let mode = std::fs::metadata(&path).expect("the agent writes kubeconfig.yaml").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("server: https://{NODE_IP}:6443")), "{text}");
    assert!(text.contains("certificate-authority-data: ") && text.contains("token: "), "{text}");

    // Discovery: versions, resource types with kubectl's short names.
    assert!(ok(&node, &["version"]).contains("Server Version: v1.32"));
    let resources = ok(&node, &["api-resources", "--no-headers"]);
    for (name, short) in [
        ("pods", "po"),
        ("deployments", "deploy"),
        ("services", "svc"),
        ("endpoints", "ep"),
        ("nodes", "no"),
        ("namespaces", "ns"),
    ] {
        assert!(
            resources.lines().any(|l| l.split_whitespace().take(2).eq([name, short])),
            "{name} ({short}) in {resources}"
        );
    }
    let nodes = ok(&node, &["get", "no", "-o", "wide"]);
    assert!(nodes.lines().next().unwrap().contains("INTERNAL-IP"), "-o wide columns: {nodes}");
    assert!(nodes.lines().nth(1).unwrap().starts_with(&node.name) && nodes.contains("Ready"), "{nodes}");

    // kubectl create deployment (a typed command: a protobuf body).
    let created = ok(
        &node,
        &[
            "create",
            "deployment",
            "web",
            &image,
            "--port=8080",
            "--replicas=2",
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/etc",
        ],
    );
    assert_eq!(created.trim(), "deployment.apps/web created");
    // The first pod pulls the image.
    eventually(Duration::from_secs(60), "web to be 2/2 ready", || {
        let table = ok(&node, &["get", "deploy", "web", "--no-headers"]);
        table.split_whitespace().nth(1).is_some_and(|ready| ready == "2/2").then_some(())
    });
    let pods = json(&ok(&node, &["get", "pods", "-l", "app=web", "-o", "json"]));
    let names: Vec<&str> =
        pods["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{pods}");
    let mut from_podnet = podnet_pods(&node);
    from_podnet.sort();
    assert_eq!(names, from_podnet, "kubectl and podnet see the same pods");
    let wide = ok(&node, &["get", "po", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[..7], ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"], "{wide}");
    assert!(wide.lines().skip(1).all(|l| l.contains("Running") && l.contains(&node.name)), "{wide}");

    // kubectl expose reads the deployment's selector and port.
    ok(&node, &["expose", "deployment", "web", "--port=80", "--target-port=8080", "--name=web-svc"]);
    let svc = json(&node.ok(&["get", "svc", "web-svc", "-o", "json"]));
    assert_eq!(svc["spec"]["selector"]["app"], "web", "podnet has the Service kubectl made");
    eventually(Duration::from_secs(20), "web-svc to have 2 endpoints", || {
        let ep = ok(&node, &["get", "ep", "web-svc", "--no-headers"]);
        (ep.split_whitespace().nth(1).unwrap_or("").split(',').count() == 2).then_some(())
    });

    // kubectl run, then the brief's lab: the pod reaches the Service by name.
    ok(&node, &["run", "client", &image, "--restart=Never", "--", "sleep", "3600"]);
    node.wait_running("client");
    // The name is the Service's: busybox's own resolver (nslookup tries
    // every search domain and exits 1 when one is NXDOMAIN: the first
    // domain's answer is what counts) gives its ClusterIP.
    let cluster_ip = node.cluster_ip("web-svc");
    let looked_up = eventually(Duration::from_secs(10), "web-svc to resolve", || {
        let out = stdout(&node.exec("client", &["nslookup", "web-svc"]));
        out.contains("Name:\tweb-svc.default.svc.cluster.local").then_some(out)
    });
    assert!(looked_up.contains(&format!("Address: {cluster_ip}")), "{looked_up}");
    // wget by the short name (static glibc resolves it from the pod's
    // resolv.conf). busybox 1.35's `wget -T` crashes; `timeout` bounds it.
    let page = eventually(Duration::from_secs(20), "web-svc to answer", || {
        let out = node.exec("client", &["timeout", "5", "wget", "-qO-", "http://web-svc/passwd"]);
        out.status.success().then(|| stdout(&out))
    });
    assert!(page.contains("root:"), "the image's /etc/passwd through web-svc: {page}");
    let one = ok(&node, &["get", "pods", "--field-selector", "metadata.name=client", "--no-headers"]);
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(one.starts_with("client "), "{one}");
    let all = ok(&node, &["get", "all"]);
    for name in ["pod/client", "service/web-svc", "deployment.apps/web"] {
        assert!(all.contains(name), "{name} in {all}");
    }
    let both = ok(&node, &["get", "po,svc", "-o", "name"]);
    assert!(both.contains("pod/client") && both.contains("service/web-svc"), "{both}");

    // kubectl logs: the pod's output, whole or its tail.
    ok(&node, &["run", "talker", &image, "--", "sh", "-c", "echo one; echo two; exec sleep 3600"]);
    let logs = eventually(Duration::from_secs(30), "talker's output", || {
        let out = kubectl_with(&node, KUBECTL, &["logs", "talker"]);
        (out.status.success() && stdout(&out) == "one\ntwo\n").then(|| stdout(&out))
    });
    assert_eq!(logs, "one\ntwo\n");
    assert_eq!(ok(&node, &["logs", "talker", "--tail=1"]), "two\n");
    fails(&node, &["logs", "--previous", "talker"], "--previous");
    ok(&node, &["delete", "pod", "talker"]);

    // kubectl scale: the scale subresource.
    assert_eq!(
        ok(&node, &["scale", "deployment", "web", "--replicas=3"]).trim(),
        "deployment.apps/web scaled"
    );
    eventually(Duration::from_secs(30), "3 web pods", || {
        (podnet_pods(&node).iter().filter(|p| p.starts_with("web-")).count() == 3).then_some(())
    });

    // kubectl create -f: JSON bodies, validated by the server.
    let manifest = node.dir.join("app.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: worker\n  labels: {{app: worker}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: worker\n    image: {image_ref}\n    command: [\"sleep\", \"3600\"]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: worker\nspec:\n  type: NodePort\n  selector: {{app: worker}}\n  ports:\n  - port: 9000\n    nodePort: 30900\n"
        ),
    )
    .unwrap();
    let created = ok(&node, &["create", "-f", manifest.to_str().unwrap()]);
    assert!(
        created.contains("pod/worker created") && created.contains("service/worker created"),
        "{created}"
    );
    assert!(ok(&node, &["get", "ns", "--no-headers"]).starts_with("default "), "namespaces");

    // Server-side validation: kubectl asks for Strict, a misspelt field is
    // an error; fields podnet would not act on are refused, not dropped.
    let typo = node.dir.join("typo.yaml");
    std::fs::write(
        &typo,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo\nspec:\n  replica: 2\n  selector:\n    matchLabels: {{app: typo}}\n  template:\n    metadata:\n      labels: {{app: typo}}\n    spec:\n      containers:\n      - name: typo\n        image: {image_ref}\n        command: [\"sleep\", \"3600\"]\n"
        ),
    )
    .unwrap();
    fails(
        &node,
        &["create", "-f", typo.to_str().unwrap()],
        "strict decoding error: unknown field \"spec.replica\"",
    );
    // Without validation the misspelt field is ignored, as Kubernetes does.
    ok(&node, &["create", "--validate=false", "-f", typo.to_str().unwrap()]);
    ok(&node, &["delete", "deploy", "typo"]);
    fails(
        &node,
        &["run", "envy", &image, "--env=A=b", "--", "sleep", "1"],
        "spec.containers[0].env: Forbidden: podnet does not support this field yet",
    );
    let yaml = ok(&node, &["get", "pod", "worker", "-o", "yaml"]);
    assert!(yaml.contains("restartPolicy: Never") && yaml.contains("- sleep"), "{yaml}");
    assert!(ok(&node, &["get", "svc", "worker"]).contains("9000:30900/TCP"));

    // Errors read as kubectl prints them; nothing half-created.
    fails(&node, &["get", "pod", "nope"], "Error from server (NotFound): pods \"nope\" not found");
    fails(&node, &["create", "-f", manifest.to_str().unwrap()], "(AlreadyExists)");
    fails(&node, &["get", "widgets"], "the server doesn't have a resource type \"widgets\"");
    let two = r#"{"spec":{"containers":[{"name":"a","image":"busybox"},{"name":"b","image":"busybox"}]}}"#;
    fails(
        &node,
        &["run", "pair", &image, &format!("--overrides={two}")],
        "podnet runs one container per pod",
    );
    let names = podnet_pods(&node);
    assert!(!names.iter().any(|n| n == "pair"), "{names:?}");
    // A command the image lacks: accepted (only the image knows its
    // files); the container cannot be made, and the pod waits with
    // CreateContainerError and runc's reason, as Kubernetes shows it.
    ok(&node, &["run", "typo", &image, "--", "no-such-command"]);
    let described = eventually(Duration::from_secs(30), "typo's container to fail", || {
        let text = node.ok(&["describe", "pod", "typo"]);
        text.contains("Reason:           CreateContainerError").then_some(text)
    });
    assert!(
        described.contains("exec: \"no-such-command\": executable file not found in $PATH"),
        "{described}"
    );
    // kubectl sees the same: not ready, waiting for CreateContainerError.
    let table = eventually(Duration::from_secs(30), "kubectl to show CreateContainerError", || {
        let table = ok(&node, &["get", "pod", "typo", "--no-headers"]);
        let columns: Vec<String> = table.split_whitespace().map(String::from).collect();
        (columns[1] == "0/1" && columns[2] == "CreateContainerError").then_some(table)
    });
    let json =
        ok(&node, &["get", "pod", "typo", "-o", "jsonpath={.status.containerStatuses[0].state.waiting}"]);
    assert!(json.contains("CreateContainerError") && json.contains("no-such-command"), "{table}{json}");
    ok(&node, &["delete", "pod", "typo"]);

    // kubectl delete: gone from podnet too.
    assert_eq!(ok(&node, &["delete", "pod", "client"]).trim(), "pod \"client\" deleted");
    assert_eq!(ok(&node, &["delete", "deploy", "web"]).trim(), "deployment.apps \"web\" deleted");
    assert_eq!(ok(&node, &["delete", "svc", "web-svc"]).trim(), "service \"web-svc\" deleted");
    ok(&node, &["delete", "-f", manifest.to_str().unwrap()]);
    assert!(podnet_pods(&node).is_empty(), "{:?}", podnet_pods(&node));
    assert!(
        stdout(&node.podnet(&["get", "svc"]))
            .lines()
            .all(|l| !l.contains("web-svc") && !l.contains("worker"))
    );
    assert_eq!(ok(&node, &["get", "po", "--no-headers"]).trim(), "");

    // An older kubectl reads and creates too.
    if Path::new(OLD_KUBECTL).exists() {
        let created =
            ok_with(&node, OLD_KUBECTL, &["create", "deployment", "old", &image, "--", "sleep", "3600"]);
        assert_eq!(created.trim(), "deployment.apps/old created");
        let table = ok_with(&node, OLD_KUBECTL, &["get", "deploy", "-o", "wide"]);
        assert!(table.lines().next().unwrap().contains("SELECTOR") && table.contains("app=old"), "{table}");
        ok_with(&node, OLD_KUBECTL, &["delete", "deployment", "old"]);
    }
}

/// `curl` against the API on the node's loopback: the status code of
/// `METHOD /path` with `extra` arguments.
fn curl(node: &Node, method: &str, path: &str, extra: &[&str]) -> u16 {
    let ca = node.dir.join("data").join("kube").join("ca.crt");
    let url = format!("https://127.0.0.1:6443{path}");
    let mut args = vec![
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        ca.to_str().unwrap(),
        "-X",
        method,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = node.on_node(&args);
    stdout(&out).trim().parse().unwrap_or_else(|_| panic!("curl {path}: {}{}", stdout(&out), stderr(&out)))
}

/// Listener `kube_api`'s count of `reason` in `podnet node stats`.
fn refused(node: &Node, reason: &str) -> u64 {
    let stats = json(&node.ok(&["node", "stats", "-o", "json"]));
    let api = stats["listeners"].as_array().unwrap().iter().find(|l| l["listener"] == "kube_api").cloned();
    let api = api.unwrap_or_else(|| panic!("no kube_api listener in {stats}"));
    api["counts"].as_array().unwrap().iter().find(|c| c[0] == reason).and_then(|c| c[1].as_u64()).unwrap_or(0)
}

#[test]
fn the_api_refuses_strangers_garbage_and_huge_bodies_and_counts_them() {
    require("curl", "curl");
    let node = node_with_address("kubeapi", None);
    let token = std::fs::read_to_string(node.dir.join("data").join("kube").join("token")).unwrap();
    let bearer = format!("Authorization: Bearer {}", token.trim());
    let json_body = "Content-Type: application/json";

    assert_eq!(curl(&node, "GET", "/api/v1/pods", &[]), 401, "no token");
    assert_eq!(
        curl(&node, "GET", "/version", &["-H", "Authorization: Bearer 0123456789abcdef0123456789abcdef"]),
        401
    );
    assert_eq!(refused(&node, "unauthorized"), 2);
    assert_eq!(curl(&node, "GET", "/api/v1/pods", &["-H", &bearer]), 200);

    let pods = "/api/v1/namespaces/default/pods";
    assert_eq!(
        curl(&node, "POST", pods, &["-H", &bearer, "-H", json_body, "--data-binary", "{not json"]),
        400
    );
    assert_eq!(refused(&node, "malformed_message"), 1);
    let huge = node.dir.join("huge.json");
    std::fs::write(&huge, vec![b' '; 2_000_000]).unwrap();
    let at_huge = format!("@{}", huge.display());
    assert_eq!(curl(&node, "POST", pods, &["-H", &bearer, "-H", json_body, "--data-binary", &at_huge]), 413);
    // Sent chunked, without a length up front: cut at the limit all the same.
    let chunked =
        ["-H", &bearer, "-H", json_body, "-H", "Transfer-Encoding: chunked", "--data-binary", &at_huge];
    assert_eq!(curl(&node, "POST", pods, &chunked), 413);
    assert_eq!(refused(&node, "oversized_message"), 2);
    assert!(node.pods().is_empty(), "nothing was created");

    // The API still answers, and the agent's own CLI is untouched.
    assert_eq!(curl(&node, "GET", "/api/v1/namespaces/default/pods/nope", &["-H", &bearer]), 404);
    node.ok(&["get", "nodes"]);
}

#[test]
fn the_api_port_is_configurable_and_the_api_can_be_off() {
    require(KUBECTL, "kubectl");
    let node = node_with_address("kubeport", Some("[api]\nport = 7443\n"));
    let text = std::fs::read_to_string(kubeconfig(&node)).unwrap();
    assert!(text.contains(&format!("server: https://{NODE_IP}:7443")), "{text}");
    assert!(ok(&node, &["get", "nodes", "--no-headers"]).starts_with(&node.name));
    drop(node);

    // A node whose namespace has loopback down (as every test node's) and
    // no address: the agent starts all the same, says the API is not
    // served, and leaves no kubeconfig that points nowhere.
    let mut bare = Node::start("kubebare");
    bare.stop(libc::SIGTERM);
    bare.up();
    assert!(bare.agent_log().contains("the Kubernetes API is not served"), "{}", bare.agent_log());
    assert!(!kubeconfig(&bare).exists());
    drop(bare);

    let off = node_with_address("kubeoff", Some("[api]\nenabled = false\n"));
    assert!(!kubeconfig(&off).exists(), "no kubeconfig when the API is off");
    let out = off.on_node(&["curl", "-sk", "https://127.0.0.1:6443/version"]);
    assert!(!out.status.success(), "nothing listens on 6443: {}", stdout(&out));
}

#[test]
fn kubectl_drives_a_cluster_through_its_server_and_its_members() {
    require(KUBECTL, "kubectl");
    require("skopeo", "skopeo");
    let scratch = Scratch::new("kubecl");
    let layout = scratch.path("oci");
    oci::build_app_image(&scratch, &layout, "v1", "hello from the image");
    let name = image_ref();
    let image = format!("--image={name}");
    // No registry on the cluster's lan: each node imports the image as an
    // archive (the air-gapped way), and the pods' IfNotPresent finds it.
    let archive = scratch.path("app.tar");
    oci::sh(
        "skopeo",
        &["--insecure-policy", "copy", &format!("oci:{layout}:v1"), &format!("oci-archive:{archive}:{name}")],
    );
    let cluster = Cluster::start("kubecl", 1);
    for node in &cluster.nodes {
        assert!(node.ok(&["image", "import", &archive]).starts_with(&format!("imported {name} (")));
    }
    let (server, member) = (cluster.server(), &cluster.nodes[1]);
    // The server's cluster API holds 6443: its Kubernetes API is on 6444.
    let text = std::fs::read_to_string(kubeconfig(server)).unwrap();
    assert!(text.contains(&format!("server: https://{}:6444", Cluster::address(0))), "{text}");
    let text = std::fs::read_to_string(kubeconfig(member)).unwrap();
    assert!(text.contains(&format!("server: https://{}:6443", Cluster::address(1))), "{text}");
    for node in [server, member] {
        let nodes = ok(node, &["get", "nodes", "-o", "name"]);
        for name in [&server.name, &member.name] {
            assert!(nodes.contains(&format!("node/{name}")), "{name} in {nodes}");
        }
    }
    // Made through a member's API, kept by the server's control plane.
    let created =
        ok(member, &["create", "deployment", "spread", &image, "--replicas=2", "--", "sleep", "3600"]);
    assert_eq!(created.trim(), "deployment.apps/spread created");
    eventually(Duration::from_secs(30), "spread to be 2/2 ready on the server", || {
        let table = ok(server, &["get", "deploy", "spread", "--no-headers"]);
        table.split_whitespace().nth(1).is_some_and(|ready| ready == "2/2").then_some(())
    });
    // Each runs the image's files, on the node the server placed it on.
    let pods = json(&ok(member, &["get", "pods", "-l", "app=spread", "-o", "json"]));
    for pod in pods["items"].as_array().unwrap() {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let node_name = pod["spec"]["nodeName"].as_str().unwrap();
        let node = cluster.nodes.iter().find(|n| n.name == node_name).unwrap_or_else(|| panic!("{pod}"));
        let page = node.exec(name, &["cat", "/www/index.html"]);
        assert_eq!(stdout(&page), "hello from the image\n", "{name} on {node_name}: {}", stderr(&page));
        // kubectl exec through the pod's node's API; another node's API
        // names the pod's node (streams do not cross the cluster channel).
        assert_eq!(ok(node, &["exec", name, "--", "cat", "/www/index.html"]), "hello from the image\n");
        let other = if node.name == server.name { member } else { server };
        let out = kubectl_with(other, KUBECTL, &["exec", name, "--", "cat", "/www/index.html"]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(&format!("runs on node {node_name}")), "{err}");
    }
    assert_eq!(ok(server, &["delete", "deploy", "spread"]).trim(), "deployment.apps \"spread\" deleted");
}
