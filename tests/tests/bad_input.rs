//! Bad input gets a one-line error naming the problem and the fix, a
//! non-zero exit, and nothing half-created.

use podnet_e2e::{Node, podnet_bin, stderr};

#[test]
fn invalid_names_duplicates_and_missing_commands_are_refused() {
    let node = Node::start("bad");
    node.fails(&["run", "Bad_Name", "--", "sleep", "1"], "invalid pod name");
    node.fails(&["run", "ok", "-n", "No", "--", "sleep", "1"], "invalid namespace name");
    node.fails(&["run", "nocmd"], "no command given");
    node.fails(&["run", "typo", "--", "sleeep", "1"], "not found on the node");
    node.fails(&["run", "lbl", "--labels", "a b=c", "--", "sleep", "1"], "invalid label");
    node.fails(&["run", "lbl", "--labels", "novalue", "--", "sleep", "1"], "key=value");
    node.ok(&["run", "dup", "--", "sleep", "infinity"]);
    node.fails(&["run", "dup", "--", "sleep", "infinity"], "already exists");
    node.fails(&["create", "deployment", "x", "--", "nope-not-a-command"], "not found on the node");
    node.fails(&["delete", "pod", "ghost"], "not found");
    node.fails(&["scale", "deployment", "ghost", "--replicas", "2"], "not found");
    node.fails(&["logs", "ghost"], "not found");
    node.fails(&["exec", "ghost", "--", "true"], "not found");
    let pods = node.pods();
    assert_eq!(pods.len(), 1, "only the one good pod exists: {pods:?}");
    assert_eq!(node.pod_namespaces().len(), 1);
    assert!(node.ok(&["get", "deployments"]).is_empty());
}

#[test]
fn an_exhausted_subnet_is_reported_and_nothing_is_left_half_made() {
    let config = "[network]\nnode_subnet = \"10.244.0.0/29\"\n"; // .2 to .6: five pods
    let node = Node::start_with("full", Some(config));
    for i in 0..5 {
        node.ok(&["run", &format!("p{i}"), "--", "sleep", "infinity"]);
    }
    node.fails(&["run", "p5", "--", "sleep", "infinity"], "no free address");
    assert_eq!(node.pods().len(), 5);
    assert_eq!(node.pod_namespaces().len(), 5);
    node.ok(&["delete", "pod", "p0"]);
    node.ok(&["run", "p5", "--", "sleep", "infinity"]);
}

#[test]
fn no_agent_a_second_agent_and_a_non_root_user_get_clear_errors() {
    let missing = std::env::temp_dir().join("podnet-e2e-no-such.sock");
    let out = std::process::Command::new(podnet_bin())
        .args(["get", "pods"])
        .env("PODNET_SOCKET", &missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no podnet agent at") && stderr(&out).contains("podnet node up"),
        "{}",
        stderr(&out)
    );

    let node = Node::start("twice");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .arg(podnet_bin())
        .args(["node", "up", "--name", &node.name, "--data-dir"])
        .arg(node.dir.join("other-data"))
        .env("PODNET_SOCKET", &node.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already serving"), "{}", stderr(&out));
    node.ok(&["get", "pods"]); // the first agent is untouched

    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(podnet_bin())
        .args(["node", "up"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must run as root"), "{}", stderr(&out));
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(podnet_bin())
        .args(["get", "pods"])
        .env("PODNET_SOCKET", &node.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("permission denied") || stderr(&out).contains("root"), "{}", stderr(&out));
}

#[test]
fn a_client_of_another_protocol_version_gets_a_readable_error() {
    use std::io::{Read, Write};
    let node = Node::start("ver");
    let mut stream = std::os::unix::net::UnixStream::connect(&node.socket).unwrap();
    // length 4: version 99, status ok, one body byte.
    stream.write_all(&[4, 0, 0, 0, 99, 0, 0, 0]).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    assert_eq!(body[2], 1, "error status");
    let text = String::from_utf8_lossy(&body[3..]);
    assert!(text.contains("this agent speaks control protocol v") && text.contains("CLI v99"), "{text}");
}

#[test]
fn a_corrupt_state_file_stops_the_agent_instead_of_emptying_the_node() {
    let mut node = Node::start("corrupt");
    node.ok(&["run", "keep", "--", "sleep", "infinity"]);
    node.stop(libc::SIGTERM);
    let state = node.dir.join("data/state.json");
    let text = std::fs::read(&state).unwrap();
    std::fs::write(&state, &text[..text.len() / 2]).unwrap();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.netns))
        .arg(podnet_bin())
        .args(["node", "up", "--name", &node.name, "--data-dir"])
        .arg(node.dir.join("data"))
        .env("PODNET_SOCKET", &node.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&state).unwrap(), &text[..text.len() / 2], "the file is left for the user");
}

/// `podnet config check` of a board config holding `text`, in a fresh
/// directory (returned for the caller to remove); it must fail.
fn check_config(tag: &str, text: &str) -> (std::path::PathBuf, std::process::Output) {
    let dir = std::env::temp_dir().join(format!("podnet-e2e-config-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let out = std::process::Command::new(podnet_bin()).args(["config", "check"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    (dir, out)
}

#[test]
fn config_check_names_the_bad_line() {
    let (dir, out) = check_config("bad", "[network]\nmtu = 1400\nmtuu = 9000\n");
    assert!(stderr(&out).contains("line 3") && stderr(&out).contains("mtuu"), "{}", stderr(&out));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("board-configs");
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let out =
            std::process::Command::new(podnet_bin()).args(["config", "check"]).arg(&path).output().unwrap();
        assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_data_plane_thread_count_out_of_range_is_refused_with_the_range() {
    let (dir, out) = check_config("threads", "[network]\nmtu = 1400\n[dataplane]\nthreads = 0\n");
    let err = stderr(&out);
    assert!(err.contains("line 4") && err.contains("dataplane.threads 0 must be between 1 and 16"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ipv6_addresses_are_refused_naming_the_field_and_nothing_is_made() {
    let node = Node::start("ipv6");
    let refused =
        |field: &str, addr: &str| format!("IPv6 is not supported yet: {field} = {addr}; use an IPv4 address");
    // A flag's value: clap prints the reason, then its usage hint.
    let out =
        node.podnet(&["run", "cam", "--host-port", "[fd00::1]:8554:8554/UDP", "--", "sleep", "infinity"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&refused("hostIP", "fd00::1")), "{}", stderr(&out));
    assert!(node.pods().is_empty(), "no pod was made");
    node.ok(&["run", "web", "--", "sleep", "infinity"]);
    node.fails(
        &["expose", "pod", "web", "--port", "80", "--cluster-ip", "fd00::5"],
        &refused("--cluster-ip", "fd00::5"),
    );
    assert!(!node.ok(&["get", "services"]).contains("web"), "no service was made");

    let (dir, out) = check_config("ipv6", "[network]\ncluster_dns = \"fd00::10\"\n");
    assert!(stderr(&out).contains(&refused("network.cluster_dns", "fd00::10")), "{}", stderr(&out));
    let out = std::process::Command::new(podnet_bin())
        .args(["node", "up", "--cluster-init", "--node-ip", "fd00::2", "--data-dir"])
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&refused("--node-ip", "fd00::2")), "{}", stderr(&out));
    assert!(!dir.join("data").exists(), "no data dir was made");
    std::fs::remove_dir_all(dir).unwrap();
}
