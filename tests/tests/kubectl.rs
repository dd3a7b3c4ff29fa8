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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use podnet_e2e::kubectl::*;
use podnet_e2e::oci::{self, REGISTRY, Scratch};
use podnet_e2e::{Cluster, Node, eventually, require, require_root, stderr, stdout};
use serde_json::Value;

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
    // env: values over the image's and podnet's own variables.
    ok(
        &node,
        &[
            "run",
            "envy",
            &image,
            "--env=GREETING=hi there",
            "--env=POD_IP=mine",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING|$POD_NAME|$POD_IP\"",
        ],
    );
    let said = eventually(Duration::from_secs(30), "envy's output", || {
        let out = kubectl_with(&node, KUBECTL, &["logs", "envy"]);
        (out.status.success() && !stdout(&out).is_empty()).then(|| stdout(&out))
    });
    assert_eq!(said, "hi there|envy|mine\n", "the pod's env wins over podnet's POD_IP");
    let env = json(&ok(&node, &["get", "pod", "envy", "-o", "json"]));
    assert_eq!(
        env["spec"]["containers"][0]["env"][0],
        serde_json::json!({ "name": "GREETING", "value": "hi there" })
    );
    ok(&node, &["delete", "pod", "envy"]);
    let secret_ref = node.dir.join("secret-ref.yaml");
    std::fs::write(
        &secret_ref,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: refs\nspec:\n  containers:\n  - name: refs\n    image: {image_ref}\n    env:\n    - name: PASSWORD\n      valueFrom:\n        resourceFieldRef: {{resource: limits.cpu}}\n"
        ),
    )
    .unwrap();
    fails(
        &node,
        &["create", "-f", secret_ref.to_str().unwrap()],
        "spec.containers[0].env[0].valueFrom: Forbidden",
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
fn kubectl_drives_a_cluster_through_its_server_from_any_node() {
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
    // One port for both APIs on the server, as k3s: TLS is the Kubernetes
    // API's, Noise the cluster channel's (the members joined over it).
    let config = kubeconfig(server);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&format!("server: https://{}:6443", Cluster::address(0))), "{text}");
    // Members leave the API to their server, as k3s agents do.
    assert!(!kubeconfig(member).exists(), "a member writes no kubeconfig");
    let from_member = |args: &[&str]| {
        let out = kubectl_in(member, &config, KUBECTL, args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            stderr(&out),
            server.agent_log()
        );
        stdout(&out)
    };
    for nodes in [ok(server, &["get", "nodes", "-o", "name"]), from_member(&["get", "nodes", "-o", "name"])] {
        for name in [&server.name, &member.name] {
            assert!(nodes.contains(&format!("node/{name}")), "{name} in {nodes}");
        }
    }
    // Made from a member's namespace through the server's API.
    let created =
        from_member(&["create", "deployment", "spread", &image, "--replicas=2", "--", "sleep", "3600"]);
    assert_eq!(created.trim(), "deployment.apps/spread created");
    // A watch from the member's namespace, on the server's API.
    let out = from_member(&["rollout", "status", "deployment/spread", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(Duration::from_secs(30), "spread to be 2/2 ready on the server", || {
        let table = ok(server, &["get", "deploy", "spread", "--no-headers"]);
        table.split_whitespace().nth(1).is_some_and(|ready| ready == "2/2").then_some(())
    });
    // Each runs the image's files, on the node the server placed it on.
    let pods = json(&from_member(&["get", "pods", "-l", "app=spread", "-o", "json"]));
    for pod in pods["items"].as_array().unwrap() {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let node_name = pod["spec"]["nodeName"].as_str().unwrap();
        let node = cluster.nodes.iter().find(|n| n.name == node_name).unwrap_or_else(|| panic!("{pod}"));
        let page = node.exec(name, &["cat", "/www/index.html"]);
        assert_eq!(stdout(&page), "hello from the image\n", "{name} on {node_name}: {}", stderr(&page));
        // kubectl exec through the server's API reaches every node's pods
        // (a member's through a stream it opens back to the server).
        let out = kubectl_in(member, &config, KUBECTL, &["exec", name, "--", "cat", "/www/index.html"]);
        assert_eq!(stdout(&out), "hello from the image\n", "{name} on {node_name}: {}", stderr(&out));
    }
    assert_eq!(ok(server, &["delete", "deploy", "spread"]).trim(), "deployment.apps \"spread\" deleted");
}

#[test]
fn kubectl_explains_the_fields_podnet_takes() {
    require(KUBECTL, "kubectl");
    let node = node_with_address("kubexpl", None);
    let spec = ok(&node, &["explain", "deployment.spec"]);
    assert!(spec.contains("GROUP:      apps") || spec.contains("GROUP: apps"), "{spec}");
    assert!(spec.contains("replicas\t<integer>") && spec.contains("template\t<PodTemplateSpec>"), "{spec}");
    let ports = ok(&node, &["explain", "pod.spec.containers.ports"]);
    assert!(ports.contains("containerPort\t<integer>") && ports.contains("host port"), "{ports}");
    let target = ok(&node, &["explain", "svc.spec.ports.targetPort"]);
    assert!(target.contains("by number or by the container port's name"), "{target}");
    let recursive = ok(&node, &["explain", "pod", "--recursive"]);
    assert!(recursive.contains("readinessProbe") && !recursive.contains("matchLabels"), "{recursive}");
    let volumes = ok(&node, &["explain", "pod.spec.volumes"]);
    assert!(volumes.contains("configMap") && volumes.contains("secret"), "{volumes}");
    fails(&node, &["explain", "pod.spec.affinity"], "field \"affinity\" does not exist");
    // kubectl explains from OpenAPI v3 since 1.29; 1.27 and 1.28 read v2
    // (gnostic's protobuf, made from the same schemas).
    for version in ["1.27", "1.28", "1.29"] {
        let bin = format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}");
        if Path::new(&bin).exists() {
            let old = ok_with(&node, &bin, &["explain", "deployment.spec.replicas"]);
            assert!(old.contains("How many pods"), "{version}: {old}");
            let spec = ok_with(&node, &bin, &["explain", "deployment.spec"]);
            assert!(spec.contains("replicas") && spec.contains("<PodTemplateSpec>"), "{version}: {spec}");
            let ports = ok_with(&node, &bin, &["explain", "pod.spec.containers.ports"]);
            assert!(ports.contains("containerPort") && ports.contains("host port"), "{version}: {ports}");
            let policy = ok_with(&node, &bin, &["explain", "networkpolicy.spec"]);
            assert!(policy.contains("podSelector"), "{version}: {policy}");
        }
    }
}

