//! The real kubectl's streaming commands against a node's Kubernetes API
//! (issue #15): `logs -f`, `logs deploy/NAME`, `attach`, `exec` (WebSocket with
//! kubectl 1.32, SPDY with 1.27), `port-forward` (SPDY in WebSocket, plain
//! SPDY). kubectl runs inside the
//! node's own network namespace (helpers: `podnet_e2e::kubectl`), and its
//! pods are image pods from a registry on a lan of the test's own.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

use podnet_e2e::kubectl::*;
use podnet_e2e::oci::Scratch;
use podnet_e2e::{eventually, require, stderr, stdout};

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
    let sized = "until [ \"$(stty size)\" = \"33 77\" ]; do sleep 0.1; done; echo resized";
    let (status, text) = on_a_terminal(&node, KUBECTL, &format!("exec -it box -- sh -c 'tty; {sized}'"));
    assert!(status.success(), "kubectl exec -it: {text}");
    assert!(text.contains("/dev/pts/") && text.contains("resized"), "a terminal, resized: {text:?}");

    fails(&node, &["exec", "nobody", "--", "true"], "not found");

    // kubectl 1.27 speaks SPDY/3.1 (v4.channel.k8s.io streams).
    if std::path::Path::new(OLD_KUBECTL).exists() {
        let out = kubectl_with(&node, OLD_KUBECTL, &["exec", "box", "--", "cat", "/etc/hostname"]);
        assert!(out.status.success(), "kubectl 1.27 exec: {}", stderr(&out));
        assert_eq!(stdout(&out), "box\n");
        let out = kubectl_with(
            &node,
            OLD_KUBECTL,
            &["exec", "box", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
        );
        assert_eq!(out.status.code(), Some(3), "the exit code over SPDY: {}", stderr(&out));
        assert_eq!(stdout(&out), "out\n");
        assert!(stderr(&out).contains("err\n"), "{}", stderr(&out));
        let fed = kubectl_fed(
            &node,
            OLD_KUBECTL,
            &["exec", "-i", "box", "--", "sh", "-c", "cat; echo done"],
            b"hi\n",
        );
        assert!(fed.status.success(), "{}", stderr(&fed));
        assert_eq!(stdout(&fed), "hi\ndone\n", "stdin, then its end (the stream's FIN)");
    }
}

/// `curl URL` in the node's namespace (where kubectl listens), through
/// `forward` (whose errors show when it fails).
fn fetch(node: &podnet_e2e::Node, forward: &mut Child, url: &str) -> String {
    let out = node.on_node(&["curl", "-sS", "--max-time", "10", url]);
    if !out.status.success() {
        // SIGINT: kubectl flushes its log as it ends.
        // SAFETY: a signal to the kubectl this test started, by its PID.
        unsafe { libc::kill(forward.id() as i32, libc::SIGINT) };
        let _ = wait_for(forward, Duration::from_secs(10), "kubectl port-forward after SIGINT");
        let mut errors = String::new();
        let _ = forward.stderr.take().unwrap().read_to_string(&mut errors);
        panic!("curl {url}: {}; kubectl: {errors}{}", stderr(&out), node.agent_log());
    }
    stdout(&out)
}

#[test]
fn kubectl_port_forwards_to_a_pod_and_a_service() {
    require(KUBECTL, "kubectl");
    let scratch = Scratch::new("kubectl-pf");
    let (node, _lan) = node_with_registry("kcpf", &scratch);
    // The image's own command: busybox httpd on 8080 serving /www.
    ok(&node, &["run", "web", &format!("--image={}", image_ref())]);
    node.wait_running("web");
    ok(&node, &["expose", "pod", "web", "--port=80", "--target-port=8080"]);

    // kubectl 1.32: SPDY tunnelled in WebSocket.
    let mut forward = port_forward(&node, KUBECTL, &["pod/web", "18080:8080"]);
    assert_eq!(fetch(&node, &mut forward, "http://127.0.0.1:18080/"), "hello from the image\n");
    assert_eq!(
        fetch(&node, &mut forward, "http://127.0.0.1:18080/index.html"),
        "hello from the image\n",
        "a second connection"
    );
    let _ = forward.kill();
    let _ = forward.wait();

    // svc/NAME: kubectl picks the service's pod and its target port.
    let mut forward = port_forward(&node, KUBECTL, &["svc/web", "18081:80"]);
    assert_eq!(fetch(&node, &mut forward, "http://127.0.0.1:18081/"), "hello from the image\n");
    let _ = forward.kill();
    let _ = forward.wait();

    // kubectl 1.27: plain SPDY.
    if std::path::Path::new(OLD_KUBECTL).exists() {
        let mut forward = port_forward(&node, OLD_KUBECTL, &["pod/web", "18082:8080"]);
        assert_eq!(fetch(&node, &mut forward, "http://127.0.0.1:18082/"), "hello from the image\n");
        let _ = forward.kill();
        let _ = forward.wait();
    }
}

