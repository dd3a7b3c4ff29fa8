//! The server's side of the cluster channel: members join and report, remote
//! CLIs send requests. Connections are turned into events for the agent's
//! event loop, which owns the control plane.

use std::net::Ipv4Addr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::channel;
use super::proto::{Hello, Report, ToMember, Welcome};
use super::token::Token;
use crate::api::server::{Answer, Call};
use crate::api::{PROTOCOL_VERSION, Request, Response};
use crate::desired::{NodeDesired, PodReport};
use crate::listeners::accept;
use crate::listeners::limits::{Caps, Gate, Listener};

/// What a member connection tells the event loop.
pub enum ClusterEvent {
    /// A node asks to join (or rejoin); `desired` is where its NodeDesired go.
    Join {
        /// Node name.
        name: String,
        /// Its address between nodes.
        address: Ipv4Addr,
        /// Connection id, to tell a stale `Left` from a current one.
        conn: u64,
        /// The answer to the node.
        reply: oneshot::Sender<Result<Welcome, String>>,
        /// Where to send the node what it must run.
        desired: mpsc::Sender<NodeDesired>,
    },
    /// A node's report (and heartbeat).
    Report {
        /// Node name.
        name: String,
        /// Its pods' status.
        report: PodReport,
    },
    /// A node's connection ended.
    Left {
        /// Node name.
        name: String,
        /// Connection id.
        conn: u64,
    },
}

/// Accepts cluster connections until the agent stops, at most `caps` at
/// once (the shared accept loop: caps, keep-alive, backoff on errors).
pub async fn serve(
    listener: TcpListener,
    token: Token,
    events: mpsc::Sender<ClusterEvent>,
    calls: mpsc::Sender<Call>,
    caps: Caps,
) {
    let mut next_conn = 0u64;
    let gate = Gate::new(Listener::ClusterApi, caps);
    accept::serve(listener, gate, move |stream, permit| {
        next_conn += 1;
        let (token, events, calls, conn) = (token.clone(), events.clone(), calls.clone(), next_conn);
        async move {
            let peer = permit.client();
            if let Err(e) = connection(stream, token, events, calls, conn).await {
                tracing::debug!(%peer, "cluster connection ended: {e}");
            }
            drop(permit);
        }
    })
    .await
}

async fn connection(
    stream: TcpStream,
    token: Token,
    events: mpsc::Sender<ClusterEvent>,
    calls: mpsc::Sender<Call>,
    conn: u64,
) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    let (mut tx, mut rx) = channel::accept(stream, &token).await.inspect_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            tracing::warn!(%peer, "refused a cluster connection without this cluster's token");
        }
    })?;
    let hello: Hello = rx.recv_value().await?;
    if hello.version() != PROTOCOL_VERSION {
        let text = format!(
            "the server speaks control protocol v{PROTOCOL_VERSION} and this podnet v{}: use matching podnet binaries",
            hello.version()
        );
        return match hello {
            Hello::Cli { .. } => tx.send_value(&Err::<Response, String>(text)).await,
            Hello::Node { .. } => tx.send_value(&ToMember::Refused(text)).await,
        };
    }
    match hello {
        Hello::Cli { .. } => loop {
            let request: Request = rx.recv_value().await?;
            let answer = match request {
                Request::Capture { .. } => Err("capture works only on the pod's node".to_string()),
                request => {
                    let (reply_tx, reply_rx) = oneshot::channel();
                    let _ = calls.send((request, reply_tx)).await;
                    match reply_rx.await {
                        Ok(Ok(Answer::Once(response))) => Ok(*response),
                        Ok(Ok(Answer::Stream(_))) => Err("streams work only on the pod's node".to_string()),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err("the server is shutting down".to_string()),
                    }
                }
            };
            tx.send_value(&answer).await?;
        },
        Hello::Node { name, address, .. } => {
            let (desired_tx, mut desired_rx) = mpsc::channel(8);
            let (reply_tx, reply_rx) = oneshot::channel();
            let join = ClusterEvent::Join {
                name: name.clone(),
                address,
                conn,
                reply: reply_tx,
                desired: desired_tx,
            };
            if events.send(join).await.is_err() {
                return Ok(());
            }
            match reply_rx.await {
                Ok(Ok(welcome)) => tx.send_value(&ToMember::Welcome(welcome)).await?,
                Ok(Err(reason)) => return tx.send_value(&ToMember::Refused(reason)).await,
                Err(_) => return Ok(()),
            }
            let writer = tokio::spawn(async move {
                while let Some(desired) = desired_rx.recv().await {
                    if tx.send_value(&ToMember::Desired(desired)).await.is_err() {
                        break;
                    }
                }
            });
            let result = async {
                loop {
                    let Report(report) = rx.recv_value().await?;
                    let _ = events.send(ClusterEvent::Report { name: name.clone(), report }).await;
                }
            }
            .await;
            writer.abort();
            let _ = events.send(ClusterEvent::Left { name, conn }).await;
            result
        }
    }
}
