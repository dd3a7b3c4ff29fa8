//! What the last lists of Events held, so that a watch from a list's
//! resourceVersion sends the events that came or counted again after it
//! (`kubectl get events -w` lists, then watches from the list's version;
//! an informer's watch resumes from its last event's), as the other
//! watches replay their change log; one from before the oldest list kept
//! is 410 Gone, and the client lists again. Events have no change log of
//! their own (each pod's node keeps them): a list is the only record.
//! Kept as hashes, per list at most [`MAX_EVENTS`]: bounded memory.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use serde_json::Value;

/// Lists kept.
const KEEP: usize = 16;
/// Events one kept list holds at most (past it, the newest watch starts
/// from what it sees).
const MAX_EVENTS: usize = 8192;

/// An event's identity (its uid) and what tells a change (count,
/// message), hashed: per uid, its mark.
pub type Seen = BTreeMap<u64, u64>;

/// One list: its scope (namespace and field selector), revision and events.
struct Kept {
    scope: String,
    revision: u64,
    seen: Seen,
}

/// The last [`KEEP`] lists of Events.
#[derive(Default)]
pub struct EventHistory {
    lists: Mutex<VecDeque<Kept>>,
}

/// The watch's resourceVersion is older than every list kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too old resource version: {0}: the events listed then are no longer kept: list again")]
pub struct TooOld(pub u64);

fn hash(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// An event's (uid, mark) as [`Seen`] holds it.
pub fn mark(event: &Value) -> (u64, u64) {
    let uid = hash(event["metadata"]["uid"].as_str().unwrap_or(""));
    (uid, hash((event["count"].to_string(), event["message"].to_string())))
}

/// The scope a list and a watch share: the namespace and field selector.
pub fn scope(namespace: Option<&str>, field_selector: &str) -> String {
    format!("{}\n{field_selector}", namespace.unwrap_or(""))
}

impl EventHistory {
    /// Keeps what a list of `scope` at `revision` held.
    pub fn record(&self, scope: &str, revision: u64, events: &[Value]) {
        let seen: Seen = events.iter().take(MAX_EVENTS).map(mark).collect();
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        if lists.iter().any(|k| k.revision == revision && k.scope == scope && k.seen == seen) {
            return;
        }
        if lists.len() == KEEP {
            lists.pop_front();
        }
        lists.push_back(Kept { scope: scope.to_string(), revision, seen });
    }

    /// What the client saw at `revision`: the newest list of `scope` made
    /// at or before it.
    pub fn at(&self, scope: &str, revision: u64) -> Result<Seen, TooOld> {
        let lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        lists
            .iter()
            .rev()
            .find(|k| k.scope == scope && k.revision <= revision)
            .map(|k| k.seen.clone())
            .ok_or(TooOld(revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(uid: &str, count: u64) -> Value {
        json!({ "metadata": { "uid": uid }, "count": count, "message": "m" })
    }

    #[test]
    fn a_list_is_found_by_its_revision_and_scope_and_an_older_one_is_too_old() {
        let h = EventHistory::default();
        let all = scope(None, "");
        assert_eq!(h.at(&all, 5), Err(TooOld(5)), "nothing listed yet");
        h.record(&all, 5, &[event("a", 1)]);
        h.record(&scope(Some("shop"), ""), 6, &[event("b", 1)]);
        h.record(&all, 9, &[event("a", 2), event("c", 1)]);
        assert_eq!(h.at(&all, 5).unwrap(), [mark(&event("a", 1))].into_iter().collect());
        assert_eq!(h.at(&all, 7).unwrap(), h.at(&all, 5).unwrap(), "the newest at or before");
        assert_eq!(h.at(&all, 9).unwrap().len(), 2);
        assert_eq!(h.at(&all, 4), Err(TooOld(4)));
        assert_eq!(h.at(&scope(Some("shop"), ""), 6).unwrap().len(), 1);
        for r in 10..10 + KEEP as u64 {
            h.record(&all, r, &[]);
        }
        assert_eq!(h.at(&all, 9), Err(TooOld(9)), "past the lists kept");
        assert_ne!(mark(&event("a", 1)), mark(&event("a", 2)), "a count again is a change");
    }
}
