//! The control plane — what the API server, the scheduler and the controllers
//! are to Kubernetes: it owns the desired state (nodes, pods with their IPs,
//! deployments, services with their ClusterIPs), saves it before any change
//! is acknowledged, places pods on nodes, and tells each node what to run.
//!
//! It is a deterministic state machine, as quinn-proto's connection is: it
//! does no I/O. Time comes in with each input ([`Now`]), randomness from a
//! seeded [`Rng`], port and command checks through the [`Host`] it is given,
//! and saving is an effect: every change runs in a transaction
//! ([`ControlPlane::transact`]) that leaves the state to save, and the
//! caller saves it ([`ControlPlane::commit`], or the agent on a blocking
//! thread) before it acknowledges anything. A failed save restores the
//! state as it was before the change.

mod cni;
mod configmaps;
mod env;
mod error;
#[cfg(test)]
mod harness;
mod ingresses;
mod inputs;
mod nodes;
mod policies;
mod ports;
mod requests;
mod revisions;
mod scheduling;
#[cfg(test)]
mod tests;
mod transact;
mod updates;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use netstack::ipam::Pool;

use crate::config::NodeConfig;
use crate::desired::{NodeDesired, NodeReport, PeerNode};
use crate::model::configmap::ConfigMap;
use crate::model::ingress::Ingress;
use crate::model::policy::NetworkPolicy;
use crate::model::secret::Secret;
use crate::model::services::{self, PodView};
use crate::model::{Deployment, Endpoints, Namespace, Phase, Pod, PodStatus, Service};
use crate::store::{DeploymentRecord, NodeRecord, PodRecord, State};

pub use error::ControlError;
pub use inputs::{Host, Now, Persist, Rng};
pub use nodes::HEARTBEAT_TIMEOUT;
pub use revisions::{CHANGE_LOG, CHANGES_PER_ANSWER, REVISION_RESERVE};
use transact::Snapshot;

type Key = (String, String);

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

/// A node as the control plane tracks it.
#[derive(Clone)]
struct NodeEntry {
    record: NodeRecord,
    ipam: Pool,
    ready: bool,
    last_seen: Option<std::time::Instant>,
    /// Why it does not serve Ingresses, as it last reported.
    ingress_problem: Option<String>,
}

/// A pod with its last reported status.
#[derive(Clone)]
struct PodEntry {
    record: PodRecord,
    status: PodStatus,
}

/// The cluster's desired state and what nodes report of it.
pub struct ControlPlane {
    config: NodeConfig,
    host: Box<dyn Host>,
    rng: Rng,
    /// The state as last saved, while changes since are not saved yet.
    unsaved: Option<Snapshot>,
    /// Changes not saved yet that a failed save does not undo (the local
    /// node's record at start): they are saved with the next change.
    dirty: bool,
    /// The revision ceiling on disk: revisions up to it may be handed out
    /// without a save (see [`revisions::REVISION_RESERVE`]).
    ceiling: u64,
    local: String,
    nodes: BTreeMap<String, NodeEntry>,
    pods: BTreeMap<Key, PodEntry>,
    deployments: BTreeMap<Key, DeploymentRecord>,
    /// Services, shared with the change log, snapshots and nodes' desired
    /// state (never copied).
    services: BTreeMap<Key, Arc<Service>>,
    /// The revision and the change log (the API's resourceVersion and watch).
    revisions: revisions::Revisions,
    namespaces: BTreeMap<String, Namespace>,
    /// NetworkPolicies, by namespace and name.
    policies: BTreeMap<Key, NetworkPolicy>,
    ingresses: BTreeMap<Key, Ingress>,
    secrets: BTreeMap<Key, Secret>,
    /// ConfigMaps, shared with the change log and snapshots (never copied).
    configmaps: BTreeMap<Key, Arc<ConfigMap>>,
}

