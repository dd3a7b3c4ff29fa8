//! The watch hub: one per agent, it learns the control plane's changes
//! once and fans them out to every watcher of the Kubernetes API.
//!
//! It reads changes with `Request::Changes` while anyone watches (and not
//! at all otherwise): where the control plane runs (a standalone node, a
//! cluster's server) when the agent's event loop says the revision moved
//! (a `watch` channel it sets after every turn), so a change reaches the
//! watchers in the same turn's aftermath; on a member, whose changes live
//! on the server, by asking the server every [`Limits::poll`] (the same
//! request, forwarded: a member has no cheaper way to hear of them).
//!
//! Each watcher has a bounded queue: one that does not keep up is closed
//! and counted (its client lists and watches again, as from an apiserver),
//! so a slow reader cannot grow the agent's memory. Watchers are bounded in
//! total and per client address; refusals are counted.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::agent::{Agent, AgentRefusal};
use super::status::Status;
use crate::api::changes::{Change, ObjectKind, Versioned};
use crate::api::{Request, Response};
use crate::control::CHANGES_PER_ANSWER;
use crate::listeners::limits::{Counters as ListenerCounters, Reason};

/// What bounds the hub.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Events queued for one watcher before it is closed as too slow.
    pub queue: usize,
    /// Watchers at once.
    pub total: usize,
    /// Watchers at once from one client address.
    pub per_client: usize,
    /// How often the hub asks for changes while anyone watches, when no
    /// revision wakes it (a member); with one, how often it asks anyway.
    pub poll: Duration,
    /// How often a hub woken by the revision asks anyway.
    pub woken_poll: Duration,
    /// How often a watcher that allows them gets a BOOKMARK.
    pub bookmark: Duration,
    /// The longest a watch lasts (its `timeoutSeconds` is capped to it).
    pub longest: Duration,
    /// Recent events kept to bridge a new watcher's list and its watch.
    pub recent: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue: 256,
            total: 128,
            per_client: 32,
            poll: Duration::from_millis(100),
            woken_poll: Duration::from_secs(1),
            bookmark: Duration::from_secs(30),
            longest: Duration::from_secs(1800),
            recent: 128,
        }
    }
}

impl Limits {
    /// The defaults, with as many watchers from one client as it may open
    /// connections to the API (`limits.max_listener_connections_per_client`:
    /// each watch holds one), and at most [`MAX_WATCHERS`] in all.
    pub fn for_caps(caps: &crate::listeners::limits::Caps) -> Limits {
        Limits {
            per_client: caps.per_client as usize,
            total: (caps.total as usize).min(MAX_WATCHERS),
            ..Limits::default()
        }
    }
}

/// Watchers at once at most, whatever the connection caps: each may hold
/// a queue of events and a few encoded ones on their way out.
pub const MAX_WATCHERS: usize = 256;

/// What the hub counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// Watches started.
    pub opened: AtomicU64,
    /// Refused: as many watchers as [`Limits::total`].
    pub refused_total: AtomicU64,
    /// Refused: as many from that client as [`Limits::per_client`].
    pub refused_client: AtomicU64,
    /// Closed because their queue was full.
    pub slow_closed: AtomicU64,
    /// Ended with 410 Gone (a revision older than what is kept).
    pub expired: AtomicU64,
}

/// One change, rendered once for every watcher.
pub struct Event {
    /// The change, as the control plane logged it.
    pub change: Change,
    /// The object's JSON.
    pub object: Value,
    before: OnceLock<Option<Value>>,
}

impl Event {
    /// Renders `change`.
    pub fn new(change: Change) -> Event {
        let object = super::versioned::render(&change.object);
        Event { change, object, before: OnceLock::new() }
    }

    /// Its revision.
    pub fn revision(&self) -> u64 {
        self.change.object.revision
    }

    /// The object before a modification, rendered when first asked (only
    /// a watcher with a selector asks).
    pub fn before(&self) -> Option<&Value> {
        self.before
            .get_or_init(|| {
                let c = &self.change;
                c.before.as_ref().map(|b| {
                    super::versioned::render(&Versioned {
                        revision: c.object.revision,
                        generation: c.object.generation,
                        object: b.clone(),
                    })
                })
            })
            .as_ref()
    }
}

/// Why a watcher's queue was closed.
const OPEN: u8 = 0;
const SLOW: u8 = 1;
const EXPIRED: u8 = 2;

struct Slot {
    id: u64,
    client: IpAddr,
    kind: ObjectKind,
    from: u64,
    tx: mpsc::Sender<Arc<Event>>,
    closed: Arc<AtomicU8>,
}

