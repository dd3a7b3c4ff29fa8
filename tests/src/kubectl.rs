//! The real kubectl against a node's Kubernetes API, for the e2e tests
//! that drive it (tests/tests/kubectl*.rs): a node with an address and a
//! registry holding the app image, and kubectl run in the node's namespace
//! with the node's kubeconfig.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::oci::{self, REGISTRY, Scratch};
use crate::{Node, Outside, stderr, stdout};

/// The node's address in its namespace: the API serves it and the
/// kubeconfig names it.
pub const NODE_IP: &str = "192.168.78.1";

/// kubectl 1.32 (the machine's).
pub const KUBECTL: &str = "/usr/bin/kubectl";
/// An older kubectl beside the Google Cloud SDK, when there is one.
pub const OLD_KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";

/// The app image's name (pushed as `test/app:v1`).
pub fn image_ref() -> String {
    format!("{REGISTRY}/test/app:v1")
}

/// A node whose namespace has loopback up and [`NODE_IP`] on an
/// interface before its agent starts (so the agent serves the API there).
pub fn node_with_address(tag: &str, config: Option<&str>) -> Node {
    let mut node = prepare_with_address(tag, config, &[]);
    node.up();
    node
}

/// [`node_with_address`] that also reaches a registry on its lan holding
/// the app image; the lan goes away when the returned [`Outside`] drops.
pub fn node_with_registry(tag: &str, scratch: &Scratch) -> (Node, Outside) {
    let layout = scratch.path("oci");
    oci::build_app_image(scratch, &layout, "v1", "hello from the image");
    let registries = oci::plain_registries(scratch);
    // The API's veth first: the agent serves the API on the first address.
    let mut node = prepare_with_address(tag, None, &["--registries", &registries]);
    let mut lan = Outside::attach(&node);
    oci::start_registry(&mut lan, scratch);
    oci::push(&lan, &layout, "v1", "test/app:v1");
    node.up();
    (node, lan)
}

/// The node's namespace with [`NODE_IP`] on a veth, its agent not started.
pub fn prepare_with_address(tag: &str, config: Option<&str>, extra: &[&str]) -> Node {
    let node = Node::prepare(tag, config, extra);
    for command in [
        vec!["ip", "link", "set", "lo", "up"],
        // A veth pair with both ends in the node's namespace (this kernel
        // may lack the dummy driver).
        vec!["ip", "link", "add", "api0", "type", "veth", "peer", "name", "api1"],
        vec!["ip", "addr", "add", &format!("{NODE_IP}/24"), "dev", "api0"],
        vec!["ip", "link", "set", "api0", "up"],
        vec!["ip", "link", "set", "api1", "up"],
    ] {
        let out = node.on_node(&command);
        assert!(out.status.success(), "{}: {}", command.join(" "), stderr(&out));
    }
    node
}

/// The kubeconfig the node's agent writes.
pub fn kubeconfig(node: &Node) -> PathBuf {
    node.dir.join("data").join("kubeconfig.yaml")
}

/// `kubectl ARGS` (the binary `bin`) to run in the node's namespace with
/// the node's kubeconfig and a discovery cache of the test's own.
pub fn kubectl_command(node: &Node, bin: &str, args: &[&str]) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/run/netns/{}", node.netns))
        .arg(bin)
        .arg("--cache-dir")
        .arg(node.dir.join(format!("kube-cache-{}", Path::new(bin).file_name().unwrap().to_string_lossy())))
        .args(args)
        .env("KUBECONFIG", kubeconfig(node))
        .env("HOME", &node.dir);
    command
}

/// Runs `kubectl ARGS` in the node's namespace with the kubeconfig
/// `config` (another node's: the server's, from a member's namespace).
pub fn kubectl_in(node: &Node, config: &Path, bin: &str, args: &[&str]) -> Output {
    kubectl_command(node, bin, args).env("KUBECONFIG", config).output().expect("run kubectl")
}

/// Runs [`kubectl_command`] to its end.
pub fn kubectl_with(node: &Node, bin: &str, args: &[&str]) -> Output {
    kubectl_command(node, bin, args).output().expect("run kubectl")
}

