//! `pods/NAME/attach`: the output of the container's own process, from
//! now on, until it ends (`kubectl attach POD`), and with `-i` its input.
//! podnet keeps a container's stdout and stderr (or its terminal's output)
//! in its log (`node::log_follow` follows it); a container made with
//! `stdin: true` or `tty: true` has an input FIFO the attach writes to
//! (`node::container::stdin`), and one with `tty: true` a FIFO of terminal
//! sizes (kubectl's resizes). One without has no stdin: `-i` is refused.

use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

use super::exec::{Asked, Local, Process, Terminal};
use crate::api::{Request, Response};
use crate::kube::agent::Agent;
use crate::kube::status::Status;

/// The container's output from now on, as a process whose stdout it is,
/// and with `-i` its input (a container with `stdin` or `tty`).
pub async fn process(agent: &Agent, namespace: &str, name: &str, asked: &Asked) -> Result<Process, Status> {
    let mut terminal = None;
    let stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = if asked.stdin || asked.tty {
        let request = Request::ExecTarget { namespace: namespace.into(), name: name.into() };
        let target = match agent.call(request).await.map_err(|e| super::refusal(e, name))? {
            Response::Exec(target) => target,
            _ => return Err(Status::unavailable("the agent answered with something else than asked for")),
        };
        let Some(fifo) = target.stdin else {
            return Err(Status::bad_request(format!(
                "pod {namespace}/{name} has no stdin to attach to (its container was made without stdin: true): attach without -i/-t, or use kubectl exec -it"
            )));
        };
        // A reader holds the FIFO while the container runs: opening for
        // writing does not wait.
        let writer = tokio::net::unix::pipe::OpenOptions::new()
            .open_sender(&fifo)
            .map_err(|e| Status::bad_request(format!("pod {namespace}/{name} takes no input now: {e}")))?;
        // A terminal's sizes, when the container has one (non-blocking:
        // a resize never holds up the session).
        terminal = asked
            .tty
            .then(|| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(crate::node::container::stdin::resize_fifo(&fifo))
                    .ok()
            })
            .flatten()
            .map(Terminal::Fifo);
        asked.stdin.then(|| Box::new(writer) as _)
    } else {
        None
    };
    let request = Request::FollowLogs { namespace: namespace.into(), name: name.into(), backlog: 0 };
    let items = agent.stream(request).await.map_err(|e| super::refusal(e, name))?;
    let output = LogReader { items, pending: Vec::new(), at: 0 };
    Ok(Process::Local(Local { stdin, stdout: Some(Box::new(output)), stderr: None, terminal, child: None }))
}

/// A followed log as a byte stream (EOF when the follower ends).
struct LogReader {
    items: mpsc::Receiver<Response>,
    pending: Vec<u8>,
    at: usize,
}

impl AsyncRead for LogReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.at == self.pending.len() {
            match self.items.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Response::Logs(bytes))) => {
                    self.pending = bytes;
                    self.at = 0;
                }
                Poll::Ready(_) => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(self.pending.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.pending[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_followed_log_reads_as_bytes_until_it_ends() {
        let (tx, items) = mpsc::channel(4);
        let mut reader = LogReader { items, pending: Vec::new(), at: 0 };
        tx.send(Response::Logs(Vec::new())).await.unwrap();
        tx.send(Response::Logs(b"one\n".to_vec())).await.unwrap();
        tx.send(Response::Logs(b"two\n".to_vec())).await.unwrap();
        drop(tx);
        let mut all = String::new();
        reader.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "one\ntwo\n");
    }
}
