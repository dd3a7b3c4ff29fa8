//! What the Kubernetes watchers counted, for `podnet node stats`: process-
//! wide, as the listeners' counters are (one agent per process).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A counted event of the watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// A list or watch failed and was tried again after a backoff.
    Reconnects,
    /// The server had no history from the last resourceVersion (410):
    /// listed again.
    Relists,
    /// An object past the per-kind limit, not kept.
    ObjectsRefused,
    /// A watch line or list that was not valid JSON of its kind, or too
    /// large.
    BadAnswers,
    /// Watch events taken.
    Events,
}

const ALL: [Count; 5] =
    [Count::Reconnects, Count::Relists, Count::ObjectsRefused, Count::BadAnswers, Count::Events];

static COUNTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Marks this agent as in Kubernetes mode: its counters are shown.
pub fn activate() {
    ACTIVE.store(true, Ordering::Relaxed);
}

impl Count {
    /// The name shown.
    pub fn name(self) -> &'static str {
        match self {
            Count::Reconnects => "reconnects",
            Count::Relists => "relists",
            Count::ObjectsRefused => "objects_refused",
            Count::BadAnswers => "bad_answers",
            Count::Events => "events",
        }
    }

    /// Counts one.
    pub fn add(self) {
        COUNTS[self as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Every counter, by name; empty when the agent is not in Kubernetes mode.
pub fn report() -> Vec<(String, u64)> {
    if !ACTIVE.load(Ordering::Relaxed) {
        return Vec::new();
    }
    ALL.iter().map(|c| (c.name().to_string(), COUNTS[*c as usize].load(Ordering::Relaxed))).collect()
}
