//! What can go wrong running this node's pods and answering its local
//! requests. Each variant keeps the error it came from; the text is the one
//! users read in the agent's log or the CLI's answer.

use std::io;

use crate::config::Cidr;
use crate::sys::SysError;

/// An error of the node runtime.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A pod record with an IPv6 address (the node plumbs IPv4 only).
    #[error(transparent)]
    Ipv6(#[from] crate::model::address::Ipv6Unsupported),
    /// No random bytes for the tables' hash seed.
    #[error(transparent)]
    Random(#[from] crate::sys::random::RandomError),
    /// The data-plane thread did not start.
    #[error("cannot start the data plane: {0}")]
    Dataplane(#[source] io::Error),
    /// The node's own TAP could not be made.
    #[error(
        "cannot create interface {name}: {source} (is another agent running in this network namespace? give it another network.host_interface)"
    )]
    HostInterface {
        /// network.host_interface.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No netlink socket.
    #[error("cannot open netlink: {0}")]
    Netlink(#[source] SysError),
    /// The node's interface could not be set up.
    #[error("cannot configure {name}: {source}")]
    Configure {
        /// The interface.
        name: String,
        /// Why.
        #[source]
        source: SysError,
    },
    /// A route through the node's interface could not be added.
    #[error("cannot route {cidr} to {interface}: {source}")]
    Route {
        /// The destination.
        cidr: Cidr,
        /// The interface.
        interface: String,
        /// Why.
        #[source]
        source: SysError,
    },
    /// The node's own port could not join the switch.
    #[error("cannot attach the node port: {0}")]
    AttachHost(#[source] io::Error),
    /// The overlay's UDP port is taken or refused.
    #[error("cannot bind the overlay's UDP port {port}: {source}")]
    OverlayBind {
        /// cluster.vxlan_port.
        port: u16,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The overlay port could not join the switch.
    #[error("cannot attach the overlay port: {0}")]
    AttachOverlay(#[source] io::Error),
    /// The DNS-over-TCP listener could not start.
    #[error("cannot listen for DNS over TCP: {0}")]
    DnsTcp(#[source] io::Error),
    /// Pod egress could not start.
    #[error("cannot start the egress endpoint: {0}")]
    Egress(#[source] io::Error),
    /// A leftover sandbox whose command has exited.
    #[error("its command is not running")]
    NotRunning,
    /// A leftover sandbox that no pod of this node wants.
    #[error("no such pod on this node")]
    NotWanted,
    /// A leftover sandbox's TAP could not be opened again.
    #[error("cannot open its TAP again: {0}")]
    Reopen(#[source] SysError),
    /// A pod's sandbox could not be built.
    #[error("cannot create the sandbox of pod {pod}: {source}")]
    Sandbox {
        /// NAMESPACE/NAME.
        pod: String,
        /// Why.
        #[source]
        source: SysError,
    },
    /// A CNI container's interface could not be made in its namespace.
    #[error("cannot make {what}: {source}")]
    Plug {
        /// The interface, its namespace and its pod, in words.
        what: String,
        /// Why.
        #[source]
        source: SysError,
    },
    /// `podnet exec` into a container another runtime runs.
    #[error(
        "pod {pod} is container {container_id} of the runtime that called podnet as its CNI plugin: exec into it with that runtime (podman exec, ctr task exec)"
    )]
    CniContainer {
        /// NAMESPACE/NAME.
        pod: String,
        /// CNI_CONTAINERID.
        container_id: String,
    },
    /// A CNI container's attachment is not as ADD made it (CHECK).
    #[error("pod {pod} is not attached as ADD made it: {why}")]
    NotAttached {
        /// NAMESPACE/NAME.
        pod: String,
        /// What is missing.
        why: String,
    },
    /// A pod's TAP could not join the switch.
    #[error("cannot attach pod {pod} to the switch: {source}")]
    AttachPod {
        /// NAMESPACE/NAME.
        pod: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pod's namespaces could not be opened for its command.
    #[error("cannot enter pod {pod}: {source}")]
    Enter {
        /// NAMESPACE/NAME.
        pod: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pod's command did not start.
    #[error("cannot start `{command}` in pod {pod}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// NAMESPACE/NAME.
        pod: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A request about a pod of another node.
    #[error(
        "pod {pod} does not run on this node: run the command on the pod's node (see `podnet get pods -o wide`)"
    )]
    NotHere {
        /// NAMESPACE/NAME.
        pod: String,
    },
    /// A pod's log could not be read.
    #[error("cannot read the logs of {pod}: {source}")]
    Logs {
        /// NAMESPACE/NAME.
        pod: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A pod's output pipe could not be made or read.
    #[error("cannot set up the log of {pod}: {source}")]
    LogPipe {
        /// NAMESPACE/NAME.
        pod: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The pod logs directory could not be made private.
    #[error("cannot make the pod log directory {} private (0700): {source}", dir.display())]
    LogDir {
        /// DATA_DIR/logs.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A pod without a switch port (it is being torn down).
    #[error("pod {pod} has no switch port")]
    NoPort {
        /// NAMESPACE/NAME.
        pod: String,
    },
    /// The name cannot be put into a DNS query.
    #[error("{0}")]
    Query(String),
    /// No answer came from the switch or upstream.
    #[error("no answer for {0}")]
    NoAnswer(String),
    /// A request the node does not answer itself.
    #[error("not a node-local request")]
    NotLocal,
    /// The data plane or a blocking task failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A blocking task panicked or was cancelled.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
}
