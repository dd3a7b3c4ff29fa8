//! One node: pods get their own IPs and talk through podnet's switch, with
//! busybox wget/httpd/nc/ping as the peers.

use std::time::Duration;

use podnet_e2e::{Node, busybox, eventually, require, stderr, stdout};

fn web_root(node: &Node, body: &str) -> String {
    let www = node.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), body).unwrap();
    www.to_string_lossy().into_owned()
}

#[test]
fn pods_reach_each_other_over_http() {
    let node = Node::start("http");
    let bb = busybox();
    let www = web_root(&node, "served by podnet\n");
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    node.ok(&[
        "create",
        "deployment",
        "web",
        "--replicas",
        "2",
        "--",
        &bb,
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        &www,
    ]);
    node.wait_running("client");
    let web: Vec<String> = eventually(Duration::from_secs(15), "two web replicas", || {
        let ips: Vec<String> = node
            .pods()
            .iter()
            .filter(|p| {
                p["metadata"]["labels"]["app"] == "web"
                    && p["status"]["containerStatuses"][0]["ready"] == true
            })
            .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
            .collect();
        (ips.len() == 2).then_some(ips)
    });
    assert_ne!(web[0], web[1], "each pod has its own IP");
    for ip in &web {
        assert!(ip.starts_with("10.244.0."), "{ip}");
        let out = node.exec("client", &[&bb, "wget", "-qO-", &format!("http://{ip}:8080/")]);
        assert!(out.status.success(), "wget {ip}: {}", stderr(&out));
        assert_eq!(stdout(&out), "served by podnet\n");
    }

    let wide = node.ok(&["get", "pods", "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    for column in ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        wide.lines().any(|l| l.starts_with("client ") && l.contains("Running") && l.contains(&node.name)),
        "{wide}"
    );
}

#[test]
fn large_transfers_survive_offloaded_frames() {
    // TSO super-frames and partial checksums cross the switch unchanged: a
    // corrupted or truncated byte would change the digest.
    let node = Node::start("bulk");
    let bb = busybox();
    let www = web_root(&node, "");
    let blob: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(format!("{www}/blob"), &blob).unwrap();
    node.ok(&["run", "server", "--", &bb, "httpd", "-f", "-p", "80", "-h", &www]);
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    let server = node.wait_running("server");
    node.wait_running("client");
    let out =
        node.exec("client", &["sh", "-c", &format!("{bb} wget -qO- http://{server}/blob | {bb} md5sum")]);
    let expected = std::process::Command::new(&bb).args(["md5sum", &format!("{www}/blob")]).output().unwrap();
    let digest = stdout(&expected);
    assert_eq!(stdout(&out).split_whitespace().next(), digest.split_whitespace().next());
}

#[test]
fn udp_and_icmp_flow_between_pods_and_the_node() {
    let node = Node::start("udp");
    let bb = busybox();
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    node.ok(&["run", "listener", "--", &socat, "-u", "UDP-RECV:9000", "STDOUT"]);
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    let listener = node.wait_running("listener");
    let client = node.wait_running("client");

    let out = node
        .exec("client", &["sh", "-c", &format!("echo datagram-1 | {socat} - UDP-SENDTO:{listener}:9000")]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(Duration::from_secs(5), "the datagram in the listener's log", || {
        node.ok(&["logs", "listener"]).contains("datagram-1").then_some(())
    });

    // The node reaches its pods, and pods reach their gateway (the node).
    let out = node.on_node(&[&bb, "ping", "-c", "1", "-W", "2", &client]);
    assert!(out.status.success(), "node -> pod ping: {}", stdout(&out));
    let out = node.exec("client", &[&bb, "ping", "-c", "1", "-W", "2", "10.244.0.1"]);
    assert!(out.status.success(), "pod -> gateway ping: {}", stdout(&out));
}

#[test]
fn pods_see_their_identity_and_logs_are_kept() {
    let node = Node::start("env");
    let script = "echo $POD_NAME $POD_NAMESPACE $POD_IP; cat /etc/resolv.conf; hostname; sleep infinity";
    node.ok(&["run", "who", "-n", "team-a", "--labels", "tier=test", "--", "sh", "-c", script]);
    let ip = eventually(Duration::from_secs(15), "pod who", || {
        node.pods().into_iter().find_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
    });
    let logs = eventually(Duration::from_secs(5), "logs", || {
        let out = node.ok(&["logs", "who", "-n", "team-a"]);
        // The hostname is the last line the script prints.
        out.lines().any(|l| l == "who").then_some(out)
    });
    assert!(logs.contains(&format!("who team-a {ip}")), "{logs}");
    assert!(logs.contains("nameserver 10.96.0.10"), "{logs}");
    assert!(logs.contains("search team-a.svc.cluster.local svc.cluster.local cluster.local"), "{logs}");
    assert!(logs.lines().any(|l| l == "who"), "hostname is the pod name: {logs}");
    assert!(node.ok(&["get", "pods"]).is_empty(), "namespace default is empty");
    assert!(node.ok(&["get", "pods", "-n", "team-a"]).contains("who"));
}

#[test]
fn exec_passes_stdin_stdout_and_exit_code() {
    let node = Node::start("exec");
    node.ok(&["run", "box", "--", "sleep", "infinity"]);
    node.wait_running("box");
    let mut child = std::process::Command::new(podnet_e2e::podnet_bin())
        .args(["exec", "box", "--", "cat"])
        .env("PODNET_SOCKET", &node.socket)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"through stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "through stdin\n");
    let out = node.exec("box", &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn json_and_yaml_have_the_kubernetes_shape() {
    let node = Node::start("json");
    node.ok(&["create", "deployment", "app", "--replicas", "1", "--", "sleep", "infinity"]);
    eventually(Duration::from_secs(15), "one ready replica", || {
        node.pods().iter().any(|p| p["status"]["containerStatuses"][0]["ready"] == true).then_some(())
    });
    let pods: serde_json::Value = serde_json::from_str(&node.ok(&["get", "pods", "-o", "json"])).unwrap();
    assert_eq!(pods["kind"], "List");
    let pod = &pods["items"][0];
    assert_eq!(pod["apiVersion"], "v1");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["namespace"], "default");
    assert_eq!(pod["metadata"]["labels"]["app"], "app");
    assert_eq!(pod["spec"]["nodeName"], node.name.as_str());
    assert_eq!(pod["status"]["phase"], "Running");
    assert!(pod["metadata"]["name"].as_str().unwrap().starts_with("app-"));

    let name = pod["metadata"]["name"].as_str().unwrap();
    let one: serde_json::Value = serde_json::from_str(&node.ok(&["get", "pod", name, "-o", "json"])).unwrap();
    assert_eq!(one["kind"], "Pod");

    let yaml = node.ok(&["get", "deployments", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: List")
            && yaml.contains("kind: Deployment")
            && yaml.contains("apiVersion: apps/v1"),
        "{yaml}"
    );
    let table = node.ok(&["get", "deployments"]);
    assert!(table.starts_with("NAME") && table.contains("UP-TO-DATE") && table.contains("1/1"), "{table}");
}
