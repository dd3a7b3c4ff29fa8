//! Cluster membership: each node gets a pod subnet of its own from the
//! cluster CIDR, kept across restarts, and is NotReady once its heartbeats
//! stop.

use std::net::IpAddr;
use std::time::Duration;

use netstack::ipam::Pool;

use super::{ControlError, ControlPlane, NodeEntry, Now};
use crate::cluster::password::PasswordDigest;
use crate::config::Cidr;
use crate::model::NodeInfo;
use crate::store::NodeRecord;

/// A node silent for this long is NotReady: its pods leave every endpoint set.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(6);

impl ControlPlane {
    pub(super) fn add_node(&mut self, record: NodeRecord) -> Result<(), ControlError> {
        let ipam = Pool::new(record.subnet.ipv4()).map_err(|source| ControlError::NodeSubnet {
            node: record.name.clone(),
            subnet: record.subnet,
            source,
        })?;
        let name = record.name.clone();
        self.nodes
            .insert(name, NodeEntry { record, ipam, ready: false, last_seen: None, ingress_problem: None });
        Ok(())
    }

    /// Admits a node (new or returning) at `address` with the digest of its
    /// node password; returns its pod subnet once saved. The first join
    /// pins the password to the name; later joins must match it.
    /// `connected` says another connection of that name is open: a node
    /// still Ready there at another address is another agent claiming the
    /// name, and is refused rather than taken over.
    pub fn register(
        &mut self,
        now: Now,
        name: &str,
        address: IpAddr,
        password: &PasswordDigest,
        connected: bool,
    ) -> Result<Cidr, ControlError> {
        crate::model::check_name("node", name, 63)?;
        if name == self.local {
            return Err(ControlError::ServerName(name.into()));
        }
        // Before the address checks: a stranger learns nothing of the
        // node it tries to impersonate.
        if let Some(pinned) = self.nodes.get(name).and_then(|n| n.record.password.as_ref())
            && !pinned.matches(password)
        {
            return Err(ControlError::NodePassword(name.into()));
        }
        check_address(name, address)?;
        if let Some(other) =
            self.nodes.values().find(|n| n.record.name != name && n.record.address == Some(address))
        {
            return Err(ControlError::AddressTaken {
                node: name.into(),
                address,
                other: other.record.name.clone(),
            });
        }
        if let Some(node) = self.nodes.get(name)
            && connected
            && node.ready
            && let Some(live) = node.record.address.filter(|a| *a != address)
        {
            return Err(ControlError::NameInUse { node: name.into(), address: live });
        }
        // A node returning at its address changes nothing to save (a
        // returning member is admitted on a full disk too).
        if let Some(node) = self.nodes.get_mut(name)
            && node.record.address == Some(address)
            && node.record.password.is_some()
        {
            let subnet = node.record.subnet;
            let was_ready = std::mem::replace(&mut node.ready, true);
            node.last_seen = Some(now.at);
            if !was_ready {
                self.track();
            }
            return Ok(subnet);
        }
        self.transact(|cp| {
            let subnet = match cp.nodes.get_mut(name) {
                Some(node) => {
                    node.record.address = Some(address);
                    // A node from before passwords is pinned now.
                    node.record.password = Some(password.clone());
                    node.record.subnet
                }
                None => {
                    let subnet = cp.free_subnet()?;
                    cp.add_node(NodeRecord {
                        name: name.into(),
                        subnet,
                        address: Some(address),
                        joined_at: now.unix,
                        password: Some(password.clone()),
                    })?;
                    tracing::info!(node = name, %subnet, %address, "node joined");
                    subnet
                }
            };
            let node = cp.nodes.get_mut(name).expect("registered above");
            node.ready = true;
            node.last_seen = Some(now.at);
            Ok(subnet)
        })
    }

