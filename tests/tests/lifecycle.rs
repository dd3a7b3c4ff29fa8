//! Pods and deployments come and go without leaving anything behind, and the
//! node keeps its desired state across restarts.

use std::time::Duration;

use podnet_e2e::{Node, busybox, eventually, stdout};

fn pod_names(node: &Node) -> Vec<String> {
    node.pods().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

fn pids_in(netns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip").args(["netns", "pids", netns]).output().unwrap();
    stdout(&out).split_whitespace().map(str::to_string).collect()
}

#[test]
fn deleting_a_pod_removes_its_namespace_tap_process_and_address() {
    let node = Node::start("del");
    node.ok(&["run", "victim", "--", "sleep", "infinity"]);
    let ip = node.wait_running("victim");
    let netns = format!("pn.{}.default.victim", node.name);
    assert!(node.pod_namespaces().contains(&netns));
    let pids = pids_in(&netns);
    assert_eq!(pids.len(), 1, "the pod's command runs in its namespace");

    node.ok(&["delete", "pod", "victim"]);
    assert!(!node.pod_namespaces().contains(&netns), "namespace removed");
    assert!(!std::path::Path::new(&format!("/proc/{}", pids[0])).exists(), "process stopped");
    assert!(pod_names(&node).is_empty());
    let stats = node.ok(&["node", "stats"]);
    assert!(!stats.contains("default/victim"), "switch port detached: {stats}");
    let out = node.on_node(&[&busybox(), "ping", "-c", "1", "-W", "1", &ip]);
    assert!(!out.status.success(), "the old address no longer answers");
}

#[test]
fn stopping_the_agent_leaves_nothing_behind_and_a_restart_restores_pods() {
    let mut node = Node::start("stop");
    node.ok(&["run", "keeper", "--", "sleep", "infinity"]);
    node.ok(&["create", "deployment", "web", "--replicas", "2", "--", "sleep", "infinity"]);
    let ip = node.wait_running("keeper");
    eventually(Duration::from_secs(15), "three pods", || (node.pods().len() == 3).then_some(()));
    let before: Vec<(String, String)> = node
        .pods()
        .iter()
        .map(|p| {
            (p["metadata"]["name"].as_str().unwrap().into(), p["status"]["podIP"].as_str().unwrap().into())
        })
        .collect();
    let namespaces = node.pod_namespaces();
    let pids: Vec<String> = namespaces.iter().flat_map(|ns| pids_in(ns)).collect();
    assert_eq!(pids.len(), 3);

    node.stop(libc::SIGTERM);
    assert!(node.pod_namespaces().is_empty(), "no pod namespace left");
    for pid in &pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pod process {pid} stopped");
    }
    let out = node.on_node(&["ip", "link", "show", "podnet0"]);
    assert!(!out.status.success(), "the node's TAP is gone");
    assert!(!node.socket.exists(), "socket removed");

    node.up();
    eventually(Duration::from_secs(15), "pods restored", || (node.pods().len() == 3).then_some(()));
    let mut after: Vec<(String, String)> = node
        .pods()
        .iter()
        .map(|p| {
            (p["metadata"]["name"].as_str().unwrap().into(), p["status"]["podIP"].as_str().unwrap().into())
        })
        .collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after, "same pods, same addresses");
    let out = node.on_node(&[&busybox(), "ping", "-c", "1", "-W", "2", &ip]);
    assert!(out.status.success(), "traffic resumes after the restart");
}

