//! Pod processes: started inside the sandbox with only the pod's own
//! environment and the OOM score of a best-effort pod, output into its log
//! pipe (`log.rs`), stopped with SIGTERM then SIGKILL.

use std::fs::File;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::enter::PodEntry;
use crate::model::SecurityContext;
use crate::sys::{self, netns};

/// The variables every pod process has besides the downward-API ones: a
/// PATH as container runtimes default to, and HOME.
pub fn base_env(security: &SecurityContext) -> Vec<(String, String)> {
    let home = if security.run_as.is_none_or(|r| r.uid == 0) { "/root" } else { "/" };
    vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOME".into(), home.into()),
    ]
}

/// The OOM score adjustment of pod processes: the kubelet's for BestEffort
/// pods (podnet pods declare no resource requests), so the kernel kills a pod
/// before the agent (-999, [`AGENT_OOM_SCORE_ADJ`]) or the system's daemons,
/// and pods never inherit the agent's protection.
pub const POD_OOM_SCORE_ADJ: i32 = 1000;

/// [`POD_OOM_SCORE_ADJ`] as written to /proc (no formatting after a fork).
const POD_OOM_SCORE_TEXT: &[u8] = b"1000";

/// The agent's OOM score adjustment: the kubelet's own.
pub const AGENT_OOM_SCORE_ADJ: i32 = -999;

/// Sets this process's OOM score adjustment.
pub fn set_own_oom_score_adj(value: i32) -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
}

/// Starts `command` inside the pod, PID 1 of its own PID namespace and in a
/// session of its own, with `env` as its whole environment and `output` (the
/// pod's log pipe, see `log.rs`) as its stdout and stderr.
pub fn spawn(
    command: &[String],
    env: &[(String, String)],
    entry: PodEntry,
    output: File,
) -> io::Result<tokio::process::Child> {
    let (program, args) =
        command.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let err = output.try_clone()?;
    let out = output;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .current_dir("/");
    sys::process::oom_score_adj_before_exec(&mut cmd, POD_OOM_SCORE_TEXT);
    let runtime = tokio::runtime::Handle::current();
    entry.spawn(cmd, move |cmd| {
        let _runtime = runtime.enter();
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(false);
        cmd.spawn()
    })
}

/// True for the init of a PID namespace that neither catches, ignores nor
/// blocks SIGTERM.
fn dies_of_sigterm_as_init(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| sigterm_dropped_as_init(&status))
}

/// Decides [`dies_of_sigterm_as_init`] from a /proc/PID/status text.
fn sigterm_dropped_as_init(status: &str) -> bool {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let init = field("NSpid:").is_some_and(|ids| {
        let ids: Vec<&str> = ids.split_whitespace().collect();
        ids.len() > 1 && ids.last() == Some(&"1")
    });
    let sigterm = 1u64 << (libc::SIGTERM - 1);
    let handled = ["SigBlk:", "SigIgn:", "SigCgt:"].iter().any(|name| {
        field(name).and_then(|m| u64::from_str_radix(m, 16).ok()).is_none_or(|m| m & sigterm != 0)
    });
    init && !handled
}

/// Opens a pod's log for reading, keeping at most the last `max` bytes.
pub fn read_log(log: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Stops every process inside the named namespace: SIGTERM, then SIGKILL for
/// what is still there after `grace`.
pub async fn stop_all(netns_name: &str, grace: Duration) {
    let signal_all = |signal| {
        let pids = netns::pids_inside(netns_name);
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), signal);
        }
        pids.len()
    };
    if signal_all(Signal::SIGTERM) == 0 {
        return;
    }
    // The kernel drops a signal its PID namespace's init does not handle, so
    // a pod's command that would die of SIGTERM anywhere else ignores it as
    // PID 1: give it the default action, as before pods had a PID namespace.
    for pid in netns::pids_inside(netns_name) {
        if dies_of_sigterm_as_init(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if netns::pids_inside(netns_name).is_empty() {
            return;
        }
    }
    signal_all(Signal::SIGKILL);
    for _ in 0..50 {
        if netns::pids_inside(netns_name).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_score_is_the_text_written() {
        assert_eq!(POD_OOM_SCORE_ADJ.to_string().as_bytes(), POD_OOM_SCORE_TEXT);
    }

    #[test]
    fn only_an_init_that_leaves_sigterm_alone_is_killed_outright() {
        let status = |nspid: &str, cgt: &str| {
            format!(
                "Name:\tsleep\nNSpid:\t{nspid}\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t{cgt}\n"
            )
        };
        assert!(sigterm_dropped_as_init(&status("4242\t1", "0000000000000000")));
        // Catches SIGTERM (bit 14): it gets its grace period.
        assert!(!sigterm_dropped_as_init(&status("4242\t1", "0000000000004000")));
        // Not an init (the host's namespace, or PID 2 inside).
        assert!(!sigterm_dropped_as_init(&status("4242", "0000000000000000")));
        assert!(!sigterm_dropped_as_init(&status("4243\t2", "0000000000000000")));
        assert!(!sigterm_dropped_as_init("garbage"));
    }
}