/// The Python interpreter Debian's python3-kubernetes belongs to (the
/// first python3 on PATH may be another one), checked to have the client.
fn python() -> &'static str {
    require_root();
    let python = "/usr/bin/python3";
    let have = Command::new(python).args(["-c", "import kubernetes"]).output();
    assert!(
        have.is_ok_and(|o| o.status.success()),
        "the Python kubernetes client is missing: apt-get install python3-kubernetes (scripts/test does this)"
    );
    python
}

#[test]
fn the_python_kubernetes_client_lists_creates_scales_and_deletes() {
    let python = python();
    let scratch = Scratch::new("kubepy");
    let (node, _lan) = node_with_registry("kubepy", &scratch);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kube_client.py");
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .arg(python)
        .arg(&script)
        .arg(kubeconfig(&node))
        .arg(image_ref())
        .env("HOME", &node.dir)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}{}{}", stdout(&out), stderr(&out), node.agent_log());
    let printed = stdout(&out);
    let steps: Vec<&str> = printed.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(
        steps,
        ["nodes", "created", "conflict", "service", "ready", "endpoints", "scaled", "deleted"],
        "{printed}"
    );
    assert!(podnet_pods(&node).is_empty(), "the deployment's pods went with it");
}

/// A kubectl left running in the node's namespace (`kubectl get -w`,
/// `kubectl wait`), its output in a file; ended by its PID when dropped.
struct Running {
    child: std::process::Child,
    out: PathBuf,
}

