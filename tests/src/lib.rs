//! Harness for the end-to-end tests: every test starts its own node agent in
//! a network namespace it creates, drives it with the real `podnet` binary,
//! and uses real programs (busybox wget/httpd/nc/ping) as peers. Everything a
//! test creates carries a unique name and is removed on drop, also when the
//! test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod kubectl;
pub mod oci;
pub mod sandbox;

/// The podnet binary under test: $PODNET_BIN, else the workspace's debug
/// build, built once per test process.
pub fn podnet_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PODNET_BIN") {
        return bin.into();
    }
    static BUILD: Once = Once::new();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "podnet", "--bin", "podnet"])
            .current_dir(&workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building podnet failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(workspace.join("target"), PathBuf::from);
    target.join("debug/podnet")
}

/// Ends this test binary, successfully, unless it runs as root: everything
/// below creates network namespaces. `cargo test` as an ordinary user thus
/// runs every unit test and skips these, saying why once per test binary.
/// The line goes straight to stderr, past libtest's output capture, because
/// the process exits before libtest would print captured output.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return;
    }
    static SKIP: Once = Once::new();
    SKIP.call_once(|| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "skipped: end-to-end tests need root (sudo scripts/test)");
        std::process::exit(0);
    });
}

/// Path of a program the tests need, or a panic saying how to install it.
pub fn require(program: &str, package: &str) -> PathBuf {
    require_root();
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is missing: apt-get install {package} (scripts/test does this)"))
}

/// busybox, for wget, httpd, nc, ping and sh inside pods.
pub fn busybox() -> String {
    require("busybox", "busybox-static").to_string_lossy().into_owned()
}

/// Where nodes keep their files (config, data dir, socket, logs): a host
/// directory pods can read, as they see the host read-only with their own
/// /tmp, /var/tmp and /run.
pub const NODE_DIRS: &str = "/var/lib/podnet-e2e";

fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("t{}-{}-{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed), tag)
}

/// Text of a command's stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text of a command's stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `probe` until it returns Some, or panics after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A node: an agent in a network namespace of its own.
pub struct Node {
    /// Node name (also the prefix of its pods' namespaces).
    pub name: String,
    /// The node's network namespace.
    pub netns: String,
    /// Data dir, socket and logs live here.
    pub dir: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// Extra arguments for `node up` (e.g. --config).
    pub args: Vec<String>,
    agent: Option<Child>,
}

impl Node {
    /// Starts a node with the default config.
    pub fn start(tag: &str) -> Node {
        Node::start_with(tag, None)
    }

    /// Starts a node with a board config given as TOML text.
    pub fn start_with(tag: &str, config: Option<&str>) -> Node {
        Node::start_custom(tag, config, &[])
    }

    /// Starts a node with a board config and extra `node up` arguments.
    pub fn start_custom(tag: &str, config: Option<&str>, extra: &[&str]) -> Node {
        let mut node = Node::prepare(tag, config, extra);
        node.up();
        node
    }

