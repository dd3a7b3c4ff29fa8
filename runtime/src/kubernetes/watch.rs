//! The list-then-watch protocol of one resource, as client-go's reflector
//! runs it, without I/O: list (page by page), then watch from the list's
//! resourceVersion with bookmarks, keep the newest resourceVersion seen,
//! watch again from it when a watch ends, and list again when the server
//! says it is too old (410 Gone, as the request's status or as an ERROR
//! event). The driver (`client.rs`) does the requests; this decides what
//! the next one is and what each answer changes.

use std::collections::HashSet;

use serde::Deserialize;

use super::objects::{List, Object, Status};

/// An object's key: namespace and name.
pub type Key = (String, String);

/// The next request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A list page; `next` is the continue token of a page after the first.
    List {
        /// The `continue` token, for a page after the first.
        next: Option<String>,
    },
    /// A watch from this resourceVersion.
    Watch {
        /// Where the watch starts.
        resource_version: String,
    },
}

/// What an answer changed in the set of objects.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// A full list: the set is exactly these now (what a relist found
    /// gone is gone).
    Replace(Vec<T>),
    /// Added or modified.
    Upsert(T),
    /// Deleted.
    Delete(Key),
}

/// Why an answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The resourceVersion is too old: the next step is a list.
    #[error("the server no longer has resourceVersion history this far back (410 Gone): listing again")]
    Gone,
    /// More objects than the client keeps of one kind.
    #[error("more than {limit} objects of this kind: the rest are ignored")]
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// An event or list that is not JSON of its kind.
    #[error("not a valid watch event or list: {0}")]
    Decode(String),
    /// An ERROR event other than 410.
    #[error("the server ended the watch with {code}: {message}")]
    Status {
        /// Its code.
        code: u16,
        /// Its message.
        message: String,
    },
}

impl WatchError {
    /// Whether the watch stream must be ended (a refused object alone
    /// does not end it).
    pub fn ends_watch(&self) -> bool {
        !matches!(self, WatchError::TooMany { .. })
    }
}

/// One watch event as sent: `{"type": …, "object": …}`.
#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

/// The protocol state of one resource.
#[derive(Debug)]
pub struct Watch<T> {
    /// Where the next watch starts: None until a list has completed.
    resource_version: Option<String>,
    /// The pages of a list in progress.
    pages: Vec<T>,
    /// The continue token of the list in progress.
    next: Option<String>,
    /// The objects known now, to bound them and to tell an add from a
    /// modify.
    keys: HashSet<Key>,
    /// The most objects kept.
    limit: usize,
}

impl<T: Object> Watch<T> {
    /// A resource not listed yet, keeping at most `limit` objects.
    pub fn new(limit: usize) -> Watch<T> {
        Watch { resource_version: None, pages: Vec::new(), next: None, keys: HashSet::new(), limit }
    }

    /// The next request.
    pub fn step(&self) -> Step {
        match (&self.resource_version, &self.next) {
            (_, Some(next)) => Step::List { next: Some(next.clone()) },
            (Some(rv), None) => Step::Watch { resource_version: rv.clone() },
            (None, None) => Step::List { next: None },
        }
    }

    /// Takes one list page; the last one gives the whole set.
    pub fn on_page(&mut self, page: List<serde_json::Value>) -> Result<Option<Change<T>>, WatchError> {
        if self.pages.len() + page.items.len() > self.limit {
            self.restart_list();
            return Err(WatchError::TooMany { limit: self.limit });
        }
        for item in page.items {
            match T::from_json(item) {
                Ok(object) => self.pages.push(object),
                Err(e) => {
                    self.restart_list();
                    return Err(WatchError::Decode(e.to_string()));
                }
            }
        }
        if !page.metadata.next.is_empty() {
            self.next = Some(page.metadata.next);
            return Ok(None);
        }
        self.next = None;
        self.resource_version = Some(page.metadata.resource_version);
        let objects = std::mem::take(&mut self.pages);
        self.keys = objects.iter().map(Object::key).collect();
        Ok(Some(Change::Replace(objects)))
    }

