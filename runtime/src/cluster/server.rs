//! The server's side of the cluster channel: members join and report, remote
//! CLIs send requests. Connections are turned into events for the agent's
//! event loop, which owns the control plane and hands them to the [`Hub`].

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::channel::{self, RecvError};
use super::password::{NodePassword, PasswordDigest};
use super::proto::{Hello, Report, StreamFrame, ToMember, Welcome};
use super::token::Token;
use crate::api::server::{Answer, Call};
use crate::api::{PROTOCOL_VERSION, Request, Response};
use crate::control::{ControlError, ControlPlane, HEARTBEAT_TIMEOUT, Now};
use crate::desired::{NodeDesired, NodeReport};
use crate::kube::auth::Token as AdminToken;
use crate::listeners::accept;
use crate::listeners::limits::{Caps, Gate, Listener, Permit, Reason};

/// What a member connection tells the event loop.
pub enum ClusterEvent {
    /// A node asks to join (or rejoin); `desired` is where its NodeDesired go.
    Join {
        /// Node name.
        name: String,
        /// Its address between nodes.
        address: IpAddr,
        /// Its node password's digest.
        password: PasswordDigest,
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
        report: NodeReport,
    },
    /// A member asks for its CLI: is it the node it names?
    Authenticate {
        /// Node name.
        name: String,
        /// Its node password's digest.
        password: PasswordDigest,
        /// The answer: Ok, or why not.
        reply: oneshot::Sender<Result<(), String>>,
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
            ClusterEvent::Join { name, address, password, conn, reply, desired } => {
                let connected = self.members.get(&name).is_some_and(|m| m.conn != conn);
                let welcome = cp
                    .register(now, &name, address, &password, connected)
                    .map(|subnet| Welcome { subnet, settings: cp.settings() });
                return Some(PendingJoin { name, conn, reply, desired, welcome });
            }
            ClusterEvent::Report { name, conn, report } => {
                if self.members.get(&name).is_some_and(|m| m.conn == conn) {
                    cp.heartbeat(now, &name);
                    cp.report(&name, report);
                }
            }
            ClusterEvent::Authenticate { name, password, reply } => {
                let _ = reply.send(cp.authenticate(&name, &password).map_err(|e| e.to_string()));
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

/// Who may call the cluster API, besides nodes holding their passwords.
#[derive(Clone)]
pub struct Trust {
    /// The join token: the Noise channel's key.
    pub token: Token,
    /// The admin token a remote CLI must present.
    pub admin: AdminToken,
    /// The Kubernetes API, once it serves: TLS connections to this port go
    /// there (one port, 6443, for both, as k3s's).
    pub kube: crate::kube::SharedPort,
    /// Streams into members' pods: members dial back here.
    pub streams: super::streams::Streams,
}

/// Accepts cluster connections until the agent stops, at most `caps` at
/// once (the shared accept loop: caps, keep-alive, backoff on errors).
pub async fn serve(
    listener: TcpListener,
    trust: Trust,
    events: mpsc::Sender<ClusterEvent>,
    calls: mpsc::Sender<Call>,
    caps: Caps,
) {
    serve_gate(listener, trust, events, calls, Gate::new(Listener::ClusterApi, caps), SILENCE).await
}

/// [`serve`] through `gate`, cutting peers silent for `silence`.
async fn serve_gate(
    listener: TcpListener,
    trust: Trust,
    events: mpsc::Sender<ClusterEvent>,
    calls: mpsc::Sender<Call>,
    gate: Arc<Gate>,
    silence: Duration,
) {
    let mut next_conn = 0u64;
    accept::serve(listener, gate, move |stream, permit| {
        next_conn += 1;
        let (trust, events, calls, conn) = (trust.clone(), events.clone(), calls.clone(), next_conn);
        async move {
            if let Some(kube) = kube_bound(&stream, &permit, &trust.kube).await {
                return kube.connection(stream, permit).await;
            }
            let peer = permit.client();
            if let Err(e) = connection(stream, &permit, &trust, events, calls, conn, silence).await {
                tracing::debug!(%peer, "cluster connection ended: {e}");
            }
            drop(permit);
        }
    })
    .await
}

/// The Kubernetes API's server, when the connection starts as TLS does (a
/// handshake record, 0x16) and the API is served here. A Noise handshake
/// starts with its length's high byte, 0 for its 48 bytes: the two never
/// meet.
async fn kube_bound(
    stream: &TcpStream,
    permit: &Permit,
    kube: &crate::kube::SharedPort,
) -> Option<Arc<crate::kube::server::Server>> {
    let server = kube.get()?;
    let mut first = [0u8; 1];
    match permit.within(stream.peek(&mut first)).await {
        Some(Ok(1)) if first[0] == TLS_HANDSHAKE => Some(server),
        _ => None,
    }
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a remote CLI without the admin token is told.
const NOT_ADMIN: &str = "the cluster server refused this CLI: the client config has no admin token or another one (the join token alone reads and changes nothing): copy podnet.yaml again from the server's data dir";

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

/// A failed receive as an I/O error, counted when it is a refusal.
fn received(permit: &Permit, e: RecvError) -> std::io::Error {
    if let Some(reason) = refusal(&e) {
        permit.count(reason);
    }
    std::io::Error::from(e)
}

/// A send's result, a timed-out one counted.
fn sent(permit: &Permit, result: std::io::Result<()>) -> std::io::Result<()> {
    if result.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
        permit.count(Reason::RequestTimeout);
    }
    result
}

/// One connection: a peer proves the token, says hello, and is served
/// until it leaves. Once the channel is open every message must start
/// within `silence` and arrive (or leave) whole within the request timeout;
/// each refusal is counted on the cluster API's listener by reason.
async fn connection(
    stream: TcpStream,
    permit: &Permit,
    trust: &Trust,
    events: mpsc::Sender<ClusterEvent>,
    calls: mpsc::Sender<Call>,
    conn: u64,
    silence: Duration,
) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    let whole = permit.caps().request_timeout;
    let (mut tx, mut rx) = channel::accept(stream, &trust.token).await.inspect_err(|e| {
        permit.count(Reason::HandshakeFailed);
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            tracing::warn!(%peer, "refused a cluster connection without this cluster's token");
        }
    })?;
    let counted = |e| received(permit, e);
    let sent = |result| sent(permit, result);
    // A peer holding the token says hello right away.
    let hello: Hello = rx.recv_value_within(Some(whole), whole).await.map_err(counted)?;
    if hello.version() != PROTOCOL_VERSION {
        permit.count(Reason::VersionMismatch);
        let text = format!(
            "the server speaks control protocol v{PROTOCOL_VERSION} and this podnet v{}: use matching podnet binaries",
            hello.version()
        );
        return sent(match hello {
            Hello::Cli { .. } | Hello::NodeCli { .. } => {
                tx.send_value_within(&Err::<Response, String>(text), whole).await
            }
            Hello::Node { .. } => tx.send_value_within(&ToMember::Refused(text), whole).await,
            Hello::Stream { .. } => tx.send_value_within(&StreamFrame::Refused(text), whole).await,
        });
    }
    // Who asks: the admin, or a member node that may only read.
    let reader = match hello {
        Hello::Cli { admin, .. } => {
            if !trust.admin.is(&admin) {
                permit.count(Reason::Unauthorized);
                tracing::warn!(%peer, "refused a remote CLI without the admin token");
                return sent(tx.send_value_within(&Err::<Response, String>(NOT_ADMIN.into()), whole).await);
            }
            None
        }
        Hello::NodeCli { name, password, .. } => {
            let (reply, answer) = oneshot::channel();
            let ask = ClusterEvent::Authenticate { name: name.clone(), password: password.digest(), reply };
            if events.send(ask).await.is_err() {
                return Ok(());
            }
            match answer.await {
                Ok(Ok(())) => Some(name),
                Ok(Err(why)) => {
                    permit.count(Reason::Unauthorized);
                    return sent(tx.send_value_within(&Err::<Response, String>(why), whole).await);
                }
                Err(_) => return Ok(()),
            }
        }
        Hello::Node { name, address, password, .. } => {
            let joining = Joining { name, address, password, conn };
            return member(tx, rx, permit, &events, &trust.streams, joining, silence).await;
        }
        Hello::Stream { name, password, ticket, .. } => {
            let (reply, answer) = oneshot::channel();
            let ask = ClusterEvent::Authenticate { name: name.clone(), password: password.digest(), reply };
            if events.send(ask).await.is_err() {
                return Ok(());
            }
            if !matches!(answer.await, Ok(Ok(()))) {
                permit.count(Reason::Unauthorized);
                return Ok(());
            }
            // Only the node the ticket was given to may answer it: a
            // member cannot open streams the server did not ask for.
            let Some(reply) = trust.streams.claim(&name, &ticket) else {
                permit.count(Reason::Forbidden);
                tracing::warn!(%peer, node = %name, "refused a stream with a ticket not given to that node");
                return Ok(());
            };
            let (done, finished) = oneshot::channel();
            if reply.send(super::streams::Dialled { tx, rx, done }).is_ok() {
                // The stream holds this connection's permit until it ends.
                let _ = finished.await;
            }
            return Ok(());
        }
    };
    loop {
        let request: Request = rx.recv_value_within(Some(silence), whole).await.map_err(counted)?;
        let answer = match request {
            Request::Capture { .. } => Err("capture works only on the pod's node".to_string()),
            request if reader.is_some() && !request.is_read_only() => {
                permit.count(Reason::Forbidden);
                let node = reader.as_deref().unwrap_or_default();
                Err(match request.route() {
                    crate::api::Route::Pod { .. } => format!(
                        "node {node} may not reach into pods on other nodes: run this on the pod's node (podnet get pods -o wide shows it), or with the cluster's client config (podnet --kubeconfig podnet.yaml, copied from the server's data dir)"
                    ),
                    _ => format!(
                        "node {node} may read the cluster but not change it: run this on the server, or here with the cluster's client config (podnet --kubeconfig podnet.yaml, copied from the server's data dir)"
                    ),
                })
            }
            request => {
                let (reply_tx, reply_rx) = oneshot::channel();
                let _ = calls.send((request, reply_tx)).await;
                match reply_rx.await {
                    Ok(Ok(Answer::Once(response))) => Ok(*response),
                    Ok(Ok(Answer::Stream(_) | Answer::Session { .. })) => {
                        Err("streams work only on the pod's node, or from the server's own CLI".to_string())
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err("the server is shutting down".to_string()),
                }
            }
        };
        sent(tx.send_value_within(&answer, whole).await)?;
    }
}

/// A node's hello, as the connection took it.
struct Joining {
    name: String,
    address: IpAddr,
    password: NodePassword,
    conn: u64,
}

/// A member's session: it joins, then reports while it is sent its
/// desired state.
async fn member(
    mut tx: channel::Sender,
    mut rx: channel::Receiver,
    permit: &Permit,
    events: &mpsc::Sender<ClusterEvent>,
    streams: &super::streams::Streams,
    joining: Joining,
    silence: Duration,
) -> std::io::Result<()> {
    let whole = permit.caps().request_timeout;
    let counted = |e| received(permit, e);
    let sent = |result| sent(permit, result);
    let Joining { name, address, password, conn } = joining;
    let (desired_tx, mut desired_rx) = mpsc::channel(8);
    let (reply_tx, reply_rx) = oneshot::channel();
    let join = ClusterEvent::Join {
        name: name.clone(),
        address,
        password: password.digest(),
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
    // The server's streams into this node's pods ask through here.
    let (open_tx, mut open_rx) = mpsc::channel(16);
    streams.attach(&name, conn, open_tx);
    // A member that stops reading is cut like one that stops sending.
    let mut writer = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                desired = desired_rx.recv() => match desired {
                    Some(desired) => ToMember::Desired(desired),
                    None => break,
                },
                Some((ticket, request)) = open_rx.recv() => ToMember::Open { ticket, request: Box::new(request) },
            };
            tx.send_value_within(&message, whole).await?;
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
    streams.detach(&name, conn);
    let _ = events.send(ClusterEvent::Left { name, conn }).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::proto::{ClusterSettings, hello_node};
    use crate::config::Cidr;
    use crate::listeners::limits::Counters;

    /// The admin token the test servers take.
    const ADMIN: &str = "the-admin-token-of-these-tests-0123456789";

    /// A server on loopback counting into its own counters, cutting
    /// silent peers after 300 ms and stalled messages after 300 ms; its
    /// agent answers GetNodes with no nodes.
    async fn server() -> (std::net::SocketAddr, Token, &'static Counters, mpsc::Receiver<ClusterEvent>) {
        server_with(Default::default()).await
    }

    /// [`server`] whose members' streams are `streams`.
    async fn server_with(
        streams: crate::cluster::streams::Streams,
    ) -> (std::net::SocketAddr, Token, &'static Counters, mpsc::Receiver<ClusterEvent>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = Token::generate().unwrap();
        let counters: &'static Counters = Box::leak(Box::new(Counters::new()));
        let caps = Caps { per_client: 16, total: 16, request_timeout: Duration::from_millis(300) };
        let gate = Gate::with_counters(Listener::ClusterApi, caps, counters);
        let (events_tx, events_rx) = mpsc::channel(8);
        let (calls_tx, mut calls_rx) = mpsc::channel::<Call>(8);
        tokio::spawn(async move {
            while let Some((request, reply)) = calls_rx.recv().await {
                let answer = match request {
                    Request::GetNodes => Ok(Answer::Once(Box::new(Response::Nodes(Vec::new())))),
                    other => Err(format!("done: {other:?}")),
                };
                let _ = reply.send(answer);
            }
        });
        let silence = Duration::from_millis(300);
        let trust = Trust {
            token: token.clone(),
            admin: AdminToken::fixed(ADMIN),
            kube: crate::kube::SharedPort::default(),
            streams,
        };
        tokio::spawn(serve_gate(listener, trust, events_tx, calls_tx, gate, silence));
        (addr, token, counters, events_rx)
    }

    fn cli(admin: &str) -> Hello {
        Hello::Cli { version: PROTOCOL_VERSION, admin: admin.into() }
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
        let hello = postcard::to_stdvec(&cli(ADMIN)).unwrap();
        tx.send_part(&hello, 5).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up");
        counted(counters, Reason::RequestTimeout, 1).await;

        // One that says nothing at all.
        let (_tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up");
        counted(counters, Reason::IdleTimeout, 1).await;

        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send_value(&Hello::Cli { version: PROTOCOL_VERSION + 1, admin: ADMIN.into() }).await.unwrap();
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
                    ClusterEvent::Report { .. } | ClusterEvent::Authenticate { .. } => {}
                }
            }
        });

        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send_value(&hello_node("n1", Ipv4Addr::new(192, 168, 1, 2), &NodePassword::fixed(1)))
            .await
            .unwrap();
        assert!(matches!(ends(rx.recv_value::<ToMember>()).await.unwrap(), ToMember::Welcome(_)));
        // It reports once, then goes silent.
        tx.send_value(&Report(NodeReport::default())).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up on a silent member");
        counted(counters, Reason::IdleTimeout, 1).await;
        assert_eq!(ends(left.recv()).await.as_deref(), Some("n1"), "the hub hears it left");

