//! The pod sandbox (#12 item 1): root in a pod is root in a container, not
//! on the node. Each check is what an attacker in the pod would try, both in
//! the pod's own command and through `podnet exec`.

use std::time::Duration;

use podnet_e2e::{Node, busybox, eventually, stderr, stdout};

/// CapEff of a root container: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
/// SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DEFAULT_CAPS: &str = "00000000a80425fb";

/// Runs `script` with sh as a pod's own command and returns its output.
fn pod_output(node: &Node, name: &str, extra: &[&str], script: &str) -> String {
    let mut args = vec!["run", name, "--restart", "Never"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c"]);
    let script = format!("{script}; echo END");
    args.push(&script);
    node.ok(&args);
    eventually(Duration::from_secs(20), &format!("the output of pod {name}"), || {
        let logs = node.ok(&["logs", name]);
        logs.lines().any(|l| l == "END").then_some(logs)
    })
}

/// Runs `script` with sh through `podnet exec` and returns stdout and stderr.
fn exec_output(node: &Node, pod: &str, script: &str) -> String {
    let out = node.exec(pod, &["sh", "-c", script]);
    format!("{}{}", stdout(&out), stderr(&out))
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn root_in_a_pod_cannot_reach_the_agent_the_host_or_other_pods() {
    // A secret where a cluster server keeps its token: the whole data dir is
    // what must stay out of reach.
    let mut node = Node::prepare("sbx", None, &[]);
    let data = node.dir.join("data");
    let token = "podnet-sandbox-secret-4f1c9a";
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("token"), format!("{token}\n")).unwrap();
    node.up();
    let bb = busybox();
    node.ok(&["run", "other", "--", "sleep", "infinity"]);
    node.wait_running("other");
    let agent = node.agent_pid();
    let other_ns = format!("/run/netns/pn.{}.default.other", node.name);
    let host_ns = format!("/run/netns/{}", node.netns);
    let data = data.display();
    let script = format!(
        "umount {data}; umount -l {data}; echo token=$(cat {data}/token); \
         echo root-token=$(cat /proc/1/root{data}/token); \
         nsenter --net={host_ns} true && echo entered-host; \
         nsenter --net={other_ns} true && echo entered-other; \
         nsenter -t 1 -m -p true && echo entered-pid1; \
         kill -0 {agent} && echo signalled-agent; \
         cat /proc/{agent}/environ >/dev/null && echo read-agent-environ; \
         timeout 2 strace -qq -e trace=none -p {agent}; echo strace=$?; \
         {bb} mknod /tmp/podnet-sbx-disk b 8 0 && echo made-device; rm -f /tmp/podnet-sbx-disk; \
         unshare -U true && echo new-userns; \
         echo 1 > /proc/sys/net/ipv4/ip_forward && echo wrote-proc-sys; \
         echo kcore=$(head -c 16 /proc/kcore | wc -c); \
         [ -e /dev/kmsg ] && echo host-dev"
    );
    let logs = pod_output(&node, "mallory", &[], &script);
    let exec = {
        node.ok(&["run", "shell", "--", "sleep", "infinity"]);
        node.wait_running("shell");
        exec_output(&node, "shell", &script)
    };
    for (how, out) in [("the pod's command", &logs), ("podnet exec", &exec)] {
        assert!(!out.contains(token), "{how} read the cluster token: {out}");
        for breach in [
            "entered-host",
            "entered-other",
            "entered-pid1",
            "signalled-agent",
            "read-agent-environ",
            "made-device",
            "new-userns",
            "wrote-proc-sys",
            "host-dev",
        ] {
            assert!(!out.lines().any(|l| l == breach), "{how}: {breach}: {out}");
        }
        // strace could not even find the agent (timeout's 124 means it attached).
        assert!(out.lines().any(|l| l == "strace=1"), "{how} ptraced the agent: {out}");
        assert!(out.lines().any(|l| l == "kcore=0"), "{how} read /proc/kcore: {out}");
    }
    // The agent and the other pod are unharmed.
    node.ok(&["get", "pods"]);
    assert!(node.exec("other", &["true"]).status.success());
}

#[test]
fn a_pod_has_its_own_pid_namespace_default_caps_env_and_fd_limit_and_exec_shares_them() {
    let node = Node::start("sbxns");
    let script = "grep -E '^(CapEff|CapPrm|CapBnd|CapInh|CapAmb|Seccomp):' /proc/self/status; \
                  echo procs=$(ls /proc | grep -c '^[0-9]'); echo init=$(tr '\\0' ' ' </proc/1/cmdline); \
                  echo pidns=$(readlink /proc/self/ns/pid); echo ipcns=$(readlink /proc/self/ns/ipc); \
                  echo nofile=$(ulimit -n); env | sort | sed 's/^/env:/'";
    let own = pod_output(&node, "probe", &[], script);
    node.ok(&["run", "web", "--", "sleep", "infinity"]);
    node.wait_running("web");
    let exec = exec_output(&node, "web", script);
    let host_pidns = std::fs::read_link("/proc/self/ns/pid").unwrap().to_string_lossy().into_owned();
    let host_ipcns = std::fs::read_link("/proc/self/ns/ipc").unwrap().to_string_lossy().into_owned();
    for (how, out) in [("the pod's command", &own), ("podnet exec", &exec)] {
        for name in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(field(out, name), DEFAULT_CAPS, "{how} {name}: {out}");
        }
        assert_eq!(field(out, "CapInh:"), "0000000000000000", "{how}: {out}");
        assert_eq!(field(out, "CapAmb:"), "0000000000000000", "{how}: {out}");
        assert_eq!(field(out, "Seccomp:"), "2", "{how}: {out}");
        assert_ne!(field(out, "pidns="), host_pidns, "{how} is in the host's PID namespace: {out}");
        assert_ne!(field(out, "ipcns="), host_ipcns, "{how} is in the host's IPC namespace: {out}");
        assert_eq!(field(out, "nofile="), "1024", "{how} has the agent's fd limit: {out}");
        let keys: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("env:"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        // sh adds PWD and SHLVL itself.
        let allowed = ["HOME", "PATH", "POD_IP", "POD_NAME", "POD_NAMESPACE", "POD_UID", "PWD", "SHLVL"];
        assert!(keys.iter().all(|k| allowed.contains(k)), "{how} has foreign variables: {keys:?}");
        assert!(keys.contains(&"POD_UID") && keys.contains(&"PATH"), "{how}: {keys:?}");
    }
    // Only the pod's processes: sh and its children in the pod's own run...
    let procs: u32 = field(&own, "procs=").parse().unwrap();
    assert!(procs <= 5, "the pod sees the host's processes: {own}");
    assert!(field(&own, "init=").starts_with("sh -c"), "{own}");
    // ...and exec lands beside the pod's command, which is PID 1 there.
    assert!(field(&exec, "init=").starts_with("sleep infinity"), "{exec}");
    let web = node.exec("web", &["readlink", "/proc/1/ns/pid"]);
    assert_eq!(stdout(&web).trim(), field(&exec, "pidns="), "exec joined another PID namespace");
}

#[test]
fn user_runs_the_command_unprivileged_and_privileged_restores_every_capability() {
    let node = Node::start("sbxuser");
    let ids = "echo uid=$(id -u) gid=$(id -g); grep -E '^(CapEff|CapBnd):' /proc/self/status";
    let user = pod_output(&node, "nobody", &["--user", "1000:1000"], ids);
    assert!(user.contains("uid=1000 gid=1000"), "{user}");
    assert_eq!(field(&user, "CapEff:"), "0000000000000000", "{user}");
    assert_eq!(field(&user, "CapBnd:"), DEFAULT_CAPS, "{user}");
    node.ok(&["run", "svc", "--user", "1000", "--", "sleep", "infinity"]);
    node.wait_running("svc");
    let exec = exec_output(&node, "svc", ids);
    assert!(exec.contains("uid=1000 gid=1000"), "exec ran as another user: {exec}");

    let admin =
        pod_output(&node, "admin", &["--privileged"], "grep -E '^(CapEff|Seccomp):' /proc/self/status");
    let caps = u64::from_str_radix(field(&admin, "CapEff:"), 16).unwrap();
    assert!(caps & (1 << 21) != 0 && caps & (1 << 12) != 0, "no CAP_SYS_ADMIN/NET_ADMIN: {admin}");
    assert_eq!(field(&admin, "Seccomp:"), "0", "{admin}");
    // The flags are part of the pod spec.
    let pod: serde_json::Value =
        serde_json::from_str(&node.ok(&["get", "pod", "svc", "-o", "json"])).unwrap();
    assert_eq!(pod["spec"]["containers"][0]["securityContext"]["runAsUser"], 1000, "{pod}");
}

#[test]
fn a_pod_sees_the_host_read_only_with_private_tmp_dirs_and_exec_sees_the_same() {
    let node = Node::start("sbxfs");
    // Host paths the test made, outside /tmp (the pod's own there), to see
    // that nothing in a pod lands on the host.
    let host_dir = std::path::PathBuf::from(format!("/var/lib/podnet-e2e-{}", node.name));
    std::fs::create_dir_all(&host_dir).unwrap();
    let _cleanup = RemoveOnDrop(host_dir.clone());
    let marker = format!("podnet-e2e-{}-probe", node.name);
    let host_tmp = std::path::PathBuf::from(format!("/tmp/{marker}"));
    std::fs::write(&host_tmp, "host").unwrap();
    let data = node.dir.join("data");
    let targets = [
        format!("/etc/{marker}"),
        format!("/usr/bin/{marker}"),
        format!("/root/{marker}"),
        format!("{}/{marker}", data.display()),
        format!("{}/{marker}", host_dir.display()),
    ];
    let script = format!(
        "for f in {}; do echo x > $f && echo wrote:$f; done; \
         mount -o remount,rw / && echo remounted; \
         mount -o remount,rw,bind /etc && echo remounted-etc; \
         [ -e /tmp/{marker} ] && echo host-tmp; \
         for d in /tmp /var/tmp /run; do echo $POD_NAME > $d/{marker} && echo writable:$d; done",
        targets.join(" ")
    );
    let own = pod_output(&node, "writer", &[], &script);
    node.ok(&["run", "shell", "--", "sh", "-c", "echo command > /tmp/from-command; exec sleep infinity"]);
    node.wait_running("shell");
    let exec = exec_output(&node, "shell", &script);
    let leftovers: Vec<&String> =
        targets.iter().filter(|t| std::path::Path::new(t.as_str()).exists()).collect();
    for leftover in &leftovers {
        let _ = std::fs::remove_file(leftover);
    }
    let host_tmp_now = std::fs::read_to_string(&host_tmp).unwrap();
    let _ = std::fs::remove_file(&host_tmp);
    for (how, out) in [("the pod's command", &own), ("podnet exec", &exec)] {
        assert!(!out.contains("wrote:"), "{how} wrote the host's files: {out}");
        assert!(
            !out.lines().any(|l| l.starts_with("remounted")),
            "{how} remounted the host read-write: {out}"
        );
        assert!(!out.lines().any(|l| l == "host-tmp"), "{how} sees the host's /tmp: {out}");
        for dir in ["/tmp", "/var/tmp", "/run"] {
            assert!(out.lines().any(|l| l == format!("writable:{dir}")), "{how}: {dir} not writable: {out}");
        }
    }
    assert!(leftovers.is_empty(), "pods wrote {leftovers:?}");
    assert_eq!(host_tmp_now, "host", "a pod wrote the host's /tmp");
    // Exec sees its pod's /tmp; another pod sees neither.
    let theirs = exec_output(&node, "shell", "cat /tmp/from-command");
    assert_eq!(theirs.trim(), "command", "exec does not see the pod command's /tmp: {theirs}");
    node.ok(&["run", "peer", "--", "sleep", "infinity"]);
    node.wait_running("peer");
    let peer = exec_output(
        &node,
        "peer",
        &format!("[ -e /tmp/{marker} ] || [ -e /tmp/from-command ] || echo missing"),
    );
    assert_eq!(peer.lines().last(), Some("missing"), "pod peer sees pod shell's /tmp: {peer}");
    // A privileged pod opted out: it writes the host.
    let privileged = format!("{}/privileged", host_dir.display());
    pod_output(&node, "admin", &["--privileged"], &format!("echo admin > {privileged}"));
    let wrote = std::fs::read_to_string(&privileged);
    assert_eq!(wrote.ok().as_deref(), Some("admin\n"), "a privileged pod could not write the host");
}

/// Removes a directory the test made on the host, whatever the outcome.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
