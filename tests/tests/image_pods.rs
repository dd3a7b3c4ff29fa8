//! Image pods (issue #14): pods that run OCI images pulled from a real
//! registry (Debian's docker-registry in a lan namespace) with the node's
//! OCI runtime (runc or crun). The image is built here from busybox-static
//! with umoci. Networking, Services, DNS, exec, logs, limits, restarts and
//! adoption after `kill -9` work as they do for command pods; bad images
//! show as Kubernetes shows them.

use std::time::Duration;

use podnet_e2e::oci::{self, REGISTRY, Scratch};
use podnet_e2e::{Node, Outside, busybox, eventually, require, stdout};
use serde_json::Value;

/// The pod `name` in `get pods -o json`, once it exists.
fn pod(node: &Node, name: &str) -> Option<Value> {
    node.pods().into_iter().find(|p| p["metadata"]["name"] == name)
}

/// Waits until pod `name`'s container waits for `reason` (or one of them).
fn wait_reason(node: &Node, name: &str, reasons: &[&str]) -> Value {
    eventually(Duration::from_secs(60), &format!("pod {name} to show {reasons:?}"), || {
        let p = pod(node, name)?;
        let state = &p["status"]["containerStatuses"][0]["state"];
        let reason = state["waiting"]["reason"].as_str().or(state["terminated"]["reason"].as_str())?;
        reasons.contains(&reason).then_some(p)
    })
}

/// An HTTP GET from the node's own namespace (busybox wget's own -T
/// crashes the static build: `timeout` bounds it instead).
fn get(node: &Node, url: &str) -> String {
    stdout(&node.on_node(&["timeout", "5", &busybox(), "wget", "-qO-", url]))
}

/// `podnet exec`'s output.
fn exec(node: &Node, pod: &str, command: &[&str]) -> String {
    stdout(&node.exec(pod, command))
}

/// Host PIDs of processes in pod `name`'s network namespace.
fn pids_in(node: &Node, name: &str) -> Vec<String> {
    let netns = format!("pn.{}.default.{name}", node.name);
    let out = std::process::Command::new("ip").args(["netns", "pids", &netns]).output().unwrap();
    stdout(&out).split_whitespace().map(String::from).collect()
}

