//! External access (issue #5): NodePort, LoadBalancer and hostPort from a
//! "lan" namespace the test creates, connection semantics through the proxy
//! (half-close both ways, resets, refusal), a thousand concurrent
//! connections, bad input; and pod egress to servers in the lan, which must
//! see the node's address.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use podnet_e2e::{Node, Outside, busybox, eventually, raise_fd_limit, require, stderr, stdout};

/// The egress tests' board config: two data-plane threads, so frames of
/// the egress endpoint are handed between threads on any machine.
const TWO_THREADS: &str = "[dataplane]\nthreads = 2\n";

fn svc_json(node: &Node, service: &str) -> serde_json::Value {
    serde_json::from_str(&node.ok(&["get", "svc", service, "-o", "json"])).unwrap()
}

fn node_port(node: &Node, service: &str) -> u16 {
    svc_json(node, service)["spec"]["ports"][0]["nodePort"].as_u64().expect("nodePort") as u16
}

/// Fetches `url` from the lan `n` times; counts answers by body.
fn lan_spread(lan: &Outside, url: &str, n: usize) -> BTreeMap<String, usize> {
    let bb = busybox();
    let script = format!("for i in $(seq {n}); do timeout 3 {bb} wget -qO- {url} || echo FAILED; done");
    let out = lan.run(&["sh", "-c", &script]);
    let mut seen = BTreeMap::new();
    for line in stdout(&out).lines() {
        *seen.entry(line.to_string()).or_default() += 1;
    }
    seen
}

