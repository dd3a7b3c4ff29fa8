//! `podnet node up --kubernetes KUBECONFIG`: a node that is a Kubernetes
//! cluster's network. The Kubernetes API server here is podnet's own (no
//! kube-apiserver is installable on these machines): a `--cluster-init`
//! agent running the pods, whose kubeconfig the Kubernetes-mode agent
//! reads as it would k3s's. The Kubernetes-mode node's Node object is
//! made the way a real cluster makes one — the node registers and the
//! control plane gives it a podCIDR: a member joins once (playing the
//! kubelet's registration), then stops, and the Kubernetes-mode agent
//! takes its place with the same name and address, reading its subnet
//! from that Node's spec.podCIDR. Containers on it are attached with the
//! podnet binary as the CNI plugin, in namespaces the test makes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_e2e::sandbox::Sandbox;
use podnet_e2e::{Cluster, Node, busybox, eventually, podnet_bin, stderr, stdout};
use serde_json::{Value, json};

/// A CNI ADD with the podnet binary as the plugin (as kubelet's runtime
/// calls it), for pod `name` in the default namespace; the result.
fn cni_add(node: &Node, id: &str, sandbox: &Sandbox, name: &str) -> Value {
    let netns = sandbox.path();
    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}");
    let mut child = Command::new(podnet_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", "ADD")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", &netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let config = json!({ "cniVersion": "1.0.0", "name": "podnet", "type": "podnet", "socket": node.socket });
    use std::io::Write;
    child.stdin.take().unwrap().write_all(config.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ADD failed: {} {}\n{}", stdout(&out), stderr(&out), node.agent_log());
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The server's kubeconfig: what `--kubernetes` is given.
fn kubeconfig(server: &Node) -> PathBuf {
    server.dir.join("data/kubeconfig.yaml")
}

/// Turns member `i` of `cluster` into a Kubernetes-mode agent: stopped as a
/// member (its Node stays, NotReady, with its podCIDR), started again with
/// `--kubernetes` and `extra` arguments.
fn to_kubernetes_mode(cluster: &mut Cluster, i: usize, extra: &[&str]) {
    let kubeconfig = kubeconfig(&cluster.nodes[0]);
    let node = &mut cluster.nodes[i];
    node.stop(libc::SIGTERM);
    let config = node.dir.join("config.toml").to_string_lossy().into_owned();
    node.args = vec!["--config".into(), config, "--kubernetes".into(), kubeconfig.to_string_lossy().into()];
    node.args.extend(extra.iter().map(|a| a.to_string()));
    let name = node.name.clone();
    eventually(Duration::from_secs(20), "the member's Node NotReady", || {
        let text = cluster.nodes[0].ok(&["get", "nodes"]);
        text.lines().any(|l| l.starts_with(name.as_str()) && l.contains("NotReady")).then_some(())
    });
}

/// The Node's podCIDR, as the server's API shows it.
fn pod_cidr(server: &Node, name: &str) -> String {
    let nodes: Value = serde_json::from_str(&server.ok(&["get", "nodes", "-o", "json"])).unwrap();
    let node = nodes["items"].as_array().unwrap().iter().find(|n| n["metadata"]["name"] == name).unwrap();
    node["spec"]["podCIDR"].as_str().unwrap().to_string()
}

#[test]
fn a_kubernetes_mode_node_serves_the_clusters_services_and_dns_to_its_containers() {
    let mut cluster = Cluster::start("k8s", 1);
    to_kubernetes_mode(&mut cluster, 1, &[]);
    let server = &cluster.nodes[0];
    // The pods run on the server (the only Ready node), behind web-svc.
    server.named_web("web", 2, 8080, &[]);
    server.ok(&["expose", "deployment", "web", "--name", "web-svc", "--port", "80", "--target-port", "8080"]);
    server.wait_endpoints("web-svc", 2);
    let cluster_ip = server.cluster_ip("web-svc");

    let node = &mut cluster.nodes[1];
    node.up();
    let log = node.agent_log();
    assert!(log.contains("watching the Kubernetes API"), "{log}");
    let cidr = pod_cidr(&cluster.nodes[0], &cluster.nodes[1].name);
    let node = &cluster.nodes[1];

    // A container the runtime attaches gets its address from the Node's podCIDR.
    let sandbox = Sandbox::new(node, "c1");
    let result = cni_add(node, "k8sc0001", &sandbox, "client");
    let address = result["ips"][0]["address"].as_str().unwrap();
    let prefix = cidr.rsplit_once('.').unwrap().0;
    assert!(address.starts_with(&format!("{prefix}.")), "{address} is not in the Node's podCIDR {cidr}");
    sandbox.resolv_conf(&result);

    // The Service's name resolves through this node's DNS, and its
    // ClusterIP reaches the pods on the other node.
    let answer = eventually(Duration::from_secs(15), "web-svc to resolve", || {
        let text = sandbox.lookup("web-svc.default.svc.cluster.local");
        text.contains(&cluster_ip).then_some(text)
    });
    assert!(answer.contains(&cluster_ip), "{answer}");
    let mut seen = std::collections::BTreeSet::new();
    eventually(Duration::from_secs(30), "both web pods through the ClusterIP", || {
        seen.insert(sandbox.fetch("http://web-svc.default.svc.cluster.local/")?);
        (seen.len() == 2).then_some(())
    });
    assert!(seen.iter().all(|body| body.starts_with("web-")), "{seen:?}");

    // A NodePort Service is served on this node's address too (from the lan).
    let server = &cluster.nodes[0];
    server.ok(&[
        "expose",
        "deployment",
        "web",
        "--name",
        "web-np",
        "--type",
        "NodePort",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--node-port",
        "30080",
    ]);
    let url = format!("http://{}:30080/", Cluster::address(1));
    let body = eventually(Duration::from_secs(20), "the node port on the Kubernetes-mode node", || {
        let out = Command::new("ip")
            .args(["netns", "exec", &cluster.lan, "timeout", "5", &busybox(), "wget", "-q", "-O-", &url])
            .output()
            .unwrap();
        out.status.success().then(|| stdout(&out))
    });
    assert!(body.starts_with("web-"), "{body}");

    // An Ingress of the API is served on this node's port 80 too (Traefik's
    // job under k3s), routed by its Host.
    cluster.nodes[0].ok(&["create", "ingress", "shop", "--rule", "shop.example/*=web-np:80"]);
    let url = format!("http://{}/", Cluster::address(1));
    let body = eventually(Duration::from_secs(20), "the Ingress on the Kubernetes-mode node", || {
        cluster.curl_host("shop.example", &url).filter(|b| b.starts_with("web-"))
    });
    assert!(body.starts_with("web-"), "{body}");

    // Scaled down: one endpoint is left, and only it answers.
    let server = &cluster.nodes[0];
    server.ok(&["scale", "deployment", "web", "--replicas", "1"]);
    server.wait_endpoints("web-svc", 1);
    let endpoints: Value =
        serde_json::from_str(&server.ok(&["get", "endpoints", "web-svc", "-o", "json"])).unwrap();
    let left = endpoints["subsets"][0]["addresses"][0]["targetRef"]["name"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(15), "only the pod left to answer", || {
        let bodies: std::collections::BTreeSet<String> =
            (0..6).filter_map(|_| sandbox.fetch(&format!("http://{cluster_ip}/"))).collect();
        (bodies.len() == 1 && bodies.contains(&left)).then_some(())
    });

    // Deleted: the name no longer resolves.
    server.ok(&["delete", "service", "web-svc"]);
    eventually(Duration::from_secs(15), "web-svc to be gone from this node's DNS", || {
        let text = sandbox.lookup("web-svc.default.svc.cluster.local");
        (!text.contains(&cluster_ip)).then_some(())
    });
    let stats = cluster.nodes[1].ok(&["node", "stats"]);
    assert!(stats.contains("KUBERNETES: reconnects="), "{stats}");

    // A NetworkPolicy of the API is this node's too: a deny-all ingress in
    // default cuts one container here off from another here (traffic only
    // this node's switch sees).
    let mut other = Sandbox::new(&cluster.nodes[1], "c2");
    let result = cni_add(&cluster.nodes[1], "k8sc0003", &other, "other");
    let other_ip = result["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    other.serve(&cluster.nodes[1].dir, "from c2");
    let url = format!("http://{other_ip}/");
    eventually(Duration::from_secs(15), "c2 reachable from c1", || sandbox.fetch(&url));
    let policy = cluster.nodes[0].dir.join("deny.yaml");
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-in, namespace: default}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n",
    )
    .unwrap();
    cluster.nodes[0].ok(&["apply", "-f", policy.to_str().unwrap()]);
    eventually(Duration::from_secs(15), "the policy to cut c1 off from c2", || {
        sandbox.fetch(&url).is_none().then_some(())
    });

    // The node changes nothing of the cluster's: it refuses, naming kubectl.
    let refused = cluster.nodes[1].fails(&["run", "extra", "--", "sleep", "60"], "kubectl");
    assert!(refused.contains("Kubernetes API"), "{refused}");
}

#[test]
fn a_kubernetes_mode_node_survives_its_api_server_restarting() {
    let mut cluster = Cluster::start("k8sre", 1);
    to_kubernetes_mode(&mut cluster, 1, &[]);
    let server = &cluster.nodes[0];
    server.named_web("web", 1, 8080, &[]);
    server.ok(&["expose", "deployment", "web", "--name", "web-svc", "--port", "80", "--target-port", "8080"]);
    server.wait_endpoints("web-svc", 1);
    let cluster_ip = server.cluster_ip("web-svc");
    cluster.nodes[1].up();
    let sandbox = Sandbox::new(&cluster.nodes[1], "c1");
    let result = cni_add(&cluster.nodes[1], "k8sc0002", &sandbox, "client");
    sandbox.resolv_conf(&result);
    eventually(Duration::from_secs(30), "the Service through the ClusterIP", || {
        sandbox.fetch(&format!("http://{cluster_ip}/"))
    });

    // The API server goes away: the node keeps its tables (the name still
    // resolves) and reconnects, counted.
    cluster.nodes[0].stop(libc::SIGTERM);
    let reconnects = |node: &Node| -> u64 {
        let stats: Value = serde_json::from_str(&node.ok(&["node", "stats", "-o", "json"])).unwrap();
        let counts = stats["kubernetes"].as_array().unwrap();
        counts.iter().find(|c| c[0] == "reconnects").and_then(|c| c[1].as_u64()).unwrap()
    };
    eventually(Duration::from_secs(20), "a reconnect counted", || {
        (reconnects(&cluster.nodes[1]) > 0).then_some(())
    });
    let text = sandbox.lookup("web-svc.default.svc.cluster.local");
    assert!(text.contains(&cluster_ip), "the last tables are kept while the API is away: {text}");

    // Back, with a change made while the watch is down or after: seen.
    cluster.nodes[0].up();
    let server = &cluster.nodes[0];
    server.ok(&["expose", "deployment", "web", "--name", "web-two", "--port", "81", "--target-port", "8080"]);
    let two_ip = server.cluster_ip("web-two");
    eventually(Duration::from_secs(60), "a Service made after the restart to resolve", || {
        sandbox.lookup("web-two.default.svc.cluster.local").contains(&two_ip).then_some(())
    });
    let log = cluster.nodes[1].agent_log();
    assert!(log.contains("trying again"), "{log}");
    // The restarted server forgot the old resourceVersions (410): listed again.
    let stats: Value = serde_json::from_str(&cluster.nodes[1].ok(&["node", "stats", "-o", "json"])).unwrap();
    let relists =
        stats["kubernetes"].as_array().unwrap().iter().find(|c| c[0] == "relists").unwrap()[1].clone();
    assert!(relists.as_u64().unwrap() > 0, "{stats}");
}

#[test]
fn bad_kubeconfigs_and_nodes_stop_the_start_with_the_fix() {
    let mut cluster = Cluster::start("k8sbad", 1);
    to_kubernetes_mode(&mut cluster, 1, &[]);
    let node = &cluster.nodes[1];
    let config = node.dir.join("config.toml");
    let up = |kubeconfig: &Path, name: &str| -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", node.netns))
            .arg(podnet_bin())
            .args(["node", "up", "--name", name, "--data-dir"])
            .arg(node.dir.join("data-bad"))
            .arg("--config")
            .arg(&config)
            .arg("--kubernetes")
            .arg(kubeconfig)
            .env("PODNET_SOCKET", node.dir.join("bad.sock"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "should fail: {}", stderr(&out));
        stderr(&out)
    };
    let good = kubeconfig(&cluster.nodes[0]);
    let text = std::fs::read_to_string(&good).unwrap();
    let write = |name: &str, text: &str| {
        let path = node.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    let e = up(&node.dir.join("missing.yaml"), &node.name);
    assert!(e.contains("cannot read kubeconfig") && e.contains("k3s.yaml"), "{e}");
    let e = up(&write("garbage.yaml", "clusters: 5\n"), &node.name);
    assert!(e.contains("is not usable") && e.contains("not kubeconfig YAML"), "{e}");
    let token = text.lines().find_map(|l| l.trim().strip_prefix("token: ")).unwrap();
    let e = up(&write("badtoken.yaml", &text.replace(token, "not-the-token")), &node.name);
    assert!(e.contains("401 Unauthorized") && e.contains("valid token"), "{e}");
    let e = up(&write("closed.yaml", &text.replace(":6443", ":6449")), &node.name);
    assert!(e.contains("cannot reach the Kubernetes API") && e.contains("server address"), "{e}");
    let e = up(&good, "no-such-node");
    assert!(e.contains("not a Node of the Kubernetes cluster") && e.contains("--name"), "{e}");
    // The server's own Node has a podCIDR; one outside the board config's
    // cluster_cidr is refused with the setting to change.
    let narrow = write(
        "narrow.toml",
        "[network]\ncluster_cidr = \"10.200.0.0/16\"\nnode_subnet = \"10.200.0.0/24\"\n",
    );
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .arg(podnet_bin())
        .args(["node", "up", "--name", &node.name, "--data-dir"])
        .arg(node.dir.join("data-narrow"))
        .arg("--config")
        .arg(&narrow)
        .arg("--kubernetes")
        .arg(&good)
        .env("PODNET_SOCKET", node.dir.join("narrow.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("outside network.cluster_cidr"), "{e}");
    assert!(e.lines().filter(|l| l.contains("Error") || l.contains("error")).count() <= 1, "one line: {e}");
}
