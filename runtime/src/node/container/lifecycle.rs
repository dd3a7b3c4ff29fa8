//! Creating, signalling, finding and deleting containers with the runtime's
//! command line, its state under podnet's own `--root`.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::bundle::{self, BundleSpec, NodeLimits};
use super::oci_runtime::RuntimeKind;
use super::rootfs::{self, Rootfs};
use super::user::{self, User};
use super::{Container, ContainerError, ContainerSpec, OciRuntime};

/// The runtime's log of one `create`, in the container's directory.
const RUNTIME_LOG: &str = "runtime.log";
/// Where the runtime writes the init's pid.
const PID_FILE: &str = "container.pid";
/// The longest one runtime command may take (the kubelet's runtime request
/// timeout); past it the runtime is killed and the call fails.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(120);

impl OciRuntime {
    /// Makes the container and starts it detached: its init is the pid
    /// returned, its stdout and stderr the pod's log. On error nothing is
    /// left: no runtime state, mount, cgroup or file of the container's.
    pub fn create(&self, spec: &ContainerSpec) -> Result<Container, ContainerError> {
        check_id(&spec.id)?;
        let args = bundle::process_args(&spec.image, &spec.config)?;
        if !crate::sys::reaper::is_subreaper() {
            tracing::warn!(
                "the agent is not a child subreaper: container {} exits will have no exit code",
                spec.id
            );
        }
        // Never touch a container that exists: a failed create cleans up.
        if self.root.join(&spec.id).exists() || rootfs::is_mounted(&Rootfs::new(&spec.pod_dir).merged()) {
            return Err(ContainerError::Exists(spec.id.to_string()));
        }
        let dir_existed = spec.pod_dir.exists();
        std::fs::create_dir_all(&spec.pod_dir).map_err(ContainerError::io("cannot create", &spec.pod_dir))?;
        let made = self.create_in(spec, args);
        if made.is_err() {
            self.undo(&spec.id, &spec.pod_dir, !dir_existed);
        }
        made
    }

