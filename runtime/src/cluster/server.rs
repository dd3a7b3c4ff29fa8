//! The server's side of the cluster channel: members join and report, remote
//! CLIs send requests. Connections are turned into events for the agent's
//! event loop, which owns the control plane and hands them to the [`Hub`].

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::channel::{self, RecvError};
use super::proto::{Hello, Report, ToMember, Welcome};
use super::token::Token;
use crate::api::server::{Answer, Call};
use crate::api::{PROTOCOL_VERSION, Request, Response};
use crate::control::{ControlError, ControlPlane, HEARTBEAT_TIMEOUT, Now};
use crate::desired::{NodeDesired, PodReport};
use crate::listeners::accept;
use crate::listeners::limits::{Caps, Gate, Listener, Permit, Reason};

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

/// How long a peer may send nothing once its channel is open: three times
/// the control plane's heartbeat timeout (members report every 2 s), so a
/// member that went silent has been NotReady for a while when it is cut.
pub const SILENCE: Duration = Duration::from_secs(3 * HEARTBEAT_TIMEOUT.as_secs());

/// Accepts cluster connections until the agent stops, at most `caps` at
/// once (the shared accept loop: caps, keep-alive, backoff on errors).
pub async fn serve(
    listener: TcpListener,
    token: Token,
    events: mpsc::Sender<ClusterEvent>,
    calls: mpsc::Sender<Call>,
    caps: Caps,
) {
    serve_gate(listener, token, events, calls, Gate::new(Listener::ClusterApi, caps), SILENCE).await
}

/// [`serve`] through `gate`, cutting peers silent for `silence`.
async fn serve_gate(
    listener: TcpListener,
    token: Token,
    events: mpsc::Sender<ClusterEvent>,
    calls: mpsc::Sender<Call>,
    gate: Arc<Gate>,
    silence: Duration,
) {
    let mut next_conn = 0u64;
    accept::serve(listener, gate, move |stream, permit| {
        next_conn += 1;
        let (token, events, calls, conn) = (token.clone(), events.clone(), calls.clone(), next_conn);
        async move {
            let peer = permit.client();
            if let Err(e) = connection(stream, &permit, token, events, calls, conn, silence).await {
                tracing::debug!(%peer, "cluster connection ended: {e}");
            }
            drop(permit);
        }
    })
    .await
}

/// The listener's reason for a failed receive, if it is a refusal.
fn refusal(e: &RecvError) -> Option<Reason> {
    match e {
        RecvError::Idle(_) => Some(Reason::IdleTimeout),
        RecvError::Timeout(_) => Some(Reason::RequestTimeout),
        RecvError::TooLarge(_) => Some(Reason::OversizedMessage),
        RecvError::Trailing | RecvError::Undecryptable(_) | RecvError::Decode(_) => {
            Some(Reason::MalformedMessage)
        }
        RecvError::Io(_) => None,
    }
}

