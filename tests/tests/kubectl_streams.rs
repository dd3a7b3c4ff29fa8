//! The real kubectl's streaming commands against a node's Kubernetes API
//! (issue #15): `logs -f`, `logs deploy/NAME`. kubectl runs inside the
//! node's own network namespace (helpers: `podnet_e2e::kubectl`), and its
//! pods are image pods from a registry on a lan of the test's own.

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use podnet_e2e::kubectl::*;
use podnet_e2e::oci::Scratch;
use podnet_e2e::{eventually, require, stderr};

/// Waits for `child` (a kubectl the test started) to end, killing it by
/// its PID if it has not within `timeout`.
fn wait_for(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait kubectl") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kubectl_follows_a_pods_log_until_it_ends_and_reads_a_deployments() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubectl-logs");
    let (node, _lan) = node_with_registry("kclogs", &scratch);
    let image = format!("--image={}", image_ref());

    // A pod that writes, waits for the test's word, writes again and ends.
    let script = "echo start; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo end";
    ok(&node, &["run", "waiter", &image, "--restart=Never", "--", "sh", "-c", script]);
    eventually(Duration::from_secs(30), "waiter's first line", || {
        let out = kubectl_with(&node, KUBECTL, &["logs", "waiter"]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout) == "start\n").then_some(())
    });
    let mut follow = kubectl_command(&node, KUBECTL, &["logs", "-f", "waiter"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl logs -f");
    let mut lines = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "start\n", "the backlog first");
    assert!(follow.try_wait().unwrap().is_none(), "kubectl follows while the pod runs");
    let touched = node.exec("waiter", &["touch", "/tmp/go"]);
    assert!(touched.status.success(), "{}", stderr(&touched));
    line.clear();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "end\n", "new output as it comes");
    let status = wait_for(&mut follow, Duration::from_secs(30), "kubectl logs -f of an ended pod");
    assert!(status.success(), "kubectl logs -f ends cleanly with the pod");

    // --tail with -f: the last line of the backlog only (the pod has ended).
    assert_eq!(ok(&node, &["logs", "-f", "--tail=1", "waiter"]), "end\n");
    fails(&node, &["logs", "--previous", "waiter"], "--previous");

    // A deployment's log: kubectl picks one of its pods.
    ok(
        &node,
        &["create", "deployment", "talk", &image, "--", "sh", "-c", "echo from-deploy; exec sleep 3600"],
    );
    eventually(Duration::from_secs(30), "the deployment's log", || {
        let out = kubectl_with(&node, KUBECTL, &["logs", "deploy/talk"]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout) == "from-deploy\n").then_some(())
    });
}
