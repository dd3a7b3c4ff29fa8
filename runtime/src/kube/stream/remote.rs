//! Streams into the pods of a cluster's members, on the server: an exec or
//! attach whose process the pod's node runs (its stdio, resizes and end
//! carried by the stream the node opened, `cluster::streams`), and a
//! port-forwarded connection the node makes in the pod.

use tokio::sync::mpsc;

use super::channel::{Ended, STDERR, STDOUT};
use super::exec::{Input, Output, Process};
use crate::cluster::proto::{StreamFrame, StreamRequest};
use crate::cluster::streams::{IDLE, Opened, RemoteStream, StreamError, Streams, WHOLE, splice};

use super::super::status::Status;

/// Opens `request` on `node`: the stream, started, or why not as a Status.
pub async fn open(streams: &Streams, node: &str, request: StreamRequest) -> Result<RemoteStream, Status> {
    match streams.open(node, request).await {
        Ok(Opened::Stream(stream)) => Ok(stream),
        Ok(Opened::Once(_)) => {
            Err(Status::unavailable("the pod's node answered with something else than asked for"))
        }
        Err(StreamError::Refused(why)) => Err(Status::bad_request(why)),
        Err(e) => Err(Status::unavailable(e.to_string())),
    }
}

/// An exec or attach run on `node`, as a process.
pub async fn process(streams: &Streams, node: &str, request: StreamRequest) -> Result<Process, Status> {
    open(streams, node, request).await.map(Process::Remote)
}

/// Runs a remote process's session: `input` to the node, what it sends to
/// `output`, until it says how the command ended.
pub async fn run(
    remote: RemoteStream,
    output: mpsc::Sender<Output>,
    mut input: mpsc::Receiver<Input>,
) -> Ended {
    let RemoteStream { mut tx, mut rx, ref node, .. } = remote;
    let feed = async {
        while let Some(item) = input.recv().await {
            let frame = match item {
                Input::Stdin(bytes) => StreamFrame::Data { stream: super::channel::STDIN, bytes },
                Input::StdinClosed => StreamFrame::Close { stream: super::channel::STDIN },
                Input::Resize(size) => StreamFrame::Resize { width: size.width, height: size.height },
            };
            if RemoteStream::send(&mut tx, &frame).await.is_err() {
                break;
            }
        }
        // The client sends no more; the command runs on.
        futures::future::pending::<std::convert::Infallible>().await
    };
    let read = async {
        loop {
            match rx.recv_value_within::<StreamFrame>(Some(IDLE), WHOLE).await {
                // Only the command's outputs: a member cannot write the
                // client's error or resize streams.
                Ok(StreamFrame::Data { stream: stream @ (STDOUT | STDERR), bytes }) => {
                    if output.send((stream, bytes)).await.is_err() {
                        return Ended::Failed("the client went away".into());
                    }
                }
                Ok(StreamFrame::Exited(code)) => return Ended::Exited(code),
                Ok(StreamFrame::Failed(why)) => return Ended::Failed(why),
                Ok(_) => continue,
                Err(e) => return Ended::Failed(format!("the stream from node {node} broke: {e}")),
            }
        }
    };
    tokio::select! {
        ended = read => ended,
        never = feed => match never {},
    }
}

/// Where a port-forwarded connection goes: the pod's namespace here, or
/// the pod's node.
#[derive(Clone)]
pub enum Target {
    /// The pod's network namespace on this node.
    Local(std::path::PathBuf),
    /// The pod runs on `node`.
    Remote {
        /// The server's streams.
        streams: Streams,
        /// The pod's node.
        node: String,
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
    },
}

/// A connection to the pod's `port`, as bytes both ways.
pub type Connection = Box<dyn Duplex>;

/// Bytes both ways.
pub trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Duplex for T {}

