//! The agent's Kubernetes mode (`node up --kubernetes KUBECONFIG`): the
//! watchers start first, and the agent starts only once every resource has
//! been listed, with its subnet from its Node's spec.podCIDR. After that,
//! an outage of the API server keeps the last tables while the watchers
//! reconnect. The local control plane holds this node's CNI attachments
//! only; Services, endpoints, DNS, policy and peers come from the cluster.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::AgentError;
use crate::config::{Cidr, NodeConfig};
use crate::kubernetes::client::Client;
use crate::kubernetes::cluster::Cluster;
use crate::kubernetes::watcher::{self, Update};
use crate::kubernetes::{KubernetesError, kubeconfig, stats};

/// The watched cluster, as the event loop holds it.
pub(super) struct Watched {
    /// The objects.
    pub(super) cluster: Cluster,
    /// The watchers' changes.
    pub(super) updates: mpsc::Receiver<Update>,
}

/// Reads the kubeconfig, starts the watchers and waits for every first
/// list; then this node's subnet. A failure before that stops the start
/// with the reason (unreachable, refused, no Node, no podCIDR).
pub(super) async fn start(
    path: &Path,
    node: &str,
    config: &NodeConfig,
) -> Result<(Watched, Cidr), AgentError> {
    let access = kubeconfig::load(path)?;
    let server = access.server.clone();
    let client = Arc::new(Client::new(access)?);
    let (updates_tx, mut updates) = mpsc::channel(256);
    watcher::spawn_all(client, updates_tx);
    let mut cluster = Cluster::default();
    while !cluster.listed_all() {
        match updates.recv().await {
            Some(Update::Changed(change)) => cluster.apply(change),
            Some(Update::Failed { error, .. }) => return Err(error.into()),
            None => return Err(AgentError::WatchersStopped),
        }
    }
    let subnet = cluster.node_subnet(node)?;
    let cluster_cidr = config.network.cluster_cidr;
    if !cluster_cidr.contains(subnet.address()) || subnet.prefix_len() < cluster_cidr.prefix_len() {
        return Err(KubernetesError::BadPodCidr {
            node: node.into(),
            cidr: subnet.to_string(),
            message: format!(
                "it is outside network.cluster_cidr {cluster_cidr}: set network.cluster_cidr, service_cidr and cluster_dns in the board config to the cluster's (k3s: 10.42.0.0/16, 10.43.0.0/16, 10.43.0.10)"
            ),
        }
        .into());
    }
    stats::activate();
    tracing::info!(%server, node, %subnet, "watching the Kubernetes API");
    Ok((Watched { cluster, updates }, subnet))
}

impl Watched {
    /// Takes one watcher update; the loop converges after it.
    pub(super) fn on_update(&mut self, update: Option<Update>) -> Result<(), AgentError> {
        match update {
            Some(Update::Changed(change)) => self.cluster.apply(change),
            // Counted by the watcher, which tries again; the node keeps its
            // last tables meanwhile.
            Some(Update::Failed { kind, error, retry }) => {
                tracing::warn!(resource = kind.resource(), "{error}; trying again in {}s", retry.as_secs());
            }
            None => return Err(AgentError::WatchersStopped),
        }
        Ok(())
    }
}
