//! Streams into the pods of members, on the server. The cluster channel of
//! a member carries whole messages (its desired state, its reports); a
//! stream (an exec, an attach, a followed log, one port-forwarded
//! connection) carries bytes both ways for as long as it lasts, so it gets
//! a connection of its own. The member dials (it always does: the server
//! may not reach it), and only when asked: the server sends
//! [`ToMember::Open`](super::proto::ToMember) with a fresh ticket over the
//! member's own connection, the member connects back with
//! [`Hello::Stream`](super::proto::Hello) (its name, its node password and
//! the ticket), and the server hands the connection to whoever asked.
//!
//! The ticket is single-use, given to one node and valid for
//! [`OPEN_TIMEOUT`]: a member can only answer streams the server opened
//! into its own pods, never open one into another node's. Each node holds
//! at most [`MAX_PER_NODE`] streams at once; more are refused and counted
//! (`stream_limit` under the cluster API's listener).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::channel::{self, RecvError};
use super::proto::{StreamFrame, StreamRequest, Ticket};
use crate::api::Response;
use crate::listeners::limits::{Listener, Reason};

/// How long a member has to dial back and say whether the stream started.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(8);
/// Most streams into one node's pods at once (opening ones included).
pub const MAX_PER_NODE: usize = 64;
/// Longest a stream may pass with nothing sent either way (as the
/// Kubernetes API's sessions, `kube::stream::IDLE`).
pub const IDLE: Duration = Duration::from_secs(3600);
/// Longest one stream message may take once it started.
pub const WHOLE: Duration = Duration::from_secs(10);
/// Largest chunk of bytes sent in one message.
pub const CHUNK: usize = 32 << 10;

/// Why a stream into a member's pod did not open.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The node is not connected to the server now.
    #[error("node {0} is not connected to the cluster server: its pods' streams need it (podnet get nodes)")]
    NotConnected(String),
    /// The node holds its most streams.
    #[error("node {node} already holds {MAX_PER_NODE} streams into its pods: close some and try again")]
    Busy {
        /// The node.
        node: String,
    },
    /// The node did not dial back in time.
    #[error("node {node} did not open the stream within {} s: check that it reaches the server", OPEN_TIMEOUT.as_secs())]
    Silent {
        /// The node.
        node: String,
    },
    /// The node could not start it, in its words.
    #[error("{0}")]
    Refused(String),
    /// The stream connection broke.
    #[error("the stream from node {node} broke: {source}")]
    Broken {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: RecvError,
    },
}

/// What a stream request opened: the one answer, or a stream to run.
pub enum Opened {
    /// A pod request's one answer.
    Once(Box<Response>),
    /// A stream, started.
    Stream(RemoteStream),
}

/// The server's streams into members' pods: the members that can be asked,
/// and the tickets given out. Cheap to clone.
#[derive(Clone, Default)]
pub struct Streams(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    /// Connected members: their connection id and where `Open`s go.
    members: HashMap<String, (u64, mpsc::Sender<(Ticket, StreamRequest)>)>,
    /// Tickets given out and not presented yet.
    pending: HashMap<Ticket, Pending>,
    /// Streams per node, opening or open.
    held: HashMap<String, usize>,
}

struct Pending {
    node: String,
    reply: oneshot::Sender<Dialled>,
}

/// A member's connection for a stream, and the signal that frees the
/// connection's task (and its permit) once the stream is done.
pub struct Dialled {
    /// Sends to the member.
    pub tx: channel::Sender,
    /// Receives from it.
    pub rx: channel::Receiver,
    /// Dropped when the stream ends.
    pub done: oneshot::Sender<()>,
}

impl Streams {
    /// A member's connection can take `Open`s (a new connection replaces an old one).
    pub fn attach(&self, node: &str, conn: u64, open: mpsc::Sender<(Ticket, StreamRequest)>) {
        self.lock().members.insert(node.to_string(), (conn, open));
    }