        // A joined member that starts a report and stalls.
        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send_value(&hello_node("n1", Ipv4Addr::new(192, 168, 1, 2), &NodePassword::fixed(1)))
            .await
            .unwrap();
        assert!(matches!(ends(rx.recv_value::<ToMember>()).await.unwrap(), ToMember::Welcome(_)));
        tx.send_part(&postcard::to_stdvec(&Report(NodeReport::default())).unwrap(), 3).await.unwrap();
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up on a stalled report");
        counted(counters, Reason::RequestTimeout, 1).await;
        assert_eq!(ends(left.recv()).await.as_deref(), Some("n1"));

        let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
        tx.send_value(&hello_node("n2", Ipv4Addr::new(192, 168, 1, 3), &NodePassword::fixed(2)))
            .await
            .unwrap();
        let refused = ends(rx.recv_value::<ToMember>()).await;
        assert!(matches!(refused, Ok(ToMember::Refused(ref why)) if why == "name taken"), "{refused:?}");
        counted(counters, Reason::JoinRefused, 1).await;
    }

    #[tokio::test]
    async fn the_join_token_alone_reads_nothing_and_a_member_only_reads() {
        let (addr, token, counters, mut events) = server().await;
        // The hub: n1 joined with password 1.
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let ClusterEvent::Authenticate { name, password, reply } = event {
                    let pinned = NodePassword::fixed(1).digest();
                    let ok = name == "n1" && password.matches(&pinned);
                    let _ = reply.send(if ok { Ok(()) } else { Err(format!("not node {name}")) });
                }
            }
        });
        let ask = |hello: Hello, request: Request| {
            let token = token.clone();
            async move {
                let (mut tx, mut rx) = channel::connect(addr, &token).await.unwrap();
                tx.send_value(&hello).await.unwrap();
                tx.send_value(&request).await.unwrap();
                ends(rx.recv_value::<Result<Response, String>>()).await.unwrap()
            }
        };
        let read = || Request::GetNodes;
        let write = || Request::DeleteNode { name: "n2".into() };

        let refused = ask(cli("not-the-admin-token"), read()).await.unwrap_err();
        assert!(refused.contains("no admin token or another one"), "{refused}");
        let refused = ask(cli(""), read()).await.unwrap_err();
        assert!(refused.contains("copy podnet.yaml again"), "{refused}");
        counted(counters, Reason::Unauthorized, 2).await;
        assert!(matches!(ask(cli(ADMIN), read()).await, Ok(Response::Nodes(_))));
        assert!(
            ask(cli(ADMIN), write()).await.unwrap_err().starts_with("done: DeleteNode"),
            "the admin may change"
        );

        let node = |name: &str, byte| Hello::NodeCli {
            version: PROTOCOL_VERSION,
            name: name.into(),
            password: NodePassword::fixed(byte),
        };
        assert!(matches!(ask(node("n1", 1), read()).await, Ok(Response::Nodes(_))), "a member reads");
        let refused = ask(node("n1", 1), write()).await.unwrap_err();
        assert!(refused.contains("node n1 may read the cluster but not change it"), "{refused}");
        counted(counters, Reason::Forbidden, 1).await;
        let refused = ask(node("n1", 2), read()).await.unwrap_err();
        assert_eq!(refused, "not node n1", "another machine's password");
        counted(counters, Reason::Unauthorized, 3).await;
    }

    #[tokio::test]
    async fn only_the_node_a_stream_ticket_was_given_to_may_answer_it() {
        use crate::cluster::proto::{StreamFrame, StreamRequest};
        use crate::cluster::streams::{Opened, StreamError, Streams};
        let streams = Streams::default();
        let (addr, token, counters, mut events) = server_with(streams.clone()).await;
        // The hub: n1 (password 1) and n2 (password 2) joined.
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let ClusterEvent::Authenticate { name, password, reply } = event {
                    let byte = if name == "n1" { 1 } else { 2 };
                    let ok = password.matches(&NodePassword::fixed(byte).digest());
                    let _ = reply.send(if ok { Ok(()) } else { Err(format!("not node {name}")) });
                }
            }
        });
        // n1's member connection, as the server sees it.
        let (open_tx, mut opens) = mpsc::channel(4);
        streams.attach("n1", 1, open_tx);
        let open = |streams: Streams| async move {
            streams.open("n1", StreamRequest::Pod(Box::new(Request::GetNodes))).await
        };
        let dial = |name: &str, byte: u8, ticket| {
            let (token, name) = (token.clone(), name.to_string());
            async move {
                let (mut tx, rx) = channel::connect(addr, &token).await.unwrap();
                let hello = Hello::Stream {
                    version: PROTOCOL_VERSION,
                    name,
                    password: NodePassword::fixed(byte),
                    ticket,
                };
                tx.send_value(&hello).await.unwrap();
                (tx, rx)
            }
        };

        // n2 presents the ticket given to n1: refused, and the ticket is spent.
        let asking = tokio::spawn(open(streams.clone()));
        let (ticket, _) = ends(opens.recv()).await.unwrap();
        let (_tx, mut rx) = dial("n2", 2, ticket).await;
        assert!(ends(rx.recv()).await.is_err(), "the server hangs up on another node's ticket");
        counted(counters, Reason::Forbidden, 1).await;
        let refused = ends(asking).await.unwrap().err().unwrap();
        assert!(matches!(refused, StreamError::Silent { .. }), "{refused}");

        // n1 with another machine's password: refused.
        let asking = tokio::spawn(open(streams.clone()));
        let (ticket, _) = ends(opens.recv()).await.unwrap();
        let (_tx, mut rx) = dial("n1", 2, ticket).await;
        assert!(ends(rx.recv()).await.is_err());
        counted(counters, Reason::Unauthorized, 1).await;
        asking.abort();

        // n1 with its ticket: the stream is the asker's.
        let asking = tokio::spawn(open(streams.clone()));
        let (ticket, _) = ends(opens.recv()).await.unwrap();
        let (mut tx, _rx) = dial("n1", 1, ticket).await;
        tx.send_value(&StreamFrame::Once(Response::Nodes(Vec::new()))).await.unwrap();
        let opened = ends(asking).await.unwrap();
        assert!(matches!(opened, Ok(Opened::Once(ref r)) if matches!(**r, Response::Nodes(_))), "the answer");
        // A ticket is single-use.
        let (_tx, mut rx) = dial("n1", 1, ticket).await;
        assert!(ends(rx.recv()).await.is_err(), "a spent ticket");
        counted(counters, Reason::Forbidden, 2).await;
    }
}
