//! Services, modelled on the Kubernetes e2e network tests: serve a basic
//! endpoint from pods, multiport endpoints, session affinity (and switching
//! it), hairpin, UDP, endpoints following pods, and a fast refusal when
//! nothing serves. Real nginx, busybox and socat as peers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use podnet_e2e::{Node, busybox, eventually, require, stderr, stdout};

fn client(node: &Node) {
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    node.wait_running("client");
}

/// Fetches `url` from the client pod `n` times; counts answers by body.
fn spread(node: &Node, url: &str, n: usize) -> BTreeMap<String, usize> {
    let bb = busybox();
    // busybox 1.35's `wget -T` crashes; `timeout` bounds each fetch instead.
    let script = format!("for i in $(seq {n}); do timeout 3 {bb} wget -qO- {url} || echo FAILED; done");
    let out = node.exec("client", &["sh", "-c", &script]);
    let mut seen = BTreeMap::new();
    for line in stdout(&out).lines() {
        *seen.entry(line.to_string()).or_default() += 1;
    }
    seen
}

#[test]
fn should_serve_a_basic_endpoint_from_pods_and_spread_connections() {
    let node = Node::start("svc");
    node.named_web("web", 3, 8080, &[]);
    client(&node);
    node.ok(&["expose", "deployment", "web", "--port", "80", "--target-port", "8080", "--name", "web-svc"]);
    node.wait_endpoints("web-svc", 3);
    let vip = node.cluster_ip("web-svc");
    assert!(vip.starts_with("10.") && vip != "10.96.0.10", "{vip}");

    let table = node.ok(&["get", "svc"]);
    assert!(table.starts_with("NAME") && table.contains("CLUSTER-IP") && table.contains("80/TCP"), "{table}");
    assert!(table.contains(&vip), "{table}");
    let eps = node.ok(&["get", "endpoints", "web-svc"]);
    assert!(eps.contains(":8080"), "{eps}");

    let seen = spread(&node, &format!("http://{vip}/"), 30);
    assert!(!seen.contains_key("FAILED"), "{seen:?}");
    assert_eq!(seen.len(), 3, "every replica answered: {seen:?}");
    assert!(seen.values().all(|n| *n == 10), "round robin spreads evenly: {seen:?}");

    // The node reaches ClusterIPs too.
    let out = node.on_node(&["timeout", "3", &busybox(), "wget", "-qO-", &format!("http://{vip}/")]);
    assert!(stdout(&out).starts_with("web-"), "{}", stderr(&out));

    node.ok(&["delete", "svc", "web-svc"]);
    assert!(node.ok(&["get", "svc"]).is_empty());
}

#[test]
fn nginx_serves_through_its_cluster_ip() {
    let node = Node::start("nginx");
    let nginx = require("nginx", "nginx").to_string_lossy().into_owned();
    let conf = node.dir.join("nginx.conf");
    std::fs::write(
        &conf,
        "daemon off; pid /tmp/podnet-e2e-nginx-$hostname.pid; error_log stderr; events {}\n\
         http { access_log off; server { listen 80; location / { return 200 \"nginx on $hostname\\n\"; } } }\n",
    )
    .unwrap();
    let conf = conf.to_string_lossy().into_owned();
    node.ok(&[
        "create",
        "deployment",
        "web",
        "--replicas",
        "2",
        "--readiness",
        "tcp:80",
        "--",
        &nginx,
        "-c",
        &conf,
    ]);
    client(&node);
    node.ok(&["expose", "deployment", "web", "--port", "80"]);
    node.wait_endpoints("web", 2);
    let seen = spread(&node, &format!("http://{}/", node.cluster_ip("web")), 6);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.keys().all(|k| k.starts_with("nginx on web-")), "{seen:?}");
}

