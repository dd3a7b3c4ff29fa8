//! A watch of Events (`kubectl get events -w`). Events are not the control
//! plane's: each pod's node keeps them, so they have no change log. The
//! watch lists them again when a pod changes (what makes most of them:
//! pulling, started, back-off; at most once a second) and every
//! [`QUIET_POLL`] otherwise (probe failures), and sends what is new
//! (ADDED) or counted again (MODIFIED). From a list's resourceVersion it
//! first sends what came after that list (`event_history.rs`; 410 when
//! it is no longer kept). It holds a hub subscription to pods: its
//! wake-up, and its place under the hub's watcher bounds.

use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::agent::Agent;
use super::event_history::{Seen, mark};
use super::select::{FieldSelector, LabelSelector};
use super::table::{self, Include};
use super::watch::{Ended, Subscription};
use super::watcher::line;

/// How often events are listed again when no pod changed.
const QUIET_POLL: Duration = Duration::from_secs(10);
/// The fewest seconds between two lists.
const LEAST_GAP: Duration = Duration::from_secs(1);

/// What one events watch asked for.
pub(super) struct EventsWatch {
    /// The agent the events are asked of.
    pub agent: Agent,
    /// None: every namespace.
    pub namespace: Option<String>,
    /// The raw field selector (`involvedObject.name=` asks one pod's node).
    pub field_selector: String,
    /// Parsed selectors.
    pub labels: LabelSelector,
    /// Parsed field selector.
    pub fields: FieldSelector,
    /// One-row Tables instead of objects.
    pub table: Option<Include>,
    /// When it ends.
    pub timeout: Duration,
    /// What the client's list held (resourceVersion given): only what is
    /// new since is sent. None: every event now, as ADDED.
    pub from_list: Option<Seen>,
    /// sendInitialEvents: a bookmark after the initial events.
    pub initial_end: bool,
}

impl EventsWatch {
    async fn list(&self) -> Option<(Vec<Value>, u64)> {
        let (mut events, rv) =
            super::events::list(&self.agent, self.namespace.as_deref(), &self.field_selector).await.ok()?;
        events.retain(|e| self.labels.matches(e) && self.fields.matches(e));
        Some((events, rv))
    }

    /// The events not sent yet, or changed since, as (type, object).
    fn news(seen: &mut Seen, events: Vec<Value>) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        for e in events {
            let (uid, mark) = mark(&e);
            match seen.insert(uid, mark) {
                None => out.push(("ADDED", e)),
                Some(old) if old != mark => out.push(("MODIFIED", e)),
                Some(_) => {}
            }
        }
        out
    }

    /// Runs the watch until the client goes, the timeout, or the hub ends
    /// the subscription.
    pub(super) async fn run(mut self, mut pods: Subscription, tx: mpsc::Sender<Bytes>) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut first = true;
        let mut encode = |kind: &'static str, object: Value, rv: u64| -> Bytes {
            match self.table {
                None => line(kind, &object),
                Some(include) => {
                    let mut t = table::table("Event", &[object], include, crate::model::unix_now(), rv);
                    if !std::mem::take(&mut first) {
                        t["columnDefinitions"] = json!([]);
                    }
                    line(kind, &t)
                }
            }
        };
        let mut seen = self.from_list.take().unwrap_or_default();
        let Some((events, rv)) = self.list().await else { return };
        for (kind, object) in Self::news(&mut seen, events) {
            if tx.send(encode(kind, object, rv)).await.is_err() {
                return;
            }
        }
        if self.initial_end {
            let metadata = json!({ "resourceVersion": rv.to_string(), "annotations": { "k8s.io/initial-events-end": "true" } });
            let end = json!({ "kind": "Event", "apiVersion": "v1", "metadata": metadata });
            if tx.send(line("BOOKMARK", &end)).await.is_err() {
                return;
            }
        }
        let mut last = tokio::time::Instant::now();
        let mut woken = false;
        loop {
            let wake = last + if woken { LEAST_GAP } else { QUIET_POLL };
            tokio::select! {
                event = pods.next(), if !woken => match event {
                    Ok(_) => woken = true,
                    Err(Ended::Slow | Ended::Expired) => return,
                },
                _ = tokio::time::sleep_until(wake) => {
                    (woken, last) = (false, tokio::time::Instant::now());
                    // Drain what woke it: one list covers them all.
                    while let Ok(Some(_)) = pods.try_next() {}
                    let Some((events, rv)) = self.list().await else { continue };
                    for (kind, object) in Self::news(&mut seen, events) {
                        if tx.send(encode(kind, object, rv)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_sent_once_and_again_when_it_counts_again() {
        let event =
            |uid: &str, count: u64| json!({ "metadata": { "uid": uid }, "count": count, "message": "m" });
        let mut seen = Seen::new();
        let first = EventsWatch::news(&mut seen, vec![event("a", 1), event("b", 1)]);
        assert_eq!(first.iter().map(|(k, _)| *k).collect::<Vec<_>>(), ["ADDED", "ADDED"]);
        assert!(EventsWatch::news(&mut seen, vec![event("a", 1), event("b", 1)]).is_empty());
        let next = EventsWatch::news(&mut seen, vec![event("a", 2), event("b", 1), event("c", 1)]);
        let kinds: Vec<(&str, &str)> =
            next.iter().map(|(k, e)| (*k, e["metadata"]["uid"].as_str().unwrap())).collect();
        assert_eq!(kinds, [("MODIFIED", "a"), ("ADDED", "c")]);
    }
}
