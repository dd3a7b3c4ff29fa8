//! What a pod must not be able to do to its node: outlive the agent under
//! memory pressure, fill the disk with its logs, or make the agent spin on a
//! pod that cannot start.

use std::time::Duration;

use podnet_e2e::{Node, busybox, eventually, podnet_bin, stderr};

/// The PIDs in a pod's network namespace, from the host.
fn pids_in(netns: &str) -> Vec<i32> {
    let out = std::process::Command::new("ip").args(["netns", "pids", netns]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(|p| p.parse().unwrap()).collect()
}

fn oom_score_adj(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim().parse().unwrap()
}

/// Whether this process (root, as the agent) may lower OOM scores.
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    u64::from_str_radix(caps, 16).unwrap() & (1 << CAP_SYS_RESOURCE) != 0
}

/// CAP_SYS_RESOURCE's bit (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;

#[test]
fn the_oom_killer_takes_pods_before_the_agent() {
    let node = Node::start("oom");
    node.ok(&["run", "idle", "--", "sleep", "infinity"]);
    node.wait_running("idle");
    if has_cap_sys_resource() {
        assert_eq!(oom_score_adj(node.agent_pid()), -999, "the kubelet's score");
    } else {
        // Lowering a score takes CAP_SYS_RESOURCE, which some containers
        // withhold: the agent says so.
        assert!(
            node.agent_log().contains("cannot set the agent's oom_score_adj to -999"),
            "{}",
            node.agent_log()
        );
    }
    let netns = format!("pn.{}.default.idle", node.name);
    let pids = pids_in(&netns);
    assert!(!pids.is_empty());
    for pid in pids {
        assert_eq!(oom_score_adj(pid), 1000, "pid {pid}: a best-effort pod's score, not the agent's");
    }
}

#[test]
fn pod_logs_are_rotated_private_and_bounded() {
    use std::os::unix::fs::PermissionsExt;
    let config = "[limits]\npod_log_max_bytes = 65536\npod_log_max_files = 3\n";
    let node = Node::start_with("logs", Some(config));
    let bb = busybox();
    // 3 MiB of 64-byte lines as fast as the pod can write, then a marker.
    let script = format!(
        "{bb} yes 0123456789012345678901234567890123456789012345678901234567890 | {bb} head -c 3145728; echo all-written; exec sleep infinity"
    );
    node.ok(&["run", "chatty", "--", "sh", "-c", &script]);
    node.wait_running("chatty");
    let logs = eventually(Duration::from_secs(60), "the marker in the pod's log", || {
        let logs = node.ok(&["logs", "chatty"]);
        logs.ends_with("all-written\n").then_some(logs)
    });

    let dir = node.dir.join("data/logs");
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let current = dir.join("default_chatty.log");
    let rotated = |n: u32| dir.join(format!("default_chatty.log.{n}"));
    // `podnet logs` is the current file, as `kubectl logs` is.
    assert_eq!(std::fs::read_to_string(&current).unwrap(), logs);
    for path in [current.clone(), rotated(1), rotated(2)] {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 65536, "{}: {size} bytes", path.display());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    for n in [1, 2] {
        let size = std::fs::metadata(rotated(n)).unwrap().len();
        assert!(size > 65536 - 64, "rotated file {n} is full: {size}");
        // Lines are cut only where a read from the pipe cut them (the first
        // and last of a file), never to fit the size.
        let text = std::fs::read_to_string(rotated(n)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let inner = &lines[1..lines.len() - 1];
        assert!(inner.iter().all(|l| l.len() == 61), "whole lines in file {n}");
    }
    assert!(!rotated(3).exists(), "three files in all");

    // A deleted pod's logs go with it.
    node.ok(&["delete", "pod", "chatty"]);
    let left: Vec<_> =
        std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Removes a path the test put in the host's /etc/netns, also on panic.
struct Blocker(std::path::PathBuf);

impl Drop for Blocker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_pod_whose_sandbox_fails_is_reported_and_retried_with_backoff() {
    let mut node = Node::start("retry");
    node.ok(&["run", "web", "--", "sleep", "infinity"]);
    node.wait_running("web");
    node.stop(libc::SIGTERM);
    // A file where the sandbox's /etc/netns directory goes: the restored
    // pod's sandbox cannot be made until it is gone.
    let blocker = Blocker(format!("/etc/netns/pn.{}.default.web", node.name).into());
    std::fs::create_dir_all("/etc/netns").unwrap();
    std::fs::write(&blocker.0, "in the way\n").unwrap();
    let before = node.agent_log().len();
    node.up();

    let table = eventually(Duration::from_secs(15), "the reason in `podnet get pods`", || {
        let table = node.ok(&["get", "pods"]);
        table.contains("CreatePodSandboxError").then_some(table)
    });
    let described = node.ok(&["describe", "pod", "web"]);
    assert!(described.contains("cannot create the sandbox of pod default/web"), "{table}\n{described}");
    // Tried again after 1 s, 2 s, 4 s...: a few attempts in 3 s, not one per
    // 200 ms event-loop turn.
    std::thread::sleep(Duration::from_secs(3));
    let attempts = node.agent_log()[before..].matches("cannot create the sandbox of pod default/web").count();
    assert!((1..=4).contains(&attempts), "{attempts} attempts in about 3 s");

    drop(blocker);
    eventually(Duration::from_secs(30), "the pod to start once the sandbox can be made", || {
        (!node.ok(&["get", "pods"]).contains("CreatePodSandboxError")).then_some(())
    });
    node.wait_running("web");
}

#[test]
fn a_token_file_others_can_read_stops_the_agent_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let token = std::env::temp_dir().join(format!("podnet-e2e-token-{}", std::process::id()));
    std::fs::write(&token, format!("PN1::{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let node = Node::prepare(
        "tokmode",
        None,
        &["--server", "127.0.0.1:6443", "--token-file", token.to_str().unwrap()],
    );
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .arg(podnet_bin())
        .args(["node", "up", "--name", &node.name, "--data-dir"])
        .arg(node.dir.join("data"))
        .args(&node.args)
        .env("PODNET_SOCKET", &node.socket)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&token);
    assert!(!out.status.success(), "an agent must not use a token others can read");
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("permissions 0644") && err.contains(&format!("chmod 600 {}", token.display())),
        "{err}"
    );
}
