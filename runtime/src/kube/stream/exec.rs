//! `pods/NAME/exec`: what the client asked (`command`, `stdin`, `stdout`,
//! `stderr`, `tty`, `container`), and the process that runs it: the pod's
//! OCI runtime (`runc exec`), as `podnet exec` runs it, here with its stdio
//! on pipes, or on a terminal for `tty=true`. The runtime is given the
//! terminal's other end as its own controlling terminal: it makes the
//! container's terminal and copies between the two, and passes on the
//! size when the agent resizes this one (SIGWINCH), as when run by hand.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::channel::{Ended, STDERR, STDOUT, Size};
use crate::api::{ContainerExec, Request, Response};
use crate::kube::agent::Agent;
use crate::kube::status::Status;

/// Most arguments of one command, and most bytes of them all.
const MAX_ARGS: usize = 256;
const MAX_ARG_BYTES: usize = 64 << 10;

/// What the client asked to run, and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Asked {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The client sends input.
    pub stdin: bool,
    /// The client reads the output.
    pub stdout: bool,
    /// The client reads the error output (never with a terminal).
    pub stderr: bool,
    /// A terminal for the command.
    pub tty: bool,
}

impl Asked {
    /// Reads the query (its `command` repeats: one per argument).
    pub fn parse(query: &str, attach: bool) -> Result<Asked, Status> {
        let pairs = pairs(query);
        let flag = |key: &str| pairs.iter().any(|(k, v)| k == key && (v == "true" || v == "1"));
        let command: Vec<String> =
            pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
        if !attach && command.is_empty() {
            return Err(Status::bad_request("you must specify at least 1 command"));
        }
        if command.len() > MAX_ARGS || command.iter().map(String::len).sum::<usize>() > MAX_ARG_BYTES {
            return Err(Status::bad_request(format!(
                "a command takes at most {MAX_ARGS} arguments of {MAX_ARG_BYTES} bytes in all"
            )));
        }
        let asked = Asked {
            command,
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        };
        if !(asked.stdin || asked.stdout || asked.stderr) {
            return Err(Status::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
        }
        if asked.tty && asked.stderr {
            // As the apiserver: a terminal merges the two outputs.
            return Ok(Asked { stderr: false, ..asked });
        }
        Ok(asked)
    }
}

/// The query's pairs, decoded, in order (a key may repeat).
fn pairs(query: &str) -> Vec<(String, String)> {
    query.split('&').flat_map(|pair| crate::kube::server::parse_query(pair).into_iter()).collect()
}

/// Where pod `namespace/name` is entered: its container, through the
/// agent (the pod must run on this node).
pub async fn target(agent: &Agent, namespace: &str, name: &str) -> Result<ContainerExec, Status> {
    let request = Request::ExecTarget { namespace: namespace.into(), name: name.into() };
    let target = match agent.call(request).await.map_err(|e| super::refusal(e, name))? {
        Response::Exec(target) => target,
        _ => return Err(Status::unavailable("the agent answered with something else than asked for")),
    };
    match (target.container, target.pid) {
        (Some(container), Some(_)) => Ok(container),
        (None, Some(_)) => Err(Status::bad_request(format!(
            "pod {namespace}/{name} has no image: run `podnet exec` on its node for pods podnet runs without one"
        ))),
        (_, None) => Err(Status::bad_request(format!(
            "unable to upgrade connection: container not found (pod {namespace}/{name} runs no process now)"
        ))),
    }
}

/// A command running in a container: here, or on a member of the cluster
/// (the stream its node opened carries its stdio, resizes and end).
pub enum Process {
    /// Run by this agent.
    Local(Local),
    /// Run by the pod's node.
    Remote(crate::cluster::streams::RemoteStream),
}

/// A command this agent runs, its stdio as asked.
pub struct Local {
    /// Its input, when asked.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Its output (with a terminal: everything it writes).
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Its error output, when asked and without a terminal.
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// The terminal, for resizing.
    pub terminal: Option<Terminal>,
    /// The runtime's process (its exit code is the command's); None for
    /// an attach, which ends with its output.
    pub child: Option<Runtime>,
}

/// The OCI runtime running a command. Dropped while it runs (the client
/// went), it gets SIGTERM, which it passes on to the command: a command
/// that ignores it runs on, as under the kubelet.
pub struct Runtime(Child);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let (Ok(None), Some(pid)) = (self.0.try_wait(), self.0.id()) {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// Why a process did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// No terminal could be made.
    #[error("cannot make a terminal: {0}")]
    Terminal(#[source] nix::Error),
    /// The runtime did not start.
    #[error("cannot run {runtime} to exec: {source}")]
    Runtime {
        /// The runtime's path.
        runtime: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `asked.command` in `container`.
pub fn spawn(container: &ContainerExec, asked: &Asked) -> Result<Process, SpawnError> {
    let mut command = Command::new(&container.runtime);
    command.arg("--root").arg(&container.root).arg("exec");
    if asked.tty {
        command.arg("--tty");
    }
    command.arg(&container.id).args(&asked.command);
    let runtime_error =
        |source| SpawnError::Runtime { runtime: container.runtime.display().to_string(), source };
    if !asked.tty {
        let piped = |yes: bool| if yes { Stdio::piped() } else { Stdio::null() };
        command.stdin(piped(asked.stdin)).stdout(piped(asked.stdout)).stderr(piped(asked.stderr));
        let mut child = command.spawn().map_err(runtime_error)?;
        return Ok(Process::Local(Local {
            stdin: child.stdin.take().map(|s| Box::new(s) as _),
            stdout: child.stdout.take().map(|s| Box::new(s) as _),
            stderr: child.stderr.take().map(|s| Box::new(s) as _),
            terminal: None,
            child: Some(Runtime(child)),
        }));
    }
    let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).map_err(SpawnError::Terminal)?;
    let io = |e: std::io::Error| runtime_error(e);
    let slave = std::fs::File::from(pty.slave);
    command.stdin(slave.try_clone().map_err(io)?).stdout(slave.try_clone().map_err(io)?).stderr(slave);
    // SAFETY: between fork and exec the child only calls setsid and ioctl,
    // both async-signal-safe, on its own stdin (the terminal given above).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // The terminal becomes the runtime's controlling one: resizes
            // reach it as SIGWINCH.
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(runtime_error)?;
    // The child holds the terminal's other end now; this copy went with
    // `command`, so the master reads EOF (EIO) once the command ends.
    drop(command);
    let master = std::fs::File::from(pty.master);
    let writer = master.try_clone().map_err(io)?;
    let terminal = Terminal::Pty(OwnedFd::from(master.try_clone().map_err(io)?));
    Ok(Process::Local(Local {
        stdin: asked.stdin.then(|| Box::new(tokio::fs::File::from_std(writer)) as _),
        stdout: Some(Box::new(TerminalReader(tokio::fs::File::from_std(master)))),
        stderr: None,
        terminal: Some(terminal),
        child: Some(Runtime(child)),
    }))
}

/// What a client's terminal sizes are applied to.
pub enum Terminal {
    /// The agent's end of an exec's terminal.
    Pty(OwnedFd),
    /// An attached container's resize FIFO, which the thread holding its
    /// terminal reads (`node::container::stdin`).
    Fifo(std::fs::File),
}

impl Terminal {
    /// Applies a size the client sent.
    pub fn resize(&self, size: Size) {
        match self {
            Terminal::Pty(fd) => {
                let ws =
                    libc::winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 };
                // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which
                // outlives the call; the fd is this terminal's, open while self is.
                #[allow(unsafe_code)]
                unsafe {
                    libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws)
                };
            }
            Terminal::Fifo(fifo) => {
                use std::io::Write;
                // Non-blocking: a FIFO full of unread sizes drops this one.
                let message = crate::node::container::stdin::resize_message(size.width, size.height);
                let _ = (&*fifo).write(&message);
            }
        }
    }
}

/// A terminal's master end, read until the command's side is closed (which
/// Linux reports as EIO, here EOF).
struct TerminalReader(tokio::fs::File);

impl AsyncRead for TerminalReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// What the client sends a command.
#[derive(Debug)]
pub enum Input {
    /// Bytes for its stdin.
    Stdin(Vec<u8>),
    /// No more input (v5's close of stdin).
    StdinClosed,
    /// The terminal's new size.
    Resize(Size),
}

/// What a command sends the client: bytes on a stream (stdout, stderr).
pub type Output = (u8, Vec<u8>);

/// Largest output chunk sent at once.
const CHUNK: usize = 32 << 10;

/// Runs a session: `input` to the command, its output to `output`, until
/// it exited and its outputs ended. Dropping the future kills the command
/// (the client went). The command's end is the answer; `output` closes.
pub async fn run(process: Process, output: mpsc::Sender<Output>, input: mpsc::Receiver<Input>) -> Ended {
    match process {
        Process::Local(local) => run_local(local, output, input).await,
        Process::Remote(remote) => super::remote::run(remote, output, input).await,
    }
}

/// [`run`] for a command this agent runs.
async fn run_local(process: Local, output: mpsc::Sender<Output>, mut input: mpsc::Receiver<Input>) -> Ended {
    let Local { mut stdin, stdout, stderr, terminal, mut child } = process;
    // An exec's own terminal (an attach writes to its container's FIFO,
    // which is closed like a pipe).
    let tty = matches!(terminal, Some(Terminal::Pty(_)));
    let pump = |reader: Option<Box<dyn AsyncRead + Send + Unpin>>, id: u8, out: mpsc::Sender<Output>| async move {
        let Some(mut reader) = reader else { return };
        loop {
            let mut buf = vec![0; CHUNK];
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if out.send((id, buf)).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let outputs = futures::future::join(pump(stdout, STDOUT, output.clone()), pump(stderr, STDERR, output));
    let feed = async {
        while let Some(item) = input.recv().await {
            match item {
                Input::Stdin(bytes) => {
                    if let Some(writer) = stdin.as_mut()
                        && writer.write_all(&bytes).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Input::StdinClosed if tty => {
                    // A terminal's end of input is its EOF character.
                    if let Some(writer) = stdin.as_mut() {
                        let _ = writer.write_all(&[4]).await;
                    }
                }
                Input::StdinClosed => {
                    if let Some(mut writer) = stdin.take() {
                        let _ = writer.shutdown().await;
                    }
                }
                Input::Resize(size) => {
                    if let Some(terminal) = &terminal {
                        terminal.resize(size);
                    }
                }
            }
        }
        // The client sends no more; the command runs on.
        futures::future::pending::<std::convert::Infallible>().await
    };
    let ended = async {
        let exited = async {
            match child.as_mut() {
                Some(Runtime(child)) => exit_code(child).await,
                None => Ok(0),
            }
        };
        let (_, code) = futures::future::join(outputs, exited).await;
        match code {
            Ok(code) => Ended::Exited(code),
            Err(e) => Ended::Failed(format!("cannot wait for the command: {e}")),
        }
    };
    tokio::select! {
        ended = ended => ended,
        never = feed => match never {},
    }
}

/// The command's exit code (a signal's death as a shell reports it).
pub async fn exit_code(child: &mut Child) -> std::io::Result<i32> {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait().await?;
    Ok(status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_repeats_command_and_a_terminal_has_no_stderr() {
        let q = "command=sh&command=-c&command=echo+%22hi%22&stdin=true&stdout=true&stderr=true&tty=true&container=x";
        let asked = Asked::parse(q, false).unwrap();
        assert_eq!(asked.command, ["sh", "-c", "echo \"hi\""]);
        assert!(asked.stdin && asked.stdout && asked.tty && !asked.stderr);
        assert_eq!(Asked::parse("stdout=true", false).unwrap_err().code, 400, "no command");
        assert_eq!(Asked::parse("command=ls", false).unwrap_err().code, 400, "no stream");
        let many = "command=x&".repeat(MAX_ARGS + 1) + "stdout=true";
        assert_eq!(Asked::parse(&many, false).unwrap_err().code, 400);
    }
}
