//! What the control plane asks of a node, and what a node reports back. The
//! same types travel in-process (one node) and over the cluster channel.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::Cidr;
use crate::model::{Endpoints, PodStatus, Service};
use crate::store::PodRecord;

/// Another node of the cluster, as the overlay needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Node name.
    pub node: String,
    /// Its pod subnet.
    pub subnet: Cidr,
    /// Its address on the network between nodes.
    pub address: Ipv4Addr,
}

/// Everything one node must run and program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDesired {
    /// The pods this node runs.
    pub pods: Vec<PodRecord>,
    /// Every Service with its endpoints now: every node's switch and DNS
    /// serve all of them.
    pub services: Vec<(Service, Endpoints)>,
    /// Every pod's address and namespace, for pod DNS records.
    pub pod_ips: Vec<(Ipv4Addr, String)>,
    /// The other nodes.
    pub peers: Vec<Peer>,
}

/// A node's report: the observed status of each of its pods, by uid.
pub type PodReport = Vec<(String, PodStatus)>;
