//! The cluster's revision: one counter, bumped by every change of an object
//! (created, deleted, its spec or status changed — a pod reported Running or
//! Ready, a node NotReady), with a bounded log of the changes for the
//! Kubernetes API's watch. Changes are found by comparing each object as the
//! API shows it with its last seen version, after every input that can
//! change one: no code path that changes state can forget to count.
//!
//! The counter never goes back across a restart: the state saves a ceiling
//! [`REVISION_RESERVE`] above it, and a restart starts past the ceiling. A
//! change of status alone (a pod reported Running, a node NotReady) then
//! costs no write until the counter reaches the ceiling: on an SD card, a
//! busy cluster's status changes are one write in a thousand, not one each.
//! The log is memory only: after a restart it starts empty, and a
//! watcher resuming from before gets 410 Gone and lists again, as from an
//! apiserver whose watch cache is gone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::{ControlError, ControlPlane};
use crate::api::changes::{Change, ChangeType, Object, ObjectKind, Versioned};
use crate::model::Endpoints;

/// Changes the log keeps (older ones are forgotten: a watch from before
/// them gets 410 Gone).
pub const CHANGE_LOG: usize = 512;

/// How far above the revision the saved ceiling is: the status changes that
/// may pass without a save. A restart jumps the revision by at most this
/// (resourceVersions are opaque to clients: only their order counts).
pub const REVISION_RESERVE: u64 = 1000;

/// ConfigMap bytes the log holds at most (older changes are forgotten).
const LOG_BYTES: usize = 8 * 1024 * 1024;

/// The ConfigMap data a change holds, after and before.
fn weight(change: &Change) -> usize {
    let size = |o: &Object| match o {
        Object::ConfigMap(c) => c.spec.size(),
        _ => 0,
    };
    size(&change.object.object) + change.before.as_ref().map_or(0, size)
}

/// Changes one answer carries at most; the asker asks again from the last.
pub const CHANGES_PER_ANSWER: usize = 256;

type ObjectKey = (ObjectKind, String, String);

/// The revision, each object's last version, and the recent changes.
pub(super) struct Revisions {
    revision: u64,
    objects: BTreeMap<ObjectKey, Versioned>,
    log: VecDeque<Change>,
    /// The ConfigMap data the log holds (see [`weight`]).
    bytes: usize,
    capacity: usize,
    /// Every change after this revision is in the log.
    floor: u64,
    /// What was changed since the oldest [`Mark`] still held (None: none
    /// is): a failed change or save is undone from it, so a transaction
    /// costs what it changed, not a copy of every object and the log.
    journal: Option<Vec<Undo>>,
}

/// One step of [`Revisions::journal`], and how it is undone.
enum Undo {
    /// An object's last version was replaced (None: it had none).
    Object(ObjectKey, Option<Versioned>),
    /// A change was logged.
    Logged,
    /// The oldest change was forgotten.
    Forgot(Change),
}

/// A point the revisions can be taken back to ([`Revisions::undo`]).
pub(super) struct Mark {
    at: usize,
    revision: u64,
    floor: u64,
    bytes: usize,
}

impl Revisions {
    /// Starts after `saved`, the revision last saved: a restart is a change
    /// (the log before it is gone).
    pub(super) fn new(saved: u64, capacity: usize) -> Revisions {
        let revision = saved + 1;
        Revisions {
            revision,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            bytes: 0,
            capacity,
            floor: revision,
            journal: None,
        }
    }

    /// Where [`Revisions::undo`] takes them back to; what changes from
    /// now is kept until [`Revisions::release`].
    pub(super) fn mark(&mut self) -> Mark {
        let at = self.journal.get_or_insert_with(Vec::new).len();
        Mark { at, revision: self.revision, floor: self.floor, bytes: self.bytes }
    }

    /// Takes everything back to `mark`, newest first.
    pub(super) fn undo(&mut self, mark: Mark) {
        let journal = self.journal.get_or_insert_with(Vec::new);
        while journal.len() > mark.at {
            match journal.pop() {
                Some(Undo::Object(k, Some(old))) => {
                    self.objects.insert(k, old);
                }
                Some(Undo::Object(k, None)) => {
                    self.objects.remove(&k);
                }
                Some(Undo::Logged) => {
                    self.log.pop_back();
                }
                Some(Undo::Forgot(change)) => self.log.push_front(change),
                None => break,
            }
        }
        (self.revision, self.floor, self.bytes) = (mark.revision, mark.floor, mark.bytes);
    }

