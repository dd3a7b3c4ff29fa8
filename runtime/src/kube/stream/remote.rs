//! Streams into the pods of a cluster's members, on the server: an exec or
//! attach whose process the pod's node runs (its stdio, resizes and end
//! carried by the stream the node opened, `cluster::streams`), and a
//! port-forwarded connection the node makes in the pod.

use tokio::sync::mpsc;

use super::channel::Ended;
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
                Ok(StreamFrame::Data { stream, bytes }) => {
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
