//! Streams into pods on member nodes (issue #15): the real kubectl (1.32
//! over WebSocket, 1.27 over SPDY), talking to the server of a 3-node
//! cluster, execs (stdin, stderr, exit code), follows logs, attaches and
//! port-forwards into pods pinned to the members; the server's own
//! `podnet logs` reads a member's pod. The member opens each stream back
//! to the server (runtime/src/cluster/streams.rs).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use podnet_e2e::kubectl::*;
use podnet_e2e::oci::{self, Scratch};
use podnet_e2e::{Cluster, Node, eventually, require, stderr, stdout};

/// A pod of the app image pinned to `node` by `nodeName`, with `command`
/// (the image's own, busybox httpd on 8080, when empty).
fn pinned(server: &Node, name: &str, node: &str, command: &[&str]) {
    let command = if command.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = command.iter().map(|a| serde_json::to_string(a).unwrap()).collect();
        format!("    command: [{}]\n", quoted.join(", "))
    };
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  restartPolicy: Never\n  containers:\n  - name: {name}\n    image: {}\n{command}",
        image_ref()
    );
    let out = kubectl_fed(server, KUBECTL, &["apply", "-f", "-"], manifest.as_bytes());
    assert!(out.status.success(), "apply {name}: {}{}", stderr(&out), server.agent_log());
    eventually(Duration::from_secs(60), &format!("{name} running on {node}"), || {
        let out = kubectl_with(server, KUBECTL, &["get", "pod", name, "-o", "json"]);
        let pod = json(&stdout(&out));
        assert_eq!(pod["spec"]["nodeName"], node, "pinned");
        (pod["status"]["phase"] == "Running").then_some(())
    });
}

/// `curl URL` in the server's namespace, where kubectl listens.
fn fetch(server: &Node, url: &str) -> String {
    let out = server.on_node(&["curl", "-sS", "--max-time", "10", url]);
    assert!(out.status.success(), "curl {url}: {}{}", stderr(&out), server.agent_log());
    stdout(&out)
}

/// A 3-node cluster (`tag`) whose nodes hold the app image: no registry on
/// the cluster's lan, so each node imports it from an archive.
fn cluster_with_app(scratch: &str, tag: &str) -> (Scratch, Cluster) {
    let scratch = Scratch::new(scratch);
    let layout = scratch.path("oci");
    oci::build_app_image(&scratch, &layout, "v1", "hello from a member");
    let archive = scratch.path("app.tar");
    let image = image_ref();
    oci::sh(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            &format!("oci:{layout}:v1"),
            &format!("oci-archive:{archive}:{image}"),
        ],
    );
    let cluster = Cluster::start(tag, 2);
    for node in &cluster.nodes {
        assert!(node.ok(&["image", "import", &archive]).starts_with(&format!("imported {image} (")));
    }
    (scratch, cluster)
}

/// kubectl 1.32 (WebSocket), and 1.27 (SPDY) where it is installed.
fn kubectls() -> Vec<&'static str> {
    let mut kubectls = vec![KUBECTL];
    if std::path::Path::new(OLD_KUBECTL).exists() {
        kubectls.push(OLD_KUBECTL);
    }
    kubectls
}