    /// No mark is held any more: changes stop being journaled.
    pub(super) fn release(&mut self) {
        self.journal = None;
    }

    fn journal(&mut self, undo: Undo) {
        if let Some(journal) = self.journal.as_mut() {
            journal.push(undo);
        }
    }

    /// Sets an object's last version, journaled; the one it replaces.
    fn set(&mut self, k: ObjectKey, versioned: Option<Versioned>) -> Option<Versioned> {
        let old = match versioned {
            Some(v) => self.objects.insert(k.clone(), v),
            None => self.objects.remove(&k),
        };
        if self.journal.is_some() {
            self.journal(Undo::Object(k, old.clone()));
        }
        old
    }

    /// The current revision.
    pub(super) fn revision(&self) -> u64 {
        self.revision
    }

    /// The endpoints of namespace/name as last tracked.
    pub(super) fn endpoints(&self, namespace: &str, name: &str) -> Option<&Arc<Endpoints>> {
        let k = (ObjectKind::Endpoints, namespace.to_string(), name.to_string());
        match self.objects.get(&k).map(|v| &v.object) {
            Some(Object::Endpoints(e)) => Some(e),
            _ => None,
        }
    }

    fn push(&mut self, change: Change) {
        self.bytes += weight(&change);
        self.log.push_back(change);
        self.journal(Undo::Logged);
        // Bounded in count, and in the ConfigMap data its entries hold (an
        // edited 1 MiB ConfigMap keeps both versions).
        while self.log.len() > self.capacity.max(1) || (self.bytes > LOG_BYTES && self.log.len() > 1) {
            let Some(old) = self.log.pop_front() else { break };
            self.bytes -= weight(&old);
            self.floor = old.object.revision;
            self.journal(Undo::Forgot(old));
        }
    }
}

fn key(object: &Object) -> ObjectKey {
    (object.kind(), object.namespace().to_string(), object.name().to_string())
}

/// An object's key, borrowed from it.
fn view_key(object: &Object) -> (ObjectKind, &str, &str) {
    (object.kind(), object.namespace(), object.name())
}

/// A key, borrowed, to compare with [`view_key`]'s.
fn borrowed(k: &ObjectKey) -> (ObjectKind, &str, &str) {
    (k.0, &k.1, &k.2)
}

/// Whether a change of `before` to `after` changes the spec (the generation).
fn spec_changed(before: &Object, after: &Object) -> bool {
    match (before, after) {
        (Object::Deployment(a), Object::Deployment(b)) => a.spec != b.spec,
        (Object::Pod(a), Object::Pod(b)) => a.spec != b.spec,
        (Object::Service(a), Object::Service(b)) => a.spec != b.spec,
        (Object::NetworkPolicy(a), Object::NetworkPolicy(b)) => a.spec != b.spec,
        (Object::Ingress(a), Object::Ingress(b)) => a.spec != b.spec,
        (Object::ConfigMap(a), Object::ConfigMap(b)) => a.spec != b.spec,
        _ => false,
    }
}

