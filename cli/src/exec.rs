//! `podnet exec`: the CLI enters the pod itself (it runs as root on the node),
//! so stdin, stdout, signals and the exit code pass through untouched. The
//! command joins the PID, IPC, mount, UTS and network namespaces of the pod's
//! command and is confined as it is (capabilities, seccomp, user), with the
//! pod's environment.

use std::path::Path;
use std::process::ExitCode;

use runtime::api::{ContainerExec, Request, Response};
use runtime::node::pod::enter::PodEntry;

use crate::error::{CliError, step};

pub(crate) async fn run(
    socket: &Path,
    namespace: &str,
    pod: &str,
    command: &[String],
) -> Result<ExitCode, CliError> {
    let request = Request::ExecTarget { namespace: namespace.into(), name: pod.into() };
    let Response::Exec(target) = crate::call(socket, request).await? else {
        return Err(CliError::Message("the agent sent an unexpected answer".into()));
    };
    let pid =
        target.pid.ok_or_else(|| format!("pod {namespace}/{pod} has no running command to exec beside"))?;
    if let Some(container) = &target.container {
        return exec_container(container, command, &format!("{namespace}/{pod}"));
    }
    let entry = PodEntry::join(pid, &target.netns, &target.security)
        .map_err(step(format!("cannot enter pod {namespace}/{pod}")))?;
    let (program, args) = command.split_first().ok_or("no command given: put it after `--`")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env_clear().envs(target.env.iter().map(|(k, v)| (k, v)));
    let status = entry
        .spawn(cmd, |mut cmd| cmd.status())
        .map_err(step(format!("cannot run `{program}` in pod {namespace}/{pod}")))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Runs `command` in an image pod's container through its OCI runtime,
/// which applies the container's root, user, cgroup and confinement.
fn exec_container(container: &ContainerExec, command: &[String], pod: &str) -> Result<ExitCode, CliError> {
    if command.is_empty() {
        return Err("no command given: put it after `--`".into());
    }
    let status = std::process::Command::new(&container.runtime)
        .arg("--root")
        .arg(&container.root)
        .arg("exec")
        .arg(&container.id)
        .args(command)
        .status()
        .map_err(step(format!("cannot run {} to exec in pod {pod}", container.runtime.display())))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
