//! Why the control plane refuses a request or an input. Each message names
//! the problem and the fix; it is rendered to text once, at the API boundary.

use std::net::IpAddr;

use netstack::ipam::IpamError;

use crate::config::{Cidr, PortRange};
use crate::listeners::ListenError;
use crate::model::listeners::Owner;
use crate::model::{HostPort, ModelError, Protocol, ServiceType};
use crate::store::StoreError;

/// A refused request or input of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A watch from a revision the change log no longer holds (or never had).
    #[error(
        "resource version {since} is too old: the change log holds changes after {floor} up to {revision}; list again"
    )]
    Expired {
        /// The revision asked from.
        since: u64,
        /// The log holds every change after this one.
        floor: u64,
        /// The revision now.
        revision: u64,
    },
    /// A name, label, port or address the user wrote.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Saving the change failed; nothing changed.
    #[error(transparent)]
    Save(#[from] StoreError),
    /// The pod does not exist.
    #[error("pod {namespace}/{name} not found: list pods with `podnet get pods -n {namespace}`")]
    NoPod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The deployment does not exist.
    #[error(
        "deployment {namespace}/{name} not found: list them with `podnet get deployments -n {namespace}`"
    )]
    NoDeployment {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The service does not exist.
    #[error("service {namespace}/{name} not found: list them with `podnet get svc -n {namespace}`")]
    NoService {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The node does not exist.
    #[error("node `{0}` not found: list nodes with `podnet get nodes`")]
    NoNode(String),
    /// A pod of that name exists.
    #[error("pod {namespace}/{name} already exists: delete it first or choose another name")]
    PodExists {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A deployment of that name exists.
    #[error("deployment {namespace}/{name} already exists: scale it, or delete it first")]
    DeploymentExists {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A service of that name exists.
    #[error("service {namespace}/{name} already exists: delete it first or choose another --name")]
    ServiceExists {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The request is about a pod on another node.
    #[error("pod {namespace}/{name} runs on node {node}: run the command there (podnet on that node)")]
    Elsewhere {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The pod's node.
        node: String,
    },
    /// A node-local request reached the control plane.
    #[error("this request is answered by a node")]
    NodeLocal,
    /// No ready node to place a pod on.
    #[error("no Ready node to run the pod on")]
    NoReadyNode,
    /// The node's subnet is full.
    #[error(
        "node {node} subnet {subnet} has no free address: delete pods, or give the node a larger network.node_subnet"
    )]
    SubnetFull {
        /// The node.
        node: String,
        /// Its subnet.
        subnet: Cidr,
    },
    /// Another address pool error.
    #[error("node {node}: {source}")]
    Ipam {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: IpamError,
    },
    /// A node's subnet cannot be a pool.
    #[error("node {node} subnet {subnet}: {source}")]
    NodeSubnet {
        /// The node.
        node: String,
        /// Its subnet.
        subnet: Cidr,
        /// Why.
        #[source]
        source: IpamError,
    },
    /// The cluster CIDR has no subnet for another node.
    #[error("the cluster CIDR {cidr} has no free /{prefix} for another node")]
    ClusterFull {
        /// The cluster CIDR.
        cidr: Cidr,
        /// The node subnet's prefix length.
        prefix: u8,
    },
    /// A joining node took the server's name.
    #[error("node name `{0}` is the server's own: give the joining node another --name")]
    ServerName(String),
    /// A joining node gave an address other nodes cannot reach it at.
    #[error(
        "node {node} cannot join with address {address}: it is {what}; pass the node's own unicast address with --node-ip"
    )]
    BadAddress {
        /// The node.
        node: String,
        /// The address it gave.
        address: IpAddr,
        /// What kind of address it is.
        what: &'static str,
    },
    /// A joining node gave another node's address.
    #[error(
        "node {node} cannot join with address {address}: node {other} has it; pass this node's own address with --node-ip, or `podnet delete node {other}` if that node is gone"
    )]
    AddressTaken {
        /// The node.
        node: String,
        /// The address it gave.
        address: IpAddr,
        /// The node holding it.
        other: String,
    },
    /// Another live agent is connected under this name.
    #[error(
        "node name `{node}` is in use by a live node at {address}: give this node another --name (or stop the other agent)"
    )]
    NameInUse {
        /// The name.
        node: String,
        /// The live node's address.
        address: IpAddr,
    },
    /// A node came with another password than the one its name is pinned to.
    #[error(
        "node `{0}` joined before with another node password: if it is the same board reinstalled, put its old node-password file back in its data dir, or run `podnet delete node {0}` on the server so that it joins anew; otherwise give this node another --name"
    )]
    NodePassword(String),
    /// The server's own node cannot be deleted.
    #[error("node `{0}` is the control plane's own node: it cannot be deleted (stop its agent instead)")]
    DeleteServer(String),
    /// A deployment with host ports and more than one replica.
    #[error(
        "deployment {namespace}/{name} has host ports: it can run one replica per node, and one replica for now"
    )]
    OneReplicaPerNode {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A service without ports.
    #[error("a service needs at least one port: give --port")]
    NoPorts,
    /// A service port given twice.
    #[error("port {port}/{protocol} is listed twice")]
    PortTwice {
        /// Port.
        port: u16,
        /// Protocol.
        protocol: Protocol,
    },
    /// A multi-port service with an unnamed port.
    #[error("every port of a multi-port service needs a name: --port NAME:PORT")]
    PortNeedsName,
    /// A node port on a ClusterIP service.
    #[error("--node-port needs --type NodePort or LoadBalancer")]
    NodePortNeedsType,
    /// A NodePort or LoadBalancer service without a ClusterIP.
    #[error("a {0} service needs a ClusterIP: leave out --cluster-ip None")]
    NeedsClusterIp(ServiceType),
    /// A node port outside the range.
    #[error(
        "node port {port} is outside the node port range {range}: choose one inside it, or leave --node-port out"
    )]
    NodePortOutOfRange {
        /// The port.
        port: u16,
        /// The range.
        range: PortRange,
    },
    /// A node port another object uses.
    #[error(
        "node port {port}/{protocol} is already used by {owner}: choose another, or leave --node-port out"
    )]
    NodePortUsed {
        /// The port.
        port: u16,
        /// Protocol.
        protocol: Protocol,
        /// Its user.
        owner: Owner,
    },
    /// A node port another process holds on the server's node.
    #[error(
        "node port {port}/{protocol}: {source} (another process holds it): choose another, or leave --node-port out"
    )]
    NodePortHeld {
        /// The port.
        port: u16,
        /// Protocol.
        protocol: Protocol,
        /// What binding it said.
        #[source]
        source: ListenError,
    },
    /// No free node port.
    #[error(
        "the node port range {range} has no free {protocol} port: delete services, or widen network.node_port_range"
    )]
    NodePortsFull {
        /// The range.
        range: PortRange,
        /// Protocol.
        protocol: Protocol,
    },
    /// Two pods' host ports conflict.
    #[error("host port {port} conflicts with {other} of {owner}: choose another host port")]
    HostPortConflict {
        /// The new port.
        port: HostPort,
        /// The other pod's port.
        other: HostPort,
        /// The other pod.
        owner: Owner,
    },
    /// A host port a service uses.
    #[error("host port {port} is already used by {owner}: choose another host port")]
    HostPortUsed {
        /// The port.
        port: HostPort,
        /// Its user.
        owner: Owner,
    },
    /// A host port another process holds on the server's node.
    #[error("host port {port}: {source}: choose another host port")]
    HostPortHeld {
        /// The port.
        port: HostPort,
        /// What binding it said.
        #[source]
        source: ListenError,
    },
    /// The pod's node could not start it; it was removed again.
    #[error("{0}")]
    StartFailed(String),
    /// No command.
    #[error("no command given: put it after `--`, e.g. `podnet run client -- sleep infinity`")]
    NoCommand,
    /// An image reference that does not parse.
    #[error(transparent)]
    Image(crate::image::reference::ReferenceError),
    /// Both a host command and an image.
    #[error("pod runs image {0}: its command goes in the image spec (args after `--`, or --command)")]
    CommandAndImage(String),
    /// An update changes a field that cannot change.
    #[error("{field}: Invalid value: field is immutable: {why}")]
    Immutable {
        /// The field, as the Kubernetes API names it.
        field: &'static str,
        /// Why, and what to do.
        why: String,
    },
    /// A pod update changes more than labels and annotations.
    #[error(
        "{0}: Forbidden: pod updates may not change fields other than labels and annotations (podnet does not change a pod's image either): delete and create the pod, or run it in a deployment"
    )]
    PodUpdate(&'static str),
    /// A deployment's selector does not select its own pods.
    #[error("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`")]
    SelectorMismatch,
    /// A NetworkPolicy of that name exists.
    #[error("networkpolicy {namespace}/{name} already exists: apply it to change it, or delete it first")]
    PolicyExists {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The NetworkPolicy does not exist.
    #[error(
        "networkpolicy {namespace}/{name} not found: list them with `podnet get networkpolicies -n {namespace}`"
    )]
    NoPolicy {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The namespace exists.
    #[error("namespace {0} already exists")]
    NamespaceExists(String),
    /// No such namespace.
    #[error("namespace {0} not found")]
    NoNamespace(String),
    /// `default` stays.
    #[error("namespace default may not be deleted")]
    DeleteDefault,
    /// The command is not on the node.
    #[error("command `{0}` not found on the node: install it, or give its full path")]
    CommandNotFound(String),
    /// A CNI ADD for an attachment that exists (the spec's ADD must fail).
    #[error(
        "container {container_id} already has interface {ifname} (pod {pod}): the runtime must DEL it before adding it again"
    )]
    AttachmentExists {
        /// CNI_CONTAINERID.
        container_id: String,
        /// CNI_IFNAME.
        ifname: String,
        /// The pod it is, namespace/name.
        pod: String,
    },
    /// The node runs as many pods as it may.
    #[error(
        "node {node} already runs {max} pods, its limit: delete pods or containers, or raise limits.max_pods"
    )]
    NodeFull {
        /// The node.
        node: String,
        /// limits.max_pods.
        max: u16,
    },
    /// An Ingress or Secret that does not exist.
    #[error("{kind} {namespace}/{name} not found: list them with `podnet get {kind} -n {namespace}`")]
    NotFound {
        /// `ingress` or `secret`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// An Ingress or Secret that exists already.
    #[error("{kind} {namespace}/{name} already exists: delete it first, or change it with `podnet apply -f`")]
    Exists {
        /// `ingress` or `secret`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// ConfigMap data past the cluster's total (the state file and every
    /// node's memory hold it).
    #[error(
        "the cluster's configmaps would hold {total} bytes of data, more than its {max}: delete unused configmaps first"
    )]
    ConfigMapBytes {
        /// What they would hold.
        total: usize,
        /// The bound.
        max: usize,
    },
    /// The cluster holds as many objects of a kind as it may.
    #[error("the cluster holds {max} {kind}s, as many as it may: delete some first")]
    TooMany {
        /// `ingress` or `secret`.
        kind: &'static str,
        /// The bound.
        max: usize,
    },
}

impl ControlError {
    /// The error for a pod that does not exist.
    pub fn no_pod(namespace: &str, name: &str) -> ControlError {
        ControlError::NoPod { namespace: namespace.into(), name: name.into() }
    }

    pub(super) fn no_deployment(namespace: &str, name: &str) -> ControlError {
        ControlError::NoDeployment { namespace: namespace.into(), name: name.into() }
    }

    pub(super) fn no_policy(namespace: &str, name: &str) -> ControlError {
        ControlError::NoPolicy { namespace: namespace.into(), name: name.into() }
    }

    pub(super) fn no_service(namespace: &str, name: &str) -> ControlError {
        ControlError::NoService { namespace: namespace.into(), name: name.into() }
    }
}