impl ControlPlane {
    /// Every object as the API shows it now, in key order: made one at a
    /// time as they are walked, so a change costs one view at a time, not
    /// a copy of every object (and every Service's endpoints) at once.
    fn views(&self) -> impl Iterator<Item = Object> + '_ {
        let nodes = self.node_infos().into_iter().map(|mut n| {
            n.pods = 0;
            Object::Node(Arc::new(n))
        });
        let pods = self.pods.values().map(|p| Object::Pod(Arc::new(self.pod(p))));
        let deployments = self.deployments.values().map(|d| Object::Deployment(Arc::new(self.deployment(d))));
        let services = self.services.values().map(|s| Object::Service(s.clone()));
        let policies = self.policies.values().map(|p| Object::NetworkPolicy(Arc::new(p.clone())));
        let status = self.ingress_status();
        let ingresses = self
            .ingresses
            .values()
            .map(move |i| Object::Ingress(Arc::new(super::ingresses::ingress_view(i, &status))));
        let secrets = self.secrets.values().map(|s| Object::Secret(Arc::new(s.info())));
        let configmaps = self.configmaps.values().map(|c| Object::ConfigMap(c.clone()));
        let endpoints = self.services.values().map(|s| Object::Endpoints(Arc::new(self.endpoints(s))));
        let namespaces = self.namespace_views().into_iter().map(|n| Object::Namespace(Arc::new(n)));
        // In order kind by kind (ObjectKind's order), each from a map in
        // key order; `track` checks it as it walks.
        nodes
            .chain(pods)
            .chain(deployments)
            .chain(services)
            .chain(policies)
            .chain(ingresses)
            .chain(secrets)
            .chain(configmaps)
            .chain(endpoints)
            .chain(namespaces)
    }

    /// At start: every object gets the start revision, nothing is logged.
    pub(super) fn stamp(&mut self) {
        let revision = self.revisions.revision;
        self.revisions.objects = self
            .views()
            .map(|object| (key(&object), Versioned { revision, generation: 1, object }))
            .collect();
    }

    /// Numbers what changed since the last call.
    pub(super) fn track(&mut self) {
        let now = self.views();
        let mut changed = false;
        // Both in key order, walked together: what is gone, and what is new
        // or changed (the only ones whose keys are made, and the only views
        // kept past their comparison).
        let (mut gone, mut touched) = (Vec::new(), Vec::new());
        let mut last = self.revisions.objects.iter().peekable();
        let mut previous: Option<Object> = None;
        for object in now {
            let k = view_key(&object);
            debug_assert!(
                previous.as_ref().is_none_or(|p| view_key(p) < k),
                "views out of key order at {k:?}"
            );
            while let Some((old, _)) = last.peek()
                && borrowed(old) < k
            {
                gone.push((*old).clone());
                last.next();
            }
            match last.peek() {
                Some((old, v)) if borrowed(old) == k => {
                    if v.object != object {
                        touched.push(object.clone());
                    }
                    last.next();
                }
                _ => touched.push(object.clone()),
            }
            previous = Some(object);
        }
        gone.extend(last.map(|(k, _)| k.clone()));
        let r = &mut self.revisions;
        for k in gone {
            let mut last = r.set(k, None).expect("listed above");
            r.revision += 1;
            last.revision = r.revision;
            r.push(Change { change: ChangeType::Deleted, object: last, before: None });
            changed = true;
        }
        for object in touched {
            let k = key(&object);
            let (change, generation) = match r.objects.get(&k) {
                Some(old) => {
                    (ChangeType::Modified, old.generation + spec_changed(&old.object, &object) as u64)
                }
                None => (ChangeType::Added, 1),
            };
            r.revision += 1;
            let versioned = Versioned { revision: r.revision, generation, object };
            let before = r.set(k, Some(versioned.clone())).map(|old| old.object);
            r.push(Change { change, object: versioned, before });
            changed = true;
        }
        // Spec changes are saved by their transaction; a status change needs
        // a save only when it passes the ceiling on disk, so that the
        // revision never goes back after a restart.
        self.dirty |= changed && self.revisions.revision() > self.ceiling;
    }

    /// The revision now.
    pub fn revision(&self) -> u64 {
        self.revisions.revision()
    }

    /// The changes after `since`, at most [`CHANGES_PER_ANSWER`].
    pub(super) fn changes(&self, since: u64) -> Result<Vec<Change>, ControlError> {
        let r = &self.revisions;
        if since < r.floor || since > r.revision {
            return Err(ControlError::Expired { since, floor: r.floor, revision: r.revision });
        }
        let start = r.log.partition_point(|c| c.object.revision <= since);
        Ok(r.log.iter().skip(start).take(CHANGES_PER_ANSWER).cloned().collect())
    }

    /// Every object of `kind` (in `namespace`), with its revision.
    pub(super) fn versioned(&self, kind: ObjectKind, namespace: Option<&str>) -> Vec<Versioned> {
        self.revisions
            .objects
            .range((kind, String::new(), String::new())..)
            .take_while(|((k, _, _), _)| *k == kind)
            .filter(|((_, ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Sets how many changes the log keeps (tests).
    #[cfg(test)]
    pub fn set_change_log(&mut self, capacity: usize) {
        self.revisions.capacity = capacity;
    }
}