    fn create_in(&self, spec: &ContainerSpec, args: Vec<String>) -> Result<Container, ContainerError> {
        let rootfs = Rootfs::new(&spec.pod_dir);
        rootfs.mount(&spec.layers)?;
        let user = match spec.security.run_as {
            Some(run_as) => User { uid: run_as.uid, gid: run_as.gid, additional_gids: Vec::new() },
            None => user::resolve(&rootfs.merged(), &spec.config.user)?,
        };
        let merged = rootfs.merged();
        let volumes = super::volumes::write(&spec.pod_dir, &spec.image)?;
        bundle::write(
            &spec.pod_dir,
            &BundleSpec {
                rootfs: &merged,
                args,
                env: bundle::environment(&spec.config.env, &spec.env),
                user,
                working_dir: &spec.config.working_dir,
                hostname: &spec.hostname,
                netns: &spec.netns,
                etc: &spec.etc,
                volumes: &volumes,
                privileged: spec.security.privileged,
                resources: &spec.resources,
                pids_limit: spec.pids_limit,
                cgroups_path: format!("/podnet/{}", spec.id),
                node: NodeLimits::of_this_node(),
            },
        )?;
        let log = spec.pod_dir.join(RUNTIME_LOG);
        let pid_file = spec.pod_dir.join(PID_FILE);
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(&pid_file);
        let mut out =
            spec.log.try_clone().map_err(ContainerError::io("cannot share the log pipe", &spec.pod_dir))?;
        let mut err =
            spec.log.try_clone().map_err(ContainerError::io("cannot share the log pipe", &spec.pod_dir))?;
        let input = super::stdin::make(spec.image.stdin, spec.image.stdin_once, &spec.pod_dir, &spec.log)
            .map_err(ContainerError::io("cannot make the input of", &spec.pod_dir))?;
        let (mut stdin, mut pump) = (Stdio::null(), None);
        if let Some(input) = input {
            stdin = Stdio::from(input.stdin);
            if let Some((o, e)) = input.output {
                (out, err) = (o, e);
            }
            pump = input.pump;
        }
        let mut cmd = self.command(Some(&log));
        cmd.arg("run")
            .arg("--detach")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--bundle")
            .arg(&spec.pod_dir)
            .arg(&spec.id)
            .stdin(stdin)
            .stdout(out)
            .stderr(err);
        let status = bounded(&mut cmd, RUNTIME_TIMEOUT)
            .map_err(|source| self.spawn_error("run", &spec.id, source))?
            .status;
        // The terminal's other end is the container's now (`cmd` held ours).
        drop(cmd);
        if let Some(pump) = pump.filter(|_| status.success()) {
            pump.start(&spec.id);
        }
        if !status.success() {
            let message = last_error(&log).unwrap_or_else(|| format!("exited with {status}"));
            return Err(self.refused("run", &spec.id, message));
        }
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 0)
            .ok_or_else(|| ContainerError::PidFile {
                runtime: self.describe(),
                id: spec.id.clone(),
                path: pid_file,
            })?;
        Ok(Container { id: spec.id.clone(), pid })
    }

    /// Sends `signal` to the container's init (as PID 1 of its namespace it
    /// ignores signals it has no handler for, SIGKILL aside). Fails when it
    /// no longer runs.
    pub fn kill(&self, id: &str, signal: Signal) -> Result<(), ContainerError> {
        check_id(id)?;
        let mut cmd = self.command(None);
        cmd.args(["kill", id, &(signal as i32).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out =
            bounded(&mut cmd, RUNTIME_TIMEOUT).map_err(|source| self.spawn_error("kill", id, source))?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.refused(
            "kill",
            id,
            last_line(&out.stderr).unwrap_or_else(|| format!("exited with {}", out.status)),
        ))
    }

    /// The pid of the container's init while it runs (created, running or
    /// paused); None when the runtime has no such container or it stopped.
    /// For taking containers back after an agent restart.
    pub fn state(&self, id: &str) -> Option<i32> {
        check_id(id).ok()?;
        let mut cmd = self.command(None);
        cmd.args(["state", id]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let out = bounded(&mut cmd, RUNTIME_TIMEOUT).ok()?;
        if !out.status.success() {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct State {
            pid: i32,
            status: String,
        }
        let state: State = serde_json::from_slice(&out.stdout).ok()?;
        (state.pid > 0 && state.status != "stopped").then_some(state.pid)
    }

    /// Removes the container: killed if it still runs, its runtime state and
    /// cgroup gone, its rootfs unmounted and `pod_dir` removed. Idempotent,
    /// and fine on a container that was never fully made.
    pub fn delete(&self, id: &str, pod_dir: &Path) -> Result<(), ContainerError> {
        check_id(id)?;
        self.delete_state(id)?;
        Rootfs::new(pod_dir).unmount()?;
        super::volumes::unmount(pod_dir)?;
        match std::fs::remove_dir_all(pod_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ContainerError::io("cannot remove", pod_dir)(e))
            }
            _ => Ok(()),
        }
    }

    /// `delete --force`; a container the runtime does not know is fine,
    /// and one without state under the root is not asked about (running the
    /// runtime costs ~6 ms of a 60 ms start).
    fn delete_state(&self, id: &str) -> Result<(), ContainerError> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        let mut cmd = self.command(None);
        cmd.args(["delete", "--force", id]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let out =
            bounded(&mut cmd, RUNTIME_TIMEOUT).map_err(|source| self.spawn_error("delete", id, source))?;
        if out.status.success() || !self.root.join(id).exists() {
            return Ok(());
        }
        Err(self.refused(
            "delete",
            id,
            last_line(&out.stderr).unwrap_or_else(|| format!("exited with {}", out.status)),
        ))
    }

    /// Removes what a failed `create` made; the directory itself only when
    /// `create` made it.
    fn undo(&self, id: &str, pod_dir: &Path, remove_dir: bool) {
        if let Err(e) = self.delete_state(id) {
            tracing::warn!("cleaning up container {id}: {e}");
        }
        if let Err(e) = Rootfs::new(pod_dir).unmount().and_then(|()| super::volumes::unmount(pod_dir)) {
            tracing::warn!("cleaning up container {id}: {e}");
            return;
        }
        for file in ["config.json", RUNTIME_LOG, PID_FILE] {
            let _ = std::fs::remove_file(pod_dir.join(file));
        }
        if remove_dir {
            let _ = std::fs::remove_dir_all(pod_dir);
        }
    }

    /// The runtime with its global options: podnet's state root and, for
    /// `run`, a JSON log to read its error from.
    fn command(&self, log: Option<&PathBuf>) -> Command {
        let mut cmd = Command::new(&self.found.path);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = log {
            match self.found.kind {
                RuntimeKind::Runc => cmd.arg("--log").arg(log).arg("--log-format").arg("json"),
                RuntimeKind::Crun => {
                    let mut arg = std::ffi::OsString::from("--log=file:");
                    arg.push(log);
                    cmd.arg(arg).arg("--log-format=json")
                }
            };
        }
        cmd
    }

    fn spawn_error(&self, action: &'static str, id: &str, source: std::io::Error) -> ContainerError {
        match source.kind() {
            // Started, but stuck: `bounded` killed it.
            std::io::ErrorKind::TimedOut => ContainerError::Runtime {
                runtime: self.describe(),
                action,
                id: id.to_string(),
                message: format!(
                    "{source} and was killed: look for stuck runtime processes (ps) and in the kernel log"
                ),
            },
            _ => ContainerError::Spawn { runtime: self.describe(), action, source },
        }
    }

    fn refused(&self, action: &'static str, id: &str, message: String) -> ContainerError {
        ContainerError::Runtime { runtime: self.describe(), action, id: id.to_string(), message }
    }
}

