//! `podnet exec`: the CLI enters the pod itself (it runs as root on the node),
//! so stdin, stdout, signals and the exit code pass through untouched.

use std::path::Path;
use std::process::ExitCode;

use runtime::api::{Request, Response};
use runtime::node::pod::enter::PodEntry;

pub async fn run(socket: &Path, namespace: &str, pod: &str, command: &[String]) -> Result<ExitCode, String> {
    let request = Request::ExecTarget { namespace: namespace.into(), name: pod.into() };
    let Response::Exec(target) = crate::call(socket, request).await? else {
        return Err("the agent sent an unexpected answer".into());
    };
    let entry = PodEntry::open(&target.netns, &target.resolv_conf, &target.hostname, false)
        .map_err(|e| format!("cannot enter pod {namespace}/{pod}: {e}"))?;
    let (program, args) = command.split_first().ok_or("no command given: put it after `--`")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).envs(target.env.iter().map(|(k, v)| (k, v)));
    entry.apply(&mut cmd);
    let status = cmd.status().map_err(|e| format!("cannot run `{program}` in pod {namespace}/{pod}: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(1);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
