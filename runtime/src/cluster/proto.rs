//! Messages on the cluster channel (postcard). A connection opens with a
//! [`Hello`]; a member then gets a [`Welcome`] and a stream of
//! [`NodeDesired`] and sends reports; a CLI sends requests and gets answers.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::api::PROTOCOL_VERSION;
use crate::config::Cidr;
use crate::desired::{NodeDesired, PodReport};

/// The first message on a connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Hello {
    /// A remote CLI.
    Cli {
        /// Its control protocol version.
        version: u16,
    },
    /// A node joining (or coming back).
    Node {
        /// Its control protocol version.
        version: u16,
        /// Node name.
        name: String,
        /// Its address on the network between nodes.
        address: Ipv4Addr,
    },
}

impl Hello {
    /// The sender's protocol version.
    pub fn version(&self) -> u16 {
        match self {
            Hello::Cli { version } | Hello::Node { version, .. } => *version,
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
pub fn hello_node(name: &str, address: Ipv4Addr) -> Hello {
    Hello::Node { version: PROTOCOL_VERSION, name: name.into(), address }
}
