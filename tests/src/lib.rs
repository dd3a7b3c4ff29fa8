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

/// Path of a program the tests need, or a panic saying how to install it.
pub fn require(program: &str, package: &str) -> PathBuf {
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
        let name = unique(tag);
        let dir = std::env::temp_dir().join(format!("podnet-e2e-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = Vec::new();
        if let Some(text) = config {
            let path = dir.join("config.toml");
            std::fs::write(&path, text).unwrap();
            args = vec!["--config".into(), path.to_string_lossy().into_owned()];
        }
        let status = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(status.success(), "ip netns add {name} failed");
        let mut node =
            Node { socket: dir.join("podnet.sock"), netns: name.clone(), name, dir, args, agent: None };
        node.up();
        node
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
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The outside world of a node: a "lan" network namespace joined to the
/// node's namespace by a veth pair, `192.168.77.1/24` on the node side
/// (`lan0`) and `192.168.77.2/24` on the lan side (`eth0`). Every node lives
/// in a namespace of its own, so the same addresses serve every test. The lan
/// routes the pod range via the node, as a LAN host with a static route would
/// (so tests can show it still cannot reach pods). Servers started with
/// [`Lan::spawn`] and the namespace go away on drop.
pub struct Lan {
    /// The lan namespace.
    pub netns: String,
    /// The node's address on the lan.
    pub node_ip: &'static str,
    /// The lan host's address.
    pub ip: &'static str,
    children: Vec<Child>,
}

impl Lan {
    /// Creates the lan namespace and wires it to `node`.
    pub fn attach(node: &Node) -> Lan {
        let netns = format!("{}-lan", node.netns);
        let sh = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip");
            assert!(out.status.success(), "ip {} failed: {}", args.join(" "), stderr(&out));
        };
        sh(&["netns", "add", &netns]);
        let lan =
            Lan { netns: netns.clone(), node_ip: "192.168.77.1", ip: "192.168.77.2", children: Vec::new() };
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

impl Drop for Lan {
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
