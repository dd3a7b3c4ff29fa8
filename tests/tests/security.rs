//! Anti-spoofing: a pod cannot send from another pod's IP or MAC. The forged
//! frames are dropped at its switch port and counted.

use podnet_e2e::{Node, busybox, stdout};

#[test]
fn forged_source_ip_and_mac_are_dropped_and_counted() {
    let node = Node::start("spoof");
    let bb = busybox();
    // Changing eth0's address and MAC needs CAP_NET_ADMIN: outside the sandbox's default set.
    node.ok(&["run", "mallory", "--privileged", "--", "sleep", "infinity"]);
    node.ok(&["run", "alice", "--", "sleep", "infinity"]);
    node.wait_running("mallory");
    let alice = node.wait_running("alice");

    // Mallory claims Alice's address as a second one and pings from it.
    let forge_ip = format!("ip addr add {alice}/32 dev eth0 && {bb} ping -c 2 -W 1 -I {alice} 10.244.0.1");
    let out = node.exec("mallory", &["sh", "-c", &forge_ip]);
    assert!(!out.status.success(), "forged pings must not be answered: {}", stdout(&out));
    assert!(node.drops("default/mallory", "spoofed_ip") >= 2);

    // Mallory changes her MAC: every frame is now dropped.
    let forge_mac = format!("ip link set eth0 address 02:00:00:00:00:66 && {bb} ping -c 2 -W 1 10.244.0.1");
    let out = node.exec("mallory", &["sh", "-c", &forge_mac]);
    assert!(!out.status.success());
    assert!(node.drops("default/mallory", "spoofed_mac") >= 1);

    // Alice is unaffected.
    let out = node.exec("alice", &[&bb, "ping", "-c", "1", "-W", "2", "10.244.0.1"]);
    assert!(out.status.success());
    assert_eq!(node.drops("default/alice", "spoofed_ip"), 0);
}

#[test]
fn capture_writes_pcap_that_tcpdump_reads() {
    let tcpdump = podnet_e2e::require("tcpdump", "tcpdump");
    let node = Node::start("pcap");
    let bb = busybox();
    node.ok(&["run", "talker", "--", "sleep", "infinity"]);
    node.wait_running("talker");
    let file = node.dir.join("talker.pcap");
    let mut capture = std::process::Command::new(podnet_e2e::podnet_bin())
        .args(["capture", "talker", "-c", "4", "-w"])
        .arg(&file)
        .env("PODNET_SOCKET", &node.socket)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = node.exec("talker", &[&bb, "ping", "-c", "2", "10.244.0.1"]);
    assert!(out.status.success());
    let status = capture.wait().unwrap();
    assert!(status.success());
    let out = std::process::Command::new(tcpdump).args(["-n", "-r"]).arg(&file).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("ICMP echo request") && text.contains("ICMP echo reply"), "{text}");
}

#[test]
fn capture_marks_the_frames_the_switch_dropped() {
    let node = Node::start("capmark");
    let bb = busybox();
    node.ok(&["run", "forger", "--privileged", "--", "sleep", "infinity"]);
    node.wait_running("forger");
    let capture = std::process::Command::new(podnet_e2e::podnet_bin())
        .args(["capture", "forger"])
        .env("PODNET_SOCKET", &node.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // An answered ping, then two from an address the pod does not own.
    let pings = format!(
        "{bb} ping -c 1 -W 1 10.244.0.1; ip addr add 10.244.0.99/32 dev eth0; \
         {bb} ping -c 2 -W 1 -I 10.244.0.99 10.244.0.1; true"
    );
    node.exec("forger", &["sh", "-c", &pings]);
    // Ctrl-C, as a user stops it: the capture ends cleanly.
    let interrupted = std::process::Command::new("kill").args(["-INT", &capture.id().to_string()]).status();
    assert!(interrupted.unwrap().success());
    let out = capture.wait_with_output().unwrap();
    let text = stdout(&out);
    let icmp = |from: &str| {
        text.lines().filter(|l| l.contains(&format!("IP {from} > 10.244.0.1: ICMP"))).collect::<Vec<_>>()
    };
    let (answered, forged) = (icmp("10.244.0.2"), icmp("10.244.0.99"));
    assert_eq!(answered.len(), 1, "{text}");
    assert!(!answered[0].contains("DROPPED"), "a forwarded frame is not marked: {text}");
    assert_eq!(forged.len(), 2, "{text}");
    assert!(forged.iter().all(|l| l.ends_with("DROPPED spoofed_ip")), "{text}");
}

#[test]
fn metrics_are_served_only_when_asked_for() {
    let node = Node::start_custom("metrics", None, &["--metrics-addr", "127.0.0.1:9464"]);
    let bb = busybox();
    node.ok(&["run", "m", "--", "sleep", "infinity"]);
    let ip = node.wait_running("m");
    node.on_node(&["ip", "link", "set", "lo", "up"]);
    let out = node.on_node(&[&bb, "ping", "-c", "1", "-W", "2", &ip]);
    assert!(out.status.success());
    let out = node.on_node(&["timeout", "5", &bb, "wget", "-qO-", "http://127.0.0.1:9464/metrics"]);
    let text = stdout(&out);
    assert!(text.contains("# TYPE podnet_port_rx_packets_total counter"), "{text}");
    assert!(
        text.contains(&format!("podnet_port_tx_packets_total{{port=\"default/m\",ip=\"{ip}\"}}")),
        "{text}"
    );

    let plain = Node::start("nometrics");
    plain.on_node(&["ip", "link", "set", "lo", "up"]);
    let out = plain.on_node(&["timeout", "5", &bb, "wget", "-qO-", "http://127.0.0.1:9464/metrics"]);
    assert!(!out.status.success(), "no metrics endpoint by default");
}

#[test]
fn pods_cannot_reach_the_control_socket_or_the_data_dir() {
    let node = Node::start("hide");
    let probe = format!(
        "PODNET_SOCKET={sock} {bin} get pods; echo rc=$?; ls -A {data} | wc -l",
        sock = node.socket.display(),
        bin = podnet_e2e::podnet_bin().display(),
        data = node.dir.join("data").display()
    );
    node.ok(&["run", "nosy", "--restart", "Never", "--", "sh", "-c", &probe]);
    let logs = podnet_e2e::eventually(std::time::Duration::from_secs(15), "the probe's output", || {
        let logs = node.ok(&["logs", "nosy"]);
        // Done once the line after rc= (the data dir's entry count) is there.
        logs.lines().skip_while(|l| !l.starts_with("rc=")).nth(1).is_some().then_some(logs)
    });
    assert!(logs.contains("rc=1"), "a pod reached the agent: {logs}");
    assert_eq!(logs.lines().last(), Some("0"), "a pod saw the data dir: {logs}");
    node.ok(&["get", "pods"]); // the node itself still reaches its agent
}
