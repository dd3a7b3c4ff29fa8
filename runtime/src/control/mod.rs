//! The control plane — what the API server, the scheduler and the controllers
//! are to Kubernetes: it owns the desired state (nodes, pods with their IPs,
//! deployments, services with their ClusterIPs), saves it before any change
//! is acknowledged, places pods on nodes, and tells each node what to run.
//! It does no I/O besides its state file: nodes report pod status back.

mod nodes;
mod ports;
mod requests;
mod scheduling;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use netstack::ipam::Pool;

use crate::config::NodeConfig;
use crate::desired::{NodeDesired, Peer, PodReport};
use crate::model::services::{self, PodView};
use crate::model::{Deployment, Endpoints, Phase, Pod, PodStatus, Service, unix_now};
use crate::store::{DeploymentRecord, NodeRecord, PodRecord, State, Store};

pub use nodes::HEARTBEAT_TIMEOUT;

type Key = (String, String);

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

/// A node as the control plane tracks it.
struct NodeEntry {
    record: NodeRecord,
    ipam: Pool,
    ready: bool,
    last_seen: Option<tokio::time::Instant>,
}

/// A pod with its last reported status.
struct PodEntry {
    record: PodRecord,
    status: PodStatus,
}

/// The cluster's desired state and what nodes report of it.
pub struct ControlPlane {
    config: NodeConfig,
    store: Store,
    local: String,
    nodes: BTreeMap<String, NodeEntry>,
    pods: BTreeMap<Key, PodEntry>,
    deployments: BTreeMap<Key, DeploymentRecord>,
    services: BTreeMap<Key, Service>,
}

impl ControlPlane {
    /// Restores the saved state; the local node is registered with the
    /// configured subnet the first time.
    pub fn new(config: NodeConfig, store: Store, local: &str, state: State) -> Result<ControlPlane, String> {
        let mut cp = ControlPlane {
            config,
            store,
            local: local.to_string(),
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            deployments: BTreeMap::new(),
            services: BTreeMap::new(),
        };
        let mut records = state.nodes;
        if !records.iter().any(|n| n.name == local) {
            let subnet = cp.config.network.node_subnet;
            records
                .insert(0, NodeRecord { name: local.into(), subnet, address: None, joined_at: unix_now() });
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
            }
            let name = format!("{}/{}", record.spec.namespace, record.spec.name);
            let reserved = cp.nodes.get_mut(&record.node).map(|n| n.ipam.reserve(record.ip));
            match reserved {
                Some(Ok(())) => {
                    cp.pods.insert(
                        key(&record.spec.namespace, &record.spec.name),
                        PodEntry { status: pending(record.ip), record },
                    );
                }
                _ => tracing::warn!(pod = %name, ip = %record.ip, node = %record.node, "cannot restore pod"),
            }
        }
        cp.save()?;
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

    fn state(&self) -> State {
        State {
            format: 0,
            node_name: self.local.clone(),
            pods: self.pods.values().map(|p| p.record.clone()).collect(),
            deployments: self.deployments.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            nodes: self.nodes.values().map(|n| n.record.clone()).collect(),
        }
    }

    fn save(&self) -> Result<(), String> {
        self.store.save(&self.state()).map_err(|e| format!("cannot save state: {e}"))
    }

    /// What `node` must run and program now.
    pub fn desired_for(&self, node: &str) -> NodeDesired {
        NodeDesired {
            pods: self.pods.values().filter(|p| p.record.node == node).map(|p| p.record.clone()).collect(),
            services: self.services.values().map(|s| (s.clone(), self.endpoints(s))).collect(),
            pod_ips: self.pods.values().map(|p| (p.record.ip, p.record.spec.namespace.clone())).collect(),
            peers: self
                .nodes
                .values()
                .filter(|n| n.record.name != node)
                .filter_map(|n| {
                    Some(Peer {
                        node: n.record.name.clone(),
                        subnet: n.record.subnet,
                        address: n.record.address?,
                    })
                })
                .collect(),
        }
    }

    /// Takes a node's report of its pods' status.
    pub fn report(&mut self, node: &str, report: PodReport) {
        let statuses: BTreeMap<String, PodStatus> = report.into_iter().collect();
        for pod in self.pods.values_mut().filter(|p| p.record.node == node) {
            if let Some(status) = statuses.get(&pod.record.uid) {
                pod.status = status.clone();
            }
        }
    }

    /// Marks pods a node could not start.
    pub fn start_failed(&mut self, failures: &[(String, String)]) {
        for (uid, error) in failures {
            if let Some(pod) = self.pods.values_mut().find(|p| &p.record.uid == uid) {
                pod.status.phase = Phase::Failed;
                pod.status.reason = Some(format!("StartError: {error}"));
            }
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
fn pending(ip: Ipv4Addr) -> PodStatus {
    PodStatus {
        phase: Phase::Pending,
        pod_ip: Some(ip),
        ready: false,
        restarts: 0,
        reason: None,
        last_exit_code: None,
        started_at: None,
    }
}
