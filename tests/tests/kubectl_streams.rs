//! The real kubectl's streaming commands against a node's Kubernetes API
//! (issue #15): `logs -f`, `logs deploy/NAME`, `exec` (WebSocket). kubectl runs inside the
//! node's own network namespace (helpers: `podnet_e2e::kubectl`), and its
//! pods are image pods from a registry on a lan of the test's own.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use podnet_e2e::kubectl::*;
use podnet_e2e::oci::Scratch;
use podnet_e2e::{eventually, require, stderr, stdout};

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

/// Runs `kubectl ARGS` (the binary `bin`) with `input` on its stdin.
fn kubectl_fed(node: &podnet_e2e::Node, bin: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = kubectl_command(node, bin, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let status = wait_for(&mut child, Duration::from_secs(60), &format!("kubectl {}", args.join(" ")));
    let mut out = std::process::Output { status, stdout: Vec::new(), stderr: Vec::new() };
    child.stdout.take().unwrap().read_to_end(&mut out.stdout).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut out.stderr).unwrap();
    out
}

#[test]
fn kubectl_exec_runs_commands_in_a_pod_with_stdin_stderr_terminal_and_exit_code() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubectl-exec");
    let (node, _lan) = node_with_registry("kcexec", &scratch);
    let image = format!("--image={}", image_ref());
    ok(&node, &["run", "box", &image, "--", "sleep", "3600"]);
    node.wait_running("box");

    // kubectl 1.32 speaks WebSocket (v5.channel.k8s.io) first.
    eventually(Duration::from_secs(30), "exec in box", || {
        let out = kubectl_with(&node, KUBECTL, &["exec", "box", "--", "cat", "/etc/hostname"]);
        out.status.success().then(|| assert_eq!(stdout(&out), "box\n"))
    });
    let out =
        kubectl_with(&node, KUBECTL, &["exec", "box", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "the exit code passes through: {}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err\n"), "{}", stderr(&out));
    let fed =
        kubectl_fed(&node, KUBECTL, &["exec", "-i", "box", "--", "sh", "-c", "cat; echo done"], b"hi\n");
    assert!(fed.status.success(), "{}", stderr(&fed));
    assert_eq!(stdout(&fed), "hi\ndone\n", "stdin, then its end (v5's close)");

    // -it, kubectl on a terminal of its own (script(1)) sized 33x77: a
    // terminal in the pod, which takes kubectl's size (its resize message).
    require("script", "util-linux");
    let kubectl = kubectl_command(&node, KUBECTL, &[]);
    let mut line = vec!["stty rows 33 cols 77;".to_string(), "nsenter".into()];
    line.extend(kubectl.get_args().map(|a| a.to_string_lossy().into_owned()));
    line.push(
        "exec -it box -- sh -c 'tty; until [ \"$(stty size)\" = \"33 77\" ]; do sleep 0.1; done; echo resized'"
            .into(),
    );
    let mut script = std::process::Command::new("script")
        .args(["-qec", &line.join(" "), "/dev/null"])
        .envs(kubectl.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script");
    let keep_stdin_open = script.stdin.take();
    let status = wait_for(&mut script, Duration::from_secs(60), "kubectl exec -it");
    drop(keep_stdin_open);
    let mut text = String::new();
    script.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    assert!(status.success(), "kubectl exec -it: {text}");
    assert!(text.contains("/dev/pts/") && text.contains("resized"), "a terminal, resized: {text:?}");

    fails(&node, &["exec", "nobody", "--", "true"], "not found");
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