impl Running {
    fn start(node: &Node, tag: &str, args: &[&str]) -> Running {
        let out = node.dir.join(format!("kubectl-{tag}.out"));
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", node.netns))
            // Bounded: a kubectl that never returns fails the test, not hangs it.
            .args(["timeout", "120", KUBECTL, "--cache-dir"])
            .arg(node.dir.join("kube-cache-watch"))
            .args(args)
            .env("KUBECONFIG", kubeconfig(node))
            .env("HOME", &node.dir)
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("run kubectl");
        Running { child, out }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for kubectl to exit; whether it succeeded, and its output.
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().expect("kubectl exits");
        (status.success(), self.output())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill on the PID of a child this test started and has
            // not reaped; `timeout` passes SIGTERM on to its kubectl.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// `curl` with the admin token against the API on the node's loopback:
/// the status code and the body.
fn curl_body(node: &Node, path: &str) -> (u16, String) {
    let ca = node.dir.join("data").join("kube").join("ca.crt");
    let token = std::fs::read_to_string(node.dir.join("data").join("kube").join("token")).unwrap();
    let bearer = format!("Authorization: Bearer {}", token.trim());
    let url = format!("https://127.0.0.1:6443{path}");
    let out = node.on_node(&[
        "curl",
        "-s",
        "-m",
        "20",
        "-w",
        "\n%{http_code}",
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        &bearer,
        &url,
    ]);
    let text = stdout(&out);
    let (body, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
    (code.parse().unwrap_or_else(|_| panic!("curl {path}: {text}{}", stderr(&out))), body.to_string())
}

#[test]
fn kubectl_watches_pods_podnet_makes_and_waits_for_them() {
    require(KUBECTL, "kubectl");
    require("curl", "curl");
    let mut node = node_with_address("kubewatch", None);

    // `kubectl get pods -w -o wide`: a pod made by podnet's own CLI (not
    // through the API) appears, then runs, in kubectl's wide columns.
    let watch = Running::start(&node, "get-w", &["get", "pods", "-w", "-o", "wide"]);
    node.ok(&["run", "w1", "--", "sleep", "3600"]);
    let seen = eventually(Duration::from_secs(60), "kubectl get -w to show w1 Running", || {
        let text = watch.output();
        text.lines()
            .any(|l| l.starts_with("w1 ") && l.contains("Running") && l.contains(&node.name))
            .then_some(text)
    });
    let header = seen.lines().find(|l| l.starts_with("NAME ")).unwrap_or_else(|| panic!("a header: {seen}"));
    assert!(header.contains("NOMINATED NODE"), "the wide header, once: {seen}");
    assert_eq!(seen.matches("NAME ").count(), 1, "{seen}");
    drop(watch);

    // `kubectl wait` for a pod that is not ready yet, and for a deletion.
    node.ok(&["run", "w2", "--", "sleep", "3600"]);
    let out = ok(&node, &["wait", "--for=condition=Ready", "pod/w2", "--timeout=60s"]);
    assert_eq!(out.trim(), "pod/w2 condition met");
    let gone = Running::start(&node, "wait-delete", &["wait", "--for=delete", "pod/w1", "--timeout=60s"]);
    // Its watch is open before the pod goes (else it would find none at once).
    std::thread::sleep(Duration::from_secs(2));
    node.ok(&["delete", "pod", "w1"]);
    let (success, text) = gone.finish();
    assert!(success && text.contains("pod/w1 condition met"), "{text}");

    // The raw stream: chunked JSON lines, one event each, bounded by timeoutSeconds.
    let (code, list) = curl_body(&node, "/api/v1/namespaces/default/pods");
    assert_eq!(code, 200, "{list}");
    let rv = json(&list)["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let (code, body) = curl_body(
        &node,
        "/api/v1/namespaces/default/pods?watch=1&resourceVersion=0&timeoutSeconds=1&fieldSelector=metadata.name%3Dw2",
    );
    assert_eq!(code, 200);
    let events: Vec<Value> = body.lines().map(json).collect();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("w2"))
    );

    // A resourceVersion from before a restart is gone: 410, reason Expired
    // (clients list again); one from the future too.
    node.stop(libc::SIGTERM);
    node.up();
    let (code, body) = curl_body(&node, &format!("/api/v1/pods?watch=1&resourceVersion={rv}"));
    assert_eq!(code, 410, "{body}");
    assert_eq!(json(&body)["reason"], "Expired", "{body}");
    let (code, _) = curl_body(&node, "/api/v1/pods?watch=1&resourceVersion=99999999");
    assert_eq!(code, 410);
    assert_eq!(refused(&node, "watch_expired"), 2, "counted in podnet node stats");
    let (_, list) = curl_body(&node, "/api/v1/pods");
    let after: u64 = json(&list)["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(after > rv.parse().unwrap(), "the revision never goes back: {after} after {rv}");
}

#[test]
fn kubectl_rolls_out_deployments_and_reads_replicasets_and_events() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kuberoll");
    let (node, _lan) = node_with_registry("kuberoll", &scratch);
    let image = format!("--image={}", image_ref());

    // `kubectl rollout status` returns once the new deployment's replicas
    // are available (it watches the deployment), and after a scale.
    ok(&node, &["create", "deployment", "web", &image, "--replicas=2", "--", "sleep", "3600"]);
    let out = ok(&node, &["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
    let table = ok(&node, &["get", "deploy", "web", "--no-headers"]);
    assert_eq!(table.split_whitespace().nth(1), Some("2/2"), "rolled out means ready: {table}");
    ok(&node, &["scale", "deployment", "web", "--replicas=3"]);
    let out = ok(&node, &["rollout", "status", "deployment", "web", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    if Path::new(OLD_KUBECTL).exists() {
        let out = ok_with(&node, OLD_KUBECTL, &["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "kubectl 1.27: {out}");
        let out = ok_with(&node, OLD_KUBECTL, &["get", "rs", "--no-headers"]);
        assert!(out.starts_with("web-"), "kubectl 1.27: {out}");
    }
    let d = json(&ok(&node, &["get", "deploy", "web", "-o", "json"]));
    assert_eq!(d["status"]["readyReplicas"], 3, "{d}");
    assert_eq!(d["metadata"]["generation"], 2, "the scale changed the spec: {d}");
    assert_eq!(d["status"]["observedGeneration"], 2, "{d}");

    // The ReplicaSet the deployment controller would keep: named by the
    // template's hash, owning the pods, owned by the deployment.
    let rs = ok(&node, &["get", "rs", "--no-headers"]);
    let columns: Vec<&str> = rs.split_whitespace().collect();
    assert!(columns[0].starts_with("web-"), "{rs}");
    assert_eq!(columns[1..4], ["3", "3", "3"], "DESIRED CURRENT READY: {rs}");
    let rs_name = columns[0].to_string();
    let pods = json(&ok(&node, &["get", "pods", "-l", "app=web", "-o", "json"]));
    for pod in pods["items"].as_array().unwrap() {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["name"].as_str()),
            (Some("ReplicaSet"), Some(rs_name.as_str()))
        );
    }
    let owner =
        json(&ok(&node, &["get", "rs", &rs_name, "-o", "json"]))["metadata"]["ownerReferences"][0].clone();
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("Deployment"), d["metadata"]["uid"].as_str())
    );
    let described = ok(&node, &["describe", "deployment", "web"]);
    assert!(described.contains(&format!("NewReplicaSet:   {rs_name} (3/3 replicas created)")), "{described}");

    // Events: what each pod's node saw, as kubectl lists and describes them.
    let events = ok(&node, &["get", "events"]);
    let header: Vec<&str> = events.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], "{events}");
    for pod in pods["items"].as_array().unwrap() {
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(
            events.lines().any(|l| l.contains("Started") && l.contains(&format!("pod/{name}"))),
            "{name} started in {events}"
        );
    }
    let name = pods["items"][0]["metadata"]["name"].as_str().unwrap();
    let described = ok(&node, &["describe", "pod", name]);
    let section = described.split("Events:").nth(1).unwrap_or("");
    assert!(section.contains("Normal") && section.contains("Started"), "{described}");
    // A field selector picks one pod's events (what describe sends).
    let selector = format!("--field-selector=involvedObject.name={name}");
    let one = ok(&node, &["get", "events", &selector, "--no-headers"]);
    assert!(!one.is_empty() && one.lines().all(|l| l.contains(&format!("pod/{name}"))), "{one}");

    // kubectl delete waits for the DELETED event of its watch.
    assert_eq!(ok(&node, &["delete", "deploy", "web"]).trim(), "deployment.apps \"web\" deleted");
    assert_eq!(ok(&node, &["get", "rs", "--no-headers"]).trim(), "");
}

#[test]
fn the_python_client_lists_and_watches() {
    require("curl", "curl");
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python").join("watch_pods.py");
    let node = node_with_address("kubepyw", None);
    node.ok(&["create", "deployment", "pyd", "--replicas=2", "--", "sleep", "3600"]);
    let out = node.dir.join("python.out");
    let file = std::fs::File::create(&out).unwrap();
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .args(["timeout", "120"])
        .arg(python)
        .arg(&script)
        .arg(kubeconfig(&node))
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("run python3");
    let text = || std::fs::read_to_string(&out).unwrap_or_default();
    eventually(Duration::from_secs(30), "the client's list", || text().contains("LIST ").then_some(()));
    node.ok(&["run", "py1", "--", "sleep", "3600"]);
    let status = child.wait().expect("python3 exits");
    let text = text();
    assert!(status.success(), "{text}");
    assert!(text.contains("LIST "), "{text}");
    assert!(text.contains("EVENT ADDED py1"), "{text}");
    assert!(text.contains("EVENT MODIFIED py1 Running"), "{text}");
    assert!(text.contains("STATUS 410"), "{text}");
    assert!(text.contains("DEPLOYMENT pyd 1 2\n"), "{text}");
    assert!(text.contains("REPLICASET pyd 2\n"), "{text}");
}

/// The app manifest: a Deployment of `replicas` pods of the app image
/// `tag` (its container named `app`, ready when port 8080 answers; rolled
/// one new pod at a time, none of the old going before it is ready) with
/// the deployment labels `labels`, and a Service `web` in front of it.
fn app_manifest(replicas: u32, tag: &str, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {{{labels}}}\nspec:\n  replicas: {replicas}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: app\n        image: {REGISTRY}/test/app:{tag}\n        ports:\n        - containerPort: 8080\n        readinessProbe:\n          tcpSocket: {{port: 8080}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
    )
}

/// The web pods kubectl lists: name, image, ready.
fn web_pods(node: &Node) -> Vec<(String, String, bool)> {
    let list = json(&ok(node, &["get", "pods", "-l", "app=web", "-o", "json"]));
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["containers"][0]["image"].as_str().unwrap().to_string(),
                p["status"]["containerStatuses"][0]["ready"] == true,
            )
        })
        .collect()
}