    /// Whether `password` is the one pinned to node `name`: a member asking
    /// for its CLI must be a node that joined.
    pub fn authenticate(&self, name: &str, password: &PasswordDigest) -> Result<(), ControlError> {
        match self.nodes.get(name).and_then(|n| n.record.password.as_ref()) {
            Some(pinned) if pinned.matches(password) => Ok(()),
            Some(_) => Err(ControlError::NodePassword(name.into())),
            None => Err(ControlError::NoNode(name.into())),
        }
    }

    /// Records the address other nodes reach the server's own node at
    /// (saved with the next change).
    pub fn set_local_address(&mut self, address: IpAddr) {
        if let Some(me) = self.nodes.get_mut(&self.local)
            && me.record.address != Some(address)
        {
            me.record.address = Some(address);
            self.dirty = true;
            self.track();
        }
    }

    /// Removes a node and its pods and frees its subnet; the deployments
    /// whose replicas ran there get new ones on the other nodes.
    pub(super) fn delete_node(&mut self, now: Now, name: &str) -> Result<(), ControlError> {
        if name == self.local {
            return Err(ControlError::DeleteServer(name.into()));
        }
        if !self.nodes.contains_key(name) {
            return Err(ControlError::NoNode(name.into()));
        }
        self.transact(|cp| {
            cp.nodes.remove(name);
            cp.pods.retain(|_, p| p.record.node != name);
            cp.reconcile_pods(now);
            tracing::info!(node = name, "node deleted");
            Ok(())
        })
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
    pub fn heartbeat(&mut self, now: Now, name: &str) {
        if let Some(node) = self.nodes.get_mut(name) {
            node.last_seen = Some(now.at);
            if !node.ready {
                tracing::info!(node = name, "node Ready again");
                node.ready = true;
                self.track();
            }
        }
    }

    /// Marks nodes silent for longer than [`HEARTBEAT_TIMEOUT`] NotReady.
    /// Reports already received must be taken first (see
    /// `cluster::server::Hub::tick`).
    pub fn check_heartbeats(&mut self, now: Now) {
        let local = self.local.clone();
        let mut changed = false;
        for (name, node) in self.nodes.iter_mut().filter(|(name, _)| **name != local) {
            let silent =
                node.last_seen.is_none_or(|t| now.at.saturating_duration_since(t) > HEARTBEAT_TIMEOUT);
            if silent && node.ready {
                tracing::warn!(node = %name, "node NotReady: no heartbeat");
                node.ready = false;
                changed = true;
            }
        }
        if changed {
            self.track();
        }
    }

    /// The next free /N of the cluster CIDR, N being the node subnet's prefix.
    fn free_subnet(&self) -> Result<Cidr, ControlError> {
        let net = &self.config.network;
        let prefix = net.node_subnet.prefix_len();
        let count = 1u32 << (prefix - net.cluster_cidr.prefix_len());
        let size = 1u32 << (32 - prefix);
        (0..count)
            .map(|i| Cidr::new(net.cluster_cidr.nth(i * size), prefix))
            .find(|candidate| self.nodes.values().all(|n| n.record.subnet != *candidate))
            .ok_or(ControlError::ClusterFull { cidr: net.cluster_cidr, prefix })
    }

    /// Whether `name` is a node and Ready.
    pub fn is_ready(&self, name: &str) -> bool {
        self.nodes.get(name).is_some_and(|n| n.ready)
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

/// Refuses an address other nodes cannot reach a node at: one such record
/// would make every node's overlay refuse the peer set.
fn check_address(node: &str, address: IpAddr) -> Result<(), ControlError> {
    let address = IpAddr::V4(
        crate::model::address::ipv4_only(&format!("node {node}'s address"), address)
            .map_err(crate::model::ModelError::from)?,
    );
    let what = if address.is_unspecified() {
        "the unspecified address"
    } else if address.is_loopback() {
        "a loopback address"
    } else if address.is_multicast() {
        "a multicast address"
    } else if matches!(address, IpAddr::V4(v4) if v4.is_broadcast()) {
        "the broadcast address"
    } else {
        return Ok(());
    };
    Err(ControlError::BadAddress { node: node.into(), address, what })
}
