//! Why the agent could not start or had to stop: every layer's error, kept
//! typed up to the CLI, which prints it once.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::Cidr;

/// The agent's errors.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A node name the model refuses.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The data dir cannot be made.
    #[error("cannot create data dir {}: {source}", path.display())]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The data dir's lock file cannot be made.
    #[error("cannot create {}: {source}", path.display())]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Another agent holds the data dir.
    #[error("data dir {} is in use by another podnet agent: stop it, or give this one its own --data-dir", dir.display())]
    Locked {
        /// The data dir.
        dir: PathBuf,
    },
    /// The data dir was another node's.
    #[error("data dir {} belongs to node `{saved}`, not `{given}`: pass --name {saved} or another --data-dir", dir.display())]
    WrongNode {
        /// The data dir.
        dir: PathBuf,
        /// The node name saved in it.
        saved: String,
        /// The name this agent was given.
        given: String,
    },
    /// The metrics listener.
    #[error(transparent)]
    Listen(#[from] crate::listeners::ListenError),
    /// The control socket.
    #[error(transparent)]
    Bind(#[from] crate::api::server::BindError),
    /// SIGTERM cannot be watched.
    #[error("cannot watch SIGTERM: {0}")]
    Signal(#[source] io::Error),
    /// The saved state.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The kernel's random source, for the control plane's seed.
    #[error(transparent)]
    Random(#[from] crate::sys::random::RandomError),
    /// The control plane refused the saved state.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// The node runtime.
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    /// The image store.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The Kubernetes API.
    #[error(transparent)]
    Kube(#[from] crate::kube::KubeError),
    /// The token, the client config or the cluster link.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// No address for other nodes to reach this one at.
    #[error("cannot tell this node's address for other nodes: pass --node-ip")]
    NoAddress,
    /// The cluster API's port.
    #[error("cannot listen for the cluster API on {listen}: {source}")]
    ClusterApi {
        /// Where it was to listen.
        listen: SocketAddr,
        /// Why it cannot.
        source: io::Error,
    },
    /// The server refused a node that had never joined (no state to serve).
    #[error("the cluster server refused this node: {0}")]
    Refused(String),
    /// A CNI request reached a member node.
    #[error(
        "podnet is a CNI plugin on a standalone node or a cluster's server in this version, and this node is a member"
    )]
    CniOnMember,
    /// A CNI ADD's pod was placed but is not plugged in.
    #[error("the container was added but its port is not on the switch: see the agent's log")]
    NotPlugged,
    /// The member's link to its server ended.
    #[error("the cluster link stopped")]
    LinkStopped,
    /// The Kubernetes mode: its kubeconfig, the API server, this node's Node.
    #[error(transparent)]
    Kubernetes(#[from] crate::kubernetes::KubernetesError),
    /// Every Kubernetes watcher stopped.
    #[error("the Kubernetes API watchers stopped: see the agent's log")]
    WatchersStopped,
    /// The data dir's node has another subnet than its Node's podCIDR.
    #[error("data dir {} holds node subnet {saved}, and the Node's podCIDR is {given}: give the agent a fresh --data-dir", dir.display())]
    SubnetChanged {
        /// The data dir.
        dir: PathBuf,
        /// The subnet saved.
        saved: Cidr,
        /// The podCIDR.
        given: Cidr,
    },
    /// A change asked of a node whose state is the Kubernetes API's.
    #[error(
        "this node takes its pods, Services and policies from the Kubernetes API (--kubernetes): make changes there, with kubectl"
    )]
    KubernetesOwned,
    /// The server gave this node another subnet than its pods have.
    #[error("the server moved this node to subnet {0}: restart the agent")]
    Moved(Cidr),
}