#[test]
fn a_killed_agent_takes_its_running_pods_back() {
    let config = "[pods]\nrestart_backoff_initial_ms = 100\nrestart_backoff_max_ms = 400\n";
    let mut node = Node::start_with("kill9", Some(config));
    let bb = busybox();
    node.ok(&["run", "survivor", "--", "sleep", "infinity"]);
    node.ok(&["run", "crasher", "--", "sleep", "infinity"]);
    let ip = node.wait_running("survivor");
    let crasher_ip = node.wait_running("crasher");
    let netns_of =
        |pod: &str| node.pod_namespaces().into_iter().find(|ns| ns.ends_with(&format!(".{pod}"))).unwrap();
    let (survivor_ns, crasher_ns) = (netns_of("survivor"), netns_of("crasher"));
    let survivor_pid = pids_in(&survivor_ns);
    assert_eq!(survivor_pid.len(), 1);

    node.stop(libc::SIGKILL);
    // The pods run on without the agent, their eth0 still there.
    assert!(std::path::Path::new(&format!("/proc/{}", survivor_pid[0])).exists());
    let out =
        std::process::Command::new("ip").args(["-n", &survivor_ns, "addr", "show", "eth0"]).output().unwrap();
    assert!(stdout(&out).contains(&format!("{ip}/")), "{}", stdout(&out));
    // One pod's command dies while no agent watches.
    for pid in pids_in(&crasher_ns) {
        // SAFETY: kill on a PID of a process this test had the agent start.
        unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
    }

    node.up();
    assert_eq!(node.wait_running("survivor"), ip);
    assert_eq!(pids_in(&survivor_ns), survivor_pid, "the same process, taken back, not restarted");
    assert_eq!(node.wait_running("crasher"), crasher_ip, "a dead one is started again at its address");
    assert_eq!(node.pod_namespaces().len(), 2, "nothing duplicated");
    let out = node.on_node(&[&bb, "ping", "-c", "1", "-W", "2", &ip]);
    assert!(out.status.success(), "traffic reaches the taken-back pod");
    let out = node.exec("survivor", &[&bb, "ping", "-c", "1", "-W", "2", &crasher_ip]);
    assert!(out.status.success(), "and leaves it");

    // The agent sees a taken-back command exit and restarts it.
    // SAFETY: as above.
    unsafe { libc::kill(survivor_pid[0].parse().unwrap(), libc::SIGKILL) };
    eventually(Duration::from_secs(10), "the survivor restarted", || {
        let pod: serde_json::Value =
            serde_json::from_str(&node.ok(&["get", "pod", "survivor", "-o", "json"])).unwrap();
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap();
        let pids = pids_in(&survivor_ns);
        (restarts == 1 && pids.len() == 1 && pids != survivor_pid).then_some(())
    });

    // Deleting a taken-back pod removes it like any other.
    node.ok(&["delete", "pod", "crasher"]);
    eventually(Duration::from_secs(10), "crasher gone", || (node.pod_namespaces().len() == 1).then_some(()));
}

#[test]
fn deployments_replace_scale_and_delete_their_pods() {
    let node = Node::start("deploy");
    node.ok(&["create", "deployment", "web", "--replicas", "2", "--", "sleep", "infinity"]);
    let names = eventually(Duration::from_secs(15), "two replicas", || {
        let names = pod_names(&node);
        (names.len() == 2).then_some(names)
    });
    assert!(names.iter().all(|n| n.starts_with("web-") && n.len() == "web-".len() + 5), "{names:?}");

    node.ok(&["delete", "pod", &names[0]]);
    eventually(Duration::from_secs(10), "a replacement replica", || {
        let now = pod_names(&node);
        (now.len() == 2 && !now.contains(&names[0])).then_some(())
    });

    node.ok(&["scale", "deployment", "web", "--replicas", "4"]);
    eventually(Duration::from_secs(15), "four replicas", || (pod_names(&node).len() == 4).then_some(()));
    node.ok(&["scale", "deployment", "web", "--replicas", "1"]);
    eventually(Duration::from_secs(15), "one replica", || (pod_names(&node).len() == 1).then_some(()));
    assert_eq!(node.pod_namespaces().len(), 1);

    node.ok(&["delete", "deployment", "web"]);
    assert!(pod_names(&node).is_empty());
    assert!(node.pod_namespaces().is_empty());
    assert!(node.ok(&["get", "deployments"]).is_empty());
}