    /// A member's connection `conn` ended.
    pub fn detach(&self, node: &str, conn: u64) {
        let mut inner = self.lock();
        if inner.members.get(node).is_some_and(|(c, _)| *c == conn) {
            inner.members.remove(node);
        }
    }

    /// Takes the ticket a member presented, if it was given to that node.
    /// A ticket presented by another node is spent all the same.
    pub fn claim(&self, node: &str, ticket: &Ticket) -> Option<oneshot::Sender<Dialled>> {
        let pending = self.lock().pending.remove(ticket)?;
        (pending.node == node).then_some(pending.reply)
    }

    /// The tickets given out and not presented yet (for tests playing a member).
    #[cfg(test)]
    pub(crate) fn pending_tickets(&self) -> Vec<Ticket> {
        self.lock().pending.keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks `node` to open `request` and waits until it started (or said
    /// why not).
    pub async fn open(&self, node: &str, request: StreamRequest) -> Result<Opened, StreamError> {
        let ticket: Ticket = crate::sys::random::secret(16)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| StreamError::Refused("no kernel randomness for a stream ticket".into()))?;
        let (reply, dialled) = oneshot::channel();
        let slot = {
            let mut inner = self.lock();
            let open = inner
                .members
                .get(node)
                .map(|(_, open)| open.clone())
                .ok_or_else(|| StreamError::NotConnected(node.to_string()))?;
            let held = inner.held.entry(node.to_string()).or_default();
            if *held >= MAX_PER_NODE {
                Listener::ClusterApi.counters().count(Reason::StreamLimit);
                return Err(StreamError::Busy { node: node.to_string() });
            }
            *held += 1;
            inner.pending.insert(ticket, Pending { node: node.to_string(), reply });
            (Slot { streams: self.clone(), node: node.to_string(), ticket }, open)
        };
        let (slot, open) = slot;
        if open.try_send((ticket, request)).is_err() {
            Listener::ClusterApi.counters().count(Reason::StreamLimit);
            return Err(StreamError::Busy { node: node.to_string() });
        }
        let silent = || StreamError::Silent { node: node.to_string() };
        let Dialled { tx, mut rx, done } =
            tokio::time::timeout(OPEN_TIMEOUT, dialled).await.map_err(|_| silent())?.map_err(|_| silent())?;
        let first = rx.recv_value_within::<StreamFrame>(Some(OPEN_TIMEOUT), WHOLE).await;
        let broken = |source| StreamError::Broken { node: node.to_string(), source };
        match first.map_err(broken)? {
            StreamFrame::Ready => {
                Ok(Opened::Stream(RemoteStream { tx, rx, node: node.to_string(), _done: done, _slot: slot }))
            }
            StreamFrame::Once(response) => Ok(Opened::Once(Box::new(response))),
            StreamFrame::Refused(why) => Err(StreamError::Refused(why)),
            other => Err(StreamError::Refused(format!("node {node} started the stream with {other:?}"))),
        }
    }
}

/// A stream's place in its node's count; the ticket goes with it.
struct Slot {
    streams: Streams,
    node: String,
    ticket: Ticket,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.streams.lock();
        inner.pending.remove(&self.ticket);
        if let Some(held) = inner.held.get_mut(&self.node) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                inner.held.remove(&self.node);
            }
        }
    }
}

/// An open stream into a member's pod, from the server's side.
pub struct RemoteStream {
    /// Sends to the member.
    pub tx: channel::Sender,
    /// Receives from it.
    pub rx: channel::Receiver,
    /// The member.
    pub node: String,
    _done: oneshot::Sender<()>,
    _slot: Slot,
}

impl RemoteStream {
    /// Sends one frame.
    pub async fn send(tx: &mut channel::Sender, frame: &StreamFrame) -> std::io::Result<()> {
        tx.send_value_within(frame, WHOLE).await
    }

