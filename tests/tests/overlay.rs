//! The VXLAN overlay: pods on two podnet nodes joined by a bridged underlay
//! reach each other with both pod addresses kept; a Linux kernel vxlan
//! device, set up as flannel sets up its peers, speaks the same wire format;
//! VXLAN packets from strangers and spoofed inner sources are dropped and
//! counted, and so is VXLAN a pod writes itself.

use std::process::{Command, Stdio};
use std::time::Duration;

use podnet_e2e::{Node, Underlay, busybox, eventually, in_netns, require, stderr, stdout};

const A_UNDERLAY: &str = "192.168.250.11";
const B_UNDERLAY: &str = "192.168.250.12";
const KERNEL_UNDERLAY: &str = "192.168.250.19";
/// The kernel peer's VTEP MAC (any unicast MAC works: it is configured on
/// both sides).
const KERNEL_VTEP: &str = "0e:00:00:f4:09:00";

/// A node config: its subnet and static overlay peers (subnet, address,
/// VTEP MAC when not podnet's own derivation).
fn config(subnet: &str, peers: &[(&str, &str, Option<&str>)]) -> String {
    let peers: Vec<String> = peers
        .iter()
        .map(|(subnet, address, mac)| {
            let mac = mac.map(|m| format!(", vtep_mac = \"{m}\"")).unwrap_or_default();
            format!("  {{ subnet = \"{subnet}\", address = \"{address}\"{mac} }},\n")
        })
        .collect();
    format!("[network]\nnode_subnet = \"{subnet}\"\n\n[cluster]\npeers = [\n{}]\n", peers.concat())
}

fn web_root(node: &Node, blob: &[u8]) -> String {
    let www = node.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "across the overlay\n").unwrap();
    std::fs::write(www.join("blob"), blob).unwrap();
    www.to_string_lossy().into_owned()
}