#[derive(Default)]
struct Inner {
    /// The revision learned up to; None while nobody watches.
    cursor: Option<u64>,
    /// Every event after this revision is in `recent`.
    floor: u64,
    recent: VecDeque<Arc<Event>>,
    slots: Vec<Slot>,
    next_id: u64,
    polling: bool,
}

/// The agent's watch hub.
pub struct Hub {
    agent: Agent,
    /// The API listener's counters, where refusals show in `podnet node stats`.
    listener: &'static ListenerCounters,
    /// Its bounds.
    pub limits: Limits,
    /// What it counted.
    pub counters: Counters,
    inner: Mutex<Inner>,
    /// The control plane's revision, where it runs here.
    revisions: Option<tokio::sync::watch::Receiver<u64>>,
}

/// How a watcher's queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Too slow: closed.
    Slow,
    /// The hub lost the thread (the control plane restarted, or it fell
    /// behind the log): the watcher must list again (410).
    Expired,
}

/// A watcher's place in the hub; leaving it (drop) frees it.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    rx: mpsc::Receiver<Arc<Event>>,
    closed: Arc<AtomicU8>,
}

impl Subscription {
    /// The next event, or why there are no more.
    pub async fn next(&mut self) -> Result<Arc<Event>, Ended> {
        self.rx.recv().await.ok_or_else(|| self.ended())
    }

    /// An event already queued, if any (Ok(None): none now).
    pub fn try_next(&mut self) -> Result<Option<Arc<Event>>, Ended> {
        match self.rx.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(self.ended()),
        }
    }

    fn ended(&self) -> Ended {
        match self.closed.load(Ordering::Acquire) {
            EXPIRED => Ended::Expired,
            _ => Ended::Slow,
        }
    }

    /// The revision the hub has sent every change up to (a BOOKMARK's).
    pub fn cursor(&self) -> Option<u64> {
        self.hub.inner.lock().unwrap_or_else(|e| e.into_inner()).cursor
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        inner.slots.retain(|s| s.id != self.id);
    }
}

/// 429 with the reason, as the apiserver's max-in-flight.
pub fn too_many(message: String) -> Status {
    Status { code: 429, reason: "TooManyRequests", message, details: None, causes: Vec::new() }
}

/// 410 Gone, reason Expired: list again.
pub fn expired(message: impl Into<String>) -> Status {
    Status { code: 410, reason: "Expired", message: message.into(), details: None, causes: Vec::new() }
}

impl Hub {
    /// A hub asking `agent`, counting refusals in `listener` too.
    pub fn new(agent: Agent, limits: Limits, listener: &'static ListenerCounters) -> Arc<Hub> {
        let inner = Mutex::new(Inner::default());
        Arc::new(Hub { agent, listener, limits, counters: Counters::default(), inner, revisions: None })
    }

    /// The hub, woken by `revisions` (the control plane's, set after every
    /// turn of the agent's loop) rather than polling, when given.
    pub fn waking_on(self: Arc<Self>, revisions: Option<tokio::sync::watch::Receiver<u64>>) -> Arc<Hub> {
        let mut hub = Arc::into_inner(self).expect("a hub not shared yet");
        hub.revisions = revisions;
        Arc::new(hub)
    }

