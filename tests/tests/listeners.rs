//! Listeners against hostile clients (issue #12 item 3): a pod's slow-loris
//! on DNS over TCP, one LAN host hogging node-port connections, idle
//! host-port connections, and accept loops that meet EMFILE. Attackers are
//! real programs (python3 in a pod, sockets in the lan namespace); the
//! agent's descriptors are counted in /proc.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podnet_e2e::{Node, Outside, busybox, eventually, raise_fd_limit, require, stderr, stdout};
use serde_json::Value;

/// Open descriptors of process `pid`.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the agent's fds").count()
}

/// Listener `listener`'s entry in `podnet node stats -o json`.
fn listener_stats(node: &Node, listener: &str) -> Value {
    let stats: Value = serde_json::from_str(&node.ok(&["node", "stats", "-o", "json"])).unwrap();
    stats["listeners"]
        .as_array()
        .expect("listeners in node stats")
        .iter()
        .find(|l| l["listener"] == listener)
        .cloned()
        .unwrap_or_else(|| panic!("no listener {listener} in {stats}"))
}

/// Connections `listener` holds or turned away for a cap: every one it
/// accepted that is not closed yet, or refused.
fn handled(node: &Node, listener: &str) -> u64 {
    let entry = listener_stats(node, listener);
    let caps = entry["counts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[0] == "per_client_limit" || c[0] == "total_limit")
        .map(|c| c[1].as_u64().unwrap())
        .sum::<u64>();
    entry["open"].as_u64().unwrap() + caps
}

/// How often `listener` refused or closed a connection for `reason`.
fn refused(node: &Node, listener: &str, reason: &str) -> u64 {
    let entry = listener_stats(node, listener);
    entry["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == reason)
        .and_then(|c| c[1].as_u64())
        .unwrap_or(0)
}

/// Opens `n` connections to the cluster DNS over TCP, sends two bytes of a
/// length prefix on each (announcing 32 bytes that never come), prints how
/// many reached the agent (a connection the agent refused at once may be
/// reset before connect returns), then holds them for `hold` seconds.
const SLOW_LORIS: &str = r#"
import socket, sys, time
n, hold = int(sys.argv[1]), float(sys.argv[2])
held, reset = [], 0
for _ in range(n):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("10.96.0.10", 53))
    except ConnectionResetError:
        reset += 1
        continue
    except OSError:
        continue
    held.append(s)
    try:
        s.send(b"\x00\x20")
    except OSError:
        pass
print(len(held) + reset, flush=True)
time.sleep(hold)
"#;

#[test]
fn a_pods_slow_loris_on_dns_over_tcp_is_capped_and_timed_out() {
    let dig = require("dig", "bind9-dnsutils").to_string_lossy().into_owned();
    let python = "/usr/bin/python3";
    assert!(std::path::Path::new(python).exists(), "python3 is missing: apt-get install python3");
    let node = Node::start_with(
        "loris",
        Some("[limits]\nmax_listener_connections_per_client = 64\nrequest_timeout_ms = 3000\n"),
    );
    node.named_web("web", 1, 8080, &[]);
    node.ok(&["expose", "deployment", "web", "--port", "80", "--target-port", "8080"]);
    node.ok(&["run", "attacker", "--", "sleep", "infinity"]);
    node.ok(&["run", "victim", "--", "sh", "-c", "ulimit -n; exec sleep infinity"]);
    node.wait_running("attacker");
    node.wait_running("victim");
    let fqdn = "web.default.svc.cluster.local";
    let lookup = || {
        let out = node.exec("victim", &[&dig, "+tcp", "+tries=1", "+time=3", "+short", fqdn]);
        stdout(&out).trim().to_string()
    };
    let vip = node.cluster_ip("web");
    eventually(Duration::from_secs(10), "dig +tcp to answer", || (lookup() == vip).then_some(()));

    // Pods run with the default fd limit, not the agent's raised one.
    let agent = node.agent_pid();
    let limits = std::fs::read_to_string(format!("/proc/{agent}/limits")).unwrap();
    let agent_soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .expect("the agent's fd limit");
    assert_eq!(node.ok(&["logs", "victim"]).trim(), "1024", "a pod's soft fd limit");
    assert!(agent_soft > 1024, "the agent raised its own limit: {agent_soft}");

    let baseline = fds(agent);
    let mut attack = Command::new(podnet_e2e::podnet_bin())
        .args(["exec", "attacker", "--", python, "-c", SLOW_LORIS, "300", "30"])
        .env("PODNET_SOCKET", &node.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = attack.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        first.push(byte[0] as char);
    }
    let connected: usize = first.trim().parse().unwrap_or_else(|_| panic!("attacker printed {first:?}"));
    assert!(connected >= 290, "the attacker's connections reached the agent: {connected}");

    eventually(Duration::from_secs(10), "the agent to take every connection", || {
        (handled(&node, "dns_tcp") >= connected as u64).then_some(())
    });
    // The cap: the pod holds at most 64 of the agent's descriptors...
    let during = fds(agent);
    assert!(during <= baseline + 64 + 16, "{during} fds during the attack, {baseline} before");
    // ...and another pod still gets its answers over TCP.
    assert_eq!(lookup(), vip, "dig +tcp from another pod during the attack");
    assert!(refused(&node, "dns_tcp", "per_client_limit") >= connected as u64 - 64);

    // The whole-message timeout closes the ones admitted, attack still on.
    eventually(Duration::from_secs(20), "the agent's fds back near baseline", || {
        (fds(agent) <= baseline + 4).then_some(())
    });
    assert!(refused(&node, "dns_tcp", "request_timeout") >= 60);
    assert!(attack.try_wait().unwrap().is_none(), "the attacker still holds its sockets");
    let table = node.ok(&["node", "stats"]);
    assert!(table.contains("dns_tcp") && table.contains("per_client_limit="), "{table}");
    let _ = attack.kill();
    let _ = attack.wait();
}

fn node_port(node: &Node, service: &str) -> u16 {
    let svc: Value = serde_json::from_str(&node.ok(&["get", "svc", service, "-o", "json"])).unwrap();
    svc["spec"]["ports"][0]["nodePort"].as_u64().expect("nodePort") as u16
}

#[test]
fn one_lan_client_hogging_a_node_port_leaves_room_for_the_others() {
    raise_fd_limit();
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    let node = Node::start_with(
        "hog",
        Some("[limits]\nmax_proxied_connections = 64\nmax_proxied_connections_per_client = 16\n"),
    );
    let lan = Outside::attach(&node);
    // A second LAN host beside 192.168.77.2.
    let out = lan.run(&["ip", "addr", "add", "192.168.77.3/24", "dev", "eth0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    node.named_web("web", 1, 8080, &[]);
    node.ok(&["expose", "deployment", "web", "--type", "NodePort", "--port", "80", "--target-port", "8080"]);
    let np = node_port(&node, "web");
    let url = format!("http://{}:{np}/", lan.node_ip);
    eventually(Duration::from_secs(15), "the node port to answer", || {
        let out = lan.run(&["timeout", "3", &busybox(), "wget", "-qO-", &url]);
        stdout(&out).starts_with("web-").then_some(())
    });

    // 192.168.77.2 opens 100 idle connections: more than the whole cap.
    let target = format!("{}:{np}", lan.node_ip);
    let hog: Vec<TcpStream> =
        lan.within(|| (0..100).filter_map(|_| TcpStream::connect(&target).ok()).collect());
    assert_eq!(hog.len(), 100, "the kernel completes every handshake");
    eventually(Duration::from_secs(10), "the agent to take every connection", || {
        (handled(&node, "proxy_tcp") >= 100).then_some(())
    });

    // 192.168.77.3 still gets its answer.
    let request = "GET / HTTP/1.0\r\n\r\n";
    let address = format!("TCP:{target},bind=192.168.77.3");
    let script =
        format!("printf '{}' | timeout 5 {socat} -t3 - {address}", request.replace("\r\n", "\\r\\n"));
    let out = lan.run(&["sh", "-c", &script]);
    let answer = stdout(&out);
    assert!(
        answer.contains("200 OK") && answer.contains("web-"),
        "the other client: {answer:?} {}",
        stderr(&out)
    );
    assert_eq!(listener_stats(&node, "proxy_tcp")["open"], 16, "the hog holds its share only");
    assert!(refused(&node, "proxy_tcp", "per_client_limit") >= 84);
    assert_eq!(refused(&node, "proxy_tcp", "total_limit"), 0);
    // The hog's next one is reset.
    let out = lan.run(&["timeout", "3", &busybox(), "wget", "-qO-", &url]);
    assert!(!out.status.success(), "the hog is over its share: {}", stdout(&out));
    drop(hog);
}

#[test]
fn idle_host_port_connections_are_closed_after_the_idle_timeout() {
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    let node = Node::start_with("idle", Some("[limits]\nproxy_idle_timeout_s = 2\n"));
    let lan = Outside::attach(&node);
    // An echo server that never closes on its own.
    node.ok(&[
        "run",
        "echo",
        "--host-port",
        "8600:7",
        "--",
        &socat,
        "TCP-LISTEN:7,fork,reuseaddr",
        "EXEC:cat",
    ]);
    node.wait_running("echo");
    let target = format!("{}:8600", lan.node_ip);
    let mut conn = eventually(Duration::from_secs(15), "the host port to echo", || {
        lan.within(|| {
            let mut conn = TcpStream::connect(&target).ok()?;
            conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            conn.write_all(b"x").ok()?;
            let mut byte = [0u8; 1];
            (conn.read(&mut byte).ok()? == 1).then_some(conn)
        })
    });
    // In use, it outlives the idle time: a byte each half second for 4 s.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        conn.write_all(b"y").unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(conn.read(&mut byte).unwrap(), 1, "a connection in use stays open");
    }
    // Silent, it is reset at both ends.
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let ended = conn.read(&mut byte);
    assert!(
        matches!(&ended, Ok(0))
            || matches!(&ended, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "an idle connection is closed, got {ended:?} after {:?}",
        started.elapsed()
    );
    assert!(refused(&node, "proxy_tcp", "idle_timeout") >= 1);
}

/// The agent's open-file soft and hard limits.
fn fd_limit(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    let mut words = line.split_whitespace().skip(3);
    (words.next().unwrap().to_string(), words.next().unwrap().to_string())
}

fn prlimit(pid: i32, soft: &str, hard: &str) {
    let prlimit = require("prlimit", "util-linux");
    let out =
        Command::new(prlimit).args(["--pid", &pid.to_string(), &format!("--nofile={soft}:{hard}")]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "prlimit: {}", stderr(&out));
}

#[test]
fn accept_loops_survive_running_out_of_descriptors() {
    raise_fd_limit();
    let node = Node::start_custom("emfile", None, &["--metrics-addr", "0.0.0.0:9464"]);
    let lan = Outside::attach(&node);
    let url = format!("http://{}:9464/metrics", lan.node_ip);
    let scrape = || stdout(&lan.run(&["timeout", "5", &busybox(), "wget", "-qO-", &url]));
    assert!(scrape().contains("podnet_listener_connections"), "metrics answer");

    // The agent gets a few descriptors more than it holds; the lan opens
    // more connections than that, so accept(2) meets EMFILE.
    let agent = node.agent_pid();
    let (soft, hard) = fd_limit(agent);
    let tight = fds(agent) + 6;
    prlimit(agent, &tight.to_string(), &hard);
    let target = format!("{}:9464", lan.node_ip);
    let held: Vec<TcpStream> =
        lan.within(|| (0..30).filter_map(|_| TcpStream::connect(&target).ok()).collect());
    eventually(Duration::from_secs(10), "accept to fail with EMFILE", || {
        let log = node.agent_log();
        // The log is coloured: match the words, not `listener=metrics`.
        log.lines().any(|l| l.contains("accept failed") && l.contains("metrics")).then_some(())
    });
    // Room again: the same listener answers.
    prlimit(agent, &soft, &hard);
    drop(held);
    let text = eventually(Duration::from_secs(15), "metrics to answer again", || {
        let text = scrape();
        text.contains("podnet_listener_connections").then_some(text)
    });
    let failed = text.lines().find(|l| {
        l.starts_with("podnet_listener_refusals_total{listener=\"metrics\",reason=\"accept_failed\"}")
    });
    assert!(failed.is_some(), "the failed accepts are counted: {text}");
    // The control socket went through the same: the CLI still works.
    node.ok(&["get", "nodes"]);
}
