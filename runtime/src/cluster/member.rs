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

use super::password::NodePassword;
use super::proto::{Report, ToMember, Welcome, hello_node};
use super::serve_stream::Served;
use super::token::Token;
use super::{channel, server};
use crate::desired::{NodeDesired, NodeReport};

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
    /// This node's password, pinned to its name by the server.
    pub password: NodePassword,
    /// Longest a message from or to the server may take once it started
    /// (the board's `limits.request_timeout_ms`): a server that trickles
    /// or stops reading is left and asked again.
    pub message_timeout: Duration,
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
    mut reports: watch::Receiver<NodeReport>,
    served: Served,
) {
    let mut backoff = Duration::from_millis(200);
    let mut welcomed = false;
    loop {
        let wait = match session(&link, &to_loop, &mut reports, &mut welcomed, &served).await {
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
    reports: &mut watch::Receiver<NodeReport>,
    welcomed: &mut bool,
    served: &Served,
) -> std::io::Result<()> {
    // Until the server answers our Hello, a connection it closes means it
    // refused the handshake.
    let closed = |e: std::io::Error| {
        if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) {
            std::io::Error::new(e.kind(), format!("handshake: {e}"))
        } else {
            e
        }
    };
    let whole = link.message_timeout;
    let (mut tx, mut rx) = channel::connect(link.server, &link.token).await.map_err(closed)?;
    tx.send_value_within(&hello_node(&link.name, link.address, &link.password), whole)
        .await
        .map_err(closed)?;
    // The server answers once it saved the join: a server that does not
    // answer at all is left like a silent member.
    let first =
        rx.recv_value_within::<ToMember>(Some(server::SILENCE), whole).await.map_err(|e| closed(e.into()))?;
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
        ToMember::Desired(_) | ToMember::Open { .. } => {
            return Err(std::io::Error::other("server sent state before welcoming us"));
        }
    }
    tracing::info!(server = %link.server, "joined the cluster");
    // The reader runs on its own task: a read cut short by select! would
    // lose bytes of the encrypted stream.
    let forward = to_loop.clone();
    let (served, opener) = (served.clone(), link.clone());
    let mut reader = tokio::spawn(async move {
        loop {
            // The server speaks only when something changed, so no idle
            // limit; a message it started must arrive whole.
            let message = rx.recv_value_within::<ToMember>(None, whole).await?;
            let item = match message {
                ToMember::Desired(desired) => FromServer::Desired(desired),
                ToMember::Refused(reason) => FromServer::Refused(reason),
                ToMember::Welcome(_) => continue,
                // Only the server this node joined asks, over this channel.
                ToMember::Open { ticket, request } => {
                    served.open(&opener, ticket, *request);
                    continue;
                }
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
                if let Err(e) = tx.send_value_within(&Report(report), whole).await {
                    break Err(e);
                }
            }
            _ = heartbeat.tick() => {
                let report = reports.borrow().clone();
                if let Err(e) = tx.send_value_within(&Report(report), whole).await {
                    break Err(e);
                }
            }
        }
    };
    reader.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::proto::{ClusterSettings, Hello};
    use crate::config::Cidr;

    fn welcome() -> Welcome {
        let settings = ClusterSettings {
            cluster_cidr: Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16),
            service_cidr: Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 12),
            cluster_dns: Ipv4Addr::new(10, 96, 0, 10),
            cluster_domain: "cluster.local".into(),
        };
        Welcome { subnet: Cidr::new(Ipv4Addr::new(10, 42, 1, 0), 24), settings }
    }

    #[tokio::test]
    async fn a_server_that_trickles_is_left_and_asked_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let token = Token::generate().unwrap();
        let link = MemberLink {
            server: listener.local_addr().unwrap(),
            token: token.clone(),
            name: "n1".into(),
            address: Ipv4Addr::new(192, 168, 1, 2),
            password: NodePassword::fixed(1),
            message_timeout: Duration::from_millis(300),
        };
        let (to_loop, mut from_link) = mpsc::channel(8);
        let (_reports, reports_rx) = watch::channel(NodeReport::default());
        let (calls, _) = mpsc::channel(1);
        let served = Served::new(crate::kube::agent::Agent::new(calls, Duration::from_secs(1)));
        tokio::spawn(run(link, to_loop, reports_rx, served));
        let ends = |work| tokio::time::timeout(Duration::from_secs(10), work);

        // The server welcomes the member, then starts a message and stalls,
        // keeping the connection open.
        let (stream, _) = ends(listener.accept()).await.expect("the member connects").unwrap();
        let (mut tx, mut rx) = channel::accept(stream, &token).await.unwrap();
        assert!(matches!(rx.recv_value::<Hello>().await.unwrap(), Hello::Node { .. }));
        tx.send_value(&ToMember::Welcome(welcome())).await.unwrap();
        assert!(matches!(from_link.recv().await, Some(FromServer::Welcome(_))));
        let desired = postcard::to_stdvec(&ToMember::Desired(NodeDesired::default())).unwrap();
        tx.send_part(&desired, 4).await.unwrap();

        let again = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
        assert!(again.is_ok(), "the member must leave a stalled server and connect again");
        drop((tx, rx));
    }
}
