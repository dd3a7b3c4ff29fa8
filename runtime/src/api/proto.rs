//! Requests and responses. Any change to these types bumps
//! [`PROTOCOL_VERSION`]: postcard is not self-describing, so both sides must
//! agree on the exact shapes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::image::{ImageInfo, PullEvent};
use crate::model::configmap::{ConfigMap, ConfigMapSpec};
use crate::model::ingress::{Ingress, IngressSpec};
use crate::model::secret::{SecretInfo, SecretSpec};

use crate::model::policy::{NetworkPolicy, NetworkPolicySpec};
use crate::model::{
    Deployment, DeploymentSpec, Endpoints, Namespace, NodeInfo, Pod, PodEvent, PodSpec, SecurityContext,
    Service, ServiceSpec, SessionAffinity,
};

/// Version of the message shapes below.
pub const PROTOCOL_VERSION: u16 = 10;

/// Something the CLI asks of the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Create one pod.
    RunPod(PodSpec),
    /// Create a deployment.
    CreateDeployment(DeploymentSpec),
    /// Change a deployment's replica count.
    ScaleDeployment {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// New count.
        replicas: u32,
    },
    /// List pods, in one namespace or all.
    GetPods {
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// List deployments, in one namespace or all.
    GetDeployments {
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// Delete a pod.
    DeletePod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Delete a deployment and its pods.
    DeleteDeployment {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Where and how to run a command inside a pod.
    ExecTarget {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Run a command in a pod on a member of the cluster, from the
    /// server's CLI: the answer is a session (output items, then the exit
    /// code), its input [`Request::Input`] frames on the same connection.
    /// (A pod on the CLI's own node is entered by the CLI itself.)
    Exec {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The command and its arguments.
        command: Vec<String>,
        /// The CLI sends input.
        stdin: bool,
        /// The command runs on a terminal (`-t`), sized by
        /// [`Request::Resize`]; its stderr is the terminal too.
        tty: bool,
    },
    /// Input of a [`Request::Exec`] session (empty: no more).
    Input(Vec<u8>),
    /// The CLI's terminal size, in a [`Request::Exec`] session with a tty.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// What happened to a pod on its node (kubectl describe's events).
    DescribePod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A pod's output.
    Logs {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The cluster's nodes.
    GetNodes,
    /// Counters of the switch: ports, DNS, flows.
    NodeStats,
    /// Create a Service.
    CreateService(ServiceSpec),
    /// List Services, in one namespace or all.
    GetServices {
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// List Endpoints, in one namespace or all.
    GetEndpoints {
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// Delete a Service.
    DeleteService {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Stream the frames a pod's switch port sees, in both directions.
    Capture {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Resolve a name as a pod in `namespace` would (search path, ndots:5).
    Resolve {
        /// The name.
        name: String,
        /// The record type number (1 = A, 33 = SRV, ...).
        qtype: u16,
        /// The namespace whose search path applies.
        namespace: String,
    },
    /// Change a live Service's session affinity.
    SetSessionAffinity {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The new affinity.
        affinity: SessionAffinity,
    },
    /// Remove a node from the cluster, with its pods, freeing its subnet.
    DeleteNode {
        /// Node name.
        name: String,
    },
    /// Pull an image into the node's store; the answer streams progress.
    ImagePull {
        /// The reference as the user wrote it.
        reference: String,
        /// OS/ARCH[/VARIANT]; None for the node's own.
        platform: Option<String>,
    },
    /// The node's stored images.
    ImageList,
    /// Forget an image and collect the blobs nothing else uses.
    ImageRemove {
        /// The reference as the user wrote it.
        reference: String,
    },
    /// Import an image archive (OCI layout or `docker save`) from a file on the node.
    ImageImport {
        /// Absolute path of the archive.
        path: PathBuf,
    },
    /// The changes after revision `since`, oldest first (the Kubernetes
    /// API's watch); refused when the log no longer holds them all.
    Changes {
        /// The revision the asker has seen.
        since: u64,
    },
    /// Every object of a kind, with the revision of its last change.
    Objects {
        /// The kind.
        kind: crate::api::changes::ObjectKind,
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// Change a pod: its labels and annotations (the rest of a pod is
    /// immutable).
    UpdatePod(PodSpec),
    /// Replace a deployment's spec; a changed pod template rolls its pods.
    UpdateDeployment(DeploymentSpec),
    /// Replace a Service's spec, keeping its ClusterIP and node ports.
    UpdateService(ServiceSpec),
    /// Create a namespace (one also exists while something is in it).
    CreateNamespace {
        /// Name.
        name: String,
        /// Its labels.
        labels: crate::model::Labels,
        /// Its annotations.
        annotations: crate::model::Annotations,
    },
    /// Replace a namespace's labels (it must exist: made, `default`, or
    /// holding objects).
    UpdateNamespace {
        /// Name.
        name: String,
        /// Its labels (`kubernetes.io/metadata.name` is always set).
        labels: crate::model::Labels,
        /// Its annotations.
        annotations: crate::model::Annotations,
    },
    /// Create a NetworkPolicy.
    CreateNetworkPolicy(NetworkPolicySpec),
    /// Replace a NetworkPolicy's spec.
    UpdateNetworkPolicy(NetworkPolicySpec),
    /// List NetworkPolicies, in one namespace or all.
    GetNetworkPolicies {
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// Delete a NetworkPolicy.
    DeleteNetworkPolicy {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Delete a namespace and everything in it.
    DeleteNamespace {
        /// Name.
        name: String,
    },
    /// The namespaces created explicitly.
    GetNamespaces,
    /// Check and answer a change as if it were made, changing nothing
    /// (the Kubernetes API's `dryRun=All`).
    DryRun(Box<Request>),
    /// Follow a pod's output: a stream of [`Response::Logs`], first the
    /// last `backlog` bytes already written (one item, maybe empty), then
    /// new output until the pod's process ends or the reader goes.
    FollowLogs {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Most bytes of earlier output sent first.
        backlog: u64,
    },
    /// Create an Ingress.
    CreateIngress(IngressSpec),
    /// Replace an Ingress's spec.
    UpdateIngress(IngressSpec),
    /// List Ingresses, in one namespace or all.
    GetIngresses {
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// Delete an Ingress.
    DeleteIngress {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Create a Secret (a TLS Secret's certificate and key are checked).
    CreateSecret(SecretSpec),
    /// Replace a Secret's data.
    UpdateSecret(SecretSpec),
    /// List Secrets (their keys and sizes, never their bytes).
    GetSecrets {
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// Delete a Secret.
    DeleteSecret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Create a ConfigMap.
    CreateConfigMap(ConfigMapSpec),
    /// Replace a ConfigMap's data, labels and annotations.
    UpdateConfigMap(ConfigMapSpec),
    /// List ConfigMaps, with their data.
    GetConfigMaps {
        /// None for every namespace.
        namespace: Option<String>,
    },
    /// Delete a ConfigMap.
    DeleteConfigMap {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// CNI ADD: network a container another runtime runs as a pod of the
    /// node that is asked (see `model::cni`).
    CniAdd(CniAdd),
    /// CNI DEL: free an attachment; nothing to free is success.
    CniDel {
        /// CNI_CONTAINERID.
        container_id: String,
        /// CNI_IFNAME.
        ifname: String,
    },
    /// CNI CHECK: whether an attachment is as ADD made it.
    CniCheck {
        /// CNI_CONTAINERID.
        container_id: String,
        /// CNI_IFNAME.
        ifname: String,
    },
    /// CNI GC: free this node's attachments of `network` not listed.
    CniGc {
        /// The CNI network's name.
        network: String,
        /// The attachments still in use: (container id, interface name).
        valid: Vec<(String, String)>,
    },
    /// CNI STATUS: whether the node takes ADDs.
    CniStatus,
}

/// What a CNI ADD hands the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniAdd {
    /// The container, its namespace and interface.
    pub attachment: crate::model::cni::CniAttachment,
    /// The pod's name (CNI_ARGS K8S_POD_NAME); from the container id without it.
    pub name: Option<String>,
    /// The pod's namespace (K8S_POD_NAMESPACE); `default` without it.
    pub namespace: Option<String>,
}

/// What an attachment got: what the plugin reports as its CNI result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CniAttached {
    /// The pod it is, as namespace/name.
    pub pod: String,
    /// Its address.
    pub ip: std::net::IpAddr,
    /// Prefix length of the node subnet.
    pub prefix: u8,
    /// The gateway (the node's port).
    pub gateway: std::net::Ipv4Addr,
    /// The interface's MAC.
    pub mac: [u8; 6],
    /// The interface's MTU.
    pub mtu: u32,
    /// The cluster DNS address.
    pub nameserver: std::net::Ipv4Addr,
    /// The search path, as a pod in its namespace gets it.
    pub search: Vec<String>,
    /// The cluster domain.
    pub domain: String,
}

/// Who answers a request: the one place that decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// The node the CLI talks to (its counters, its DNS view).
    Node,
    /// The node the pod runs on (exec, logs, capture).
    Pod {
        /// Namespace.
        namespace: &'a str,
        /// Name.
        name: &'a str,
    },
    /// The control plane (cluster state).
    Cluster,
}

impl Request {
    /// Whether this is one of the CNI plugin's requests (answered by the
    /// node whose plugin was called).
    pub fn is_cni(&self) -> bool {
        matches!(
            self,
            Request::CniAdd(_)
                | Request::CniDel { .. }
                | Request::CniCheck { .. }
                | Request::CniGc { .. }
                | Request::CniStatus
        )
    }

    /// Who answers this request.
    pub fn route(&self) -> Route<'_> {
        match self {
            Request::NodeStats
            | Request::Resolve { .. }
            | Request::ImagePull { .. }
            | Request::ImageList
            | Request::ImageRemove { .. }
            | Request::ImageImport { .. } => Route::Node,
            Request::CniAdd(_)
            | Request::CniDel { .. }
            | Request::CniCheck { .. }
            | Request::CniGc { .. }
            | Request::CniStatus => Route::Node,
            Request::ExecTarget { namespace, name }
            | Request::Logs { namespace, name }
            | Request::DescribePod { namespace, name }
            | Request::Capture { namespace, name }
            | Request::FollowLogs { namespace, name, .. }
            | Request::Exec { namespace, name, .. } => Route::Pod { namespace, name },
            Request::Input(_) | Request::Resize { .. } => Route::Node,
            _ => Route::Cluster,
        }
    }
}

impl Request {
    /// Whether the request only reads cluster objects: what a member node
    /// may ask the server for its CLI (the Kubernetes node authorizer lets
    /// a kubelet read pods, services, endpoints and nodes, and change none
    /// of them). A pod's own data (its output, a shell in it, its frames)
    /// and every change take the admin.
    pub fn is_read_only(&self) -> bool {
        match self {
            Request::GetPods { .. }
            | Request::GetDeployments { .. }
            | Request::DescribePod { .. }
            | Request::GetNodes
            | Request::NodeStats
            | Request::GetServices { .. }
            | Request::GetEndpoints { .. }
            | Request::Resolve { .. }
            | Request::ImageList
            | Request::GetNamespaces
            | Request::CniCheck { .. }
            | Request::CniStatus
            | Request::GetNetworkPolicies { .. }
            | Request::GetIngresses { .. } => true,
            Request::RunPod(_)
            | Request::CreateDeployment(_)
            | Request::ScaleDeployment { .. }
            | Request::DeletePod { .. }
            | Request::DeleteDeployment { .. }
            | Request::ExecTarget { .. }
            | Request::Exec { .. }
            | Request::Input(_)
            | Request::Resize { .. }
            | Request::Logs { .. }
            | Request::FollowLogs { .. }
            | Request::CreateService(_)
            | Request::DeleteService { .. }
            | Request::Capture { .. }
            | Request::SetSessionAffinity { .. }
            | Request::DeleteNode { .. }
            | Request::ImagePull { .. }
            | Request::ImageRemove { .. }
            | Request::ImageImport { .. }
            | Request::UpdatePod(_)
            | Request::UpdateDeployment(_)
            | Request::UpdateService(_)
            | Request::CreateNamespace { .. }
            | Request::DeleteNamespace { .. }
            | Request::DryRun(_)
            | Request::CniAdd(_)
            | Request::CniDel { .. }
            | Request::CniGc { .. }
            | Request::UpdateNamespace { .. }
            | Request::CreateNetworkPolicy(_)
            | Request::UpdateNetworkPolicy(_)
            | Request::DeleteNetworkPolicy { .. }
            | Request::CreateIngress(_)
            | Request::UpdateIngress(_)
            | Request::DeleteIngress { .. }
            | Request::CreateSecret(_)
            | Request::UpdateSecret(_)
            | Request::GetSecrets { .. }
            | Request::DeleteSecret { .. }
            | Request::CreateConfigMap(_)
            | Request::UpdateConfigMap(_)
            | Request::GetConfigMaps { .. }
            | Request::DeleteConfigMap { .. } => false,
            // A node may read only the ConfigMaps its pods name, and those
            // reach it resolved in its desired state: not the ConfigMaps'
            // listing, nor the change log, which carries their data.
            Request::Changes { .. } => false,
            Request::Objects { kind, .. } => *kind != crate::api::changes::ObjectKind::ConfigMap,
        }
    }
}

/// Everything `podnet node stats` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsReport {
    /// Per-port counters.
    pub ports: Vec<PortCounters>,
    /// DNS queries by result.
    pub dns: Vec<(String, u64)>,
    /// The ClusterIP flow table: active, capacity, created, expired, refused.
    pub flows: Vec<(String, u64)>,
    /// The agent's listeners: connections open, refused and closed by reason.
    pub listeners: Vec<ListenerCounters>,
    /// Images and image pods: layers unpacked and refused, GC, imports,
    /// container starts and failed starts by kubectl reason.
    pub images: Vec<(String, u64)>,
    /// The Ingress proxy: requests per rule and status class, requests no
    /// rule matched, backend errors, failed TLS handshakes.
    #[serde(default)]
    pub ingress: Vec<(String, u64)>,
    /// The Kubernetes mode's watchers: reconnects, relists, events,
    /// objects refused (empty in the other modes).
    #[serde(default)]
    pub kubernetes: Vec<(String, u64)>,
    /// Each data-plane thread's counters, in thread order.
    pub threads: Vec<ThreadCounters>,
}

/// One data-plane thread's counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadCounters {
    /// Frames it decided.
    pub frames: u64,
    /// Frames it read for a flow another thread owns, and passed on.
    pub handed_off: u64,
    /// Frames it could not pass on: the owner's handoff queue was full.
    pub handoff_full: u64,
    /// Service flows whose replies could not be steered back to it (the
    /// redirect table was full).
    pub redirect_full: u64,
}

/// One listener's connections, and what it refused or closed, by reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerCounters {
    /// `dns_tcp`, `cluster_api`, `metrics`, `control`, `proxy_tcp`, `proxy_udp`.
    pub listener: String,
    /// Connections (UDP: flows) open now.
    pub open: u64,
    /// Refusals and closes by reason (non-zero only).
    pub counts: Vec<(String, u64)>,
}

/// One switch port's counters, named for people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortCounters {
    /// `node`, or the pod as namespace/name.
    pub port: String,
    /// The port's IP.
    pub ip: std::net::IpAddr,
    /// Frames received from the port.
    pub rx_packets: u64,
    /// Bytes received from the port.
    pub rx_bytes: u64,
    /// Frames sent to the port.
    pub tx_packets: u64,
    /// Bytes sent to the port.
    pub tx_bytes: u64,
    /// Writes to the port that failed.
    pub tx_errors: u64,
    /// Dropped frames received from the port, by reason (non-zero only).
    pub drops: Vec<(String, u64)>,
}

/// Where `podnet exec` enters a pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecTarget {
    /// The pod's named network namespace.
    pub netns: PathBuf,
    /// The pod's resolv.conf, bind-mounted over /etc/resolv.conf.
    pub resolv_conf: PathBuf,
    /// The pod's hostname (its name).
    pub hostname: String,
    /// The pod's whole environment (POD_NAME, POD_NAMESPACE, POD_IP, POD_UID, PATH, HOME).
    pub env: Vec<(String, String)>,
    /// Host PID of the pod's command, whose PID, IPC, mount and UTS
    /// namespaces `podnet exec` joins; None while it does not run.
    pub pid: Option<i32>,
    /// The pod's securityContext, applied to the exec'd command too.
    pub security: SecurityContext,
    /// For an image pod: the OCI runtime that runs its container, which
    /// execs into it (its namespaces, cgroup, root, user and confinement).
    #[serde(default)]
    pub container: Option<ContainerExec>,
    /// For a container with input (`stdin`, `tty`): the FIFO an attach
    /// writes it to.
    #[serde(default)]
    pub stdin: Option<PathBuf>,
}

/// How to run `RUNTIME --root ROOT exec ID COMMAND...`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerExec {
    /// The runtime's executable (crun or runc).
    pub runtime: PathBuf,
    /// Its state directory for podnet's containers.
    pub root: PathBuf,
    /// The container id.
    pub id: String,
}

/// The agent's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Done, nothing to report.
    Done,
    /// One pod.
    Pod(Pod),
    /// Pods.
    Pods(Vec<Pod>),
    /// One deployment.
    Deployment(Deployment),
    /// Deployments.
    Deployments(Vec<Deployment>),
    /// Exec target.
    Exec(ExecTarget),
    /// Log bytes.
    Logs(Vec<u8>),
    /// The pod runs on member `0`: exec there with [`Request::Exec`].
    Elsewhere(String),
    /// An exec session's output on stream 1 (stdout) or 2 (stderr).
    Output(u8, Vec<u8>),
    /// An exec session's end: the command's exit code.
    Exited(i32),
    /// A pod's events on its node, oldest first.
    PodEvents(Vec<PodEvent>),
    /// The cluster's nodes.
    Nodes(Vec<NodeInfo>),
    /// Switch counters.
    Stats(StatsReport),
    /// One Service.
    Service(Service),
    /// Services (the control plane's own, shared: a listing copies none).
    Services(Vec<std::sync::Arc<Service>>),
    /// Endpoints.
    Endpoints(Vec<Endpoints>),
    /// A DNS answer: the name that was asked last, and the response bytes.
    Resolved {
        /// The name after the search path was applied.
        name: String,
        /// The DNS response.
        response: Vec<u8>,
    },
    /// One captured frame (Ethernet, without the virtio-net header).
    Captured {
        /// Capture time, microseconds since the Unix epoch.
        micros: u64,
        /// The frame.
        frame: Vec<u8>,
        /// The switch's drop reason when it dropped the frame (e.g.
        /// `policy_ingress`), by name.
        dropped: Option<String>,
    },
    /// A pull's progress, then its end.
    ImagePull(PullEvent),
    /// Stored images (a list, or what an import stored).
    Images(Vec<ImageInfo>),
    /// An image was removed: the blobs collected and their bytes.
    ImageRemoved {
        /// Blobs deleted.
        blobs: u64,
        /// Bytes freed.
        bytes: u64,
    },
    /// The changes asked for, and the revision now.
    Changes {
        /// The control plane's revision.
        revision: u64,
        /// Oldest first.
        changes: Vec<crate::api::changes::Change>,
    },
    /// Objects of a kind, and the revision now.
    Objects {
        /// The control plane's revision.
        revision: u64,
        /// Sorted by namespace and name.
        items: Vec<crate::api::changes::Versioned>,
    },
    /// One namespace.
    Namespace(Namespace),
    /// Namespaces.
    Namespaces(Vec<Namespace>),
    /// What a CNI ADD made.
    CniAttached(CniAttached),
    /// One NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// NetworkPolicies.
    NetworkPolicies(Vec<NetworkPolicy>),
    /// One Ingress.
    Ingress(Ingress),
    /// Ingresses, and the ports every node serves them on.
    Ingresses {
        /// The Ingresses.
        items: Vec<Ingress>,
        /// `ingress.http_port` and `ingress.https_port` (0: off).
        ports: Vec<u16>,
    },
    /// One Secret, without its bytes.
    Secret(SecretInfo),
    /// Secrets, without their bytes.
    Secrets(Vec<SecretInfo>),
    /// One ConfigMap.
    ConfigMap(ConfigMap),
    /// ConfigMaps.
    ConfigMaps(Vec<ConfigMap>),
}