fn blob() -> Vec<u8> {
    (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn md5(bb: &str, path: &str) -> String {
    let out = Command::new(bb).args(["md5sum", path]).output().unwrap();
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

fn port_stat(node: &Node, port: &str, field: &str) -> u64 {
    let stats: serde_json::Value = serde_json::from_str(&node.ok(&["node", "stats", "-o", "json"])).unwrap();
    stats["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .map_or(0, |p| p[field].as_u64().unwrap())
}

/// Pods on two nodes: A (10.244.0.0/24) and B (10.244.1.0/24), peers of
/// each other by config, on one bridged underlay.
struct TwoNodes {
    a: Node,
    b: Node,
    _underlay: Underlay,
}

fn two_nodes(tag: &str) -> TwoNodes {
    let a = Node::start_with(
        &format!("{tag}a"),
        Some(&config("10.244.0.0/24", &[("10.244.1.0/24", B_UNDERLAY, None)])),
    );
    let b = Node::start_with(
        &format!("{tag}b"),
        Some(&config("10.244.1.0/24", &[("10.244.0.0/24", A_UNDERLAY, None)])),
    );
    let mut underlay = Underlay::new();
    underlay.attach(&a.netns, A_UNDERLAY);
    underlay.attach(&b.netns, B_UNDERLAY);
    TwoNodes { a, b, _underlay: underlay }
}

#[test]
fn pods_on_two_nodes_talk_with_their_own_addresses() {
    let nodes = two_nodes("ov");
    let (a, b) = (&nodes.a, &nodes.b);
    let bb = busybox();
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    let blob = blob();
    let www_a = web_root(a, &blob);
    let www_b = web_root(b, &blob);
    let digest = md5(&bb, &format!("{www_a}/blob"));

    a.ok(&["run", "client", "--", "sleep", "infinity"]);
    a.ok(&["run", "web", "--", &bb, "httpd", "-f", "-p", "8080", "-h", &www_a]);
    b.ok(&["run", "client", "--", "sleep", "infinity"]);
    b.ok(&["run", "web", "--", &bb, "httpd", "-f", "-p", "8080", "-h", &www_b]);
    b.ok(&["run", "tcp-who", "--", &socat, "TCP-LISTEN:7000,fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR"]);
    b.ok(&["run", "udp-who", "--", &socat, "UDP-RECVFROM:7001,fork", "SYSTEM:echo $SOCAT_PEERADDR"]);
    let client_a = a.wait_running("client");
    let web_a = a.wait_running("web");
    let client_b = b.wait_running("client");
    let web_b = b.wait_running("web");
    let tcp_who = b.wait_running("tcp-who");
    let udp_who = b.wait_running("udp-who");
    assert!(client_a.starts_with("10.244.0.") && web_b.starts_with("10.244.1."), "{client_a} {web_b}");

    // The pod MTU leaves room for VXLAN.
    let out = a.exec("client", &["ip", "-o", "link", "show", "eth0"]);
    assert!(stdout(&out).contains(" mtu 1450 "), "{}", stdout(&out));

    // ICMP both ways, and the node reaching the other node's pod.
    let out = a.exec("client", &[&bb, "ping", "-c", "2", "-W", "2", &client_b]);
    assert!(out.status.success(), "ping A pod -> B pod: {}{}", stdout(&out), a.agent_log());
    let out = b.exec("client", &[&bb, "ping", "-c", "1", "-W", "2", &client_a]);
    assert!(out.status.success(), "ping B pod -> A pod: {}", stdout(&out));
    let out = a.on_node(&[&bb, "ping", "-c", "1", "-W", "2", &client_b]);
    assert!(out.status.success(), "ping node A -> B pod: {}", stdout(&out));

    // HTTP across, both ways.
    let out = a.exec("client", &[&bb, "wget", "-qO-", &format!("http://{web_b}:8080/")]);
    assert!(out.status.success(), "wget A -> B: {}", stderr(&out));
    assert_eq!(stdout(&out), "across the overlay\n");
    let out = b.exec("client", &[&bb, "wget", "-qO-", &format!("http://{web_a}:8080/")]);
    assert_eq!(stdout(&out), "across the overlay\n");

    // The server sees the client pod's own address: no NAT (TCP and UDP).
    let out = a.exec("client", &[&socat, "-t", "2", "-", &format!("TCP:{tcp_who}:7000")]);
    assert_eq!(stdout(&out).trim(), client_a, "TCP peer address seen on B: {}", stderr(&out));
    // One datagram each way, so a loss on a busy machine gets two more tries.
    let udp = format!("echo hi | {socat} -t 2 - UDP:{udp_who}:7001");
    let out = (0..3)
        .map(|_| a.exec("client", &["sh", "-c", &udp]))
        .find(|out| !stdout(out).trim().is_empty())
        .expect("no UDP answer in three tries");
    assert_eq!(stdout(&out).trim(), client_a, "UDP peer address seen on B: {}", stderr(&out));

    // 8 MiB each way: TSO super-frames cut into segments, checksums completed.
    for (node, server) in [(a, &web_b), (b, &web_a)] {
        let out = node.exec(
            "client",
            &["sh", "-c", &format!("{bb} wget -qO- http://{server}:8080/blob | {bb} md5sum")],
        );
        assert_eq!(stdout(&out).split_whitespace().next(), Some(digest.as_str()), "{}", stderr(&out));
    }

    // The overlay port counts what crossed it (frames as the switch saw
    // them going out, some of them GSO super-frames; datagrams coming in);
    // nothing was dropped there.
    assert!(port_stat(a, "overlay", "tx_packets") > 100);
    assert!(port_stat(a, "overlay", "rx_packets") > 5000, "8 MiB is thousands of datagrams");
    assert_eq!(port_stat(a, "overlay", "tx_errors"), 0);
    for reason in ["unknown_peer", "spoofed_ip", "malformed", "wrong_vni"] {
        assert_eq!(a.drops("overlay", reason), 0, "{reason}");
        assert_eq!(b.drops("overlay", reason), 0, "{reason}");
    }
}

/// Node A (10.244.0.0/24) and a Linux kernel vxlan device in a bare
/// namespace as the foreign peer for 10.244.9.0/24, set up as flannel sets
/// up its peers: the device holds 10.244.9.0/32, each remote subnet is
/// routed `via <subnet>.0 onlink`, with a permanent neighbour entry for that
/// address (the remote VTEP MAC) and an fdb entry sending that MAC to the
/// remote node's underlay address.
struct KernelPeer {
    node: Node,
    netns: String,
    underlay: Underlay,
}

fn kernel_peer(tag: &str) -> KernelPeer {
    require("bridge", "iproute2");
    let node = Node::start_with(
        tag,
        Some(&config("10.244.0.0/24", &[("10.244.9.0/24", KERNEL_UNDERLAY, Some(KERNEL_VTEP))])),
    );
    let mut underlay = Underlay::new();
    underlay.attach(&node.netns, A_UNDERLAY);
    let netns = underlay.host(KERNEL_UNDERLAY);
    let run = |args: &[&str]| {
        let out = in_netns(&netns, args);
        assert!(out.status.success(), "{}: {}", args.join(" "), stderr(&out));
    };
    run(&[
        "ip",
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "8472",
        "local",
        KERNEL_UNDERLAY,
        "dev",
        "underlay",
        "nolearning",
    ]);
    run(&["ip", "link", "set", "vx0", "address", KERNEL_VTEP, "mtu", "1450", "up"]);
    run(&["ip", "addr", "add", "10.244.9.0/32", "dev", "vx0"]);
    run(&["ip", "route", "add", "10.244.0.0/24", "via", "10.244.0.0", "dev", "vx0", "onlink"]);
    run(&[
        "ip",
        "neigh",
        "add",
        "10.244.0.0",
        "lladdr",
        "0a:58:0a:f4:00:00",
        "dev",
        "vx0",
        "nud",
        "permanent",
    ]);
    run(&["bridge", "fdb", "append", "0a:58:0a:f4:00:00", "dev", "vx0", "dst", A_UNDERLAY]);
    KernelPeer { node, netns, underlay }
}

#[test]
fn a_linux_vxlan_device_is_a_peer() {
    let peer = kernel_peer("kvx");
    let (node, kv) = (&peer.node, &peer.netns);
    let bb = busybox();
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    let blob = blob();
    let www = web_root(node, &blob);
    let digest = md5(&bb, &format!("{www}/blob"));
    node.ok(&["run", "web", "--", &bb, "httpd", "-f", "-p", "8080", "-h", &www]);
    node.ok(&["run", "who", "--", &socat, "TCP-LISTEN:7000,fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR"]);
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    let web = node.wait_running("web");
    let who = node.wait_running("who");
    node.wait_running("client");

    // ICMP: the kernel to the pod, the pod to the kernel's address.
    let out = in_netns(kv, &[&bb, "ping", "-c", "2", "-W", "2", &web]);
    assert!(out.status.success(), "kernel -> pod ping: {}{}", stdout(&out), node.agent_log());
    let out = node.exec("client", &[&bb, "ping", "-c", "1", "-W", "2", "10.244.9.0"]);
    assert!(out.status.success(), "pod -> kernel ping: {}", stdout(&out));

    // TCP from the kernel side keeps its address.
    let out = in_netns(kv, &[&socat, "-t", "2", "-", &format!("TCP:{who}:7000")]);
    assert_eq!(stdout(&out).trim(), "10.244.9.0", "{}", stderr(&out));

    // 8 MiB from a pod to the kernel: segments and checksums the kernel
    // checks itself.
    let out = in_netns(kv, &["sh", "-c", &format!("{bb} wget -qO- http://{web}:8080/blob | {bb} md5sum")]);
    assert_eq!(stdout(&out).split_whitespace().next(), Some(digest.as_str()), "{}", stderr(&out));

    // And 8 MiB from the kernel's side to a pod.
    let kernel_www = node.dir.join("kernel-www");
    std::fs::create_dir_all(&kernel_www).unwrap();
    std::fs::write(kernel_www.join("blob"), &blob).unwrap();
    let mut server = Command::new("ip")
        .args(["netns", "exec", kv, &bb, "httpd", "-f", "-p", "10.244.9.0:8080", "-h"])
        .arg(&kernel_www)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // A pipeline's status is md5sum's: wait for the server on its own first.
    let url = "http://10.244.9.0:8080/blob";
    eventually(Duration::from_secs(10), "the kernel side's httpd", || {
        node.exec("client", &[&bb, "wget", "-qO", "/dev/null", url]).status.success().then_some(())
    });
    let out = node.exec("client", &["sh", "-c", &format!("{bb} wget -qO- {url} | {bb} md5sum")]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(stdout(&out).split_whitespace().next(), Some(digest.as_str()), "{}", stderr(&out));
    assert_eq!(port_stat(node, "overlay", "tx_errors"), 0);
    drop(peer.underlay);
}

/// A VXLAN datagram (VNI 1) carrying a UDP packet `src` → `dst`:9000 with
/// `payload`, inner MACs from the kernel peer's VTEP to node A's.
fn forged_datagram(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    d.extend_from_slice(&[0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x00]);
    d.extend_from_slice(&[0x0e, 0x00, 0x00, 0xf4, 0x09, 0x00]);
    d.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    d.extend_from_slice(&ip);
    let udp_len = (8 + payload.len()) as u16;
    // UDP checksum 0: none, which IPv4 allows.
    d.extend_from_slice(&[0x9c, 0x40, 0x23, 0x28, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    d.extend_from_slice(payload);
    d
}

/// Sends `datagram` to node A's VXLAN port from `source` inside `netns`.
fn send_from(netns: &str, source: &str, datagram: &[u8]) {
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, &socat, "-u", "STDIN"])
        .arg(format!("UDP-SENDTO:{A_UNDERLAY}:8472,bind={source}"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(datagram).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn forged_overlay_packets_are_dropped_and_counted() {
    let peer = kernel_peer("forge");
    let (node, kv) = (&peer.node, &peer.netns);
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    node.ok(&["run", "listener", "--", &socat, "-u", "UDP-RECV:9000", "STDOUT"]);
    let listener = node.wait_running("listener");
    let dst: Vec<u8> = listener.split('.').map(|o| o.parse().unwrap()).collect();
    let dst = [dst[0], dst[1], dst[2], dst[3]];
    // A stranger on the underlay: an address that is no cluster node.
    let out = in_netns(kv, &["ip", "addr", "add", "192.168.250.66/24", "dev", "underlay"]);
    assert!(out.status.success(), "{}", stderr(&out));

    send_from(kv, "192.168.250.66", &forged_datagram([10, 244, 9, 0], dst, b"from-a-stranger\n"));
    eventually(Duration::from_secs(5), "the stranger's packet counted", || {
        (node.drops("overlay", "unknown_peer") == 1).then_some(())
    });
    // A real peer speaking for another node's pod.
    send_from(kv, KERNEL_UNDERLAY, &forged_datagram([10, 244, 1, 7], dst, b"spoofed-source\n"));
    eventually(Duration::from_secs(5), "the spoofed packet counted", || {
        (node.drops("overlay", "spoofed_ip") == 1).then_some(())
    });
    // The same bytes, honest: delivered (so the drops above were the checks').
    send_from(kv, KERNEL_UNDERLAY, &forged_datagram([10, 244, 9, 0], dst, b"honest-peer\n"));
    eventually(Duration::from_secs(5), "the honest datagram in the listener's log", || {
        node.ok(&["logs", "listener"]).contains("honest-peer").then_some(())
    });
    let logs = node.ok(&["logs", "listener"]);
    assert!(!logs.contains("from-a-stranger") && !logs.contains("spoofed-source"), "{logs}");
    let text = node.ok(&["node", "stats"]);
    assert!(text.contains("unknown_peer=1"), "{text}");
}

/// `bytes` as a printf format of octal escapes (no `%`, no quoting issue).
fn printf_octal(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

fn octets(ip: &str) -> [u8; 4] {
    let v: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

#[test]
fn a_pod_cannot_write_vxlan_to_the_nodes() {
    let nodes = two_nodes("byp");
    let (a, b) = (&nodes.a, &nodes.b);
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    b.ok(&["run", "victim", "--", &socat, "-u", "UDP-RECV:9000", "STDOUT"]);
    a.ok(&["run", "local-victim", "--", &socat, "-u", "UDP-RECV:9000", "STDOUT"]);
    a.ok(&["run", "attacker", "--", "sleep", "infinity"]);
    let victim = b.wait_running("victim");
    let local_victim = a.wait_running("local-victim");
    a.wait_running("attacker");

    // VXLAN to node B's overlay port, from inside a pod of node A: egress
    // would send it from A's address, which B takes as its peer's, and the
    // inner source (a made-up address of A's subnet) is A's to speak for.
    let forged = forged_datagram([10, 244, 0, 77], octets(&victim), b"injected\n");
    let send =
        |to: &str| format!("printf '{}' | {socat} -u STDIN UDP-SENDTO:{to}:8472", printf_octal(&forged));
    for _ in 0..3 {
        let out = a.exec("attacker", &["sh", "-c", &send(B_UNDERLAY)]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    eventually(Duration::from_secs(5), "the three datagrams refused on the attacker's port", || {
        (a.drops("default/attacker", "overlay_bypass") == 3).then_some(())
    });
    assert!(a.ok(&["node", "stats"]).contains("overlay_bypass=3"));

    // To its own node's overlay port: it comes from the node's own address,
    // which is no peer.
    let forged = forged_datagram([10, 244, 1, 77], octets(&local_victim), b"injected\n");
    let send = format!("printf '{}' | {socat} -u STDIN UDP-SENDTO:{A_UNDERLAY}:8472", printf_octal(&forged));
    let out = a.exec("attacker", &["sh", "-c", &send]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(Duration::from_secs(5), "the datagram to A's own overlay port refused", || {
        (a.drops("overlay", "unknown_peer") == 1).then_some(())
    });

    // The path itself works: an honest datagram pod to pod reaches the victim.
    let honest = format!("echo honest | {socat} -u STDIN UDP-SENDTO:{victim}:9000");
    eventually(Duration::from_secs(10), "an honest datagram in the victim's log", || {
        a.exec("attacker", &["sh", "-c", &honest]);
        b.ok(&["logs", "victim"]).contains("honest").then_some(())
    });
    assert!(!b.ok(&["logs", "victim"]).contains("injected"));
    assert!(!a.ok(&["logs", "local-victim"]).contains("injected"));
    assert_eq!(b.drops("overlay", "spoofed_ip"), 0);
}
