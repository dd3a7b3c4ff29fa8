//! Cluster membership: each node gets a pod subnet of its own from the
//! cluster CIDR, kept across restarts, and is NotReady once its heartbeats
//! stop.

use std::net::Ipv4Addr;
use std::time::Duration;

use netstack::ipam::Pool;
use tokio::time::Instant;

use super::{ControlPlane, NodeEntry};
use crate::config::Cidr;
use crate::model::{NodeInfo, unix_now};
use crate::store::NodeRecord;

/// A node silent for this long is NotReady: its pods leave every endpoint set.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(6);

impl ControlPlane {
    pub(super) fn add_node(&mut self, record: NodeRecord) -> Result<(), String> {
        let ipam = Pool::new(*record.subnet)
            .map_err(|e| format!("node {} subnet {}: {e}", record.name, record.subnet))?;
        let name = record.name.clone();
        self.nodes.insert(name, NodeEntry { record, ipam, ready: false, last_seen: None });
        Ok(())
    }

    /// Admits a node (new or returning) at `address`; returns its pod subnet.
    pub fn register(&mut self, name: &str, address: Ipv4Addr) -> Result<Cidr, String> {
        crate::model::check_name("node", name, 63)?;
        if name == self.local {
            return Err(format!(
                "node name `{name}` is the server's own: give the joining node another --name"
            ));
        }
        if let Some(node) = self.nodes.get_mut(name) {
            node.record.address = Some(address);
            node.ready = true;
            node.last_seen = Some(Instant::now());
            let subnet = node.record.subnet;
            self.save()?;
            return Ok(subnet);
        }
        let subnet = self.free_subnet()?;
        let record = NodeRecord { name: name.into(), subnet, address: Some(address), joined_at: unix_now() };
        self.add_node(record)?;
        if let Err(e) = self.save() {
            self.nodes.remove(name);
            return Err(e);
        }
        let node = self.nodes.get_mut(name).expect("added above");
        node.ready = true;
        node.last_seen = Some(Instant::now());
        tracing::info!(node = name, %subnet, %address, "node joined");
        Ok(subnet)
    }

    /// Records the address other nodes reach the server's own node at.
    pub fn set_local_address(&mut self, address: Ipv4Addr) -> Result<(), String> {
        if let Some(me) = self.nodes.get_mut(&self.local) {
            me.record.address = Some(address);
        }
        self.save()
    }

    /// The settings every member takes from the server.
    pub fn settings(&self) -> crate::cluster::proto::ClusterSettings {
        let net = &self.config.network;
        crate::cluster::proto::ClusterSettings {
            cluster_cidr: net.cluster_cidr,
            service_cidr: net.service_cidr,
            cluster_dns: net.cluster_dns,
            cluster_domain: net.cluster_domain.clone(),
        }
    }

    /// Records that `name` is alive.
    pub fn heartbeat(&mut self, name: &str) {
        if let Some(node) = self.nodes.get_mut(name) {
            node.last_seen = Some(Instant::now());
            if !node.ready {
                tracing::info!(node = name, "node Ready again");
            }
            node.ready = true;
        }
    }

    /// Marks silent nodes NotReady.
    pub fn check_heartbeats(&mut self) {
        let local = self.local.clone();
        for (name, node) in self.nodes.iter_mut().filter(|(name, _)| **name != local) {
            let silent = node.last_seen.is_none_or(|t| t.elapsed() > HEARTBEAT_TIMEOUT);
            if silent && node.ready {
                tracing::warn!(node = %name, "node NotReady: no heartbeat");
                node.ready = false;
            }
        }
    }

    /// The next free /N of the cluster CIDR, N being the node subnet's prefix.
    fn free_subnet(&self) -> Result<Cidr, String> {
        let net = &self.config.network;
        let prefix = net.node_subnet.prefix_len();
        let count = 1u32 << (prefix - net.cluster_cidr.prefix_len());
        let size = 1u32 << (32 - prefix);
        (0..count)
            .map(|i| Cidr::new(net.cluster_cidr.nth(i * size), prefix))
            .find(|candidate| self.nodes.values().all(|n| n.record.subnet != *candidate))
            .ok_or_else(|| {
                format!("the cluster CIDR {} has no free /{prefix} for another node", net.cluster_cidr)
            })
    }

    /// Every node, as `get nodes` shows them.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        self.nodes
            .values()
            .map(|n| NodeInfo {
                name: n.record.name.clone(),
                pod_cidr: n.record.subnet.to_string(),
                version: env!("CARGO_PKG_VERSION").into(),
                started_at: n.record.joined_at,
                ready: n.ready,
                roles: if n.record.name == self.local { "control-plane".into() } else { "<none>".into() },
                internal_ip: n.record.address,
                pods: self.pods.values().filter(|p| p.record.node == n.record.name).count() as u32,
            })
            .collect()
    }
}