#[test]
fn image_pods_run_from_a_lan_registry() {
    require("runc", "runc");
    let scratch = Scratch::new("pods");
    let layout = scratch.path("oci");
    oci::build_app_image(&scratch, &layout, "v1", "hello from the image");
    let registries = oci::plain_registries(&scratch);
    let mut node = Node::prepare("imgpod", None, &["--registries", &registries]);
    let mut lan = Outside::attach(&node);
    oci::start_registry(&mut lan, &scratch);
    oci::push(&lan, &layout, "v1", "test/app:v1");
    node.up();
    let image = format!("{REGISTRY}/test/app:v1");

    // The image's CMD serves its own file, at the pod's IP.
    node.ok(&["run", "web", "--image", &image, "--port", "8080"]);
    let ip = node.wait_running("web");
    let page = eventually(Duration::from_secs(20), "the image's httpd to answer", || {
        let page = get(&node, &format!("http://{ip}:8080/"));
        (!page.is_empty()).then_some(page)
    });
    assert_eq!(page, "hello from the image\n");
    // Inside: the image's root, env and working dir, the pod's hostname,
    // the downward API, and none of the host's files.
    assert_eq!(exec(&node, "web", &["hostname"]).trim(), "web");
    let env = exec(&node, "web", &["env"]);
    for want in ["FOO=from-image", "POD_NAME=web", &format!("POD_IP={ip}")] {
        assert!(env.lines().any(|l| l == want), "{want} missing from {env}");
    }
    assert_eq!(exec(&node, "web", &["sh", "-c", "pwd"]).trim(), "/www");
    assert!(exec(&node, "web", &["cat", "/etc/hosts"]).contains(&format!("{ip}\tweb")));
    assert!(exec(&node, "web", &["cat", "/etc/resolv.conf"]).contains("search default.svc.cluster.local"));
    assert!(!node.exec("web", &["ls", &node.dir.to_string_lossy()]).status.success());
    // The container default capabilities, as a container gets them.
    let status = exec(&node, "web", &["cat", "/proc/self/status"]);
    let cap_eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim().to_string();
    assert_eq!(cap_eff, "00000000a80425fb", "{status}");
    let described = node.ok(&["describe", "pod", "web"]);
    assert!(described.contains(&format!("Pulling image \"{image}\"")), "{described}");
    assert!(described.contains("Started container"), "{described}");

    // args after `--` replace CMD; --command replaces the ENTRYPOINT; logs,
    // exit codes and --user as for command pods.
    node.ok(&[
        "run",
        "once",
        "--image",
        &image,
        "--restart",
        "Never",
        "--",
        "/bin/sh",
        "-c",
        "echo out-$POD_NAME; exit 3",
    ]);
    let done = wait_reason(&node, "once", &["Error"]);
    assert_eq!(done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3);
    assert_eq!(node.ok(&["logs", "once"]), "out-once\n");
    node.ok(&[
        "run",
        "tool",
        "--image",
        &image,
        "--user",
        "1000",
        "--command",
        "--",
        "/bin/sh",
        "-c",
        "id -u; sleep 3600",
    ]);
    node.wait_running("tool");
    eventually(Duration::from_secs(10), "tool's output", || {
        (node.ok(&["logs", "tool"]) == "1000\n").then_some(())
    });

    // Limits are the container's cgroup's.
    node.ok(&["run", "capped", "--image", &image, "--limits", "memory=64Mi,cpu=500m", "--", "sleep", "3600"]);
    node.wait_running("capped");
    let limit = exec(
        &node,
        "capped",
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
    );
    assert_eq!(limit.trim(), (64u64 << 20).to_string());

    // A readiness probe and a host port, as for command pods: the node's
    // lan address forwards to the container.
    node.ok(&["run", "ready", "--image", &image, "--readiness", "http:8080/", "--host-port", "18080:8080"]);
    node.wait_running("ready");
    let via_host_port = eventually(Duration::from_secs(20), "the host port to answer", || {
        let out = lan.run(&["timeout", "3", &busybox(), "wget", "-qO-", "http://192.168.77.1:18080/"]);
        out.status.success().then(|| stdout(&out))
    });
    assert_eq!(via_host_port, "hello from the image\n");

    // A container that keeps failing is restarted with the crash-loop
    // backoff, each time a new container.
    node.ok(&["run", "crash", "--image", &image, "--", "/bin/sh", "-c", "echo crashed; exit 1"]);
    let crashed = wait_reason(&node, "crash", &["CrashLoopBackOff"]);
    assert_eq!(crashed["status"]["containerStatuses"][0]["restartCount"], 0);
    eventually(Duration::from_secs(30), "a restart of crash", || {
        let p = pod(&node, "crash")?;
        (p["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(1)).then_some(())
    });
    assert!(node.ok(&["logs", "crash"]).contains("crashed\n"));

    // Bad images: as Kubernetes shows them, with the reason in describe.
    node.ok(&["run", "ghost", "--image", &format!("{REGISTRY}/test/nope:v1")]);
    wait_reason(&node, "ghost", &["ErrImagePull", "ImagePullBackOff"]);
    let described = node.ok(&["describe", "pod", "ghost"]);
    assert!(described.contains("Failed to pull image"), "{described}");
    assert!(described.contains("not found in registry"), "{described}");
    wait_reason(&node, "ghost", &["ImagePullBackOff"]);
    node.ok(&["run", "never", "--image", &format!("{REGISTRY}/test/app:v9"), "--image-pull-policy", "Never"]);
    wait_reason(&node, "never", &["ErrImageNeverPull"]);
    node.fails(&["run", "bad", "--image", "Not/Valid"], "must be lowercase");

    // Counted: starts, unpacked layers, and failed starts by reason.
    let stats: Value = serde_json::from_str(&node.ok(&["node", "stats", "-o", "json"])).unwrap();
    let counter = |what: &str| {
        stats["images"].as_array().unwrap().iter().find(|c| c[0] == what).and_then(|c| c[1].as_u64())
    };
    assert!(counter("containers_started") >= Some(4), "{stats}");
    assert!(counter("layers_unpacked") >= Some(1), "{stats}");
    assert!(counter("err_image_pull") >= Some(1), "{stats}");
    assert!(counter("err_image_never_pull") >= Some(1), "{stats}");

    // The image is in use: `image rm` refuses it.
    node.fails(&["image", "rm", &image], "used by a pod");

    // A deployment of the image behind a Service, reached by name from
    // another image pod.
    node.ok(&["create", "deployment", "app", "--image", &image, "--replicas", "2", "--port", "8080"]);
    node.ok(&["expose", "deployment", "app", "--port", "80", "--target-port", "8080"]);
    node.ok(&["run", "client", "--image", &image, "--", "sleep", "3600"]);
    node.wait_running("client");
    // The name resolves to the ClusterIP (busybox nslookup, its own
    // resolver), then the Service answers.
    let cluster_ip = node.cluster_ip("app");
    let looked_up = eventually(Duration::from_secs(10), "the service's name to resolve", || {
        // busybox nslookup tries every search domain and exits 1 when any
        // is NXDOMAIN: the answer for the first is what counts.
        let out = stdout(&node.exec("client", &["nslookup", "app"]));
        out.contains("Name:\tapp.default.svc.cluster.local").then_some(out)
    });
    assert!(looked_up.contains(&cluster_ip), "{looked_up}");
    let answer = eventually(Duration::from_secs(30), "the service to answer", || {
        let out = node.exec("client", &["timeout", "3", "wget", "-qO-", &format!("http://{cluster_ip}/")]);
        out.status.success().then(|| stdout(&out))
    });
    assert_eq!(answer, "hello from the image\n");

    // kill -9 of the agent: containers keep running and are taken back.
    let before = pids_in(&node, "web");
    assert!(!before.is_empty());
    node.stop(libc::SIGKILL);
    assert_eq!(pids_in(&node, "web"), before, "the container outlives the agent");
    node.up();
    assert_eq!(node.wait_running("web"), ip);
    assert_eq!(pids_in(&node, "web"), before, "the same container, not a new one");
    assert_eq!(get(&node, &format!("http://{ip}:8080/")), "hello from the image\n");
    assert_eq!(exec(&node, "web", &["hostname"]).trim(), "web", "exec works after adoption");

    // Deleting the pod removes its container: no processes, no rootfs
    // mount, no directory.
    let uid = pod(&node, "web").unwrap()["metadata"]["uid"].as_str().unwrap().to_string();
    node.ok(&["delete", "pod", "web"]);
    eventually(Duration::from_secs(20), "web's container to go", || {
        pod(&node, "web").is_none().then_some(())
    });
    // Gone, or a zombie of the init it was re-parented to when the first
    // agent died (this machine's PID 1 may not reap).
    for pid in &before {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
        assert!(matches!(state, None | Some("Z")), "process {pid} left: {stat}");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&uid), "web's rootfs is still mounted");
    assert!(!node.dir.join("data/pods").join(&uid).exists(), "web's container directory is left");
}

#[test]
fn a_node_without_a_usable_oci_runtime_says_how_to_get_one() {
    let node = Node::start_with("noruntime", Some("[pods]\nruntime = \"/nonexistent/runc\"\n"));
    node.ok(&["run", "web", "--image", "localhost:5000/test/app:v1"]);
    let p = wait_reason(&node, "web", &["CreateContainerError"]);
    let message =
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("/nonexistent/runc") && message.contains("apt-get install runc"), "{message}");
    // Command pods are unaffected.
    node.ok(&["run", "cmd", "--", "sleep", "3600"]);
    node.wait_running("cmd");
}