impl ControlPlane {
    /// Restores the saved state; the local node is registered with the
    /// configured subnet the first time. Nothing is saved here (a node whose
    /// disk is full still starts): what restoring changed waits in
    /// [`ControlPlane::to_save`].
    pub fn new(
        config: NodeConfig,
        local: &str,
        state: State,
        now: Now,
        rng: Rng,
        host: Box<dyn Host>,
    ) -> Result<ControlPlane, ControlError> {
        let mut cp = ControlPlane {
            config,
            host,
            rng,
            unsaved: None,
            dirty: false,
            ceiling: 0,
            local: local.to_string(),
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            deployments: BTreeMap::new(),
            services: BTreeMap::new(),
            revisions: revisions::Revisions::new(state.revision, CHANGE_LOG),
            namespaces: state.namespaces.iter().map(|n| (n.name.clone(), n.clone())).collect(),
            policies: state
                .network_policies
                .into_iter()
                .map(|p| (key(&p.spec.namespace, &p.spec.name), p))
                .collect(),
            ingresses: state
                .ingresses
                .into_iter()
                .map(|i| (key(&i.spec.namespace, &i.spec.name), i))
                .collect(),
            secrets: state.secrets.into_iter().map(|s| (key(&s.spec.namespace, &s.spec.name), s)).collect(),
            configmaps: state
                .configmaps
                .into_iter()
                .map(|c| (key(&c.spec.namespace, &c.spec.name), Arc::new(c)))
                .collect(),
        };
        let mut records = state.nodes;
        if !records.iter().any(|n| n.name == local) {
            let subnet = cp.config.network.node_subnet;
            records.insert(
                0,
                NodeRecord { name: local.into(), subnet, address: None, joined_at: now.unix, password: None },
            );
            cp.dirty = true;
        }
        for record in records {
            cp.add_node(record)?;
        }
        if let Some(me) = cp.nodes.get_mut(local) {
            me.ready = true;
        }
        for service in state.services {
            cp.services.insert(key(&service.spec.namespace, &service.spec.name), service);
        }
        for record in state.deployments {
            cp.deployments.insert(key(&record.spec.namespace, &record.spec.name), record);
        }
        for mut record in state.pods {
            if record.node.is_empty() {
                record.node = local.to_string();
                cp.dirty = true;
            }
            let name = format!("{}/{}", record.spec.namespace, record.spec.name);
            let reserved = cp.nodes.get_mut(&record.node).map(|n| match record.ipv4() {
                Ok(ip) => n.ipam.reserve(ip).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            });
            match reserved {
                Some(Ok(())) => {
                    cp.pods.insert(
                        key(&record.spec.namespace, &record.spec.name),
                        PodEntry { status: pending(record.ip), record },
                    );
                }
                _ => {
                    tracing::warn!(pod = %name, ip = %record.ip, node = %record.node, "cannot restore pod");
                    cp.dirty = true;
                }
            }
        }
        cp.stamp();
        // The start revision is above the saved ceiling: saved with the next
        // save, before any change is answered.
        cp.dirty = true;
        Ok(cp)
    }

    /// The node this control plane runs on.
    pub fn local_node(&self) -> &str {
        &self.local
    }

    /// A node's pod subnet.
    pub fn subnet_of(&self, node: &str) -> Option<crate::config::Cidr> {
        self.nodes.get(node).map(|n| n.record.subnet)
    }

    /// The state to save, as it is in memory.
    pub fn state(&self) -> State {
        State {
            format: crate::store::FORMAT,
            node_name: self.local.clone(),
            pods: self.pods.values().map(|p| p.record.clone()).collect(),
            deployments: self.deployments.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            nodes: self.nodes.values().map(|n| n.record.clone()).collect(),
            revision: self.revision() + revisions::REVISION_RESERVE,
            namespaces: self.namespaces.values().cloned().collect(),
            network_policies: self.policies.values().cloned().collect(),
            ingresses: self.ingresses.values().cloned().collect(),
            secrets: self.secrets.values().cloned().collect(),
            configmaps: self.configmaps.values().map(|c| ConfigMap::clone(c)).collect(),
        }
    }