/// One connection: a peer proves the token, says hello, and is served
/// until it leaves. Once the channel is open every message must start
/// within `silence` and arrive (or leave) whole within the request timeout;
/// each refusal is counted on the cluster API's listener by reason.
async fn connection(
    stream: TcpStream,
    permit: &Permit,
    token: Token,
    events: mpsc::Sender<ClusterEvent>,
    calls: mpsc::Sender<Call>,
    conn: u64,
    silence: Duration,
) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    let whole = permit.caps().request_timeout;
    let (mut tx, mut rx) = channel::accept(stream, &token).await.inspect_err(|e| {
        permit.count(Reason::HandshakeFailed);
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            tracing::warn!(%peer, "refused a cluster connection without this cluster's token");
        }
    })?;
    let counted = |e: RecvError| {
        if let Some(reason) = refusal(&e) {
            permit.count(reason);
        }
        std::io::Error::from(e)
    };
    let sent = |result: std::io::Result<()>| {
        if result.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
            permit.count(Reason::RequestTimeout);
        }
        result
    };
    // A peer holding the token says hello right away.
    let hello: Hello = rx.recv_value_within(Some(whole), whole).await.map_err(counted)?;
    if hello.version() != PROTOCOL_VERSION {
        permit.count(Reason::VersionMismatch);
        let text = format!(
            "the server speaks control protocol v{PROTOCOL_VERSION} and this podnet v{}: use matching podnet binaries",
            hello.version()
        );
        return sent(match hello {
            Hello::Cli { .. } => tx.send_value_within(&Err::<Response, String>(text), whole).await,
            Hello::Node { .. } => tx.send_value_within(&ToMember::Refused(text), whole).await,
        });
    }
    match hello {
        Hello::Cli { .. } => loop {
            let request: Request = rx.recv_value_within(Some(silence), whole).await.map_err(counted)?;
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
            sent(tx.send_value_within(&answer, whole).await)?;
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
                Ok(Ok(welcome)) => sent(tx.send_value_within(&ToMember::Welcome(welcome), whole).await)?,
                Ok(Err(reason)) => {
                    permit.count(Reason::JoinRefused);
                    return sent(tx.send_value_within(&ToMember::Refused(reason), whole).await);
                }
                Err(_) => return Ok(()),
            }
            // A member that stops reading is cut like one that stops sending.
            let mut writer = tokio::spawn(async move {
                while let Some(desired) = desired_rx.recv().await {
                    tx.send_value_within(&ToMember::Desired(desired), whole).await?;
                }
                Ok::<(), std::io::Error>(())
            });
            let reader = async {
                loop {
                    let Report(report) = rx.recv_value_within(Some(silence), whole).await.map_err(counted)?;
                    let _ = events.send(ClusterEvent::Report { name: name.clone(), conn, report }).await;
                }
            };
            // Either half ending ends the connection (a cut read loses
            // nothing: the connection closes).
            let result: std::io::Result<()> = tokio::select! {
                result = reader => result,
                written = &mut writer => sent(written.unwrap_or_else(|e| Err(std::io::Error::other(e)))),
            };
            writer.abort();
            let _ = events.send(ClusterEvent::Left { name, conn }).await;
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::proto::{ClusterSettings, hello_node};
    use crate::config::Cidr;
    use crate::listeners::limits::Counters;

    /// A server on loopback counting into its own counters, cutting
    /// silent peers after 300 ms and stalled messages after 300 ms.
    async fn server() -> (std::net::SocketAddr, Token, &'static Counters, mpsc::Receiver<ClusterEvent>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = Token::generate().unwrap();
        let counters: &'static Counters = Box::leak(Box::new(Counters::new()));
        let caps = Caps { per_client: 16, total: 16, request_timeout: Duration::from_millis(300) };
        let gate = Gate::with_counters(Listener::ClusterApi, caps, counters);
        let (events_tx, events_rx) = mpsc::channel(8);
        let (calls_tx, _calls_rx) = mpsc::channel(8);
        let silence = Duration::from_millis(300);
        tokio::spawn(serve_gate(listener, token.clone(), events_tx, calls_tx, gate, silence));
        (addr, token, counters, events_rx)
    }

    /// Bounds what would hang without the limit under test.
    async fn ends<T>(work: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), work).await.expect("the server must not hang")
    }

    /// Waits until `reason` was counted `n` times (the count lands on the
    /// server's task, after the client saw the connection end).
    async fn counted(counters: &Counters, reason: Reason, n: u64) {
        ends(async {
            while counters.get(reason) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(counters.get(reason), n, "{}", reason.name());
    }

    fn welcome() -> Welcome {
        let cidr = Cidr::new(Ipv4Addr::new(10, 42, 1, 0), 24);
        let settings = ClusterSettings {
            cluster_cidr: Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16),
            service_cidr: Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 12),
            cluster_dns: Ipv4Addr::new(10, 96, 0, 10),
            cluster_domain: "cluster.local".into(),
        };
        Welcome { subnet: cidr, settings }
    }

    #[tokio::test]
    async fn refused_peers_are_counted_by_reason_and_a_stalled_hello_is_cut() {
        let (addr, token, counters, _events) = server().await;

        assert!(channel::connect(addr, &Token::generate().unwrap()).await.is_err());
        counted(counters, Reason::HandshakeFailed, 1).await;

        // A token holder that stops half way through its hello.
        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        let hello = postcard::to_stdvec(&Hello::Cli { version: PROTOCOL_VERSION }).unwrap();
        tx.send_part(&hello, 5).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up");
        counted(counters, Reason::RequestTimeout, 1).await;

        // One that says nothing at all.
        let (_tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up");
        counted(counters, Reason::IdleTimeout, 1).await;

        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send_value(&Hello::Cli { version: PROTOCOL_VERSION + 1 }).await.unwrap();
        let answer: Result<Response, String> = ends(rx.recv_value()).await.unwrap();
        assert!(answer.unwrap_err().contains("use matching podnet binaries"));
        counted(counters, Reason::VersionMismatch, 1).await;

        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send(&[0xff, 0xff, 0xff]).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up");
        counted(counters, Reason::MalformedMessage, 1).await;
    }

    #[tokio::test]
    async fn a_member_that_goes_silent_is_cut_and_a_refused_join_is_counted() {
        let (addr, token, counters, mut events) = server().await;
        let (left_tx, mut left) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // A member's connection lives as long as the hub holds its sender.
            let mut members = Vec::new();
            while let Some(event) = events.recv().await {
                match event {
                    ClusterEvent::Join { name, reply, desired, .. } => {
                        members.push(desired);
                        let _ =
                            reply.send(if name == "n1" { Ok(welcome()) } else { Err("name taken".into()) });
                    }
                    ClusterEvent::Left { name, .. } => {
                        let _ = left_tx.send(name);
                    }
                    ClusterEvent::Report { .. } => {}
                }
            }
        });

        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send_value(&hello_node("n1", Ipv4Addr::new(192, 168, 1, 2))).await.unwrap();
        assert!(matches!(ends(rx.recv_value::<ToMember>()).await.unwrap(), ToMember::Welcome(_)));
        // It reports once, then goes silent.
        tx.send_value(&Report(Vec::new())).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up on a silent member");
        counted(counters, Reason::IdleTimeout, 1).await;
        assert_eq!(ends(left.recv()).await.as_deref(), Some("n1"), "the hub hears it left");

        // A joined member that starts a report and stalls.
        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send_value(&hello_node("n1", Ipv4Addr::new(192, 168, 1, 2))).await.unwrap();
        assert!(matches!(ends(rx.recv_value::<ToMember>()).await.unwrap(), ToMember::Welcome(_)));
        tx.send_part(&postcard::to_stdvec(&Report(Vec::new())).unwrap(), 3).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up on a stalled report");
        counted(counters, Reason::RequestTimeout, 1).await;
        assert_eq!(ends(left.recv()).await.as_deref(), Some("n1"));

        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send_value(&hello_node("n2", Ipv4Addr::new(192, 168, 1, 3))).await.unwrap();
        let refused = ends(rx.recv_value::<ToMember>()).await;
        assert!(matches!(refused, Ok(ToMember::Refused(ref why)) if why == "name taken"), "{refused:?}");
        counted(counters, Reason::JoinRefused, 1).await;
    }
}
