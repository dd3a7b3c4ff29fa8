//! The command line, with kubectl's verbs and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use runtime::model::{
    ContainerPort, HostPort, ImageSpec, Probe, Protocol, PullPolicy, ResourceList, Resources, RestartPolicy,
    RunAs, SecurityContext, ServiceType, TargetPort,
};

/// podnet: Kubernetes-style pod networking for edge clusters, in one binary.
#[derive(Debug, Parser)]
#[command(name = "podnet", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// The agent's control socket.
    #[arg(long, global = true, env = "PODNET_SOCKET", default_value = runtime::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Talk to a cluster server with this client config instead of a local agent.
    #[arg(long, global = true, env = "PODNET_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run or inspect this node's agent.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Run one pod.
    Run(RunArgs),
    /// Make a Service for a deployment's or a pod's pods.
    Expose(ExposeArgs),
    /// Set (KEY=VALUE) or remove (KEY-) a pod's labels.
    Label {
        /// pod (the only kind labelled here).
        kind: LabelKind,
        /// Pod name.
        name: String,
        /// KEY=VALUE to set, KEY- to remove.
        #[arg(required = true)]
        labels: Vec<String>,
        /// Change a label that has another value.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Create or update the objects of a manifest (YAML or JSON, several
    /// documents, `kind: List`), as `kubectl apply -f` does.
    Apply {
        /// The manifest file, or `-` for stdin.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Change a live object (a Service's session affinity).
    Patch {
        /// Only `service` (or `svc`).
        kind: Kind,
        /// Service name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
        /// None or ClientIP.
        #[arg(long)]
        session_affinity: Affinity,
        /// ClientIP affinity timeout in seconds (default 10800).
        #[arg(long)]
        session_affinity_timeout: Option<u32>,
    },
    /// Create an object.
    Create {
        #[command(subcommand)]
        command: CreateCommand,
    },
    /// Change a deployment's replica count.
    Scale {
        /// Only `deployment` (or `deploy`).
        kind: Kind,
        /// Deployment name.
        name: String,
        /// New replica count.
        #[arg(long)]
        replicas: u32,
        #[command(flatten)]
        ns: Namespace,
    },
    /// List objects.
    Get(GetArgs),
    /// Delete an object (a node: its pods go, its subnet is freed).
    Delete {
        /// pod, deployment, service or node.
        kind: Kind,
        /// Object name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Run a command inside a pod; stdin, stdout and the exit code pass through.
    Exec {
        /// Pod name.
        pod: String,
        #[command(flatten)]
        ns: Namespace,
        /// Accepted for kubectl habits; stdin always passes through.
        #[arg(short = 'i', long = "stdin")]
        _stdin: bool,
        /// A terminal for the command (a pod on a member node; a pod on this
        /// node shares the CLI's own terminal already).
        #[arg(short = 't', long = "tty")]
        tty: bool,
        /// The command, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Capture what the switch sees on a pod's port.
    Capture {
        /// Pod name.
        pod: String,
        #[command(flatten)]
        ns: Namespace,
        /// Write pcap to FILE (`-` for stdout) instead of printing summaries.
        #[arg(short = 'w')]
        write: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(short = 'c')]
        count: Option<u64>,
    },
    /// Resolve a name with the cluster DNS, as a pod in the namespace would.
    Resolve {
        /// The name (short names go through the pod search path).
        name: String,
        /// Record type: A, AAAA, SRV, PTR, TXT, CNAME, SOA or ANY.
        #[arg(long = "type", short = 't', default_value = "A")]
        qtype: String,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Show one pod in detail: its state, reason, conditions and events.
    Describe {
        /// `pod` (or `po`) or `networkpolicy` (`netpol`).
        kind: Kind,
        /// Object name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Print a pod's output.
    Logs {
        /// Pod name.
        pod: String,
        #[command(flatten)]
        ns: Namespace,
    },
    /// Pull, list, remove and import OCI images on this node.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Check a board config.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start a throwaway node, run pods, show them talking, clean up.
    Demo,
    /// podnet as the CNI plugin of podman, containerd and friends.
    Cni {
        #[command(subcommand)]
        command: CniCommand,
    },
}

/// What `podnet label` labels.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LabelKind {
    /// A pod.
    #[value(alias = "pods", alias = "po")]
    Pod,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CniCommand {
    /// Link podnet into the CNI bin dir and write its conflist (as root).
    Install {
        /// The CNI bin dir (default: /usr/lib/cni where it exists, else /opt/cni/bin).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The CNI config dir.
        #[arg(long, default_value = crate::cni::install::DEFAULT_CONF_DIR)]
        conf_dir: PathBuf,
        /// The network's name (`podman run --network NAME`).
        #[arg(long, default_value = "podnet")]
        name: String,
    },
    /// Print the conflist (podnet, then portmap).
    Config {
        /// The network's name (`podman run --network NAME`).
        #[arg(long, default_value = "podnet")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Run the node agent in the foreground (Ctrl-C stops it and removes its pods).
    Up(Box<NodeUpArgs>),
    /// Per-port packet, byte and drop counters of the switch.
    Stats {
        /// Output format (json or yaml; a table without it).
        #[arg(short = 'o', long = "output")]
        output: Option<Output>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct NodeUpArgs {
    /// Board config (board-configs/*.toml); built-in defaults without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Where desired state and pod logs live.
    #[arg(long, default_value = "/var/lib/podnet")]
    pub data_dir: PathBuf,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464); off by default.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Be the cluster's server: writes a join token and a client config into the data dir.
    #[arg(long, conflicts_with = "server")]
    pub cluster_init: bool,
    /// Port of the cluster API (server) or of the server to join.
    #[arg(long, default_value_t = runtime::cluster::DEFAULT_PORT)]
    pub cluster_port: u16,
    /// Join the cluster whose server is at this address (IP or IP:PORT).
    #[arg(long, requires = "token_file")]
    pub server: Option<String>,
    /// The cluster token file (from the server's data dir).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// This node's address for other nodes (default: its first non-loopback address).
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Registry mirrors, credentials and TLS, in k3s's registries.yaml format
    /// (default: /etc/podnet/registries.yaml when it exists).
    #[arg(long)]
    pub registries: Option<PathBuf>,
    /// Be a Kubernetes cluster's network: take Nodes, Services,
    /// EndpointSlices, Pods and NetworkPolicies from the API server this
    /// kubeconfig names (k3s: /etc/rancher/k3s/k3s.yaml), read-only.
    #[arg(long, value_name = "KUBECONFIG", conflicts_with_all = ["server", "cluster_init"])]
    pub kubernetes: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Pull an image from its registry (or a mirror in registries.yaml) into the node's store.
    Pull {
        /// The image: NAME[:TAG][@DIGEST] (nginx is docker.io/library/nginx:latest).
        reference: String,
        /// OS/ARCH[/VARIANT] to pull (default: the node's, e.g. linux/arm64).
        #[arg(long)]
        platform: Option<String>,
    },
    /// List the node's images.
    #[command(alias = "list")]
    Ls {
        /// Output format (json or yaml; a table without it).
        #[arg(short = 'o', long = "output")]
        output: Option<Output>,
    },
    /// Remove an image and the layers no other image uses.
    #[command(alias = "remove")]
    Rm {
        /// The image, as pulled.
        reference: String,
    },
    /// Import an OCI image archive (skopeo oci-archive:) or a `docker save` tarball.
    Import {
        /// The archive file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Report every problem in a board config, with its line.
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Namespace {
    /// Namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Pod name.
    pub name: String,
    #[command(flatten)]
    pub ns: Namespace,
    /// Labels, k=v[,k=v...].
    #[arg(long, short = 'l', value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Restart policy.
    #[arg(long, default_value = "Always")]
    pub restart: RestartPolicy,
    #[command(flatten)]
    pub pod: PodOptions,
    /// Run on this node (default: the scheduler's choice).
    #[arg(long)]
    pub node: Option<String>,
    /// The command, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Ports and readiness of a pod.
#[derive(Debug, Args)]
pub(crate) struct PodOptions {
    /// A port the pod serves, [NAME:]PORT[/TCP|UDP]; repeatable.
    #[arg(long = "port")]
    pub ports: Vec<ContainerPort>,
    /// Readiness probe: tcp:PORT or http:PORT/PATH.
    #[arg(long)]
    pub readiness: Option<Probe>,
    /// A node port proxied to the pod, [HOSTIP:]HOSTPORT:PORT[/TCP|UDP]; repeatable.
    #[arg(long = "host-port")]
    pub host_ports: Vec<HostPort>,
    /// No sandbox: every capability, no seccomp filter, the host's /dev and /sys.
    #[arg(long)]
    pub privileged: bool,
    /// Run the command as this user, UID[:GID] (runAsUser, runAsGroup).
    #[arg(long)]
    pub user: Option<RunAs>,
    /// Run this container image, NAME[:TAG][@DIGEST]; the words after `--` replace its CMD.
    #[arg(long)]
    pub image: Option<String>,
    /// With --image: the words after `--` replace the image's ENTRYPOINT too (kubectl run --command).
    #[arg(long = "command", id = "replace_entrypoint", requires = "image")]
    pub replace_entrypoint: bool,
    /// Always, IfNotPresent or Never (default: Always for :latest or no tag, IfNotPresent otherwise).
    #[arg(long, requires = "image")]
    pub image_pull_policy: Option<PullPolicy>,
    /// The most the pod may use, memory=QUANTITY,cpu=QUANTITY (e.g. memory=128Mi,cpu=500m).
    #[arg(long, requires = "image")]
    pub limits: Option<ResourceList>,
    /// What the pod is promised, memory=QUANTITY,cpu=QUANTITY.
    #[arg(long, requires = "image")]
    pub requests: Option<ResourceList>,
    /// An environment variable for the container, NAME=VALUE; repeatable (kubectl run --env).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = env_var, requires = "image")]
    pub env: Vec<(String, String)>,
}

/// `NAME=VALUE` of `--env`.
fn env_var(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE (e.g. --env LOG_LEVEL=debug)"))?;
    let env = [(name.to_string(), value.to_string())];
    runtime::model::check_env(&env).map_err(|e| e.to_string())?;
    let [pair] = env;
    Ok(pair)
}

impl PodOptions {
    /// The pod's securityContext.
    pub(crate) fn security(&self) -> SecurityContext {
        SecurityContext { privileged: self.privileged, run_as: self.user }
    }

    /// The host command and image of a pod whose words after `--` are
    /// `words`: with --image they are the container's args (or command).
    pub(crate) fn workload(&self, words: Vec<String>) -> (Vec<String>, Option<ImageSpec>) {
        let Some(image) = &self.image else { return (words, None) };
        let (command, args) = if self.replace_entrypoint { (words, Vec::new()) } else { (Vec::new(), words) };
        let pull_policy = self.image_pull_policy.unwrap_or_else(|| PullPolicy::default_for(image));
        let env = self.env.clone();
        (
            Vec::new(),
            Some(ImageSpec {
                image: image.clone(),
                pull_policy,
                command,
                args,
                env,
                env_refs: Vec::new(),
                env_error: None,
                volumes: Vec::new(),
                mounts: Vec::new(),
                files: Vec::new(),
                stdin_once: false,
                stdin: Default::default(),
            }),
        )
    }

    /// The pod's resources.
    pub(crate) fn resources(&self) -> Resources {
        Resources { limits: self.limits.unwrap_or_default(), requests: self.requests.unwrap_or_default() }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ExposeArgs {
    /// deployment or pod.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    #[command(flatten)]
    pub ns: Namespace,
    /// Service port, [NAME:]PORT; repeatable for a multi-port service.
    #[arg(long = "port", required = true)]
    pub ports: Vec<String>,
    /// Port on the pods, a number or a declared port name; one per --port (default: the port).
    #[arg(long = "target-port")]
    pub target_ports: Vec<TargetPort>,
    /// Service name (default: NAME).
    #[arg(long = "name")]
    pub service_name: Option<String>,
    /// Protocol of every port.
    #[arg(long, default_value = "TCP")]
    pub protocol: Protocol,
    /// ClusterIP, NodePort or LoadBalancer.
    #[arg(long = "type", default_value = "ClusterIP")]
    pub service_type: ServiceType,
    /// Node port for a NodePort or LoadBalancer service, one per --port (default: allocated).
    #[arg(long = "node-port")]
    pub node_ports: Vec<u16>,
    /// Pods to select, k=v[,k=v...] (default: the deployment's app label, or the pod's labels).
    #[arg(long, value_delimiter = ',')]
    pub selector: Vec<String>,
    /// A specific ClusterIP, or None for a headless service.
    #[arg(long)]
    pub cluster_ip: Option<String>,
    /// None or ClientIP.
    #[arg(long, default_value = "None")]
    pub session_affinity: Affinity,
    /// ClientIP affinity timeout in seconds (default 10800).
    #[arg(long)]
    pub session_affinity_timeout: Option<u32>,
}

/// sessionAffinity on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Affinity {
    #[value(name = "None")]
    None,
    #[value(name = "ClientIP")]
    ClientIp,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CreateServiceCommand {
    /// A Service whose DNS name is a CNAME to an outside name.
    Externalname {
        /// Service name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
        /// The name to point at, e.g. db.example.com.
        #[arg(long)]
        external_name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CreateSecretCommand {
    /// A kubernetes.io/tls Secret from a PEM certificate chain and its key.
    Tls {
        /// Secret name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
        /// The certificate chain (PEM), leaf first.
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
    },
    /// An Opaque Secret.
    Generic {
        /// Secret name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
        /// A key and its value, KEY=VALUE; repeatable.
        #[arg(long = "from-literal")]
        literals: Vec<String>,
        /// A file, [KEY=]PATH (the key defaults to the file name); repeatable.
        #[arg(long = "from-file")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CreateCommand {
    /// Create a ConfigMap from literals and files, as kubectl does.
    #[command(alias = "cm")]
    Configmap {
        /// ConfigMap name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
        /// A key and its value, KEY=VALUE; repeatable.
        #[arg(long = "from-literal")]
        literals: Vec<String>,
        /// A file, [KEY=]PATH (the key defaults to the file name), or a
        /// directory (each file in it); repeatable.
        #[arg(long = "from-file")]
        files: Vec<PathBuf>,
    },
    /// Create a Secret.
    Secret {
        #[command(subcommand)]
        command: CreateSecretCommand,
    },
    /// Create an Ingress, with kubectl's flags.
    Ingress {
        /// Ingress name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
        /// The IngressClass (podnet, the default, when not given).
        #[arg(long)]
        class: Option<String>,
        /// HOST/PATH=SERVICE:PORT[,tls=SECRET]; a trailing `*` makes the path a Prefix; repeatable.
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// SERVICE:PORT for requests no rule matches.
        #[arg(long)]
        default_backend: Option<String>,
        /// An annotation, KEY=VALUE; repeatable.
        #[arg(long = "annotation")]
        annotations: Vec<String>,
    },
    /// Create a Service.
    Service {
        #[command(subcommand)]
        command: CreateServiceCommand,
    },
    /// Create a deployment: N pods named NAME-<suffix>, labelled app=NAME.
    Deployment {
        /// Deployment name.
        name: String,
        #[command(flatten)]
        ns: Namespace,
        /// Pod count.
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Extra labels, k=v[,k=v...].
        #[arg(long, short = 'l', value_delimiter = ',')]
        labels: Vec<String>,
        #[command(flatten)]
        pod: Box<PodOptions>,
        /// The pods' command, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// pods, deployments or nodes.
    pub kind: Kind,
    /// One object by name.
    pub name: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long = "output")]
    pub output: Option<Output>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    #[value(alias = "pods", alias = "po")]
    Pod,
    #[value(alias = "deployments", alias = "deploy")]
    Deployment,
    #[value(alias = "nodes", alias = "no")]
    Node,
    #[value(alias = "services", alias = "svc")]
    Service,
    #[value(alias = "ep")]
    Endpoints,
    #[value(name = "networkpolicy", alias = "networkpolicies", alias = "netpol")]
    NetworkPolicy,
    #[value(alias = "ingresses", alias = "ing")]
    Ingress,
    #[value(alias = "secrets")]
    Secret,
    #[value(alias = "configmaps", alias = "cm")]
    Configmap,
    #[value(alias = "ingressclasses")]
    Ingressclass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Wide,
    Json,
    Yaml,
}