#[test]
fn exited_commands_restart_with_backoff_per_policy() {
    let config = "[pods]\nrestart_backoff_initial_ms = 100\nrestart_backoff_max_ms = 400\n";
    let node = Node::start_with("crash", Some(config));
    node.ok(&["run", "crasher", "--", "sh", "-c", "echo run; exit 3"]);
    node.ok(&["run", "once", "--restart", "Never", "--", "true"]);
    node.ok(&["run", "fails", "--restart", "OnFailure", "--", "sh", "-c", "exit 0"]);
    eventually(Duration::from_secs(15), "restarts and final states", || {
        let pods = node.pods();
        let get = |name: &str| pods.iter().find(|p| p["metadata"]["name"] == name).cloned().unwrap();
        let crasher = get("crasher");
        let restarts = crasher["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap();
        (restarts >= 3
            && get("once")["status"]["phase"] == "Succeeded"
            && get("fails")["status"]["phase"] == "Succeeded")
            .then_some(())
    });
    let table = node.ok(&["get", "pods"]);
    assert!(table.lines().any(|l| l.starts_with("once ") && l.contains("Completed")), "{table}");
    let logs = node.ok(&["logs", "crasher"]);
    assert!(logs.matches("run").count() >= 3, "output of every run is kept: {logs}");
}

/// A tmpfs of `size` mounted on a test's data dir, lazily unmounted when
/// dropped (also when the test fails, and while the agent still holds it).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "podnet-e2e-disk"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes to `path` until the file system is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let err = loop {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
}

#[test]
fn a_full_disk_refuses_changes_in_one_line_and_the_node_keeps_serving_and_restarts() {
    let mut node = Node::prepare("disk", None, &[]);
    let data = node.dir.join("data");
    let _tmpfs = Tmpfs::mount(&data, "8m");
    node.up();
    node.ok(&["run", "before", "--", "sleep", "infinity"]);
    node.wait_running("before");
    let filler = data.join("filler");
    fill(&filler);

    let err = node.fails(&["run", "after", "--", "sleep", "infinity"], "is full");
    assert!(err.contains(&format!("disk holding {}", data.display())) && err.contains("free space"), "{err}");
    assert_eq!(pod_names(&node), ["before"], "nothing half-created");
    node.fails(&["create", "deployment", "web", "--", "sleep", "infinity"], "is full");
    assert!(node.exec("before", &["true"]).status.success(), "pods keep running");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("state.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "state.json is root's only");

    // It starts again on the full disk, with its state.
    node.stop(libc::SIGTERM);
    node.up();
    assert_eq!(pod_names(&node), ["before"]);
    // Space back: changes work again.
    std::fs::remove_file(&filler).unwrap();
    node.ok(&["run", "after", "--", "sleep", "infinity"]);
    node.wait_running("after");
    node.stop(libc::SIGTERM);
}

#[test]
fn log_bytes_a_full_disk_drops_are_counted_on_the_pods_port_and_in_the_metrics() {
    let mut node = Node::prepare("logfull", None, &["--metrics-addr", "127.0.0.1:9464"]);
    let data = node.dir.join("data");
    let _tmpfs = Tmpfs::mount(&data, "8m");
    node.up();
    let chatty = "while :; do echo a line of the pod\\'s output; sleep 0.05; done";
    node.ok(&["run", "chatty", "--", "sh", "-c", chatty]);
    let ip = node.wait_running("chatty");
    assert_eq!(node.drops("default/chatty", "log_bytes_dropped"), 0, "nothing lost while there is room");
    let filler = data.join("filler");
    fill(&filler);
    let lost = eventually(Duration::from_secs(20), "lost log bytes to be counted", || {
        let n = node.drops("default/chatty", "log_bytes_dropped");
        (n > 0).then_some(n)
    });
    node.on_node(&["ip", "link", "set", "lo", "up"]);
    let out = node.on_node(&["timeout", "5", &busybox(), "wget", "-qO-", "http://127.0.0.1:9464/metrics"]);
    let metric = format!(
        "podnet_port_drops_total{{port=\"default/chatty\",ip=\"{ip}\",reason=\"log_bytes_dropped\"}} "
    );
    let line = stdout(&out).lines().find(|l| l.starts_with(&metric)).map(str::to_string);
    let counted: u64 = line.as_deref().and_then(|l| l[metric.len()..].parse().ok()).unwrap_or(0);
    assert!(counted >= lost, "metrics: {line:?}, stats said {lost}");
    std::fs::remove_file(&filler).unwrap();
    node.stop(libc::SIGTERM);
}