    /// The streamed answer of a [`StreamRequest::Pod`], item by item, on a
    /// task of its own; dropping the receiver ends the stream.
    pub fn items(self) -> mpsc::Receiver<Response> {
        let (items_tx, items) = mpsc::channel(8);
        tokio::spawn(async move {
            let RemoteStream { tx, mut rx, .. } = self;
            let read = async {
                while let Ok(StreamFrame::Item(item)) = rx.recv_value_within(Some(IDLE), WHOLE).await {
                    if items_tx.send(item).await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                () = read => {}
                () = items_tx.closed() => {}
            }
            drop(tx);
        });
        items
    }
}

/// Carries `io`'s bytes over a stream connection both ways as stream 0,
/// until both directions closed (a half-close passes as [`StreamFrame::Close`])
/// or either side failed: a port-forwarded connection, on either end.
pub async fn splice<S: AsyncRead + AsyncWrite>(io: S, tx: &mut channel::Sender, rx: &mut channel::Receiver) {
    let (mut read, mut write) = tokio::io::split(io);
    let out = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = StreamFrame::Data { stream: 0, bytes: buf[..n].to_vec() };
                    if tx.send_value_within(&frame, WHOLE).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.send_value_within(&StreamFrame::Close { stream: 0 }, WHOLE).await;
    };
    // True when the other side closed cleanly (its half-close).
    let back = async {
        loop {
            match rx.recv_value_within::<StreamFrame>(Some(IDLE), WHOLE).await {
                Ok(StreamFrame::Data { bytes, .. }) => {
                    if write.write_all(&bytes).await.is_err() {
                        return false;
                    }
                }
                Ok(StreamFrame::Close { .. }) => {
                    let _ = write.shutdown().await;
                    return true;
                }
                _ => return false,
            }
        }
    };
    // Each way runs until it closes; a failure either way ends both.
    let (mut out, mut back) = (std::pin::pin!(out), std::pin::pin!(back));
    tokio::select! {
        () = &mut out => {
            back.await;
        }
        clean = &mut back => {
            if clean {
                out.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ticket_opens_only_for_its_node_and_once() {
        let streams = Streams::default();
        let (open_tx, mut opens) = mpsc::channel(4);
        streams.attach("n1", 1, open_tx);
        let asker = streams.clone();
        let opening = tokio::spawn(async move {
            asker.open("n1", StreamRequest::Pod(Box::new(crate::api::Request::GetNodes))).await
        });
        let (ticket, _) = opens.recv().await.unwrap();
        assert!(streams.claim("n2", &ticket).is_none(), "another node's ticket");
        assert!(streams.claim("n1", &ticket).is_none(), "spent once presented, even by the wrong node");
        let err = opening.await.unwrap().err().unwrap();
        assert!(matches!(err, StreamError::Silent { .. }), "{err}");
        assert!(streams.lock().held.is_empty(), "the slot went with it");
        let err = streams
            .open("n3", StreamRequest::Pod(Box::new(crate::api::Request::GetNodes)))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, StreamError::NotConnected(_)), "{err}");
    }

    #[tokio::test]
    async fn a_node_holds_at_most_its_share_of_streams() {
        let streams = Streams::default();
        let (open_tx, _opens) = mpsc::channel(2 * MAX_PER_NODE);
        streams.attach("n1", 1, open_tx);
        let before = Listener::ClusterApi.counters().get(Reason::StreamLimit);
        let request = || StreamRequest::Pod(Box::new(crate::api::Request::GetNodes));
        let mut opening = Vec::new();
        for _ in 0..MAX_PER_NODE {
            let streams = streams.clone();
            opening.push(tokio::spawn(async move { streams.open("n1", request()).await }));
        }
        while streams.lock().held.get("n1").copied() != Some(MAX_PER_NODE) {
            tokio::task::yield_now().await;
        }
        let err = streams.open("n1", request()).await.err().unwrap();
        assert!(matches!(err, StreamError::Busy { .. }), "{err}");
        assert!(Listener::ClusterApi.counters().get(Reason::StreamLimit) > before, "counted");
        for task in opening {
            task.abort();
        }
    }
}
