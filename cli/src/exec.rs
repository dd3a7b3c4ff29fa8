//! `podnet exec`: the CLI enters the pod itself (it runs as root on the node),
//! so stdin, stdout, signals and the exit code pass through untouched. On
//! a cluster's server, a pod of a member is reached through the agent: an
//! exec session whose command the member runs (stdin, stdout, stderr and
//! the exit code; with `-t` a terminal there, sized as the CLI's). The
//! command joins the PID, IPC, mount, UTS and network namespaces of the pod's
//! command and is confined as it is (capabilities, seccomp, user), with the
//! pod's environment.

use std::path::Path;
use std::process::ExitCode;

use runtime::api::{ContainerExec, Request, Response};
use runtime::node::pod::enter::PodEntry;

use crate::error::{CliError, step};
use crate::terminal;

pub(crate) async fn run(
    socket: &Path,
    namespace: &str,
    pod: &str,
    command: &[String],
    tty: bool,
) -> Result<ExitCode, CliError> {
    let request = Request::ExecTarget { namespace: namespace.into(), name: pod.into() };
    let target = match crate::call(socket, request).await? {
        Response::Exec(target) => target,
        Response::Elsewhere(node) if crate::REMOTE.get().is_some() => {
            return Err(CliError::Message(format!(
                "pod {namespace}/{pod} runs on node {node}: run podnet exec on the cluster server or on {node} (a remote CLI does not carry a command's input and output), or use kubectl exec"
            )));
        }
        Response::Elsewhere(_) => return remote(socket, namespace, pod, command, tty).await,
        _ => return Err(CliError::Message("the agent sent an unexpected answer".into())),
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

/// Runs `command` in a pod on a member, through the server's agent: the
/// CLI's stdin goes to it (read on a thread), its output comes back. With
/// `tty` and a terminal on stdin, the command gets a terminal there: ours
/// goes raw meanwhile, and its size and every change of it (SIGWINCH)
/// follow.
async fn remote(
    socket: &Path,
    namespace: &str,
    pod: &str,
    command: &[String],
    tty: bool,
) -> Result<ExitCode, CliError> {
    use runtime::api::{Frame, read_frame, write_frame};
    if command.is_empty() {
        return Err("no command given: put it after `--`".into());
    }
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(step(format!("cannot reach the agent at {}", socket.display())))?;
    let (mut read, mut write) = stream.into_split();
    let request = Request::Exec {
        namespace: namespace.into(),
        name: pod.into(),
        command: command.to_vec(),
        stdin: true,
        tty,
    };
    let frame = |r: &Request| Frame::message(r).map_err(step("cannot encode the request"));
    write_frame(&mut write, &frame(&request)?).await.map_err(step("cannot talk to the agent"))?;
    let mut window = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(step("cannot watch the terminal's size"))?;
    let resize = |(width, height)| Request::Resize { width, height };
    if let Some(size) = terminal::size().filter(|_| tty) {
        write_frame(&mut write, &frame(&resize(size))?).await.map_err(step("cannot talk to the agent"))?;
    }
    // Restored when this function returns, however it does.
    let _raw = if tty { terminal::Raw::enter() } else { None };
    // stdin on a thread (a blocking read), to frames.
    let (input_tx, mut input) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; 32 << 10];
        let mut stdin = std::io::stdin().lock();
        loop {
            let n = stdin.read(&mut buf).unwrap_or(0);
            if input_tx.blocking_send(buf[..n].to_vec()).is_err() || n == 0 {
                return;
            }
        }
    });
    let send = async move {
        let mut open = true;
        loop {
            let request = tokio::select! {
                bytes = input.recv(), if open => match bytes {
                    Some(bytes) => {
                        open = !bytes.is_empty();
                        Request::Input(bytes)
                    }
                    None => {
                        open = false;
                        continue;
                    }
                },
                Some(()) = window.recv(), if tty => match terminal::size() {
                    Some(size) => resize(size),
                    None => continue,
                },
                else => break,
            };
            if write_frame(&mut write, &frame(&request)?).await.is_err() {
                break;
            }
        }
        // Keep the connection's write half open: the agent reads its end
        // as the client leaving.
        std::future::pending::<Result<ExitCode, CliError>>().await
    };
    let receive = async {
        use std::io::Write;
        let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
        loop {
            let Some(frame) = read_frame(&mut read).await.map_err(step("cannot talk to the agent"))? else {
                return Err(CliError::Message(format!("the agent ended the exec in pod {namespace}/{pod}")));
            };
            let body = frame.body.map_err(CliError::Message)?;
            match Frame::decode::<Response>(&body).map_err(step("cannot decode the agent's answer"))? {
                Response::Output(2, bytes) => {
                    let _ = stderr.write_all(&bytes);
                    let _ = stderr.flush();
                }
                Response::Output(_, bytes) => {
                    let _ = stdout.write_all(&bytes);
                    let _ = stdout.flush();
                }
                Response::Exited(code) => return Ok(ExitCode::from(code.clamp(0, 255) as u8)),
                _ => return Err(CliError::Message("the agent sent an unexpected answer".into())),
            }
        }
    };
    tokio::select! {
        done = receive => done,
        failed = send => failed,
    }
}