/// Connects to 127.0.0.1:`port` in the pod, wherever it runs; a failure
/// is the message for the client's error stream.
pub async fn connect(target: Target, port: u16) -> Result<Connection, String> {
    match target {
        Target::Local(netns) => match super::spdy_session::connect(netns, port).await {
            Ok(tcp) => Ok(Box::new(tcp)),
            Err(e) => {
                Err(format!("failed to connect to localhost:{port} inside the pod's network namespace: {e}"))
            }
        },
        Target::Remote { streams, node, namespace, name } => {
            let request = StreamRequest::PortForward { namespace, name, port };
            let stream = open(&streams, &node, request).await.map_err(|status| status.message)?;
            // A pipe whose far end the stream carries, on a task of its own.
            let (ours, theirs) = tokio::io::duplex(super::spdy_session::CHUNK);
            tokio::spawn(async move {
                let RemoteStream { mut tx, mut rx, .. } = stream;
                splice(theirs, &mut tx, &mut rx).await;
            });
            Ok(Box::new(ours))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::channel;
    use crate::cluster::streams::Dialled;

    #[tokio::test]
    async fn a_remote_command_carries_input_output_and_exit_and_a_member_writes_only_outputs() {
        let streams = Streams::default();
        let (open_tx, mut opens) = mpsc::channel(4);
        streams.attach("n1", 1, open_tx);
        // The member's dial-back, over loopback.
        let (addr, token, server) =
            channel::serve_once(
                |stream, token| async move { channel::accept(stream, &token).await.unwrap() },
            )
            .await;
        let member = tokio::spawn(async move {
            let (ticket, _) = opens.recv().await.unwrap();
            let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
            (ticket, tx.send_value(&StreamFrame::Ready).await.map(|_| ()), {
                let typed: StreamFrame = rx.recv_value().await.unwrap();
                for frame in [
                    StreamFrame::Data { stream: super::super::channel::ERROR, bytes: b"forged".to_vec() },
                    StreamFrame::Data { stream: STDOUT, bytes: b"out".to_vec() },
                    StreamFrame::Exited(3),
                ] {
                    tx.send_value(&frame).await.unwrap();
                }
                typed
            })
        });
        let hand_over = {
            let streams = streams.clone();
            async move {
                let (tx, rx) = server.await.unwrap();
                // The ticket the server gave: the member's connection is the asker's.
                loop {
                    let pending: Vec<_> = streams_tickets(&streams);
                    if let Some(ticket) = pending.first() {
                        let reply = streams.claim("n1", ticket).unwrap();
                        let (done, _) = tokio::sync::oneshot::channel();
                        let _ = reply.send(Dialled { tx, rx, done });
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            }
        };
        let request = StreamRequest::Exec {
            namespace: "default".into(),
            name: "web".into(),
            asked: super::super::exec::Asked {
                command: vec!["cat".into()],
                stdin: true,
                stdout: true,
                stderr: false,
                tty: false,
            },
        };
        let (process, ()) = futures::future::join(process(&streams, "n1", request), hand_over).await;
        let Process::Remote(remote) = process.ok().unwrap() else { panic!("a remote process") };
        let (out_tx, mut out_rx) = mpsc::channel(8);
        let (in_tx, in_rx) = mpsc::channel(8);
        in_tx.send(Input::Stdin(b"typed".to_vec())).await.unwrap();
        let ended =
            tokio::time::timeout(std::time::Duration::from_secs(10), run(remote, out_tx, in_rx)).await;
        assert_eq!(ended.unwrap(), Ended::Exited(3));
        assert_eq!(
            out_rx.recv().await,
            Some((STDOUT, b"out".to_vec())),
            "the forged error stream is dropped"
        );
        assert_eq!(out_rx.recv().await, None);
        let (_, ready, typed) = member.await.unwrap();
        ready.unwrap();
        assert!(
            matches!(typed, StreamFrame::Data { stream: 0, ref bytes } if bytes == b"typed"),
            "{typed:?}"
        );
    }

    /// The tickets `streams` has given out and not seen presented.
    fn streams_tickets(streams: &Streams) -> Vec<crate::cluster::proto::Ticket> {
        streams.pending_tickets()
    }
}