    /// What `node` must run and program now.
    pub fn desired_for(&self, node: &str) -> NodeDesired {
        NodeDesired {
            pods: self
                .pods
                .values()
                .filter(|p| p.record.node == node)
                .map(|p| self.for_node(&p.record))
                .collect(),
            services: self.services.values().map(|s| (s.clone(), self.shared_endpoints(s))).collect(),
            pod_ips: self.pods.values().map(|p| (p.record.ip, p.record.spec.namespace.clone())).collect(),
            peers: self
                .nodes
                .values()
                .filter(|n| n.record.name != node)
                .filter_map(|n| {
                    Some(PeerNode {
                        node: n.record.name.clone(),
                        subnet: n.record.subnet,
                        address: n.record.address?,
                    })
                })
                .collect(),
            policy: self.policy_inputs(),
            ingresses: self.ingresses.values().cloned().collect(),
            secrets: self.ingress_secrets(),
        }
    }

    /// Takes a node's report of its pods' status and Ingress ports (the
    /// local node's too; a member's report is also its heartbeat: see
    /// [`ControlPlane::heartbeat`]).
    pub fn report(&mut self, node: &str, report: NodeReport) {
        let statuses: BTreeMap<String, PodStatus> = report.pods.into_iter().collect();
        let mut changed = false;
        if let Some(entry) = self.nodes.get_mut(node)
            && entry.ingress_problem != report.ingress_problem
        {
            entry.ingress_problem = report.ingress_problem;
            changed = true;
        }
        for pod in self.pods.values_mut().filter(|p| p.record.node == node) {
            if let Some(status) = statuses.get(&pod.record.uid)
                && pod.status != *status
            {
                pod.status = status.clone();
                changed = true;
            }
        }
        if changed {
            self.track();
        }
    }

    /// Whether namespace/name exists and runs on `node`.
    pub fn runs_on(&self, namespace: &str, name: &str, node: &str) -> bool {
        self.locate(namespace, name) == Some(node)
    }

    /// Marks pods a node could not start.
    pub fn start_failed(&mut self, failures: &[(String, String)]) {
        for (uid, error) in failures {
            if let Some(pod) = self.pods.values_mut().find(|p| &p.record.uid == uid) {
                pod.status.phase = Phase::Failed;
                pod.status.reason = Some(format!("StartError: {error}"));
            }
        }
        if !failures.is_empty() {
            self.track();
        }
    }

    /// The node running namespace/name, if the pod exists.
    pub fn locate(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods.get(&key(namespace, name)).map(|p| p.record.node.as_str())
    }

    /// The endpoints of a Service now: ready pods on ready nodes.
    fn endpoints(&self, service: &Service) -> Endpoints {
        let pods = self.pods.values().map(|p| PodView {
            spec: &p.record.spec,
            ip: p.record.ip,
            ready: p.status.ready && self.nodes.get(&p.record.node).is_some_and(|n| n.ready),
        });
        services::endpoints(service, pods)
    }

    /// [`ControlPlane::endpoints`], shared with their tracked version when
    /// they did not change since (the usual case: one copy, not one per
    /// node's desired state).
    fn shared_endpoints(&self, service: &Service) -> Arc<Endpoints> {
        let now = self.endpoints(service);
        match self.revisions.endpoints(&service.spec.namespace, &service.spec.name) {
            Some(tracked) if **tracked == now => tracked.clone(),
            _ => Arc::new(now),
        }
    }

    fn pod(&self, pod: &PodEntry) -> Pod {
        Pod {
            uid: pod.record.uid.clone(),
            created_at: pod.record.created_at,
            node_name: pod.record.node.clone(),
            spec: pod.record.spec.clone(),
            status: pod.status.clone(),
        }
    }

    fn deployment(&self, record: &DeploymentRecord) -> Deployment {
        let owned = self.pods.values().filter(|p| {
            p.record.spec.namespace == record.spec.namespace
                && p.record.spec.owner.as_deref() == Some(&record.spec.name)
        });
        let (mut replicas, mut ready) = (0, 0);
        for pod in owned {
            replicas += 1;
            ready += pod.status.ready as u32;
        }
        Deployment {
            uid: record.uid.clone(),
            created_at: record.created_at,
            spec: record.spec.clone(),
            replicas,
            ready_replicas: ready,
        }
    }
}

/// The status of a pod no node has reported on yet.
fn pending(ip: IpAddr) -> PodStatus {
    PodStatus {
        phase: Phase::Pending,
        pod_ip: Some(ip),
        ready: false,
        restarts: 0,
        reason: None,
        last_exit_code: None,
        started_at: None,
        message: None,
    }
}
