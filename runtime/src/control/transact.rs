//! Changes as transactions: a change runs on the state, is undone if it
//! fails half-way, and is kept only once it is saved. The state as last
//! saved is held until then, so a failed save puts memory back exactly as it
//! was: what the CLI was told failed did not happen.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::revisions::Mark;
use super::{ControlError, ControlPlane, Key, NodeEntry, Persist, PodEntry};
use crate::model::configmap::ConfigMap;
use crate::model::ingress::Ingress;
use crate::model::policy::NetworkPolicy;
use crate::model::secret::Secret;
use crate::model::{Namespace, Service};
use crate::store::{DeploymentRecord, State, StoreError};

/// The cluster's objects at one moment.
pub(super) struct Snapshot {
    nodes: BTreeMap<String, NodeEntry>,
    pods: BTreeMap<Key, PodEntry>,
    deployments: BTreeMap<Key, DeploymentRecord>,
    services: BTreeMap<Key, Arc<Service>>,
    /// The revisions are taken back from their journal, not copied.
    revisions: Mark,
    namespaces: BTreeMap<String, Namespace>,
    policies: BTreeMap<Key, NetworkPolicy>,
    ingresses: BTreeMap<Key, Ingress>,
    secrets: BTreeMap<Key, Secret>,
    configmaps: BTreeMap<Key, Arc<ConfigMap>>,
}

impl ControlPlane {
    pub(super) fn snapshot(&mut self) -> Snapshot {
        Snapshot {
            nodes: self.nodes.clone(),
            pods: self.pods.clone(),
            deployments: self.deployments.clone(),
            services: self.services.clone(),
            revisions: self.revisions.mark(),
            namespaces: self.namespaces.clone(),
            policies: self.policies.clone(),
            ingresses: self.ingresses.clone(),
            secrets: self.secrets.clone(),
            configmaps: self.configmaps.clone(),
        }
    }

    pub(super) fn restore(&mut self, snapshot: Snapshot) {
        let Snapshot {
            nodes,
            pods,
            deployments,
            services,
            namespaces,
            revisions,
            policies,
            ingresses,
            secrets,
            configmaps,
        } = snapshot;
        (self.policies, self.ingresses, self.secrets, self.configmaps) =
            (policies, ingresses, secrets, configmaps);
        (self.nodes, self.pods, self.deployments, self.services, self.namespaces) =
            (nodes, pods, deployments, services, namespaces);
        // Nothing read the changes undone: the agent saves before it answers
        // anything else, so their revisions are taken back too.
        self.revisions.undo(revisions);
        if self.unsaved.is_none() {
            // The oldest mark: nothing is left to take back.
            self.revisions.release();
        }
    }

    /// Runs `change`: undone if it fails, else left to save (see
    /// [`ControlPlane::to_save`] and [`ControlPlane::saved`]).
    pub(super) fn transact<T>(
        &mut self,
        change: impl FnOnce(&mut ControlPlane) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let before = self.snapshot();
        match change(self) {
            Ok(value) => {
                // Several changes before one save: the rollback point stays
                // the state as last saved.
                self.unsaved.get_or_insert(before);
                self.track();
                Ok(value)
            }
            Err(e) => {
                self.restore(before);
                Err(e)
            }
        }
    }

    /// The state to save before anything else is acknowledged, if it
    /// changed since it was last saved.
    pub fn to_save(&self) -> Option<State> {
        (self.unsaved.is_some() || self.dirty).then(|| self.state())
    }

    /// Takes the result of saving [`ControlPlane::to_save`]'s state: kept
    /// when it was saved, else every change since the last save is undone
    /// and the error returned. Changes that are not undone (what restoring
    /// the state changed at start) are saved with the next change, and
    /// failing to save them alone is no error: a read on a full disk still
    /// answers.
    pub fn saved(&mut self, result: Result<(), StoreError>) -> Result<(), ControlError> {
        match (result, self.unsaved.take()) {
            (Ok(()), _) => {
                self.dirty = false;
                self.revisions.release();
                // What `to_save` wrote: nothing ran between the two (the
                // agent holds the control plane across the save).
                self.ceiling = self.revision() + super::REVISION_RESERVE;
                Ok(())
            }
            (Err(e), Some(before)) => {
                self.restore(before);
                Err(e.into())
            }
            (Err(e), None) => {
                // Not retried on every read: the next change saves them, and
                // a restart derives them again.
                self.dirty = false;
                tracing::warn!("{e}");
                Ok(())
            }
        }
    }

    /// Saves what changed, in place (tests; the agent saves off its loop).
    pub fn commit(&mut self, persist: &mut dyn Persist) -> Result<(), ControlError> {
        match self.to_save() {
            Some(state) => {
                let result = persist.save(&state);
                self.saved(result)
            }
            None => Ok(()),
        }
    }
}
