//! What a pod must not be able to do to its node: outlive the agent under
//! memory pressure, fill the disk with its logs, or make the agent spin on a
//! pod that cannot start.

use podnet_e2e::{Node, stderr};

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