/// `kubectl ARGS` succeeds; its stdout.
pub fn ok(node: &Node, args: &[&str]) -> String {
    ok_with(node, KUBECTL, args)
}

/// [`ok`] with the kubectl binary `bin`.
pub fn ok_with(node: &Node, bin: &str, args: &[&str]) -> String {
    let out = kubectl_with(node, bin, args);
    assert!(out.status.success(), "kubectl {} failed: {}{}", args.join(" "), stderr(&out), node.agent_log());
    stdout(&out)
}

/// `kubectl ARGS` fails; its stderr, which must contain `needle`.
pub fn fails(node: &Node, args: &[&str], needle: &str) -> String {
    let out = kubectl_with(node, KUBECTL, args);
    let err = stderr(&out);
    assert!(!out.status.success(), "kubectl {} should fail, printed {}", args.join(" "), stdout(&out));
    assert!(err.contains(needle), "kubectl {}: {err:?} should mention {needle:?}", args.join(" "));
    err
}

/// `text` parsed as JSON (the test fails when it is not).
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Names of the pods `podnet` itself reports.
pub fn podnet_pods(node: &Node) -> Vec<String> {
    node.pods().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

/// Waits for `child` (a kubectl the test started) to end, killing it by
/// its PID if it has not within `timeout`.
pub fn wait_for(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
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

/// `kubectl CMD -it ...` (binary `bin`, `args` after the kubeconfig) on a
/// terminal of its own (script(1)) sized 33x77; its exit status and all
/// the terminal showed.
pub fn on_a_terminal(server: &Node, bin: &str, args: &str) -> (ExitStatus, String) {
    let kubectl = kubectl_command(server, bin, &[]);
    let mut line = vec!["nsenter".to_string()];
    line.extend(kubectl.get_args().map(|a| a.to_string_lossy().into_owned()));
    line.push(args.to_string());
    let envs = kubectl.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))).collect();
    in_a_terminal(&line.join(" "), envs, &format!("{bin} {args}"))
}

/// The shell command `line` with `envs` on a terminal of its own
/// (script(1)) sized 33x77, stdin kept open; its exit status and all the
/// terminal showed once it ends (within 60 s).
pub fn in_a_terminal(
    line: &str,
    envs: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    what: &str,
) -> (ExitStatus, String) {
    let mut script = Command::new("script")
        .args(["-qec", &format!("stty rows 33 cols 77; {line}"), "/dev/null"])
        .envs(envs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script");
    let keep_stdin_open = script.stdin.take();
    let status = wait_for(&mut script, Duration::from_secs(60), what);
    drop(keep_stdin_open);
    let mut text = String::new();
    script.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    (status, text)
}

/// Runs `kubectl ARGS` (binary `bin`) in the node's namespace with `input`
/// on its stdin.
pub fn kubectl_fed(node: &Node, bin: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = kubectl_command(node, bin, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let status = wait_for(&mut child, Duration::from_secs(60), &format!("kubectl {}", args.join(" ")));
    let mut out = Output { status, stdout: Vec::new(), stderr: Vec::new() };
    child.stdout.take().unwrap().read_to_end(&mut out.stdout).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut out.stderr).unwrap();
    out
}

/// Starts `kubectl port-forward ARGS` (binary `bin`) in the node's
/// namespace and waits until it listens (its "Forwarding from" line).
pub fn port_forward(node: &Node, bin: &str, args: &[&str]) -> Child {
    let mut all = vec!["port-forward", "--address", "127.0.0.1"];
    all.extend_from_slice(args);
    let mut child = kubectl_command(node, bin, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl port-forward");
    let mut line = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    lines.read_line(&mut line).unwrap();
    // Read on: kubectl writes a line per connection, and dies of SIGPIPE
    // if nobody reads them.
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    if !line.starts_with("Forwarding from 127.0.0.1:") {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!("kubectl port-forward {}: {line:?} {}", args.join(" "), stderr(&out));
    }
    child
}