    /// Creates the node's namespace and config, without starting its agent.
    pub fn prepare(tag: &str, config: Option<&str>, extra: &[&str]) -> Node {
        require_root();
        let name = unique(tag);
        // Not under /tmp: pods have a private /tmp, and read what tests put here.
        let dir = std::path::Path::new(NODE_DIRS).join(format!("podnet-e2e-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Outside names go to the test's own "lan" resolver address, never to
        // this machine's resolvers (a test without a lan gets SERVFAIL).
        let upstream = "upstream_dns = [\"192.168.77.2\"]\n";
        let text = match config {
            Some(text) if text.contains("upstream_dns") => text.to_string(),
            Some(text) if text.contains("[network]\n") => {
                text.replacen("[network]\n", &format!("[network]\n{upstream}"), 1)
            }
            Some(text) => format!("{text}\n[network]\n{upstream}"),
            None => format!("[network]\n{upstream}"),
        };
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        let mut args = vec!["--config".to_string(), path.to_string_lossy().into_owned()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let status = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(status.success(), "ip netns add {name} failed");
        Node { socket: dir.join("podnet.sock"), netns: name.clone(), name, dir, args, agent: None }
    }

    /// Starts (or restarts) the agent and waits until it answers.
    pub fn up(&mut self) {
        assert!(self.agent.is_none(), "agent already running");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("agent.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(podnet_bin())
            .args(["node", "up", "--name", &self.name, "--data-dir"])
            .arg(self.dir.join("data"))
            .args(&self.args)
            .env("PODNET_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start agent");
        self.agent = Some(child);
        eventually(Duration::from_secs(15), "the agent to answer", || {
            if let Some(Ok(Some(status))) = self.agent.as_mut().map(Child::try_wait) {
                panic!("agent exited with {status}: {}", self.agent_log());
            }
            self.podnet(&["get", "nodes"]).status.success().then_some(())
        });
    }

    /// PID of the running agent.
    pub fn agent_pid(&self) -> i32 {
        self.agent.as_ref().expect("agent running").id() as i32
    }

    /// Stops the agent with `signal` and waits for it to exit.
    pub fn stop(&mut self, signal: i32) {
        if let Some(mut agent) = self.agent.take() {
            // SAFETY: kill on the PID of a child we started and have not reaped.
            unsafe { libc::kill(agent.id() as i32, signal) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while agent.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    // SAFETY: as above.
                    unsafe { libc::kill(agent.id() as i32, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Runs `podnet ARGS` against this node.
    pub fn podnet(&self, args: &[&str]) -> Output {
        Command::new(podnet_bin()).args(args).env("PODNET_SOCKET", &self.socket).output().expect("run podnet")
    }

    /// Runs `podnet ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podnet(args);
        assert!(
            out.status.success(),
            "podnet {} failed: {}{}",
            args.join(" "),
            stderr(&out),
            self.agent_log()
        );
        stdout(&out)
    }

    /// Runs `podnet ARGS`, asserts a one-line error containing `needle`, and returns it.
    pub fn fails(&self, args: &[&str], needle: &str) -> String {
        let out = self.podnet(args);
        let err = stderr(&out);
        assert!(!out.status.success(), "podnet {} should fail, printed {}", args.join(" "), stdout(&out));
        assert_eq!(err.trim_end().lines().count(), 1, "one-line error expected, got: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(needle), "error {err:?} should mention {needle:?}");
        err
    }

    /// `podnet get pods -o json`'s items.
    pub fn pods(&self) -> Vec<Value> {
        let list: Value = serde_json::from_str(&self.ok(&["get", "pods", "-A", "-o", "json"])).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until pod `name` (namespace default) runs, and returns its IP.
    pub fn wait_running(&self, name: &str) -> String {
        eventually(Duration::from_secs(15), &format!("pod {name} to run"), || {
            self.pods().into_iter().find_map(|p| {
                let running =
                    p["metadata"]["name"] == name && p["status"]["containerStatuses"][0]["ready"] == true;
                running.then(|| p["status"]["podIP"].as_str().unwrap().to_string())
            })
        })
    }

    /// How many ready addresses Service `service` (namespace default) has.
    pub fn endpoint_count(&self, service: &str) -> usize {
        let ep: Value = serde_json::from_str(&self.ok(&["get", "endpoints", service, "-o", "json"])).unwrap();
        // Addresses with the same ports share a subset, as in Kubernetes.
        ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["addresses"].as_array().map_or(0, Vec::len))
            .sum()
    }

    /// Waits until Service `service` has `n` ready addresses.
    pub fn wait_endpoints(&self, service: &str, n: usize) {
        eventually(Duration::from_secs(30), &format!("{n} endpoints of {service}"), || {
            (self.endpoint_count(service) == n).then_some(())
        });
    }

    /// Runs a command inside a pod through `podnet exec`.
    pub fn exec(&self, pod: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(command);
        self.podnet(&args)
    }

    /// Runs a command in the node's own network namespace.
    pub fn on_node(&self, command: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(command)
            .output()
            .expect("nsenter")
    }

    /// The ClusterIP of Service `service`.
    pub fn cluster_ip(&self, service: &str) -> String {
        let svc: Value = serde_json::from_str(&self.ok(&["get", "svc", service, "-o", "json"])).unwrap();
        svc["spec"]["clusterIP"].as_str().unwrap().to_string()
    }

    /// Flow-table counter `what` (active, over_quota...) in `podnet node stats`.
    pub fn flow_counter(&self, what: &str) -> u64 {
        let stats: Value = serde_json::from_str(&self.ok(&["node", "stats", "-o", "json"])).unwrap();
        let flows = stats["flows"].as_array().unwrap();
        flows.iter().find(|f| f[0] == what).and_then(|f| f[1].as_u64()).unwrap()
    }

    /// Counter `reason` of port `port` in `podnet node stats`.
    pub fn drops(&self, port: &str, reason: &str) -> u64 {
        let stats: Value = serde_json::from_str(&self.ok(&["node", "stats", "-o", "json"])).unwrap();
        stats["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == port)
            .and_then(|p| p["drops"].as_array()?.iter().find(|d| d[0] == reason).and_then(|d| d[1].as_u64()))
            .unwrap_or(0)
    }

    /// A deployment whose pods each serve their own name over HTTP on `port`.
    pub fn named_web(&self, name: &str, replicas: u32, port: u16, extra: &[&str]) {
        let bb = busybox();
        let script = format!(
            "mkdir -p /tmp/www-$POD_NAME && echo $POD_NAME > /tmp/www-$POD_NAME/index.html && exec {bb} httpd -f -p {port} -h /tmp/www-$POD_NAME"
        );
        let replicas = replicas.to_string();
        let mut args = vec!["create", "deployment", name, "--replicas", &replicas];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        self.ok(&args);
    }

    /// Named namespaces of this node's pods.
    pub fn pod_namespaces(&self) -> Vec<String> {
        let prefix = format!("pn.{}.", self.name);
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Nodes on one LAN: a bridge in a "lan" namespace of the test's own, each
/// node's namespace linked to it by a veth pair, node i at 192.168.251.(10+i).
pub struct Cluster {
    /// The nodes; the first is the server.
    pub nodes: Vec<Node>,
    /// The lan namespace (also where a "laptop" CLI runs).
    pub lan: String,
}

impl Cluster {
    /// Starts a server and `members` members, joined over the lan.
    pub fn start(tag: &str, members: usize) -> Cluster {
        require_root();
        let lan = format!("{}-lan", unique(tag));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip");
            assert!(out.status.success(), "ip {}: {}", args.join(" "), stderr(&out));
        };
        ip(&["netns", "add", &lan]);
        let mut cluster = Cluster { nodes: Vec::new(), lan: lan.clone() };
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &lan, "link", "set", "br0", "up"]);
        ip(&["-n", &lan, "addr", "add", "192.168.251.1/24", "dev", "br0"]);
        for i in 0..=members {
            let address = Cluster::address(i);
            let args: Vec<String> = if i == 0 {
                vec!["--cluster-init".into(), "--node-ip".into(), address.clone()]
            } else {
                let token = cluster.nodes[0].dir.join("data/token").to_string_lossy().into_owned();
                vec![
                    "--server".into(),
                    Cluster::address(0),
                    "--token-file".into(),
                    token,
                    "--node-ip".into(),
                    address.clone(),
                ]
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut node = Node::prepare(&format!("{tag}{i}"), None, &args);
            cluster.link(&node, &address, &format!("p{i}"));
            node.up();
            cluster.nodes.push(node);
        }
        let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
        eventually(Duration::from_secs(20), "every node Ready", || {
            let out = cluster.nodes[0].podnet(&["get", "nodes"]);
            let text = stdout(&out);
            names
                .iter()
                .all(|n| text.lines().any(|l| l.starts_with(n.as_str()) && l.contains(" Ready")))
                .then_some(())
        });
        cluster
    }

    /// Links `node`'s namespace to the lan bridge at `address`.
    pub fn link(&self, node: &Node, address: &str, port: &str) {
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip");
            assert!(out.status.success(), "ip {}: {}", args.join(" "), stderr(&out));
        };
        ip(&[
            "-n",
            &node.netns,
            "link",
            "add",
            "uplink",
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            &self.lan,
        ]);
        ip(&["-n", &node.netns, "addr", "add", &format!("{address}/24"), "dev", "uplink"]);
        ip(&["-n", &node.netns, "link", "set", "uplink", "up"]);
        ip(&["-n", &node.netns, "link", "set", "lo", "up"]);
        ip(&["-n", &self.lan, "link", "set", port, "master", "br0", "up"]);
    }

    /// The lan address of node `i`.
    pub fn address(i: usize) -> String {
        format!("192.168.251.{}", 10 + i)
    }

    /// The server.
    pub fn server(&self) -> &Node {
        &self.nodes[0]
    }

    /// curl from the lan of `url` with `Host: host` (an Ingress's), within
    /// 5 s: the body, when the request succeeded.
    pub fn curl_host(&self, host: &str, url: &str) -> Option<String> {
        let header = format!("Host: {host}");
        let args = ["netns", "exec", &self.lan, "curl", "-sS", "--max-time", "5", "-H", &header, url];
        let out = Command::new("ip").args(args).output().unwrap();
        out.status.success().then(|| stdout(&out))
    }

    /// Runs `podnet ARGS` from the lan with the server's client config, as a
    /// laptop would.
    pub fn remote(&self, args: &[&str]) -> Output {
        self.remote_with(&self.server().dir.join("data/podnet.yaml"), args)
    }

    /// [`Cluster::remote`] with the client config `config`.
    pub fn remote_with(&self, config: &std::path::Path, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.lan])
            .arg(podnet_bin())
            .arg("--kubeconfig")
            .arg(config)
            .args(args)
            .output()
            .expect("remote podnet")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Members first, so they do not spin reconnecting to a gone server.
        while let Some(node) = self.nodes.pop() {
            drop(node);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.lan]).status();
    }
}

/// An underlay: a LAN between nodes, as a Linux bridge in a namespace of its
/// own, with a veth to each attached namespace (a node, or a bare host such
/// as a foreign VXLAN peer). Addresses come from 192.168.250.0/24. Removing
/// the bridge namespace removes every veth with it.
pub struct Underlay {
    /// The bridge's namespace.
    pub netns: String,
    links: u32,
    hosts: Vec<String>,
}

fn ip_ok(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), stderr(&out));
}

impl Underlay {
    /// Creates the bridge namespace.
    pub fn new() -> Underlay {
        require_root();
        let netns = unique("ul");
        ip_ok(&["netns", "add", &netns]);
        let underlay = Underlay { netns: netns.clone(), links: 0, hosts: Vec::new() };
        ip_ok(&["-n", &netns, "link", "add", "br0", "type", "bridge"]);
        ip_ok(&["-n", &netns, "link", "set", "br0", "up"]);
        ip_ok(&["-n", &netns, "link", "set", "lo", "up"]);
        underlay
    }

    /// Plugs namespace `netns` into the bridge: its interface `underlay`
    /// gets `addr`/24.
    pub fn attach(&mut self, netns: &str, addr: &str) {
        let port = format!("p{}", self.links);
        self.links += 1;
        ip_ok(&[
            "-n",
            &self.netns,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "underlay",
            "netns",
            netns,
        ]);
        ip_ok(&["-n", &self.netns, "link", "set", &port, "master", "br0", "up"]);
        ip_ok(&["-n", netns, "addr", "add", &format!("{addr}/24"), "dev", "underlay"]);
        ip_ok(&["-n", netns, "link", "set", "underlay", "up"]);
        ip_ok(&["-n", netns, "link", "set", "lo", "up"]);
    }

    /// A bare host on the underlay at `addr`, in a namespace of its own
    /// (removed, with its processes, on drop). Returns the namespace.
    pub fn host(&mut self, addr: &str) -> String {
        let netns = unique("host");
        ip_ok(&["netns", "add", &netns]);
        self.hosts.push(netns.clone());
        self.attach(&netns, addr);
        netns
    }
}

impl Default for Underlay {
    fn default() -> Self {
        Underlay::new()
    }
}

/// Runs a command in a named namespace and waits for it.
pub fn in_netns(netns: &str, command: &[&str]) -> Output {
    require_root();
    Command::new("ip").args(["netns", "exec", netns]).args(command).output().expect("ip netns exec")
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.netns]) {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in stdout(&out).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop(15);
        // Whatever a failed test or a killed agent left behind.
        for ns in self.pod_namespaces() {
            let _ = Command::new("ip").args(["netns", "pids", &ns]).output().map(|out| {
                for pid in stdout(&out).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        remove_containers(&self.dir);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Deletes the containers whose bundle lies under `dir` (image pods a
/// failed test or a killed agent left) and unmounts what is mounted there.
fn remove_containers(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    for runtime in ["runc", "crun"] {
        let root = format!("/run/podnet/{runtime}");
        if !Path::new(&root).exists() {
            continue;
        }
        let Ok(out) = Command::new(runtime).args(["--root", &root, "list", "--format", "json"]).output()
        else {
            continue;
        };
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        for container in list.as_array().into_iter().flatten() {
            let bundle = container["bundle"].as_str().unwrap_or_default();
            if let (true, Some(id)) = (bundle.starts_with(&prefix), container["id"].as_str()) {
                let _ = Command::new(runtime).args(["--root", &root, "delete", "--force", id]).output();
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> =
        mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&prefix)).collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// The outside world of a node: a "lan" network namespace joined to the
/// node's namespace by a veth pair, `192.168.77.1/24` on the node side
/// (`lan0`) and `192.168.77.2/24` on the lan side (`eth0`). Every node lives
/// in a namespace of its own, so the same addresses serve every test. The lan
/// routes the pod range via the node, as a LAN host with a static route would
/// (so tests can show it still cannot reach pods). Servers started with
/// [`Outside::spawn`] and the namespace go away on drop.
pub struct Outside {
    /// The lan namespace.
    pub netns: String,
    /// The node's address on the lan.
    pub node_ip: &'static str,
    /// The lan host's address.
    pub ip: &'static str,
    node_netns: String,
    children: Vec<Child>,
}

impl Outside {
    /// Creates the lan namespace and wires it to `node`.
    pub fn attach(node: &Node) -> Outside {
        let netns = format!("{}-lan", node.netns);
        let sh = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip");
            assert!(out.status.success(), "ip {} failed: {}", args.join(" "), stderr(&out));
        };
        sh(&["netns", "add", &netns]);
        let lan = Outside {
            netns: netns.clone(),
            node_ip: "192.168.77.1",
            ip: "192.168.77.2",
            node_netns: node.netns.clone(),
            children: Vec::new(),
        };
        sh(&[
            "link",
            "add",
            "lan0",
            "netns",
            &node.netns,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns,
        ]);
        sh(&["-n", &node.netns, "addr", "add", "192.168.77.1/24", "dev", "lan0"]);
        sh(&["-n", &node.netns, "link", "set", "lan0", "up"]);
        sh(&["-n", &node.netns, "link", "set", "lo", "up"]);
        sh(&["-n", &netns, "addr", "add", "192.168.77.2/24", "dev", "eth0"]);
        sh(&["-n", &netns, "link", "set", "eth0", "up"]);
        sh(&["-n", &netns, "link", "set", "lo", "up"]);
        sh(&["-n", &netns, "route", "add", "10.244.0.0/16", "via", "192.168.77.1"]);
        lan
    }

    /// Runs a command in the lan namespace.
    pub fn run(&self, command: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(command)
            .output()
            .expect("nsenter")
    }

    /// Starts a long-running command (a server) in the lan namespace; its
    /// stdout and stderr go to `log`.
    pub fn spawn(&mut self, command: &[&str], log: &Path) {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(command)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn in lan");
        self.children.push(child);
    }

    /// Runs `f` on a thread that has entered the lan namespace, so Rust test
    /// code can open sockets there.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).expect("open lan netns");
                use std::os::fd::AsRawFd;
                // SAFETY: setns on this scoped thread only, with a valid fd.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns into {path}");
                f()
            })
            .join()
            .expect("lan thread")
        })
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "pids", &self.netns]).output().map(|out| {
            for pid in stdout(&out).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
        // The node's end first: a veth half whose peer namespace is going
        // away lingers for a moment, and a test may attach again at once.
        let _ = Command::new("ip").args(["-n", &self.node_netns, "link", "del", "lan0"]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

/// Lifts this process's open-file soft limit to its hard limit (tests that
/// hold many connections need more than 1024 descriptors).
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
