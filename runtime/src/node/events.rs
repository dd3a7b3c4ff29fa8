//! What happened to a pod on this node, for `podnet describe pod`: a short
//! log per pod where a repeat of the last event bumps its count (as
//! Kubernetes folds events), so a pod failing in a loop keeps a bounded list.

use std::collections::VecDeque;

use crate::model::PodEvent;

/// The most events kept per pod.
const MAX_EVENTS: usize = 16;

/// Longest message kept, in bytes (a runtime's error can be long).
const MAX_MESSAGE: usize = 512;

/// One pod's events, oldest first.
#[derive(Debug, Default)]
pub(super) struct Events {
    list: VecDeque<PodEvent>,
}

impl Events {
    /// A Normal event.
    pub(super) fn normal(&mut self, at: u64, reason: &str, message: String) {
        self.push(at, false, reason, message);
    }

    /// A Warning event.
    pub(super) fn warning(&mut self, at: u64, reason: &str, message: String) {
        self.push(at, true, reason, message);
    }

    fn push(&mut self, at: u64, warning: bool, reason: &str, mut message: String) {
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        if let Some(last) = self.list.back_mut()
            && last.reason == reason
            && last.message == message
            && last.warning == warning
        {
            last.count = last.count.saturating_add(1);
            last.at = at;
            return;
        }
        if self.list.len() == MAX_EVENTS {
            self.list.pop_front();
        }
        self.list.push_back(PodEvent { at, warning, reason: reason.into(), message, count: 1 });
    }

    /// The events, oldest first.
    pub(super) fn list(&self) -> Vec<PodEvent> {
        self.list.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_fold_and_the_list_stays_bounded() {
        let mut events = Events::default();
        events.normal(1, "Pulling", "Pulling image \"busybox\"".into());
        events.warning(2, "Failed", "no such image".into());
        events.warning(3, "Failed", "no such image".into());
        let list = events.list();
        assert_eq!(list.len(), 2);
        assert_eq!((list[1].count, list[1].at, list[1].warning), (2, 3, true));
        for i in 0..100 {
            events.normal(10 + i, "Started", format!("run {i}"));
        }
        let list = events.list();
        assert_eq!(list.len(), MAX_EVENTS);
        assert_eq!(list.last().unwrap().message, "run 99");
        events.warning(200, "Failed", "é".repeat(MAX_MESSAGE));
        assert!(events.list().last().unwrap().message.len() <= MAX_MESSAGE);
    }
}
