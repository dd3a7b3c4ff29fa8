//! The server's side of the cluster channel: members join and report, remote
//! CLIs send requests. Connections are turned into events for the agent's
//! event loop, which owns the control plane and hands them to the [`Hub`].

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::channel;
use super::proto::{Hello, Report, ToMember, Welcome};
use super::token::Token;
use crate::api::server::{Answer, Call};
use crate::api::{PROTOCOL_VERSION, Request, Response};
use crate::control::{ControlError, ControlPlane, Now};
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
        /// Connection id: reports of a connection that was replaced are ignored.
        conn: u64,
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

/// The server's side of its members, in the agent's event loop: who is
/// connected, what each was last sent, and the events not handled yet.
pub struct Hub {
    events: mpsc::Receiver<ClusterEvent>,
    /// Events taken out of turn by [`Hub::tick`] (joins and leaves keep
    /// their order behind it).
    deferred: VecDeque<ClusterEvent>,
    members: BTreeMap<String, Member>,
}

/// A connected member, and what it was last sent.
struct Member {
    conn: u64,
    desired: mpsc::Sender<NodeDesired>,
    sent: Option<NodeDesired>,
}

/// A join admitted in memory; it is answered once the change is saved.
pub struct PendingJoin {
    name: String,
    conn: u64,
    reply: oneshot::Sender<Result<Welcome, String>>,
    desired: mpsc::Sender<NodeDesired>,
    welcome: Result<Welcome, ControlError>,
}

impl Hub {
    /// A hub taking the events of [`serve`]'s connections.
    pub fn new(events: mpsc::Receiver<ClusterEvent>) -> Hub {
        Hub { events, deferred: VecDeque::new(), members: BTreeMap::new() }
    }

    /// The next event (cancel-safe; pending forever once every sender is gone).
    pub async fn recv(&mut self) -> Option<ClusterEvent> {
        match self.deferred.pop_front() {
            Some(event) => Some(event),
            None => self.events.recv().await,
        }
    }

    /// The next event if one is waiting (for a caller without a runtime).
    pub fn try_next(&mut self) -> Option<ClusterEvent> {
        self.deferred.pop_front().or_else(|| self.events.try_recv().ok())
    }

    /// Handles one event at `now`. A join comes back: save the control
    /// plane's change, then answer it with [`Hub::finish_join`].
    pub fn on_event(&mut self, cp: &mut ControlPlane, now: Now, event: ClusterEvent) -> Option<PendingJoin> {
        match event {
            ClusterEvent::Join { name, address, conn, reply, desired } => {
                let connected = self.members.get(&name).is_some_and(|m| m.conn != conn);
                let welcome = cp
                    .register(now, &name, address, connected)
                    .map(|subnet| Welcome { subnet, settings: cp.settings() });
                return Some(PendingJoin { name, conn, reply, desired, welcome });
            }
            ClusterEvent::Report { name, conn, report } => {
                if self.members.get(&name).is_some_and(|m| m.conn == conn) {
                    cp.heartbeat(now, &name);
                    cp.report(&name, report);
                }
            }
            ClusterEvent::Left { name, conn } => {
                if self.members.get(&name).is_some_and(|m| m.conn == conn) {
                    self.members.remove(&name);
                }
            }
        }
        None
    }

    /// Answers a join: welcomed when admitted and saved, else refused with
    /// the reason.
    pub fn finish_join(&mut self, join: PendingJoin, saved: Result<(), ControlError>) {
        let PendingJoin { name, conn, reply, desired, welcome } = join;
        let answer = welcome.and_then(|welcome| saved.map(|()| welcome));
        match &answer {
            Ok(_) => {
                self.members.insert(name, Member { conn, desired, sent: None });
            }
            Err(e) => tracing::warn!(node = %name, "refused a node: {e}"),
        }
        let _ = reply.send(answer.map_err(|e| e.to_string()));
    }

    /// The periodic check at `now`: every report already received counts
    /// first (a report queued behind a slow turn is a heartbeat all the
    /// same), then members silent too long go NotReady.
    pub fn tick(&mut self, cp: &mut ControlPlane, now: Now) {
        while let Ok(event) = self.events.try_recv() {
            match event {
                report @ ClusterEvent::Report { .. } => {
                    self.on_event(cp, now, report);
                }
                other => self.deferred.push_back(other),
            }
        }
        cp.check_heartbeats(now);
    }

    /// Sends each member its desired state when it changed.
    pub fn push(&mut self, cp: &ControlPlane) {
        for (name, member) in self.members.iter_mut() {
            let desired = cp.desired_for(name);
            if member.sent.as_ref() != Some(&desired) && member.desired.try_send(desired.clone()).is_ok() {
                member.sent = Some(desired);
            }
        }
    }
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
                    let _ = events.send(ClusterEvent::Report { name: name.clone(), conn, report }).await;
                }
            }
            .await;
            writer.abort();
            let _ = events.send(ClusterEvent::Left { name, conn }).await;
            result
        }
    }
}