#[test]
fn kubectl_streams_reach_pods_on_member_nodes() {
    require(KUBECTL, "kubectl");
    require("skopeo", "skopeo");
    require("curl", "curl");
    let (_scratch, cluster) = cluster_with_app("kstreams", "kstr");
    let server = cluster.server();
    let (one, two) = (cluster.nodes[1].name.clone(), cluster.nodes[2].name.clone());
    let kubectls = kubectls();

    // exec: output, stderr and the exit code, stdin and its end.
    pinned(server, "web", &one, &[]);
    for bin in &kubectls {
        let out = kubectl_with(server, bin, &["exec", "web", "--", "cat", "/etc/hostname"]);
        assert!(out.status.success(), "{bin} exec: {}{}", stderr(&out), server.agent_log());
        assert_eq!(stdout(&out), "web\n", "{bin}: the member's pod answers");
        let out =
            kubectl_with(server, bin, &["exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
        assert_eq!(out.status.code(), Some(3), "{bin}: the exit code passes through: {}", stderr(&out));
        assert_eq!(stdout(&out), "out\n");
        assert!(stderr(&out).contains("err\n"), "{}", stderr(&out));
        let out =
            kubectl_fed(server, bin, &["exec", "-i", "web", "--", "sh", "-c", "cat; echo done"], b"hi\n");
        assert!(out.status.success(), "{bin} exec -i: {}", stderr(&out));
        assert_eq!(stdout(&out), "hi\ndone\n", "{bin}: stdin, then its end");
    }

    // The server's own `podnet exec` into the member's pod: stdin, both
    // outputs and the exit code come through the member's stream.
    let mut exec = std::process::Command::new(podnet_e2e::podnet_bin())
        .args(["exec", "web", "--", "sh", "-c", "cat; echo err >&2; exit 4"])
        .env("PODNET_SOCKET", &server.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start podnet exec");
    exec.stdin.take().unwrap().write_all(b"typed\n").unwrap();
    let status = wait_for(&mut exec, Duration::from_secs(60), "podnet exec into a member's pod");
    let (mut out, mut err) = (String::new(), String::new());
    exec.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    exec.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(4), "podnet exec's exit code: {err}{}", server.agent_log());
    assert_eq!(out, "typed\n");
    assert_eq!(err, "err\n");
    // A member may not reach into another node's pods (the trust model).
    cluster.nodes[2].fails(&["exec", "web", "--", "true"], "may not reach into pods on other nodes");
    cluster.nodes[2].fails(&["logs", "web"], "may not reach into pods on other nodes");

    // port-forward: 1.32 tunnels SPDY in WebSocket, 1.27 speaks SPDY.
    for (i, bin) in kubectls.iter().enumerate() {
        let local = 18090 + i;
        let mut forward = port_forward(server, bin, &["pod/web", &format!("{local}:8080")]);
        for _ in 0..2 {
            assert_eq!(
                fetch(server, &format!("http://127.0.0.1:{local}/")),
                "hello from a member\n",
                "{bin}"
            );
        }
        let _ = forward.kill();
        let _ = forward.wait();
    }

    // logs -f of a pod on the other member, until it ends; the server's
    // own CLI reads it too.
    let script = "echo start; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo end";
    pinned(server, "waiter", &two, &["sh", "-c", script]);
    let mut follow = kubectl_command(server, KUBECTL, &["logs", "-f", "waiter"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl logs -f");
    let mut lines = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "start\n", "the backlog first");
    assert_eq!(stdout(&server.podnet(&["logs", "waiter"])), "start\n", "podnet logs on the server");
    let touched = kubectl_with(server, KUBECTL, &["exec", "waiter", "--", "touch", "/tmp/go"]);
    assert!(touched.status.success(), "{}", stderr(&touched));
    line.clear();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "end\n", "new output as it comes");
    let status = wait_for(&mut follow, Duration::from_secs(30), "kubectl logs -f of an ended pod");
    assert!(status.success(), "kubectl logs -f ends with the pod");

    // attach: the member's container's output from now on, to its end.
    let ticker = "while [ ! -e /tmp/go ]; do echo tick; sleep 0.2; done; echo end";
    for (i, bin) in kubectls.iter().enumerate() {
        let pod = format!("ticker{i}");
        pinned(server, &pod, &one, &["sh", "-c", ticker]);
        let mut attach = kubectl_command(server, bin, &["attach", &pod])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubectl attach");
        let mut lines = BufReader::new(attach.stdout.take().unwrap());
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, "tick\n", "{bin} attach: live output");
        let touched = kubectl_with(server, KUBECTL, &["exec", &pod, "--", "touch", "/tmp/go"]);
        assert!(touched.status.success(), "{}", stderr(&touched));
        let mut rest = String::new();
        lines.read_to_string(&mut rest).unwrap();
        assert!(rest.ends_with("end\n"), "{bin} attach: output to the end: {rest:?}");
        let status = wait_for(&mut attach, Duration::from_secs(30), "kubectl attach of an ended pod");
        assert!(status.success(), "{bin} attach ends with the container");
    }
}

/// Runs its arguments on a terminal of its own (python3's pty), waits for
/// kubectl's attach hint, types a `wget` of the Service web-svc, waits for
/// the page, types `exit 3`, and exits with the command's exit code; all
/// the terminal showed goes to stdout.
const TYPIST: &str = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
seen = b""
def until(needle, timeout):
    global seen
    end = time.time() + timeout
    while needle not in seen:
        left = end - time.time()
        if left <= 0:
            sys.stdout.write(seen.decode(errors="replace"))
            sys.exit(f"no {needle!r} within {timeout} s")
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                sys.stdout.write(seen.decode(errors="replace"))
                sys.exit(f"the terminal closed before {needle!r}")
            seen += chunk
until(b"try pressing enter", 90)
os.write(fd, b"wget -qO- http://web-svc\r")
until(b"hello from a member", 30)
os.write(fd, b"exit 3\r")
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn kubectl_attach_takes_stdin_and_run_it_drives_a_shell_on_a_member() {
    require(KUBECTL, "kubectl");
    require("skopeo", "skopeo");
    require("python3", "python3");
    let (_scratch, cluster) = cluster_with_app("kattach", "katt");
    let image = image_ref();
    let server = cluster.server();
    let (one, two) = (cluster.nodes[1].name.clone(), cluster.nodes[2].name.clone());

    // kubectl attach -i: a container made with stdin reads what kubectl
    // reads from a pipe (1.32 over WebSocket, 1.27 over SPDY).
    let kubectls = kubectls();
    for (i, bin) in kubectls.iter().enumerate() {
        let pod = format!("reader{i}");
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\nspec:\n  nodeName: {one}\n  restartPolicy: Never\n  containers:\n  - name: {pod}\n    image: {image}\n    stdin: true\n    command: [sh, -c, 'echo ready; read line; echo got $line']\n"
        );
        let out = kubectl_fed(server, KUBECTL, &["apply", "-f", "-"], manifest.as_bytes());
        assert!(out.status.success(), "{}", stderr(&out));
        let shown = json(&ok(server, &["get", "pod", &pod, "-o", "json"]));
        assert_eq!(shown["spec"]["containers"][0]["stdin"], true, "the pod keeps its stdin");
        eventually(Duration::from_secs(60), &format!("{pod} ready"), || {
            let out = kubectl_with(server, KUBECTL, &["logs", &pod]);
            (stdout(&out) == "ready\n").then_some(())
        });
        let out = kubectl_fed(server, bin, &["attach", "-i", &pod], b"hello\n");
        assert!(out.status.success(), "{bin} attach -i: {}{}", stderr(&out), server.agent_log());
        assert_eq!(stdout(&out), "got hello\n", "{bin}: the container read kubectl's stdin");
    }
    // A container without stdin says so.
    pinned(server, "quiet", &two, &["sleep", "3600"]);
    let out = kubectl_fed(server, KUBECTL, &["attach", "-i", "quiet"], b"x\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has no stdin"), "{}", stderr(&out));

    // The lab step: a web Service, then a busybox shell with a terminal on
    // a member (`kubectl run -it --rm`), typed into.
    ok(server, &["create", "deployment", "web", &format!("--image={image}")]);
    ok(server, &["expose", "deployment", "web", "--port=80", "--target-port=8080", "--name=web-svc"]);
    ok(server, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    let kubectl = kubectl_command(
        server,
        KUBECTL,
        &[
            "run",
            "curl-pod",
            &format!("--image={image}"),
            "--restart=Never",
            "-it",
            "--rm",
            &format!("--overrides={{\"spec\":{{\"nodeName\":\"{two}\"}}}}"),
            "--",
            "sh",
        ],
    );
    let mut typist = std::process::Command::new("python3");
    typist.arg("-c").arg(TYPIST).arg(kubectl.get_program()).args(kubectl.get_args());
    for (key, value) in kubectl.get_envs() {
        if let Some(value) = value {
            typist.env(key, value);
        }
    }
    let out = typist.output().expect("run python3");
    let shown = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the shell's exit code: {shown}{}{}",
        stderr(&out),
        server.agent_log()
    );
    assert!(shown.contains("hello from a member"), "{shown}");
    eventually(Duration::from_secs(30), "curl-pod removed (--rm)", || {
        let out = kubectl_with(server, KUBECTL, &["get", "pod", "curl-pod"]);
        (!out.status.success()).then_some(())
    });
}

