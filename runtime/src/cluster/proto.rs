//! Messages on the cluster channel (postcard). A connection opens with a
//! [`Hello`] naming who calls: the admin (a remote CLI, with the admin
//! token), a node joining (with its node password), or a node asking on
//! behalf of its local CLI (with its node password; reads only). A member
//! then gets a [`Welcome`] and a stream of [`NodeDesired`] and sends
//! reports; a CLI sends requests and gets answers. A stream into a
//! member's pod ([`StreamRequest`]) is a connection of its own: the server
//! asks over the member's connection ([`ToMember::Open`]), the member dials
//! back with [`Hello::Stream`] and the ticket, and both sides then speak
//! [`StreamFrame`]s.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::password::NodePassword;
use crate::api::{PROTOCOL_VERSION, Request, Response};
use crate::config::Cidr;
use crate::desired::{NodeDesired, NodeReport};
use crate::kube::stream::exec::Asked;

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
    /// A member dialling back for a stream the server asked it to open
    /// ([`ToMember::Open`]): the ticket names the stream, and only the node
    /// it was given to may present it.
    Stream {
        /// Its control protocol version.
        version: u16,
        /// Node name.
        name: String,
        /// Its node password.
        password: NodePassword,
        /// The stream's ticket.
        ticket: Ticket,
    },
}

/// A stream's one-time name: 16 random bytes the server hands one member.
pub type Ticket = [u8; 16];

impl Hello {
    /// The sender's protocol version.
    pub fn version(&self) -> u16 {
        match self {
            Hello::Cli { version, .. }
            | Hello::Node { version, .. }
            | Hello::NodeCli { version, .. }
            | Hello::Stream { version, .. } => *version,
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
    /// Dial back and serve this stream into one of the member's pods.
    Open {
        /// The ticket to present ([`Hello::Stream`]).
        ticket: Ticket,
        /// What the stream is.
        request: Box<StreamRequest>,
    },
}

/// A stream into a pod of a member, which the server asks it to open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StreamRequest {
    /// `kubectl exec`: a command in the pod's container.
    Exec {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The command and its streams.
        asked: Asked,
    },
    /// `kubectl attach`: the container's own process.
    Attach {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// Its streams.
        asked: Asked,
    },
    /// One connection of `kubectl port-forward` to the pod's `port`.
    PortForward {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The pod's port.
        port: u16,
    },
    /// A request about the pod answered by its node (logs, a followed
    /// log, describe, capture): one answer, or a stream of them.
    Pod(Box<Request>),
}

/// One message on a stream connection, either way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StreamFrame {
    /// Member: the stream started; data follows.
    Ready,
    /// Member: the stream could not start, and why.
    Refused(String),
    /// Member: the one answer to a [`StreamRequest::Pod`].
    Once(Response),
    /// Member: one item of a streamed answer.
    Item(Response),
    /// Bytes on stream `stream` (exec: stdin 0 from the server, stdout 1
    /// and stderr 2 from the member; port-forward: 0 both ways).
    Data {
        /// The stream id.
        stream: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// No more bytes on stream `stream` from this side (a half-close).
    Close {
        /// The stream id.
        stream: u8,
    },
    /// Server: the terminal's new size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// Member: the command exited with this code.
    Exited(i32),
    /// Member: the command could not run, or failed: the message.
    Failed(String),
}

/// Member to server: its pods' status and Ingress ports; also its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report(pub NodeReport);

/// A node's Hello, with this build's version.
pub fn hello_node(name: &str, address: Ipv4Addr, password: &NodePassword) -> Hello {
    Hello::Node {
        version: PROTOCOL_VERSION,
        name: name.into(),
        address: address.into(),
        password: password.clone(),
    }
}