/// A listener on the node that is not podnet's; killed on drop.
struct Squatter(std::process::Child);

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Holds `port` open on the node with a listener that is not podnet's.
fn squat(node: &Node, proto: &str, port: u16) -> Squatter {
    let socat = require("socat", "socat");
    let addr = format!("{proto}-LISTEN:{port},reuseaddr");
    let child = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .arg(socat)
        .args([addr.as_str(), "EXEC:cat"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let flag = if proto == "TCP" { "-Hltn" } else { "-Hlun" };
    eventually(Duration::from_secs(5), "the squatter to listen", || {
        let out = node.on_node(&["ss", flag, &format!("sport = :{port}")]);
        (!stdout(&out).trim().is_empty()).then_some(())
    });
    Squatter(child)
}

#[test]
fn nodeport_is_reachable_from_the_lan_and_balanced() {
    let node = Node::start("np");
    let lan = Outside::attach(&node);
    node.named_web("web", 2, 8080, &[]);
    node.ok(&["expose", "deployment", "web", "--type", "NodePort", "--port", "80", "--target-port", "8080"]);
    node.wait_endpoints("web", 2);
    let np = node_port(&node, "web");
    assert!((30000..=32767).contains(&np), "{np}");
    let table = node.ok(&["get", "svc"]);
    assert!(table.contains("NodePort") && table.contains(&format!("80:{np}/TCP")), "{table}");

    let seen = lan_spread(&lan, &format!("http://{}:{np}/", lan.node_ip), 20);
    assert!(!seen.contains_key("FAILED"), "{seen:?}");
    assert_eq!(seen.len(), 2, "both replicas answer through the node port: {seen:?}");

    // A chosen node port; and the node itself reaches it on loopback.
    node.ok(&[
        "expose",
        "deployment",
        "web",
        "--type",
        "NodePort",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--node-port",
        "30080",
        "--name",
        "web-fixed",
    ]);
    assert_eq!(node_port(&node, "web-fixed"), 30080);
    let out = node.on_node(&["timeout", "3", &busybox(), "wget", "-qO-", "http://127.0.0.1:30080/"]);
    assert!(stdout(&out).starts_with("web-"), "{}", stderr(&out));

    // Deleting the service closes the port.
    node.ok(&["delete", "svc", "web-fixed"]);
    eventually(Duration::from_secs(5), "node port 30080 to close", || {
        let out = lan.run(&["timeout", "3", &busybox(), "wget", "-qO-", "http://192.168.77.1:30080/"]);
        (!out.status.success()).then_some(())
    });
}

#[test]
fn loadbalancer_serves_on_node_addresses_or_says_why_not() {
    let node = Node::start("lb");
    let lan = Outside::attach(&node);
    node.named_web("web", 1, 80, &[]);
    node.ok(&[
        "expose",
        "deployment",
        "web",
        "--type",
        "LoadBalancer",
        "--port",
        "8081",
        "--target-port",
        "80",
    ]);
    node.wait_endpoints("web", 1);
    let table = node.ok(&["get", "svc", "web"]);
    assert!(table.contains("LoadBalancer") && table.contains("192.168.77.1"), "{table}");
    let np = node_port(&node, "web");
    assert!(table.contains(&format!("8081:{np}/TCP")), "{table}");
    let json = svc_json(&node, "web");
    assert_eq!(json["status"]["loadBalancer"]["ingress"][0]["ip"], "192.168.77.1", "{json}");
    for port in [8081, np] {
        let out =
            lan.run(&["timeout", "3", &busybox(), "wget", "-qO-", &format!("http://192.168.77.1:{port}/")]);
        assert!(stdout(&out).starts_with("web-"), "port {port}: {}", stderr(&out));
    }

    // A port another process holds: a clear status, served once it is free.
    let squatter = squat(&node, "TCP", 8082);
    node.ok(&[
        "expose",
        "deployment",
        "web",
        "--type",
        "LoadBalancer",
        "--port",
        "8082",
        "--target-port",
        "80",
        "--name",
        "web2",
    ]);
    let table = node.ok(&["get", "svc", "web2"]);
    assert!(table.contains("<pending: port 8082/TCP in use on the node>"), "{table}");
    // Another service wanting the same port is told who has it.
    node.ok(&[
        "expose",
        "deployment",
        "web",
        "--type",
        "LoadBalancer",
        "--port",
        "8081",
        "--target-port",
        "80",
        "--name",
        "web3",
    ]);
    assert!(node.ok(&["get", "svc", "web3"]).contains("in use by service default/web"));
    drop(squatter);
    eventually(Duration::from_secs(10), "web2 to be served", || {
        node.ok(&["get", "svc", "web2"]).contains("192.168.77.1").then_some(())
    });
    let out = lan.run(&["timeout", "3", &busybox(), "wget", "-qO-", "http://192.168.77.1:8082/"]);
    assert!(stdout(&out).starts_with("web-"), "{}", stderr(&out));
}

#[test]
fn host_ports_tcp_and_udp_with_portmap_conflicts() {
    let node = Node::start("hostport");
    let lan = Outside::attach(&node);
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    node.ok(&[
        "run",
        "cam",
        "--host-port",
        "8554:9000/UDP",
        "--",
        &socat,
        "UDP-RECVFROM:9000,fork",
        "EXEC:cat",
    ]);
    let bb = busybox();
    node.ok(&["run", "web", "--host-port", "8554:80", "--", &bb, "httpd", "-f", "-p", "80", "-h", "/etc"]);
    node.wait_running("cam");
    node.wait_running("web");

    let out = lan.run(&["sh", "-c", &format!("echo ping-udp | {socat} -t 2 - UDP:192.168.77.1:8554")]);
    assert_eq!(stdout(&out), "ping-udp\n", "{}", stderr(&out));
    let out = lan.run(&["timeout", "3", &bb, "wget", "-qO-", "http://192.168.77.1:8554/hostname"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Same port, protocol and host IP (or all addresses): a conflict.
    node.fails(&["run", "cam2", "--host-port", "8554:9000/UDP", "--", "sleep", "1"], "conflicts");
    node.fails(
        &["run", "cam3", "--host-port", "192.168.77.1:8554:9000/UDP", "--", "sleep", "1"],
        "conflicts",
    );
    let out = node.podnet(&["run", "bad", "--host-port", "0:80", "--", "sleep", "1"]);
    assert!(!out.status.success() && stderr(&out).contains("1 to 65535"), "{}", stderr(&out));
    // A port a process on the node holds.
    let _squatter = squat(&node, "TCP", 8555);
    node.fails(&["run", "held", "--host-port", "8555:80", "--", "sleep", "1"], "in use on the node");
    // A deployment with host ports runs one replica per node.
    node.fails(
        &["create", "deployment", "many", "--replicas", "2", "--host-port", "9999:80", "--", "sleep", "1"],
        "one replica per node",
    );
    assert_eq!(node.pods().len(), 2, "nothing half-made");

    // Deleting the pod frees its host port.
    node.ok(&["delete", "pod", "cam"]);
    node.ok(&["run", "cam2", "--host-port", "8554:9000/UDP", "--", "sleep", "infinity"]);
}

#[test]
fn udp_nodeport_echoes_both_ways() {
    let node = Node::start("udpnp");
    let lan = Outside::attach(&node);
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    node.ok(&["create", "deployment", "echo", "--", &socat, "UDP-RECVFROM:9000,fork", "EXEC:cat"]);
    node.ok(&[
        "expose",
        "deployment",
        "echo",
        "--type",
        "NodePort",
        "--protocol",
        "UDP",
        "--port",
        "53",
        "--target-port",
        "9000",
    ]);
    node.wait_endpoints("echo", 1);
    let np = node_port(&node, "echo");
    assert!(node.ok(&["get", "svc"]).contains(&format!("53:{np}/UDP")));
    for i in 0..3 {
        let out = lan.run(&["sh", "-c", &format!("echo hello-{i} | {socat} -t 2 - UDP:192.168.77.1:{np}")]);
        assert_eq!(stdout(&out), format!("hello-{i}\n"), "{}", stderr(&out));
    }
}

/// Reads until EOF; Err when the connection was reset.
fn read_to_eof(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Makes the next close send a RST.
fn set_zero_linger(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a valid socket with a pointer to a local linger.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// Not a test: server roles for pods, run as this binary with
/// PODNET_E2E_ROLE set. `rst` resets every connection on port 7002 once it
/// has read a byte; `victim` reads connections on port 7003 to their end and
/// prints `ended: reset` or `ended: eof`.
#[test]
fn role_server() {
    let role = std::env::var("PODNET_E2E_ROLE").unwrap_or_default();
    let port = match role.as_str() {
        "rst" => 7002,
        "victim" => 7003,
        _ => return,
    };
    let listener = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    for mut conn in listener.incoming().flatten() {
        if role == "rst" {
            let mut byte = [0u8; 1];
            let _ = conn.read(&mut byte);
            set_zero_linger(&conn);
            continue;
        }
        let ended = match read_to_eof(&mut conn) {
            Ok(_) => "eof",
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset",
            Err(_) => "error",
        };
        println!("ended: {ended}");
    }
}

#[test]
fn half_close_and_resets_pass_through_the_proxy() {
    let node = Node::start("halfclose");
    let lan = Outside::attach(&node);
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    // Counts what it gets until the client's FIN, then answers.
    node.ok(&[
        "run",
        "count",
        "--port",
        "7000",
        "--",
        &socat,
        "TCP-LISTEN:7000,fork,reuseaddr",
        "EXEC:wc -c",
    ]);
    // Sends a banner and closes its sending side (the file's EOF), then
    // keeps reading into the file (in its own /tmp: the host is read-only;
    // the shell stays, so the file does too, for exec to read).
    let file = "/tmp/banner.txt";
    let script = format!(
        "echo banner > {file} && {socat} -t 10 TCP-LISTEN:7001,reuseaddr OPEN:{file}; sleep infinity"
    );
    node.ok(&["run", "banner", "--", "sh", "-c", &script]);
    // Resets every connection (this test binary in a server role). A copy
    // beside the node's files: the checkout may be under /tmp, which a pod
    // sees as its own private tmpfs.
    let me = node.dir.join("role-server");
    std::fs::copy(std::env::current_exe().unwrap(), &me).unwrap();
    let me = me.to_string_lossy().into_owned();
    let role = format!("PODNET_E2E_ROLE=rst exec {me} --exact role_server --nocapture");
    node.ok(&["run", "rst", "--", "sh", "-c", &role]);
    // Prints how its connections end.
    let role = format!("PODNET_E2E_ROLE=victim exec {me} --exact role_server --nocapture");
    node.ok(&["run", "victim", "--", "sh", "-c", &role]);
    let mut ports = BTreeMap::new();
    for (pod, port) in [("count", 7000), ("banner", 7001), ("rst", 7002), ("victim", 7003)] {
        node.wait_running(pod);
        node.ok(&["expose", "pod", pod, "--type", "NodePort", "--port", &port.to_string()]);
        node.wait_endpoints(pod, 1);
        ports.insert(pod, node_port(&node, pod));
    }
    let at = |pod: &str| format!("192.168.77.1:{}", ports[pod]);
    let (count, banner, rst, victim) = (at("count"), at("banner"), at("rst"), at("victim"));
    lan.within(|| {
        // Client -> server half-close: the server sees EOF and still answers.
        let mut s = TcpStream::connect(&count).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"hello").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut s).unwrap().trim(), "5");

        // Server -> client half-close: the client sees EOF and can still send.
        let mut s = TcpStream::connect(&banner).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_to_eof(&mut s).unwrap(), "banner\n");
        s.write_all(b"after-eof").unwrap();
        s.shutdown(Shutdown::Write).unwrap();

        // A server reset reaches the client as a reset, not an EOF.
        let mut s = TcpStream::connect(&rst).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"x").unwrap();
        let err = read_to_eof(&mut s).expect_err("a reset, not a clean EOF");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

        // A client reset reaches the server.
        let s = TcpStream::connect(&victim).unwrap();
        (&s).write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        set_zero_linger(&s);
        drop(s);
    });
    eventually(Duration::from_secs(5), "the banner server to get the data", || {
        let got = stdout(&node.exec("banner", &["cat", "/tmp/banner.txt"]));
        (got == "banner\nafter-eof").then_some(())
    });
    eventually(Duration::from_secs(5), "the victim to log the reset", || {
        let log = stdout(&node.podnet(&["logs", "victim"]));
        log.contains("ended: reset").then_some(())
    });
}

#[test]
fn bulk_data_crosses_a_node_port_intact_both_ways() {
    // The proxy splices: bytes must arrive whole and in order while both
    // directions run at once (an echo server), and the client's half-close
    // must still end the echo cleanly.
    let node = Node::start("npbulk");
    let lan = Outside::attach(&node);
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    node.ok(&[
        "run",
        "echo",
        "--port",
        "7000",
        "--",
        &socat,
        "-t",
        "30",
        "TCP-LISTEN:7000,fork,reuseaddr",
        "EXEC:cat",
    ]);
    node.wait_running("echo");
    node.ok(&["expose", "pod", "echo", "--type", "NodePort", "--port", "7000"]);
    node.wait_endpoints("echo", 1);
    let target = format!("192.168.77.1:{}", node_port(&node, "echo"));
    let data: Vec<u8> = (0..16usize << 20).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect();
    let echoed = lan.within(|| {
        let s = eventually(Duration::from_secs(10), "the echo server to answer", || {
            TcpStream::connect(&target).ok()
        });
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut writer = s.try_clone().unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                writer.write_all(&data).unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
            });
            let mut reader = s;
            let mut got = Vec::with_capacity(data.len());
            reader.read_to_end(&mut got).map(|_| got)
        })
    });
    let echoed = echoed.expect("the echo ends with EOF, not an error");
    assert_eq!(echoed.len(), data.len(), "bytes echoed");
    assert!(echoed == data, "the echoed bytes differ from those sent");
}