/// `kubectl exec -it` and `attach -it` into pods on members: a terminal in
/// the pod (the tty flag crosses to the member), which takes kubectl's
/// size (its resize messages relayed), over WebSocket (1.32) and SPDY
/// (1.27).
#[test]
fn kubectl_exec_and_attach_with_a_terminal_reach_members_and_resize() {
    require(KUBECTL, "kubectl");
    require("skopeo", "skopeo");
    require("script", "util-linux");
    let (_scratch, cluster) = cluster_with_app("kstreamtty", "ktty");
    let server = cluster.server();
    let (one, two) = (cluster.nodes[1].name.clone(), cluster.nodes[2].name.clone());
    let image = image_ref();
    pinned(server, "box", &one, &["sleep", "3600"]);
    let sized = "until [ \"$(stty size)\" = \"33 77\" ]; do sleep 0.1; done; echo resized";
    for (i, bin) in kubectls().into_iter().enumerate() {
        let (status, text) =
            on_a_terminal(server, bin, &format!("exec -it box -- sh -c 'tty; {sized}; exit 5'"));
        assert_eq!(status.code(), Some(5), "{bin} exec -it: the exit code: {text}{}", server.agent_log());
        assert!(
            text.contains("/dev/pts/") && text.contains("resized"),
            "{bin}: a terminal, resized: {text:?}"
        );

        // attach -it to a container made with a terminal, on the other member.
        let pod = format!("sized{i}");
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\nspec:\n  nodeName: {two}\n  restartPolicy: Never\n  containers:\n  - name: {pod}\n    image: {image}\n    stdin: true\n    tty: true\n    command: [sh, -c, '{sized}']\n"
        );
        let out = kubectl_fed(server, KUBECTL, &["apply", "-f", "-"], manifest.as_bytes());
        assert!(out.status.success(), "{}", stderr(&out));
        eventually(Duration::from_secs(60), &format!("{pod} running"), || {
            let pod = json(&ok(server, &["get", "pod", &pod, "-o", "json"]));
            (pod["status"]["phase"] == "Running").then_some(())
        });
        let (status, text) = on_a_terminal(server, bin, &format!("attach -it {pod}"));
        assert!(status.success(), "{bin} attach -it: {text}{}", server.agent_log());
        let logs = ok(server, &["logs", &pod]);
        assert!(logs.contains("resized"), "{bin}: the member's terminal took 33x77: {text:?} {logs:?}");
    }
}