/// Runs `cmd` to its end, or kills it after `timeout`. Its piped output is
/// read once it has exited: only commands whose output is small and whose
/// pipes no container inherits may pipe it (kill, state, delete).
fn bounded(cmd: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut child = cmd.spawn()?;
    let pidfd = crate::sys::process::pidfd_open(child.id() as i32)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("did not finish in {} s", timeout.as_secs_f32()),
            ));
        }
        let wait = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)], wait) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let status = child.wait()?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout)?;
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut stderr)?;
    }
    Ok(Output { status, stdout, stderr })
}

/// Refuses ids the runtime would refuse or that could name another path.
fn check_id(id: &str) -> Result<(), ContainerError> {
    let ok = (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(()) } else { Err(ContainerError::BadId(id.to_string())) }
}

/// The last error message of a runtime's JSON log (`{"level":"error",
/// "msg":…}`, one object a line), with the first fatal one before it when
/// there is one: runc's setup process logs the cause there ("failed to
/// update /proc/self/oom_score_adj") and ends in a vaguer error ("can't
/// get final child's PID from pipe: EOF").
fn last_error(log: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<Line> = text.lines().filter_map(|l| serde_json::from_str::<Line>(l).ok()).collect();
    let last = lines.iter().rev().find(|l| l.level == "error" || l.level == "fatal")?;
    match lines.iter().find(|l| l.level == "fatal") {
        Some(cause) if cause.msg != last.msg => Some(format!("{} ({})", last.msg, cause.msg)),
        _ => Some(last.msg.clone()),
    }
}

/// The last non-empty line of a runtime's stderr.
fn last_line(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr).lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_name_a_path_are_refused() {
        for id in ["c1", "0b7f4c2e-aa1b-4e6e-9a3f-1c2d3e4f5a6b", "web_1.main"] {
            assert!(check_id(id).is_ok(), "{id}");
        }
        for id in ["", ".", "..", "../x", "a/b", "a b", &"x".repeat(129)] {
            let err = check_id(id).unwrap_err().to_string();
            assert!(err.starts_with("bad container id"), "{err}");
        }
    }

    #[test]
    fn a_runtime_command_that_hangs_is_killed() {
        let err = bounded(Command::new("sleep").arg("100"), Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo out; echo err >&2; exit 4"]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = bounded(&mut echo, Duration::from_secs(60)).unwrap();
        assert_eq!(
            (out.status.code(), &out.stdout[..], &out.stderr[..]),
            (Some(4), &b"out\n"[..], &b"err\n"[..])
        );
    }

    #[test]
    fn the_runtimes_last_error_is_read_from_its_log() {
        let dir = std::env::temp_dir().join(format!("podnet-runtime-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("runtime.log");
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"x\",\"time\":\"t\"}\n\
             {\"level\":\"error\",\"msg\":\"runc run failed: exec: \\\"/nope\\\": no such file\",\"time\":\"t\"}\n\
             not json\n",
        )
        .unwrap();
        assert_eq!(last_error(&log).unwrap(), "runc run failed: exec: \"/nope\": no such file");
        std::fs::write(
            &log,
            "{\"level\":\"fatal\",\"msg\":\"nsexec[1]: failed to update /proc/self/oom_score_adj\"}\n\
             {\"level\":\"error\",\"msg\":\"runc run failed: can't get final child's PID from pipe: EOF\"}\n",
        )
        .unwrap();
        assert_eq!(
            last_error(&log).unwrap(),
            "runc run failed: can't get final child's PID from pipe: EOF (nsexec[1]: failed to update /proc/self/oom_score_adj)"
        );
        assert_eq!(last_error(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(last_line(b"warn\nthe error\n\n").unwrap(), "the error");
    }
}