#[test]
fn a_service_without_ready_backends_refuses_at_once() {
    let node = Node::start("npclosed");
    let lan = Outside::attach(&node);
    node.named_web("web", 1, 80, &[]);
    node.ok(&[
        "expose",
        "deployment",
        "web",
        "--type",
        "NodePort",
        "--port",
        "80",
        "--selector",
        "app=nobody",
    ]);
    // A backend that exists but whose port is closed.
    node.ok(&["expose", "deployment", "web", "--type", "NodePort", "--port", "81", "--name", "closed"]);
    node.wait_endpoints("closed", 1);
    let targets = [
        format!("192.168.77.1:{}", node_port(&node, "web")),
        format!("192.168.77.1:{}", node_port(&node, "closed")),
    ];
    lan.within(|| {
        for target in &targets {
            let started = Instant::now();
            let result = TcpStream::connect(target).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                read_to_eof(&mut s)
            });
            let err = result.expect_err("refused");
            assert!(
                matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
                ),
                "{target}: {err}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{target}: refused at once, not after a timeout"
            );
        }
    });
}

#[test]
fn a_thousand_concurrent_connections_through_a_node_port() {
    raise_fd_limit();
    let node = Node::start("np1000");
    let lan = Outside::attach(&node);
    let nginx = require("nginx", "nginx").to_string_lossy().into_owned();
    let conf = node.dir.join("nginx.conf");
    std::fs::write(
        &conf,
        "daemon off; pid /tmp/podnet-e2e-nginx-$hostname.pid; error_log stderr; worker_processes 1;\n\
         worker_rlimit_nofile 8192; events { worker_connections 4096; }\n\
         http { access_log off; server { listen 80 backlog=2048; location / { return 200 \"ok\\n\"; } } }\n",
    )
    .unwrap();
    let conf = conf.to_string_lossy().into_owned();
    node.ok(&["create", "deployment", "web", "--readiness", "tcp:80", "--", &nginx, "-c", &conf]);
    node.ok(&["expose", "deployment", "web", "--type", "NodePort", "--port", "80"]);
    node.wait_endpoints("web", 1);
    let target = format!("192.168.77.1:{}", node_port(&node, "web"));
    let started = Instant::now();
    let answered = lan.within(|| {
        // All open at once, each with its request sent, before any is read.
        let mut conns: Vec<TcpStream> = (0..1000)
            .map(|i| {
                let mut s = TcpStream::connect(&target).unwrap_or_else(|e| panic!("connection {i}: {e}"));
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                s
            })
            .collect();
        conns
            .iter_mut()
            .map(read_to_eof)
            .filter(|r| r.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1 200")))
            .count()
    });
    assert_eq!(answered, 1000);
    eprintln!("1000 concurrent connections in {:?}", started.elapsed());
}

#[test]
fn bad_node_ports_are_refused_and_nothing_is_half_made() {
    let node = Node::start("npbad");
    node.named_web("web", 1, 80, &[]);
    let np = |extra: &[&str]| {
        let mut args = vec!["expose", "deployment", "web", "--type", "NodePort", "--port", "80", "--name"];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, needle: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        node.fails(&args, needle);
    };
    run(np(&["a", "--node-port", "80"]), "outside the node port range 30000-32767");
    run(np(&["a", "--node-port", "40000"]), "outside the node port range");
    node.ok(&np(&["b", "--node-port", "30500"]).iter().map(String::as_str).collect::<Vec<_>>());
    run(np(&["c", "--node-port", "30500"]), "already used by service default/b");
    let _squatter = squat(&node, "TCP", 30600);
    run(np(&["d", "--node-port", "30600"]), "in use on the node");
    node.fails(&["expose", "deployment", "web", "--port", "80", "--node-port", "30700"], "--type NodePort");
    node.fails(
        &["expose", "deployment", "web", "--type", "NodePort", "--port", "80", "--cluster-ip", "None"],
        "needs a ClusterIP",
    );
    let out = node.podnet(&["expose", "deployment", "web", "--type", "Nodeport", "--port", "80"]);
    assert!(
        !out.status.success() && stderr(&out).contains("ClusterIP, NodePort, LoadBalancer"),
        "{}",
        stderr(&out)
    );
    // UDP may reuse a TCP node port number.
    node.ok(&np(&["e", "--node-port", "30500", "--protocol", "UDP"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(node.ok(&["get", "svc"]).lines().count(), 3, "header + b + e");
}

#[test]
fn pods_reach_the_lan_as_the_node_over_tcp_udp_and_ping() {
    // Two data-plane threads whatever the machine's cores: the egress
    // endpoint's frames are read by thread 0 and handed to their flow's
    // owner (a lost wakeup there once stalled the big download below).
    let node = Node::start_with("egress", Some(TWO_THREADS));
    let mut lan = Outside::attach(&node);
    let bb = busybox();
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    let www = node.dir.join("lan-www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from the lan\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(www.join("big"), &big).unwrap();
    let www = www.to_string_lossy().into_owned();
    lan.spawn(&[&bb, "httpd", "-f", "-vv", "-p", "80", "-h", &www], &node.dir.join("httpd.log"));
    // Tells each client the address it sees; counts an upload.
    lan.spawn(
        &[&socat, "TCP-LISTEN:8000,fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR"],
        &node.dir.join("peer.log"),
    );
    lan.spawn(&[&socat, "TCP-LISTEN:8001,fork,reuseaddr", "SYSTEM:wc -c"], &node.dir.join("count.log"));
    lan.spawn(
        &[&socat, "UDP-RECVFROM:9000,fork", "SYSTEM:echo $SOCAT_PEERADDR; cat"],
        &node.dir.join("udp.log"),
    );
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    node.wait_running("client");
    eventually(Duration::from_secs(5), "the lan servers", || {
        let out = lan.run(&["ss", "-Hltn", "sport = :8001"]);
        (!stdout(&out).trim().is_empty()).then_some(())
    });

    // HTTP: the page, a big file (TSO super-frames back and forth), and the
    // server's view of the client: the node's address.
    let out = node.exec("client", &["timeout", "5", &bb, "wget", "-qO-", "http://192.168.77.2/"]);
    assert_eq!(stdout(&out), "hello from the lan\n", "{}", stderr(&out));
    let out = node
        .exec("client", &["sh", "-c", &format!("timeout 20 {bb} wget -qO- http://192.168.77.2/big | wc -c")]);
    assert_eq!(stdout(&out).trim(), "3000000", "{}", stderr(&out));
    let out = node.exec("client", &["sh", "-c", &format!("{socat} -t 5 - TCP:192.168.77.2:8000 </dev/null")]);
    assert_eq!(stdout(&out).trim(), "192.168.77.1", "the lan sees the node: {}", stderr(&out));
    let log = std::fs::read_to_string(node.dir.join("httpd.log")).unwrap_or_default();
    assert!(log.contains("192.168.77.1") && !log.contains("10.244."), "httpd log: {log}");

    // An upload, half-closed by the pod: the server counts it all, answers.
    let upload = format!("head -c 5000000 /dev/zero | timeout 20 {socat} -t 10 - TCP:192.168.77.2:8001");
    let out = node.exec("client", &["sh", "-c", &upload]);
    assert_eq!(stdout(&out).trim(), "5000000", "{}", stderr(&out));

    // UDP both ways, seen from the node's address.
    let out =
        node.exec("client", &["sh", "-c", &format!("echo ping-udp | {socat} -t 2 - UDP:192.168.77.2:9000")]);
    assert_eq!(stdout(&out), "192.168.77.1\nping-udp\n", "{}", stderr(&out));

    // ICMP echo.
    let out = node.exec("client", &[&bb, "ping", "-c", "2", "-W", "2", "192.168.77.2"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // A closed port refuses at once; so does a closed UDP port.
    let started = Instant::now();
    let out = node.exec("client", &["timeout", "10", &bb, "wget", "-qO-", "http://192.168.77.2:8999/"]);
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(3));
    let out = node.exec("client", &["sh", "-c", &format!("echo x | {socat} -t 5 - UDP:192.168.77.2:9999")]);
    assert!(!out.status.success(), "port unreachable ends the exchange");

    // The node's own address works too: here its node port.
    node.named_web("web", 1, 80, &[]);
    node.ok(&["expose", "deployment", "web", "--type", "NodePort", "--port", "80", "--node-port", "30090"]);
    node.wait_endpoints("web", 1);
    let out = node.exec("client", &["timeout", "5", &bb, "wget", "-qO-", "http://192.168.77.1:30090/"]);
    assert!(stdout(&out).starts_with("web-"), "{}", stderr(&out));
}

#[test]
fn bulk_data_crosses_egress_intact_both_ways() {
    // Pod -> lan echo of 16 MiB: TSO super-frames taken by the endpoint in
    // place, and MSS segments back, must carry every byte in order, also
    // when handed between two data-plane threads.
    let node = Node::start_with("egbulk", Some(TWO_THREADS));
    let mut lan = Outside::attach(&node);
    let socat = require("socat", "socat").to_string_lossy().into_owned();
    lan.spawn(
        &[&socat, "-t", "30", "TCP-LISTEN:8002,fork,reuseaddr", "EXEC:cat"],
        &node.dir.join("echo.log"),
    );
    node.ok(&["run", "client", "--", "sleep", "infinity"]);
    node.wait_running("client");
    eventually(Duration::from_secs(5), "the lan echo server", || {
        let out = lan.run(&["ss", "-Hltn", "sport = :8002"]);
        (!stdout(&out).trim().is_empty()).then_some(())
    });
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let sent = node.dir.join("bulk.bin");
    std::fs::write(&sent, &data).unwrap();
    // What came back lands in the pod's own /tmp (the host is read-only to it).
    let script = format!(
        "timeout 60 {socat} -t 30 - TCP:192.168.77.2:8002 <{} >/tmp/echoed.bin && cat /tmp/echoed.bin",
        sent.to_string_lossy(),
    );
    let out = node.exec("client", &["sh", "-c", &script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = out.stdout;
    assert_eq!(got.len(), data.len(), "bytes echoed");
    assert!(got == data, "the echoed bytes differ from those sent");
}

#[test]
fn nothing_outside_reaches_a_pod_even_when_the_node_forwards() {
    let node = Node::start("isolate");
    let lan = Outside::attach(&node);
    let bb = busybox();
    node.ok(&["run", "web", "--", &bb, "httpd", "-f", "-p", "80", "-h", "/etc"]);
    let pod = node.wait_running("web");
    // A node that routes between its interfaces, as many hosts do.
    let out = node.on_node(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lan.run(&["timeout", "5", &bb, "wget", "-qO-", &format!("http://{pod}/hostname")]);
    assert!(!out.status.success(), "the lan reached a pod directly: {}", stdout(&out));
    let out = lan.run(&[&bb, "ping", "-c", "1", "-W", "1", &pod]);
    assert!(!out.status.success());
    let stats: serde_json::Value = serde_json::from_str(&node.ok(&["node", "stats", "-o", "json"])).unwrap();
    let node_port = stats["ports"].as_array().unwrap().iter().find(|p| p["port"] == "node").unwrap();
    let drops = node_port["drops"].as_array().unwrap();
    assert!(drops.iter().any(|d| d[0] == "not_from_node" && d[1].as_u64() > Some(0)), "{stats}");
}
