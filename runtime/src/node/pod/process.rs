//! Pod processes: started inside the sandbox with the downward-API variables,
//! output appended to a log file, stopped with SIGTERM then SIGKILL.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::enter::PodEntry;
use crate::sys::netns;

/// Starts `command` inside the pod, in a session of its own.
pub fn spawn(
    command: &[String],
    env: &[(String, String)],
    entry: PodEntry,
    log: &Path,
) -> io::Result<tokio::process::Child> {
    let (program, args) =
        command.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .current_dir("/");
    entry.apply(&mut cmd);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    cmd.spawn()
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
