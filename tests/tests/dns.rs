//! Cluster DNS in the data path, modelled on the Kubernetes e2e DNS tests,
//! with real clients as peers: dig, busybox nslookup and wget, and glibc
//! through getent. Outside names go to a dnsmasq the test starts in its own
//! "lan" namespace, never to the machine's resolvers.

use std::time::Duration;

use podnet_e2e::{Node, Outside, busybox, eventually, require, stderr, stdout};

fn dig(node: &Node, pod: &str, args: &[&str]) -> String {
    let dig = require("dig", "bind9-dnsutils").to_string_lossy().into_owned();
    let mut command = vec![dig.as_str(), "+tries=1", "+time=3"];
    command.extend_from_slice(args);
    let out = node.exec(pod, &command);
    stdout(&out)
}

fn short(node: &Node, pod: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    let mut lines: Vec<String> = dig(node, pod, &all).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// A node with a client pod and a two-replica web deployment behind web-svc.
fn cluster(tag: &str, config: Option<&str>) -> (Node, String) {
    let node = Node::start_with(tag, config);
    let bb = busybox();
    let script = format!(
        "mkdir -p /tmp/w-$POD_NAME && echo $POD_NAME > /tmp/w-$POD_NAME/index.html && exec {bb} httpd -f -p 80 -h /tmp/w-$POD_NAME"
    );
    node.ok(&[
        "create",
        "deployment",
        "web",
        "--replicas",
        "2",
        "--port",
        "http:80",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    node.wait_running("client");
    node.ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "http:80",
        "--target-port",
        "http",
        "--name",
        "web-svc",
    ]);
    let vip = node.cluster_ip("web-svc");
    eventually(Duration::from_secs(15), "two endpoints", || {
        node.ok(&["get", "ep", "web-svc", "-o", "json"]).matches("\"ip\"").count().eq(&2).then_some(())
    });
    (node, vip)
}

#[test]
fn should_provide_dns_for_services_to_every_kind_of_client() {
    let (node, vip) = cluster("dns", None);
    let fqdn = "web-svc.default.svc.cluster.local";

    // busybox wget through the search path, busybox nslookup, glibc getent.
    let out = node.exec("client", &["timeout", "5", &busybox(), "wget", "-qO-", "http://web-svc/"]);
    assert!(stdout(&out).starts_with("web-"), "wget http://web-svc/: {}", stderr(&out));
    let out = node.exec("client", &[&busybox(), "nslookup", fqdn]);
    assert!(stdout(&out).contains(&vip), "{}", stdout(&out));
    for name in ["web-svc", "web-svc.default", "web-svc.default.svc", fqdn] {
        let out = node.exec("client", &["getent", "hosts", name]);
        assert!(stdout(&out).starts_with(&vip), "getent hosts {name}: {}{}", stdout(&out), stderr(&out));
    }

    assert_eq!(short(&node, "client", &[fqdn]), vec![vip.clone()]);
    assert_eq!(
        short(&node, "client", &["WEB-SVC.Default.SVC.cluster.LOCAL"]),
        vec![vip.clone()],
        "case-insensitive"
    );
    assert_eq!(short(&node, "client", &["+tcp", fqdn]), vec![vip.clone()], "DNS over TCP");
    assert!(short(&node, "client", &["AAAA", fqdn]).is_empty());
    let aaaa = dig(&node, "client", &["AAAA", fqdn]);
    assert!(aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0"), "NODATA for AAAA: {aaaa}");
    let missing = dig(&node, "client", &["nope.default.svc.cluster.local"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    let srv = short(&node, "client", &["SRV", &format!("_http._tcp.{fqdn}")]);
    assert_eq!(srv, vec![format!("0 100 80 {fqdn}.")]);
    let srv_full = dig(&node, "client", &["SRV", &format!("_http._tcp.{fqdn}")]);
    assert!(srv_full.contains("ADDITIONAL SECTION") && srv_full.contains(&vip), "{srv_full}");
    assert_eq!(short(&node, "client", &["-x", &vip]), vec![format!("{fqdn}.")]);
    assert_eq!(short(&node, "client", &["TXT", "dns-version.cluster.local"]), vec!["\"1.1.0\"".to_string()]);
    let ttl = dig(&node, "client", &["+noall", "+answer", fqdn]);
    assert!(ttl.split_whitespace().nth(1) == Some("5"), "TTL 5 s: {ttl}");
}

#[test]
fn should_provide_dns_for_pods_headless_and_external_name_services() {
    let (node, _) = cluster("dnskinds", None);
    let pods = node.pods();
    let web_ips: Vec<String> = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "web")
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    let client_ip = node.wait_running("client");

    // Pod A records and PTR for pod IPs.
    let dashed = client_ip.replace('.', "-");
    assert_eq!(
        short(&node, "client", &[&format!("{dashed}.default.pod.cluster.local")]),
        vec![client_ip.clone()]
    );
    assert!(!short(&node, "client", &["-x", &client_ip]).is_empty(), "PTR for a pod IP");

    // Headless: one A per ready endpoint; NXDOMAIN once none is ready.
    node.ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--cluster-ip",
        "None",
        "--name",
        "web-headless",
    ]);
    let mut expected = web_ips.clone();
    expected.sort();
    assert_eq!(short(&node, "client", &["web-headless.default.svc.cluster.local"]), expected);
    node.ok(&["scale", "deployment", "web", "--replicas", "0"]);
    eventually(Duration::from_secs(10), "headless NXDOMAIN", || {
        dig(&node, "client", &["web-headless.default.svc.cluster.local"]).contains("NXDOMAIN").then_some(())
    });

    // ExternalName: a CNAME.
    node.ok(&["create", "service", "externalname", "db", "--external-name", "db.example.test"]);
    let table = node.ok(&["get", "svc", "db"]);
    assert!(table.contains("ExternalName") && table.contains("db.example.test"), "{table}");
    let cname = dig(&node, "client", &["+noall", "+answer", "db.default.svc.cluster.local"]);
    assert!(cname.contains("CNAME") && cname.contains("db.example.test."), "{cname}");
    node.fails(
        &["create", "service", "externalname", "bad", "--external-name", "not a name"],
        "not a valid DNS name",
    );
}

#[test]
fn podnet_resolve_answers_from_the_node_and_stats_count_queries() {
    let (node, vip) = cluster("resolve", None);
    let out = node.ok(&["resolve", "web-svc"]);
    assert!(out.starts_with(";; web-svc.default.svc.cluster.local A: NOERROR"), "{out}");
    assert!(out.contains(&vip), "{out}");
    let out = node.ok(&["resolve", "_http._tcp.web-svc", "--type", "SRV"]);
    assert!(out.contains("SRV 0 100 80 web-svc.default.svc.cluster.local"), "{out}");
    let out = node.ok(&["resolve", &vip, "--type", "PTR"]);
    assert!(out.contains("PTR web-svc.default.svc.cluster.local"), "{out}");
    let out = node.podnet(&["resolve", "nothing-here.default.svc.cluster.local."]);
    assert!(!out.status.success() && stdout(&out).contains("NXDOMAIN"), "{}", stdout(&out));
    node.fails(&["resolve", "web-svc", "--type", "MX"], "record type");

    dig(&node, "client", &["web-svc.default.svc.cluster.local"]);
    dig(&node, "client", &["missing.default.svc.cluster.local"]);
    let stats: serde_json::Value = serde_json::from_str(&node.ok(&["node", "stats", "-o", "json"])).unwrap();
    let count = |what: &str| {
        stats["dns"].as_array().unwrap().iter().find(|p| p[0] == what).and_then(|p| p[1].as_u64()).unwrap()
    };
    assert!(count("answered") >= 1 && count("nxdomain") >= 1, "{stats}");
    let text = node.ok(&["node", "stats"]);
    assert!(text.contains("DNS:") && text.contains("FLOWS:"), "{text}");
}

#[test]
fn services_are_answerable_at_once_and_gone_at_once() {
    let (node, _) = cluster("dnsfast", None);
    node.ok(&["expose", "deployment", "web", "--port", "8080", "--target-port", "80", "--name", "fresh"]);
    let fqdn = "fresh.default.svc.cluster.local";
    assert_eq!(short(&node, "client", &[fqdn]).len(), 1, "the first query after expose is answered");
    node.ok(&["delete", "svc", "fresh"]);
    assert!(dig(&node, "client", &[fqdn]).contains("NXDOMAIN"), "the first query after delete is NXDOMAIN");
}

#[test]
fn outside_names_go_upstream_with_tcp_fallback_and_servfail_on_silence() {
    let dnsmasq = require("dnsmasq", "dnsmasq-base").to_string_lossy().into_owned();
    let config = "[network]\nupstream_dns = [\"192.168.77.2\"]\ndns_timeout_ms = 1500\n";
    let (node, _) = cluster("upstream", Some(config));
    let mut lan = Outside::attach(&node);
    let chunk = "x".repeat(200);
    let mut args = vec![
        dnsmasq.clone(),
        "--no-daemon".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--user=root".into(),
        "--bind-interfaces".into(),
        "--listen-address=192.168.77.2".into(),
        format!("--pid-file={}/dnsmasq.pid", node.dir.display()),
        "--address=/example.test/192.0.2.7".into(),
    ];
    for i in 0..20 {
        args.push(format!("--txt-record=big.example.test,{i}{chunk}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lan.spawn(&args, &node.dir.join("dnsmasq.log"));
    eventually(Duration::from_secs(10), "dnsmasq in the lan", || {
        let dig = require("dig", "bind9-dnsutils");
        let out = lan.run(&[dig.to_str().unwrap(), "+short", "+time=1", "@192.168.77.2", "www.example.test"]);
        (stdout(&out).trim() == "192.0.2.7").then_some(())
    });

    assert_eq!(short(&node, "client", &["www.example.test"]), vec!["192.0.2.7".to_string()]);
    let out = node.exec("client", &["getent", "hosts", "api.example.test"]);
    assert!(stdout(&out).starts_with("192.0.2.7"), "glibc through the search path: {}", stdout(&out));
    // 20 x 200-byte TXT records: over 4 KB, so UDP answers come back truncated
    // and dig retries over TCP; the relay does the same upstream.
    let txt = dig(&node, "client", &["TXT", "big.example.test"]);
    assert_eq!(txt.matches("IN\tTXT\t\"").count(), 20, "{txt}");
    let txt = dig(&node, "client", &["+bufsize=1232", "+ignore", "TXT", "big.example.test"]);
    assert!(txt.contains(" tc"), "a UDP answer over the client's size is truncated: {txt}");

    // An upstream that takes queries and never answers: SERVFAIL in time.
    drop(lan);
    let mut lan = Outside::attach(&node);
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    lan.spawn(
        &[&socat, "-u", "UDP-RECV:53,bind=192.168.77.2", "OPEN:/dev/null"],
        &node.dir.join("socat.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let out = dig(&node, "client", &["+time=5", "silent.example.test"]);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "SERVFAIL within the 1.5 s budget: {:?}",
        started.elapsed()
    );
}