/// The server's own `podnet exec -it` into a member's pod: a terminal
/// there, sized as the CLI's and following it; without -t, none.
#[test]
fn podnet_exec_with_a_terminal_reaches_a_members_pod() {
    require("skopeo", "skopeo");
    require("script", "util-linux");
    let (_scratch, cluster) = cluster_with_app("kexectty", "kxtty");
    let server = cluster.server();
    let one = cluster.nodes[1].name.clone();
    pinned(server, "box", &one, &["sleep", "3600"]);
    let sized = "until [ \"$(stty size)\" = \"33 77\" ]; do sleep 0.1; done; echo resized";
    let line = format!("{} exec -it box -- sh -c 'tty; {sized}; exit 5'", podnet_e2e::podnet_bin().display());
    let socket = ("PODNET_SOCKET".into(), server.socket.clone().into_os_string());
    let (status, text) = in_a_terminal(&line, vec![socket], "podnet exec -it into a member's pod");
    assert_eq!(status.code(), Some(5), "the exit code: {text}{}", server.agent_log());
    assert!(text.contains("/dev/pts/") && text.contains("resized"), "a terminal, resized: {text:?}");
    // Without -t the command has no terminal (its stdin is the session's).
    let out = server.podnet(&["exec", "box", "--", "sh", "-c", "tty || echo none"]);
    assert_eq!(stdout(&out), "not a tty\nnone\n", "{}", stderr(&out));
}
