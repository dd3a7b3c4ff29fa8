//! Messages on the cluster channel (postcard). A connection opens with a
//! [`Hello`] naming who calls: the admin (a remote CLI, with the admin
//! token), a node joining (with its node password), or a node asking on
//! behalf of its local CLI (with its node password; reads only). A member
//! then gets a [`Welcome`] and a stream of [`NodeDesired`] and sends
//! reports; a CLI sends requests and gets answers.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::password::NodePassword;
use crate::api::PROTOCOL_VERSION;
use crate::config::Cidr;
use crate::desired::{NodeDesired, PodReport};

/// The first message on a connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Hello {
    /// A remote CLI, as the cluster's admin.
    Cli {
        /// Its control protocol version.
        version: u16,
        /// The admin token (the Kubernetes API's bearer token): the join
        /// token alone reads and changes nothing.
        admin: String,
    },
    /// A node joining (or coming back).
    Node {
        /// Its control protocol version.
        version: u16,
        /// Node name.
        name: String,
        /// Its address on the network between nodes (IPv6 is refused by
        /// the control plane).
        address: IpAddr,
        /// Its node password: pinned to the name at the first join.
        password: NodePassword,
    },
    /// A member node asking for its local CLI: it may read the cluster,
    /// not change it (the Kubernetes node authorizer's line).
    NodeCli {
        /// Its control protocol version.
        version: u16,
        /// Node name.
        name: String,
        /// Its node password.
        password: NodePassword,
    },
}

impl Hello {
    /// The sender's protocol version.
    pub fn version(&self) -> u16 {
        match self {
            Hello::Cli { version, .. } | Hello::Node { version, .. } | Hello::NodeCli { version, .. } => {
                *version
            }
        }
    }
}

/// The cluster-wide settings every node must share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Pod range of the whole cluster.
    pub cluster_cidr: Cidr,
    /// ClusterIP range.
    pub service_cidr: Cidr,
    /// Cluster DNS address.
    pub cluster_dns: Ipv4Addr,
    /// Cluster DNS zone.
    pub cluster_domain: String,
}

/// The server's answer to a node's [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The node's pod subnet (kept across restarts).
    pub subnet: Cidr,
    /// Cluster-wide settings, overriding the node's own config.
    pub settings: ClusterSettings,
}

/// Server to member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToMember {
    /// Admitted.
    Welcome(Welcome),
    /// Not admitted, and why.
    Refused(String),
    /// What to run and program now.
    Desired(NodeDesired),
}

/// Member to server: its pods' status; also its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report(pub PodReport);

/// A node's Hello, with this build's version.
pub fn hello_node(name: &str, address: Ipv4Addr, password: &NodePassword) -> Hello {
    Hello::Node {
        version: PROTOCOL_VERSION,
        name: name.into(),
        address: address.into(),
        password: password.clone(),
    }
}
