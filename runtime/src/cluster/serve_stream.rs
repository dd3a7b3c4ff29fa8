//! A member's side of a stream into one of its pods (see [`super::streams`]):
//! asked by the server over the member's connection, it dials back with
//! the ticket and serves the stream from this node, through its own agent
//! (the same requests the Kubernetes API sends on the server): the command
//! an exec runs, the container's output and input for an attach, one
//! connection to the pod's port, or a pod request's answers.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use super::channel;
use super::member::MemberLink;
use super::proto::{Hello, StreamFrame, StreamRequest, Ticket};
use super::streams::{IDLE, MAX_PER_NODE, WHOLE, splice};
use crate::api::server::Answer;
use crate::api::{PROTOCOL_VERSION, Response};
use crate::kube::agent::{Agent, AgentRefusal};
use crate::kube::stream::channel::{Ended, STDIN, Size};
use crate::kube::stream::exec::{self, Input, Process};

/// The member's streams: its agent and a bound on how many run at once.
#[derive(Clone)]
pub struct Served {
    agent: Agent,
    slots: Arc<Semaphore>,
}

impl Served {
    /// Streams served through `agent`.
    pub fn new(agent: Agent) -> Served {
        Served { agent, slots: Arc::new(Semaphore::new(MAX_PER_NODE)) }
    }

    /// Serves the stream the server asked for, on a task of its own.
    pub fn open(&self, link: &MemberLink, ticket: Ticket, request: StreamRequest) {
        // The server bounds its streams per node; this bound holds even
        // against a server that does not.
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!("refused a stream: {MAX_PER_NODE} already run");
            return;
        };
        let (link, agent) = (link.clone(), self.agent.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(&link, &agent, ticket, request).await {
                tracing::debug!("a stream for the server ended: {e}");
            }
            drop(slot);
        });
    }
}

/// Dials the server with `ticket` and serves `request` until it ends.
async fn serve(
    link: &MemberLink,
    agent: &Agent,
    ticket: Ticket,
    request: StreamRequest,
) -> std::io::Result<()> {
    let (mut tx, mut rx) = channel::connect(link.server, &link.token).await?;
    let hello = Hello::Stream {
        version: PROTOCOL_VERSION,
        name: link.name.clone(),
        password: link.password.clone(),
        ticket,
    };
    tx.send_value_within(&hello, WHOLE).await?;
    let refused = |e: AgentRefusal| StreamFrame::Refused(e.to_string());
    match request {
        StreamRequest::Pod(request) => match agent.ask(*request).await {
            Err(e) => tx.send_value_within(&refused(e), WHOLE).await,
            Ok(Answer::Once(response)) => tx.send_value_within(&StreamFrame::Once(*response), WHOLE).await,
            Ok(Answer::Stream(items)) => {
                tx.send_value_within(&StreamFrame::Ready, WHOLE).await?;
                items_to(items, &mut tx, &mut rx).await
            }
            Ok(Answer::Session { .. }) => {
                let why = "a session is not a pod request".to_string();
                tx.send_value_within(&StreamFrame::Refused(why), WHOLE).await
            }
        },
        StreamRequest::Exec { namespace, name, asked } => {
            let process = match exec::target(agent, &namespace, &name).await {
                Err(status) => Err(status.message),
                Ok(container) => exec::spawn(&container, &asked).map_err(|e| e.to_string()),
            };
            run(process, &mut tx, &mut rx).await
        }
        StreamRequest::Attach { namespace, name, asked } => {
            let process = crate::kube::stream::attach::process(agent, &namespace, &name, &asked)
                .await
                .map_err(|status| status.message);
            run(process, &mut tx, &mut rx).await
        }
        StreamRequest::PortForward { namespace, name, port } => {
            let connected = match crate::kube::stream::port_forward_target(agent, &namespace, &name).await {
                Err(status) => Err(status.message),
                Ok(netns) => crate::kube::stream::spdy_session::connect(netns, port).await.map_err(|e| {
                    format!(
                        "error forwarding port {port} to pod {namespace}/{name}: failed to connect to localhost:{port} inside the pod's network namespace: {e}"
                    )
                }),
            };
            match connected {
                Err(why) => tx.send_value_within(&StreamFrame::Refused(why), WHOLE).await,
                Ok(tcp) => {
                    tx.send_value_within(&StreamFrame::Ready, WHOLE).await?;
                    splice(tcp, &mut tx, &mut rx).await;
                    Ok(())
                }
            }
        }
    }
}

/// Sends a streamed answer's items until it ends or the server leaves.
async fn items_to(
    mut items: mpsc::Receiver<Response>,
    tx: &mut channel::Sender,
    rx: &mut channel::Receiver,
) -> std::io::Result<()> {
    let send = async {
        while let Some(item) = items.recv().await {
            tx.send_value_within(&StreamFrame::Item(item), WHOLE).await?;
        }
        Ok(())
    };
    // The server sends nothing on such a stream: anything it does, its
    // close included, ends it.
    tokio::select! {
        sent = send => sent,
        _ = rx.recv_within(Some(IDLE), WHOLE) => Ok(()),
    }
}

/// Runs an exec's or an attach's process for the server: its input from
/// the stream, its output to it, its end last. The server leaving ends it
/// (the process is dropped, which stops the command).
async fn run(
    process: Result<Process, String>,
    tx: &mut channel::Sender,
    rx: &mut channel::Receiver,
) -> std::io::Result<()> {
    let process = match process {
        Err(why) => return tx.send_value_within(&StreamFrame::Refused(why), WHOLE).await,
        Ok(process) => process,
    };
    tx.send_value_within(&StreamFrame::Ready, WHOLE).await?;
    let (out_tx, mut out_rx) = mpsc::channel::<exec::Output>(8);
    let (in_tx, in_rx) = mpsc::channel(8);
    let read = async {
        loop {
            let input = match rx.recv_value_within::<StreamFrame>(Some(IDLE), WHOLE).await {
                Ok(StreamFrame::Data { stream: STDIN, bytes }) => Input::Stdin(bytes),
                Ok(StreamFrame::Close { stream: STDIN }) => Input::StdinClosed,
                Ok(StreamFrame::Resize { width, height }) => Input::Resize(Size { width, height }),
                Ok(_) => continue,
                Err(_) => return,
            };
            if in_tx.send(input).await.is_err() {
                return;
            }
        }
    };
    let session = async {
        let write = async {
            while let Some((stream, bytes)) = out_rx.recv().await {
                tx.send_value_within(&StreamFrame::Data { stream, bytes }, WHOLE).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let (ended, written) = futures::future::join(exec::run(process, out_tx, in_rx), write).await;
        written?;
        let last = match ended {
            Ended::Exited(code) => StreamFrame::Exited(code),
            Ended::Failed(why) => StreamFrame::Failed(why),
        };
        tx.send_value_within(&last, WHOLE).await
    };
    tokio::select! {
        sent = session => sent,
        // The server left: dropping the session stops the command.
        () = read => Ok(()),
    }
}