    /// Counts an expired watch (410).
    pub fn count_expired(&self) {
        self.counters.expired.fetch_add(1, Ordering::Relaxed);
        self.listener.count(Reason::WatchExpired);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The agent it asks.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Watchers now.
    pub fn watchers(&self) -> usize {
        self.lock().slots.len()
    }

    /// Refuses a watch before any work is done for it, when the bounds are reached.
    pub fn admit(&self, client: IpAddr) -> Result<(), Status> {
        let inner = self.lock();
        self.check(&inner, client)
    }

    fn check(&self, inner: &Inner, client: IpAddr) -> Result<(), Status> {
        if inner.slots.len() >= self.limits.total {
            self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
            self.listener.count(Reason::WatchRefused);
            return Err(too_many(format!(
                "too many watches on this node ({}): try again later",
                self.limits.total
            )));
        }
        if inner.slots.iter().filter(|s| s.client == client).count() >= self.limits.per_client {
            self.counters.refused_client.fetch_add(1, Ordering::Relaxed);
            self.listener.count(Reason::WatchRefused);
            return Err(too_many(format!(
                "too many watches from {client} ({}): close some first",
                self.limits.per_client
            )));
        }
        Ok(())
    }

    /// Subscribes to changes of `kind` after revision `from` (what the
    /// watcher already has); those the hub learned since come first.
    pub fn subscribe(
        self: &Arc<Self>,
        kind: ObjectKind,
        from: u64,
        client: IpAddr,
    ) -> Result<Subscription, Status> {
        let mut inner = self.lock();
        self.check(&inner, client)?;
        match inner.cursor {
            None => {
                inner.cursor = Some(from);
                inner.floor = from;
                inner.recent.clear();
            }
            Some(_) if from < inner.floor => {
                self.count_expired();
                return Err(expired(format!(
                    "too old resource version: {from} ({}): list again",
                    inner.floor
                )));
            }
            Some(_) => {}
        }
        let (tx, rx) = mpsc::channel(self.limits.queue);
        for event in
            inner.recent.iter().filter(|e| e.revision() > from && e.change.object.object.kind() == kind)
        {
            if tx.try_send(event.clone()).is_err() {
                self.count_expired();
                return Err(expired("too many changes since the list: list again"));
            }
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let closed = Arc::new(AtomicU8::new(OPEN));
        inner.slots.push(Slot { id, client, kind, from, tx, closed: closed.clone() });
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        if !inner.polling {
            inner.polling = true;
            tokio::spawn(self.clone().poll());
        }
        Ok(Subscription { hub: self.clone(), id, rx, closed })
    }

    /// Learns changes while anyone watches.
    async fn poll(self: Arc<Self>) {
        // The first subscriber's list may be older than the revision now.
        let mut wait = false;
        let mut revisions = self.revisions.clone();
        loop {
            if wait {
                match revisions.as_mut() {
                    Some(r) => {
                        let woken = tokio::time::timeout(self.limits.woken_poll, r.changed()).await;
                        if matches!(woken, Ok(Err(_))) {
                            // The agent is stopping: poll until the end.
                            revisions = None;
                        }
                    }
                    None => tokio::time::sleep(self.limits.poll).await,
                }
            }
            // Seen before asking: a change after this wakes the next wait.
            if let Some(r) = revisions.as_mut() {
                r.borrow_and_update();
            }
            let since = {
                let mut inner = self.lock();
                match inner.cursor {
                    Some(c) if !inner.slots.is_empty() => c,
                    _ => {
                        // Nobody watches: forget, and stop asking.
                        *inner = Inner { next_id: inner.next_id, ..Inner::default() };
                        return;
                    }
                }
            };
            wait = true;
            match self.agent.call(Request::Changes { since }).await {
                Ok(Response::Changes { revision, changes }) => {
                    let full = changes.len() >= CHANGES_PER_ANSWER;
                    let last = changes.last().map(|c| c.object.revision);
                    let events: Vec<Arc<Event>> =
                        changes.into_iter().map(|c| Arc::new(Event::new(c))).collect();
                    self.fan_out(events, if full { last.unwrap_or(revision) } else { revision });
                    // More waiting: ask again now.
                    wait = !full;
                }
                Ok(_) => tracing::warn!("the agent answered a watch poll with something else"),
                Err(AgentRefusal::Refused(text)) if text.contains("too old") => self.expire_all(),
                Err(e) => tracing::debug!("watch poll: {e}"),
            }
        }
    }

    /// Hands `events` to every watcher of their kind; a full queue closes
    /// its watcher. Then the cursor moves to `cursor`.
    pub fn fan_out(&self, events: Vec<Arc<Event>>, cursor: u64) {
        let mut inner = self.lock();
        let Inner { slots, recent, floor, .. } = &mut *inner;
        for event in events {
            let (kind, revision) = (event.change.object.object.kind(), event.revision());
            slots.retain(|s| {
                if s.kind != kind || revision <= s.from {
                    return true;
                }
                match s.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.closed.store(SLOW, Ordering::Release);
                        self.counters.slow_closed.fetch_add(1, Ordering::Relaxed);
                        self.listener.count(Reason::SlowWatcher);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            recent.push_back(event);
            while recent.len() > self.limits.recent {
                if let Some(old) = recent.pop_front() {
                    *floor = old.revision();
                }
            }
        }
        if inner.cursor.is_some_and(|c| c < cursor) {
            inner.cursor = Some(cursor);
        }
    }

    /// The control plane no longer holds what the hub has seen (it
    /// restarted, or the hub fell behind its log): every watcher ends with
    /// 410 and lists again.
    fn expire_all(&self) {
        let mut inner = self.lock();
        for slot in inner.slots.drain(..) {
            slot.closed.store(EXPIRED, Ordering::Release);
            self.count_expired();
        }
        inner.cursor = None;
        inner.recent.clear();
    }
}