    /// Takes one line of a watch stream.
    pub fn on_event(&mut self, line: &[u8]) -> Result<Option<Change<T>>, WatchError> {
        let event: WireEvent = serde_json::from_slice(line).map_err(|e| WatchError::Decode(e.to_string()))?;
        let decode = |object| T::from_json(object).map_err(|e| WatchError::Decode(e.to_string()));
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" => {
                let object = decode(event.object)?;
                self.resource_version = Some(object.meta().resource_version.clone());
                let key = object.key();
                if !self.keys.contains(&key) {
                    if self.keys.len() >= self.limit {
                        return Err(WatchError::TooMany { limit: self.limit });
                    }
                    self.keys.insert(key);
                }
                Ok(Some(Change::Upsert(object)))
            }
            "DELETED" => {
                let object = decode(event.object)?;
                self.resource_version = Some(object.meta().resource_version.clone());
                let key = object.key();
                Ok(self.keys.remove(&key).then_some(Change::Delete(key)))
            }
            "BOOKMARK" => {
                let object = decode(event.object)?;
                self.resource_version = Some(object.meta().resource_version.clone());
                Ok(None)
            }
            "ERROR" => {
                let status = Status::deserialize(&event.object).unwrap_or_default();
                if status.code == 410 {
                    self.on_gone();
                    return Err(WatchError::Gone);
                }
                Err(WatchError::Status { code: status.code, message: status.message })
            }
            other => Err(WatchError::Decode(format!("unknown event type {other:?}"))),
        }
    }

    /// The server answered 410 to a watch (or to a list page's continue
    /// token): list again from the start.
    pub fn on_gone(&mut self) {
        self.resource_version = None;
        self.restart_list();
    }

    /// A list page failed in transit: the list starts over (a continue
    /// token is only good with the pages before it).
    pub fn restart_list(&mut self) {
        self.pages.clear();
        self.next = None;
    }

    /// Whether a list has completed (the set is known).
    pub fn listed(&self) -> bool {
        self.resource_version.is_some()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kubernetes::objects::Service;

    fn page(items: &[(&str, &str)], rv: &str, next: &str) -> List<serde_json::Value> {
        serde_json::from_value(json!({
            "kind": "ServiceList",
            "metadata": { "resourceVersion": rv, "continue": next },
            "items": items.iter().map(|(name, rv)| json!({
                "metadata": { "name": name, "namespace": "default", "resourceVersion": rv },
                "spec": { "clusterIP": "10.96.0.9", "ports": [{ "port": 80 }] }
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn event(kind: &str, name: &str, rv: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "object": { "kind": "Service", "metadata": { "name": name, "namespace": "default", "resourceVersion": rv } }
        }))
        .unwrap()
    }

    fn names(change: Option<Change<Service>>) -> Vec<String> {
        match change {
            Some(Change::Replace(objects)) => objects.into_iter().map(|o| o.metadata.name).collect(),
            other => panic!("expected a Replace, got {other:?}"),
        }
    }

    #[test]
    fn lists_page_by_page_then_watches_from_the_lists_version() {
        let mut w = Watch::<Service>::new(100);
        assert_eq!(w.step(), Step::List { next: None });
        assert_eq!(w.on_page(page(&[("a", "3")], "", "tok")).unwrap(), None);
        assert_eq!(w.step(), Step::List { next: Some("tok".into()) });
        assert!(!w.listed());
        let all = names(w.on_page(page(&[("b", "4")], "7", "")).unwrap());
        assert_eq!(all, ["a", "b"]);
        assert_eq!(w.step(), Step::Watch { resource_version: "7".into() });
    }

    #[test]
    fn events_change_the_set_and_move_the_version_bookmarks_included() {
        let mut w = Watch::<Service>::new(100);
        names(w.on_page(page(&[("a", "3")], "5", "")).unwrap());
        match w.on_event(&event("ADDED", "b", "6")).unwrap() {
            Some(Change::Upsert(s)) => assert_eq!(s.metadata.name, "b"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(w.on_event(&event("MODIFIED", "a", "8")).unwrap(), Some(Change::Upsert(_))));
        assert_eq!(w.on_event(&event("BOOKMARK", "", "12")).unwrap(), None);
        assert_eq!(w.step(), Step::Watch { resource_version: "12".into() });
        assert_eq!(
            w.on_event(&event("DELETED", "a", "13")).unwrap(),
            Some(Change::Delete(("default".into(), "a".into())))
        );
        // A delete of what is not known changes nothing.
        assert_eq!(w.on_event(&event("DELETED", "zz", "14")).unwrap(), None);
        assert_eq!(w.step(), Step::Watch { resource_version: "14".into() });
    }

    #[test]
    fn gone_as_an_error_event_or_a_status_means_list_again() {
        let mut w = Watch::<Service>::new(100);
        names(w.on_page(page(&[("a", "3")], "5", "")).unwrap());
        let gone = json!({ "type": "ERROR", "object": { "kind": "Status", "code": 410, "reason": "Expired",
            "message": "too old resource version: 5 (80)" } });
        let err = w.on_event(&serde_json::to_vec(&gone).unwrap()).unwrap_err();
        assert_eq!(err, WatchError::Gone);
        assert!(err.ends_watch());
        assert_eq!(w.step(), Step::List { next: None });
        // The relist is the whole set: what went while away is gone.
        assert_eq!(names(w.on_page(page(&[("b", "90")], "91", "")).unwrap()), ["b"]);
        w.on_gone();
        assert_eq!(w.step(), Step::List { next: None });
        // A list page that failed starts over from the first page.
        assert_eq!(w.on_page(page(&[("c", "3")], "", "tok")).unwrap(), None);
        w.restart_list();
        assert_eq!(w.step(), Step::List { next: None });
        assert_eq!(names(w.on_page(page(&[("d", "3")], "95", "")).unwrap()), ["d"]);
    }

    #[test]
    fn other_errors_end_the_watch_but_keep_the_version() {
        let mut w = Watch::<Service>::new(100);
        names(w.on_page(page(&[], "5", "")).unwrap());
        let err = json!({ "type": "ERROR", "object": { "code": 500, "message": "etcd is sad" } });
        let err = w.on_event(&serde_json::to_vec(&err).unwrap()).unwrap_err();
        assert!(matches!(err, WatchError::Status { code: 500, .. }) && err.ends_watch());
        assert_eq!(w.step(), Step::Watch { resource_version: "5".into() });
        assert!(matches!(w.on_event(b"{not json").unwrap_err(), WatchError::Decode(_)));
        assert!(matches!(w.on_event(&event("EXPLODED", "a", "6")).unwrap_err(), WatchError::Decode(_)));
    }

    #[test]
    fn no_more_objects_than_the_limit_by_list_or_by_event() {
        let mut w = Watch::<Service>::new(2);
        let err = w.on_page(page(&[("a", "1"), ("b", "2"), ("c", "3")], "5", "")).unwrap_err();
        assert_eq!(err, WatchError::TooMany { limit: 2 });
        assert_eq!(w.step(), Step::List { next: None }, "a refused list is tried again whole");
        names(w.on_page(page(&[("a", "1"), ("b", "2")], "5", "")).unwrap());
        let err = w.on_event(&event("ADDED", "c", "6")).unwrap_err();
        assert!(!err.ends_watch(), "one object refused, the watch goes on");
        // Known objects still change; a deleted one makes room.
        assert!(w.on_event(&event("MODIFIED", "a", "7")).unwrap().is_some());
        assert!(w.on_event(&event("DELETED", "b", "8")).unwrap().is_some());
        assert!(w.on_event(&event("ADDED", "c", "9")).unwrap().is_some());
    }
}