#[test]
fn kubectl_follows_a_pods_log_until_it_ends_attaches_and_reads_a_deployments() {
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

    // kubectl attach: the container's output from now on, until it ends;
    // kubectl 1.32 over WebSocket, 1.27 over SPDY.
    let ticker = "while [ ! -e /tmp/go ]; do echo tick; sleep 0.2; done; echo end";
    let mut kubectls = vec![("speaker", KUBECTL)];
    if std::path::Path::new(OLD_KUBECTL).exists() {
        kubectls.push(("speaker-old", OLD_KUBECTL));
    }
    for (pod, bin) in kubectls {
        ok(&node, &["run", pod, &image, "--restart=Never", "--", "sh", "-c", ticker]);
        node.wait_running(pod);
        let mut attach = kubectl_command(&node, bin, &["attach", pod])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubectl attach");
        let mut lines = BufReader::new(attach.stdout.take().unwrap());
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, "tick\n", "{bin} attach: live output");
        let touched = node.exec(pod, &["touch", "/tmp/go"]);
        assert!(touched.status.success(), "{}", stderr(&touched));
        let mut rest = String::new();
        lines.read_to_string(&mut rest).unwrap();
        assert!(rest.ends_with("end\n"), "{bin} attach: output to the end: {rest:?}");
        let status = wait_for(&mut attach, Duration::from_secs(30), "kubectl attach of an ended pod");
        assert!(status.success(), "{bin} attach ends with the container");
    }

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

/// `kubectl attach -it POD` (binary `bin`) on a terminal of its own
/// (script(1)) sized 33x77; its output once it ends.
fn attach_on_a_terminal(node: &podnet_e2e::Node, bin: &str, pod: &str) -> String {
    let (status, text) = on_a_terminal(node, bin, &format!("attach -it {pod}"));
    assert!(status.success(), "{bin} attach -it: {text}");
    text
}

#[test]
fn kubectl_attach_closes_a_stdin_once_input_and_resizes_the_terminal() {
    require(KUBECTL, "kubectl");
    require("script", "util-linux");
    let scratch = Scratch::new("kubectl-once");
    let (node, _lan) = node_with_registry("kconce", &scratch);
    let manifest = node.dir.join("pods.yaml");
    let pod = |name: &str, fields: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: {name}\n    image: {}\n    stdin: true\n{fields}    command: [sh, -c, '{script}']\n",
            image_ref()
        )
    };
    // Waits for the terminal to take the attached kubectl's size.
    let sized = "until [ \"$(stty size)\" = \"33 77\" ]; do sleep 0.1; done; echo resized";
    let mut pods = vec![
        pod("once", "    stdinOnce: true\n", "echo ready; cat; echo eof"),
        pod("sized", "    tty: true\n", sized),
    ];
    let old = std::path::Path::new(OLD_KUBECTL).exists();
    if old {
        pods.push(pod("sized-old", "    tty: true\n", sized));
    }
    std::fs::write(&manifest, pods.join("---\n")).unwrap();
    ok(&node, &["apply", "-f", manifest.to_str().unwrap()]);
    let shown = json(&ok(&node, &["get", "pod", "once", "-o", "json"]));
    assert_eq!(shown["spec"]["containers"][0]["stdinOnce"], true, "the pod keeps stdinOnce");

    // stdinOnce: the first attach's input, then its end, is the
    // container's (without it, cat would wait for the next attach).
    node.wait_running("once");
    let fed = kubectl_fed(&node, KUBECTL, &["attach", "-i", "once"], b"hello\n");
    assert!(fed.status.success(), "kubectl attach -i: {}", stderr(&fed));
    let logs = eventually(Duration::from_secs(30), "once's output to its end", || {
        let text = ok(&node, &["logs", "once"]);
        text.ends_with("eof\n").then_some(text)
    });
    assert_eq!(logs, "ready\nhello\neof\n");
    let again = kubectl_with(&node, KUBECTL, &["attach", "-i", "once"]);
    assert!(!again.status.success(), "a second attach finds the input closed: {}", stdout(&again));

    // attach -it: the container's terminal takes kubectl's size (its
    // resize messages: WebSocket for 1.32, SPDY's resize stream for 1.27).
    let mut attached = vec![("sized", KUBECTL)];
    if old {
        attached.push(("sized-old", OLD_KUBECTL));
    }
    for (pod, bin) in attached {
        node.wait_running(pod);
        let text = attach_on_a_terminal(&node, bin, pod);
        let logs = ok(&node, &["logs", pod]);
        assert!(logs.contains("resized"), "{bin}: the terminal took 33x77: {text:?} {logs:?}");
    }
}
