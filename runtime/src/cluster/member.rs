//! A member's side of the cluster channel: it joins, receives what to run,
//! and reports back every [`HEARTBEAT`]. When the server is unreachable, or
//! refuses a member that has run before (a failed save there, another
//! version during an upgrade), the member keeps serving with its last known
//! state and asks again by itself.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::channel;
use super::proto::{Report, ToMember, Welcome, hello_node};
use super::token::Token;
use crate::desired::{NodeDesired, PodReport};

/// How often a member reports, unchanged or not: its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// Where and who a member is.
#[derive(Debug, Clone)]
pub struct MemberLink {
    /// The server's cluster API.
    pub server: SocketAddr,
    /// The cluster token.
    pub token: Token,
    /// This node's name.
    pub name: String,
    /// This node's address between nodes.
    pub address: Ipv4Addr,
}

/// What the link tells the event loop.
pub enum FromServer {
    /// Admitted (again).
    Welcome(Welcome),
    /// Refused, with the reason. Before the first welcome the agent stops;
    /// after it, the agent keeps serving its last state while the link retries.
    Refused(String),
    /// What to run now.
    Desired(NodeDesired),
}

/// What a member remembers to start without its server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cache {
    /// The last welcome.
    pub welcome: Option<Welcome>,
    /// The last desired state.
    pub desired: NodeDesired,
}

impl Cache {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("member.json")
    }

    /// Reads the cache (empty when there is none or it does not parse).
    pub fn load(data_dir: &Path) -> Cache {
        std::fs::read(Cache::path(data_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Saves the cache.
    pub fn save(&self, data_dir: &Path) {
        if let Ok(text) = serde_json::to_string(self) {
            let _ = super::token::write_private(&Cache::path(data_dir), &text);
        }
    }
}

/// Keeps the member connected: joins, forwards what the server sends, and
/// sends the latest report every heartbeat and whenever it changes.
pub async fn run(
    link: MemberLink,
    to_loop: mpsc::Sender<FromServer>,
    mut reports: watch::Receiver<PodReport>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut welcomed = false;
    loop {
        let wait = match session(&link, &to_loop, &mut reports, &mut welcomed).await {
            Ok(()) => return,
            // A server that hangs up during the handshake does not hold our
            // token: the event loop decides whether that is final.
            Err(e) if !welcomed && handshake_refused(&e) => {
                let reason = format!(
                    "the server at {} ended the handshake: the token in --token-file is not this cluster's",
                    link.server
                );
                let _ = to_loop.send(FromServer::Refused(reason)).await;
                REFUSED_RETRY
            }
            // The loop was told; ask again later (the server's disk may have
            // room again, or it may run a matching version by then).
            Err(e) if e.to_string().starts_with(REFUSED) => REFUSED_RETRY,
            Err(e) => {
                tracing::warn!(server = %link.server, "cluster link down: {e}; retrying in {backoff:?}");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                wait
            }
        };
        if to_loop.is_closed() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// How long a refused member waits before asking again.
const REFUSED_RETRY: Duration = Duration::from_secs(5);
/// How a session's error starts when the server refused the node.
const REFUSED: &str = "refused: ";

fn handshake_refused(e: &std::io::Error) -> bool {
    e.to_string().starts_with("handshake: ")
}

/// One connection; Ok(()) when the event loop has gone away.
async fn session(
    link: &MemberLink,
    to_loop: &mpsc::Sender<FromServer>,
    reports: &mut watch::Receiver<PodReport>,
    welcomed: &mut bool,
) -> std::io::Result<()> {
    // Until the server answers our Hello, a connection it closes means it
    // refused the handshake.
    let refused = |e: std::io::Error| std::io::Error::new(e.kind(), format!("handshake: {e}"));
    let (mut tx, mut rx) = channel::connect(link.server, &link.token).await.map_err(|e| {
        if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) {
            refused(e)
        } else {
            e
        }
    })?;
    tx.send_value(&hello_node(&link.name, link.address)).await.map_err(refused)?;
    let first = rx.recv_value::<ToMember>().await.map_err(refused)?;
    match first {
        ToMember::Welcome(welcome) => {
            *welcomed = true;
            if to_loop.send(FromServer::Welcome(welcome)).await.is_err() {
                return Ok(());
            }
        }
        ToMember::Refused(reason) => {
            if to_loop.send(FromServer::Refused(reason.clone())).await.is_err() {
                return Ok(());
            }
            return Err(std::io::Error::other(format!("{REFUSED}{reason}")));
        }
        ToMember::Desired(_) => return Err(std::io::Error::other("server sent state before welcoming us")),
    }
    tracing::info!(server = %link.server, "joined the cluster");
    // The reader runs on its own task: a read cut short by select! would
    // lose bytes of the encrypted stream.
    let forward = to_loop.clone();
    let mut reader = tokio::spawn(async move {
        loop {
            let message = match rx.recv_value::<ToMember>().await {
                Ok(message) => message,
                Err(e) => return Err(e),
            };
            let item = match message {
                ToMember::Desired(desired) => FromServer::Desired(desired),
                ToMember::Refused(reason) => FromServer::Refused(reason),
                ToMember::Welcome(_) => continue,
            };
            if forward.send(item).await.is_err() {
                return Ok(());
            }
        }
    });
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let result = loop {
        tokio::select! {
            done = &mut reader => break done.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            changed = reports.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                let report = reports.borrow_and_update().clone();
                if let Err(e) = tx.send_value(&Report(report)).await {
                    break Err(e);
                }
            }
            _ = heartbeat.tick() => {
                let report = reports.borrow().clone();
                if let Err(e) = tx.send_value(&Report(report)).await {
                    break Err(e);
                }
            }
        }
    };
    reader.abort();
    result
}