#[test]
fn should_serve_multiport_endpoints_by_port_name() {
    let node = Node::start("multi");
    let bb = busybox();
    let script = format!(
        "mkdir -p /tmp/a-$POD_NAME /tmp/b-$POD_NAME; echo http > /tmp/a-$POD_NAME/index.html; echo metrics > /tmp/b-$POD_NAME/index.html; \
         {bb} httpd -p 8080 -h /tmp/a-$POD_NAME; exec {bb} httpd -f -p 9090 -h /tmp/b-$POD_NAME"
    );
    node.ok(&[
        "create",
        "deployment",
        "app",
        "--port",
        "http:8080",
        "--port",
        "metrics:9090",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    client(&node);
    let args = ["expose", "deployment", "app", "--port", "http:80", "--port", "metrics:81"];
    node.ok(&[&args[..], &["--target-port", "http", "--target-port", "metrics"]].concat());
    node.wait_endpoints("app", 1);
    let vip = node.cluster_ip("app");
    assert_eq!(spread(&node, &format!("http://{vip}:80/"), 1).keys().next().unwrap(), "http");
    assert_eq!(spread(&node, &format!("http://{vip}:81/"), 1).keys().next().unwrap(), "metrics");
    let eps = node.ok(&["get", "endpoints", "app"]);
    assert!(eps.contains(":8080") && eps.contains(":9090"), "{eps}");
}

#[test]
fn should_have_session_affinity_and_switch_it_on_a_live_service() {
    let node = Node::start("aff");
    node.named_web("web", 3, 80, &[]);
    client(&node);
    node.ok(&["expose", "deployment", "web", "--port", "80", "--session-affinity", "ClientIP"]);
    node.wait_endpoints("web", 3);
    let url = format!("http://{}/", node.cluster_ip("web"));
    let seen = spread(&node, &url, 12);
    assert_eq!(seen.len(), 1, "ClientIP affinity sticks to one pod: {seen:?}");
    let svc: serde_json::Value =
        serde_json::from_str(&node.ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    assert_eq!(svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"], 10800);

    node.ok(&["patch", "svc", "web", "--session-affinity", "None"]);
    assert_eq!(spread(&node, &url, 12).len(), 3, "without affinity connections spread");
    node.ok(&["patch", "svc", "web", "--session-affinity", "ClientIP", "--session-affinity-timeout", "60"]);
    assert_eq!(spread(&node, &url, 12).len(), 1, "affinity back on");
}

#[test]
fn should_allow_pods_to_hairpin_back_to_themselves_through_services() {
    let node = Node::start("hairpin");
    node.named_web("solo", 1, 80, &[]);
    node.ok(&["expose", "deployment", "solo", "--port", "8000", "--target-port", "80"]);
    node.wait_endpoints("solo", 1);
    let pod = node.pods()[0]["metadata"]["name"].as_str().unwrap().to_string();
    let url = format!("http://{}:8000/", node.cluster_ip("solo"));
    let out = node.exec(&pod, &["timeout", "3", &busybox(), "wget", "-qO-", &url]);
    assert_eq!(stdout(&out).trim(), pod, "{}", stderr(&out));
}

#[test]
fn udp_services_answer_and_a_service_without_backends_refuses_at_once() {
    let node = Node::start("udpsvc");
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    node.ok(&[
        "create",
        "deployment",
        "echo",
        "--replicas",
        "2",
        "--",
        &socat,
        "UDP-RECVFROM:9000,fork",
        "EXEC:cat",
    ]);
    client(&node);
    node.ok(&["expose", "deployment", "echo", "--port", "53", "--target-port", "9000", "--protocol", "UDP"]);
    node.wait_endpoints("echo", 2);
    let vip = node.cluster_ip("echo");
    let out = node.exec("client", &["sh", "-c", &format!("echo ping-udp | {socat} -t 2 - UDP:{vip}:53")]);
    assert_eq!(stdout(&out), "ping-udp\n", "{}", stderr(&out));

    // No ready backend: TCP gets a reset and UDP a port unreachable, at once.
    node.ok(&[
        "expose",
        "deployment",
        "echo",
        "--port",
        "80",
        "--selector",
        "app=nobody",
        "--name",
        "lonely",
    ]);
    let udp_args = ["--port", "99", "--protocol", "UDP", "--selector", "app=nobody", "--name", "lonely-udp"];
    node.ok(&[&["expose", "deployment", "echo"][..], &udp_args].concat());
    let eps = node.ok(&["get", "endpoints", "lonely"]);
    assert!(eps.contains("<none>"), "{eps}");
    let url = format!("http://{}/", node.cluster_ip("lonely"));
    let started = Instant::now();
    let out = node.exec("client", &["timeout", "10", &busybox(), "wget", "-qO-", &url]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(3), "refused at once, not after a timeout");
    let udp = format!("echo x | {socat} -t 5 - UDP:{}:99", node.cluster_ip("lonely-udp"));
    let started = Instant::now();
    let out = node.exec("client", &["sh", "-c", &udp]);
    assert!(!out.status.success(), "ICMP port unreachable ends the exchange");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn endpoints_follow_deletion_scaling_and_readiness() {
    let node = Node::start("follow");
    node.named_web("web", 2, 80, &["--readiness", "http:80/ready"]);
    node.ok(&["expose", "deployment", "web", "--port", "80"]);
    // Pods answer 404 for /ready until the file exists: unready, not endpoints.
    eventually(Duration::from_secs(15), "two running pods", || (node.pods().len() == 2).then_some(()));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(node.endpoint_count("web"), 0, "{}", node.ok(&["get", "ep", "web", "-o", "json"]));
    let table = node.ok(&["get", "pods"]);
    assert!(table.contains("0/1"), "{table}");
    for pod in node.pods() {
        let name = pod["metadata"]["name"].as_str().unwrap();
        node.exec(name, &["sh", "-c", "touch /tmp/www-$POD_NAME/ready"]);
    }
    node.wait_endpoints("web", 2);

    let victim = node.pods()[0]["metadata"]["name"].as_str().unwrap().to_string();
    node.ok(&["delete", "pod", &victim]);
    let started = Instant::now();
    eventually(Duration::from_secs(1), "the deleted pod to leave the endpoints", || {
        let ep = node.ok(&["get", "endpoints", "web", "-o", "json"]);
        (!ep.contains(&victim)).then_some(())
    });
    assert!(started.elapsed() <= Duration::from_secs(1));

    node.ok(&["scale", "deployment", "web", "--replicas", "0"]);
    node.wait_endpoints("web", 0);
}

#[test]
fn bad_service_input_is_refused_or_shown() {
    let node = Node::start("badsvc");
    node.named_web("web", 1, 80, &[]);
    node.fails(&["expose", "deployment", "ghost", "--port", "80"], "not found");
    node.fails(&["expose", "deployment", "web", "--port", "0"], "1 to 65535");
    node.fails(&["expose", "deployment", "web", "--port", "70000"], "1 to 65535");
    node.fails(&["expose", "deployment", "web", "--port", "80", "--cluster-ip", "10.0.0.5"], "service range");
    node.fails(
        &["expose", "deployment", "web", "--port", "80", "--cluster-ip", "10.96.0.10"],
        "service range",
    );
    node.ok(&["expose", "deployment", "web", "--port", "80", "--cluster-ip", "10.96.7.7"]);
    node.fails(&["expose", "deployment", "web", "--port", "80"], "already exists");
    node.fails(
        &["expose", "deployment", "web", "--port", "80", "--name", "b", "--cluster-ip", "10.96.7.7"],
        "taken",
    );
    node.ok(&["expose", "deployment", "web", "--port", "80", "--target-port", "nope", "--name", "named"]);
    let eps = node.ok(&["get", "endpoints", "named"]);
    assert!(eps.contains("<none>") && eps.contains("`nope`"), "{eps}");
    node.ok(&["expose", "deployment", "web", "--port", "80", "--selector", "app=nobody", "--name", "empty"]);
    assert!(node.ok(&["get", "endpoints", "empty"]).contains("matches no pod"));
    node.ok(&["expose", "deployment", "web", "--port", "80", "--cluster-ip", "None", "--name", "headless"]);
    assert!(node.ok(&["get", "svc", "headless"]).contains("None"));
    assert_eq!(node.ok(&["get", "svc"]).lines().count(), 5, "header + 4 services, nothing half-made");
}