/// The page the Service `web` answers with, from pod `client` (two tries:
/// a connection may meet a pod that just went).
fn web_page(node: &Node) -> Option<String> {
    (0..2).find_map(|_| {
        let out = node.exec("client", &["timeout", "5", "wget", "-qO-", "http://web/"]);
        out.status.success().then(|| stdout(&out))
    })
}

/// `kubectl diff -f FILE`: its exit code and output.
fn diff(node: &Node, bin: &str, file: &Path) -> (i32, String) {
    let out = kubectl_with(node, bin, &["diff", "-f", file.to_str().unwrap()]);
    (out.status.code().unwrap_or(-1), format!("{}{}", stdout(&out), stderr(&out)))
}

#[test]
fn kubectl_apply_diff_patch_replace_and_delete_change_podnet_objects() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubectl-apply");
    let (node, lan) = node_with_registry("kapply", &scratch);
    let layout = scratch.path("oci");
    oci::build_app_image(&scratch, &layout, "v2", "hello from v2");
    oci::push(&lan, &layout, "v2", "test/app:v2");
    let file = node.dir.join("app.yaml");
    let f = file.to_str().unwrap();

    // kubectl apply: created, then unchanged, and diff finds nothing.
    std::fs::write(&file, app_manifest(2, "v1", "app: web")).unwrap();
    let applied = ok(&node, &["apply", "-f", f]);
    assert_eq!(applied.trim(), "deployment.apps/web created\nservice/web created");
    eventually(Duration::from_secs(60), "2 ready web pods", || {
        let pods = web_pods(&node);
        (pods.len() == 2 && pods.iter().all(|p| p.2)).then_some(())
    });
    let last = ok(
        &node,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
        ],
    );
    assert!(last.contains("\"replicas\":2"), "the last-applied annotation is kept: {last}");
    assert_eq!(ok(&node, &["apply", "-f", f]).trim(), "deployment.apps/web unchanged\nservice/web unchanged");
    let (code, out) = diff(&node, KUBECTL, &file);
    assert_eq!(code, 0, "no difference: {out}");
    ok(
        &node,
        &["run", "client", &format!("--image={}", image_ref()), "--restart=Never", "--", "sleep", "3600"],
    );
    node.wait_running("client");
    assert_eq!(web_page(&node).as_deref(), Some("hello from the image\n"));

    // The file changes: three replicas of v2, a label. diff shows it,
    // apply rolls the pods, and the Service answers all along.
    let old: Vec<String> = web_pods(&node).into_iter().map(|p| p.0).collect();
    std::fs::write(&file, app_manifest(3, "v2", "app: web, tier: front")).unwrap();
    let (code, out) = diff(&node, KUBECTL, &file);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("-      - image: ") && out.contains("+      - image: ") && out.contains("test/app:v2"),
        "{out}"
    );
    assert!(
        out.contains("+    tier: front") && out.contains("-  replicas: 2") && out.contains("+  replicas: 3"),
        "{out}"
    );
    assert_eq!(web_pods(&node).len(), 2, "a diff changes nothing");
    assert_eq!(
        ok(&node, &["apply", "-f", f]).trim(),
        "deployment.apps/web configured\nservice/web unchanged"
    );
    eventually(Duration::from_secs(90), "the rollout to v2", || {
        assert!(web_page(&node).is_some(), "the Service answers during the rollout");
        let pods = web_pods(&node);
        let done = pods.len() == 3
            && pods
                .iter()
                .all(|(name, image, ready)| *ready && image.ends_with(":v2") && !old.contains(name));
        done.then_some(())
    });
    assert_eq!(web_page(&node).as_deref(), Some("hello from v2\n"));
    assert_eq!(ok(&node, &["get", "deploy", "web", "-o", "jsonpath={.metadata.labels.tier}"]), "front");
    assert_eq!(diff(&node, KUBECTL, &file).0, 0);
    // A dry run on the server changes nothing.
    std::fs::write(&file, app_manifest(1, "v2", "app: web, tier: front")).unwrap();
    let dry = ok(&node, &["apply", "--dry-run=server", "-f", f]);
    assert!(dry.contains("deployment.apps/web configured (server dry run)"), "{dry}");
    assert_eq!(web_pods(&node).len(), 3);

    // Server-side apply.
    std::fs::write(&file, app_manifest(2, "v2", "app: web, tier: front")).unwrap();
    let ssa = ok(&node, &["apply", "--server-side", "-f", f]);
    assert!(ssa.contains("deployment.apps/web serverside-applied"), "{ssa}");
    assert_eq!(ok(&node, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");

    // kubectl patch: strategic merge (the default), JSON and merge patches.
    assert_eq!(
        ok(&node, &["patch", "deployment", "web", "-p", r#"{"spec":{"replicas":1}}"#]).trim(),
        "deployment.apps/web patched"
    );
    assert_eq!(ok(&node, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "1");
    let json_patch = r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#;
    ok(&node, &["patch", "deployment", "web", "--type=json", "-p", json_patch]);
    ok(&node, &["patch", "svc", "web", "--type=merge", "-p", r#"{"metadata":{"labels":{"team":"a"}}}"#]);
    assert_eq!(ok(&node, &["get", "svc", "web", "-o", "jsonpath={.metadata.labels.team}"]), "a");
    eventually(Duration::from_secs(30), "2 web pods", || (web_pods(&node).len() == 2).then_some(()));

    // Labels and annotations of any object.
    assert_eq!(ok(&node, &["label", "pod", "client", "color=blue"]).trim(), "pod/client labeled");
    assert!(ok(&node, &["get", "pods", "-l", "color=blue", "-o", "name"]).contains("pod/client"));
    assert_eq!(
        ok(&node, &["annotate", "deployment", "web", "note=hi"]).trim(),
        "deployment.apps/web annotated"
    );
    assert_eq!(ok(&node, &["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.note}"]), "hi");

    // kubectl rollout restart: an annotation on the pod template, which
    // replaces the pods.
    let before: Vec<String> = web_pods(&node).into_iter().map(|p| p.0).collect();
    assert_eq!(
        ok(&node, &["rollout", "restart", "deployment", "web"]).trim(),
        "deployment.apps/web restarted"
    );
    eventually(Duration::from_secs(60), "the restarted pods", || {
        let pods = web_pods(&node);
        (pods.len() == 2 && pods.iter().all(|p| p.2 && !before.contains(&p.0))).then_some(())
    });

    // Bad patches: 422 with the field, nothing changed.
    let bad = r#"[{"op":"remove","path":"/spec/nothing"}]"#;
    fails(&node, &["patch", "deployment", "web", "--type=json", "-p", bad], "/spec/nothing");
    fails(&node, &["patch", "deployment", "web", "-p", r#"{"spec":{"replicas":-1}}"#], "spec.replicas");
    let image = r#"{"spec":{"containers":[{"name":"client","image":"other"}]}}"#;
    fails(&node, &["patch", "pod", "client", "-p", image], "spec.containers[0].image: Forbidden");
    fails(
        &node,
        &["patch", "svc", "web", "-p", r#"{"spec":{"clusterIP":"10.96.9.9"}}"#],
        "spec.clusterIP: Invalid value: field is immutable",
    );
    assert_eq!(ok(&node, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");

    // kubectl replace: from the current object, and 409 from a stale one.
    let stale = node.dir.join("stale.yaml");
    std::fs::write(&stale, ok(&node, &["get", "deploy", "web", "-o", "yaml"])).unwrap();
    ok(&node, &["scale", "deployment", "web", "--replicas=3"]);
    fails(&node, &["replace", "-f", stale.to_str().unwrap()], "the object has been modified");
    // The replicas' status moves the deployment's resourceVersion (as the
    // deployment controller's status updates do): settled first.
    eventually(Duration::from_secs(60), "web to be 3/3 ready", || {
        let table = ok(&node, &["get", "deploy", "web", "--no-headers"]);
        table.split_whitespace().nth(1).is_some_and(|ready| ready == "3/3").then_some(())
    });
    let current = node.dir.join("current.yaml");
    std::fs::write(
        &current,
        ok(&node, &["get", "deploy", "web", "-o", "yaml"]).replace("replicas: 3", "replicas: 1"),
    )
    .unwrap();
    assert_eq!(
        ok(&node, &["replace", "-f", current.to_str().unwrap()]).trim(),
        "deployment.apps/web replaced"
    );
    assert_eq!(ok(&node, &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "1");

    // kubectl delete -f: what the file names goes.
    let deleted = ok(&node, &["delete", "-f", f]);
    assert!(
        deleted.contains("deployment.apps \"web\" deleted") && deleted.contains("service \"web\" deleted")
    );
    eventually(Duration::from_secs(30), "the web pods to go", || web_pods(&node).is_empty().then_some(()));

    // Namespaces: made, used, deleted with what is in them.
    assert_eq!(ok(&node, &["create", "namespace", "shop"]).trim(), "namespace/shop created");
    assert!(ok(&node, &["get", "ns", "shop", "--no-headers"]).starts_with("shop "));
    fails(&node, &["create", "namespace", "shop"], "(AlreadyExists)");
    ok(&node, &["run", "-n", "shop", "cart", &format!("--image={}", image_ref()), "--", "sleep", "3600"]);
    ok(&node, &["apply", "-n", "shop", "-f", f]);
    assert_eq!(ok(&node, &["delete", "namespace", "shop"]).trim(), "namespace \"shop\" deleted");
    assert!(ok(&node, &["get", "pods", "-n", "shop", "--no-headers"]).trim().is_empty());
    assert!(ok(&node, &["get", "deploy,svc", "-n", "shop", "--no-headers"]).trim().is_empty());
    fails(&node, &["get", "ns", "shop"], "(NotFound)");
    fails(&node, &["delete", "namespace", "default"], "(Forbidden)");

    // The old kubectl's apply and diff.
    if Path::new(OLD_KUBECTL).exists() {
        std::fs::write(&file, app_manifest(1, "v1", "app: web")).unwrap();
        assert_eq!(
            ok_with(&node, OLD_KUBECTL, &["apply", "-f", f]).trim(),
            "deployment.apps/web created\nservice/web created"
        );
        std::fs::write(&file, app_manifest(2, "v1", "app: web")).unwrap();
        assert_eq!(diff(&node, OLD_KUBECTL, &file).0, 1);
        let applied = ok_with(&node, OLD_KUBECTL, &["apply", "-f", f]);
        assert_eq!(applied.trim(), "deployment.apps/web configured\nservice/web unchanged");
        eventually(Duration::from_secs(30), "2 web pods", || (web_pods(&node).len() == 2).then_some(()));
        assert_eq!(diff(&node, OLD_KUBECTL, &file).0, 0);
        ok_with(&node, OLD_KUBECTL, &["delete", "-f", f]);
    }
}
