//! The objects users manage — pods and deployments — in the shape both the
//! agent and the CLI use. The CLI renders them the Kubernetes way.

pub mod address;
pub mod cni;
pub mod configmap;
pub mod env_refs;
mod error;
pub mod ingress;
mod labels;
pub mod listeners;
pub mod policy;
pub mod secret;
pub mod services;
mod template;
pub mod volumes;

pub use error::ModelError;
pub use labels::Labels;
pub use template::PodTemplate;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Annotations: free-form metadata tools keep on an object (kubectl's
/// `last-applied-configuration`), stored and returned as given.
pub type Annotations = BTreeMap<String, String>;

/// Kubernetes' bound on an object's annotations, keys and values together.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// What happens when a pod's command exits (Kubernetes' restartPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartPolicy {
    /// Restart after any exit.
    #[default]
    Always,
    /// Restart after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl std::str::FromStr for RestartPolicy {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "Always" => Ok(RestartPolicy::Always),
            "OnFailure" => Ok(RestartPolicy::OnFailure),
            "Never" => Ok(RestartPolicy::Never),
            _ => Err(ModelError::RestartPolicy(s.to_string())),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// What a user asks for when making a pod (Default: every optional part
/// left out, for callers that set a few). Serialized flat, in the shape it
/// had before the template was a struct of its own (see `template.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "template::OwnedPodSpec")]
pub struct PodSpec {
    /// Pod name (an RFC 1123 label).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: Labels,
    /// What it runs and exposes (a deployment's pods share their deployment's).
    pub template: PodTemplate,
    /// Restart policy.
    pub restart_policy: RestartPolicy,
    /// The deployment that owns this pod, if any.
    pub owner: Option<String>,
    /// Run on this node (`--node`); the scheduler picks one otherwise.
    pub node_name: Option<String>,
    /// Annotations (metadata.annotations).
    pub annotations: Annotations,
    /// For a container another runtime runs and podnet networks as its CNI
    /// plugin: the attachment (no command, no image: podnet runs nothing).
    pub attachment: Option<cni::CniAttachment>,
}

/// Most environment variables one container may set, and their bytes in
/// all (names, values): what a hostile manifest can make every node hold.
pub const MAX_ENV: usize = 256;
/// See [`MAX_ENV`].
pub const MAX_ENV_BYTES: usize = 64 << 10;

/// Checks a container's environment: names without `=` or NUL (Kubernetes
/// takes any other printable name), values without NUL, and the bounds.
pub fn check_env(env: &[(String, String)]) -> Result<(), ModelError> {
    if env.len() > MAX_ENV || env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_ENV_BYTES {
        return Err(ModelError::EnvSize);
    }
    for (name, value) in env {
        if !env_name_ok(name) {
            return Err(ModelError::EnvName(name.clone()));
        }
        if value.contains('\0') {
            return Err(ModelError::EnvValue(name.clone()));
        }
    }
    Ok(())
}

/// Whether `name` may name a variable: not empty, printable ASCII, no `=`.
pub fn env_name_ok(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && name.chars().all(|c| c.is_ascii_graphic())
}

/// The image a pod runs and how its command is made from the image's
/// ENTRYPOINT and CMD (Kubernetes' container image, command, args).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// The image reference as the user wrote it (`nginx`, `alpine:3.20`).
    pub image: String,
    /// When the node pulls it.
    pub pull_policy: PullPolicy,
    /// Replaces the image's ENTRYPOINT (and drops its CMD) when not empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces the image's CMD when not empty.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables, set over the image's own and podnet's
    /// (`POD_NAME`...): Kubernetes' `env` with values. (No
    /// skip_serializing_if: postcard, on the wire, is not self-describing.)
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Variables from ConfigMaps and Secrets (`env[].valueFrom`, `envFrom`).
    /// In a node's desired state they are resolved already: into `env`, or
    /// into `env_error`.
    #[serde(default)]
    pub env_refs: Vec<env_refs::EnvRef>,
    /// Why the references cannot be resolved now (set by the control plane
    /// in a node's desired state only): the container waits, shown as
    /// CreateContainerConfigError.
    #[serde(default)]
    pub env_error: Option<String>,
    /// Whether the container has a stdin that `kubectl attach -i` writes
    /// to (Kubernetes' `stdin`), and a terminal (`tty`).
    #[serde(default)]
    pub stdin: ContainerStdin,
    /// The pod's ConfigMap and Secret volumes (`volumes`).
    #[serde(default)]
    pub volumes: Vec<volumes::Volume>,
    /// Where the container sees them (`volumeMounts`).
    #[serde(default)]
    pub mounts: Vec<volumes::VolumeMount>,
    /// The volumes' files, resolved by the control plane in a node's
    /// desired state only (empty elsewhere, as `env_refs` are there).
    #[serde(default)]
    pub files: Vec<volumes::VolumeFiles>,
    /// Its input closes once the first attach that wrote to it leaves
    /// (Kubernetes' `stdinOnce`, as `kubectl run -i` asks).
    #[serde(default)]
    pub stdin_once: bool,
}

/// A container's input (Kubernetes' `stdin` and `tty`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerStdin {
    /// None: its stdin is /dev/null.
    #[default]
    Closed,
    /// A pipe the node holds open (`stdin: true`).
    Open,
    /// A terminal: its stdin, stdout and stderr (`tty: true`).
    Tty,
}

impl ImageSpec {
    /// The process to run, as Kubernetes combines command and args with the
    /// image's ENTRYPOINT and CMD.
    pub fn process(&self, entrypoint: &[String], cmd: &[String]) -> Vec<String> {
        match (self.command.is_empty(), self.args.is_empty()) {
            (false, _) => self.command.iter().chain(&self.args).cloned().collect(),
            (true, false) => entrypoint.iter().chain(&self.args).cloned().collect(),
            (true, true) => entrypoint.iter().chain(cmd).cloned().collect(),
        }
    }
}

/// When a node pulls a pod's image (imagePullPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    /// Before every start of a pod.
    Always,
    /// Only when the node does not have it.
    IfNotPresent,
    /// Never: the image must be on the node (imported).
    Never,
}

impl PullPolicy {
    /// Kubernetes' default: Always for `:latest` or no tag, IfNotPresent
    /// otherwise (a digest counts as a tag).
    pub fn default_for(image: &str) -> PullPolicy {
        let name = image.rsplit('/').next().unwrap_or(image);
        if image.contains('@') {
            return PullPolicy::IfNotPresent;
        }
        match name.split_once(':') {
            Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
            _ => PullPolicy::Always,
        }
    }
}

impl std::str::FromStr for PullPolicy {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "Always" => Ok(PullPolicy::Always),
            "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
            "Never" => Ok(PullPolicy::Never),
            _ => Err(ModelError::PullPolicy(s.to_string())),
        }
    }
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Memory and CPU a pod may use (limits) and is promised (requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// The most it may use: past the memory limit it is OOM-killed, past
    /// the CPU limit throttled.
    #[serde(default)]
    pub limits: ResourceList,
    /// What it is promised: CPU weight, and the memory it is protected for.
    #[serde(default)]
    pub requests: ResourceList,
}

/// One set of amounts (`memory=128Mi,cpu=500m`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceList {
    /// Bytes of memory.
    #[serde(default)]
    pub memory: Option<u64>,
    /// Thousandths of a CPU.
    #[serde(default)]
    pub cpu_millis: Option<u64>,
}

impl std::str::FromStr for ResourceList {
    type Err = ModelError;
    /// Parses `memory=128Mi,cpu=500m` (Kubernetes quantities).
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::Resources(s.to_string());
        let mut list = ResourceList::default();
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(bad)?;
            match key.trim() {
                "memory" => list.memory = Some(parse_memory(value.trim()).ok_or_else(bad)?),
                "cpu" => list.cpu_millis = Some(parse_cpu(value.trim()).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        Ok(list)
    }
}

/// A memory quantity in bytes: `128Mi`, `1G`, `1048576`, `1.5Gi`.
fn parse_memory(text: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let (number, unit) = UNITS
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((text, 1));
    let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite() && *v > 0.0)?;
    let bytes = (value * unit as f64).ceil();
    (bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A CPU quantity in thousandths of a CPU: `500m`, `0.5`, `2`.
fn parse_cpu(text: &str) -> Option<u64> {
    let millis = match text.strip_suffix('m') {
        Some(m) => m.parse::<u64>().ok()?,
        None => {
            let cpus: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
            (cpus * 1000.0).ceil() as u64
        }
    };
    (1..=1_000_000).contains(&millis).then_some(millis)
}

/// How a pod's processes are confined (Kubernetes' securityContext). The
/// default is the container sandbox (see `node::pod::enter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityContext {
    /// Every capability, no seccomp filter, the host's /dev and /sys (`--privileged`).
    #[serde(default)]
    pub privileged: bool,
    /// Run as this user and group (runAsUser, runAsGroup); root otherwise.
    #[serde(default)]
    pub run_as: Option<RunAs>,
}

/// A user and group id (`--user UID[:GID]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id (the user id when not given).
    pub gid: u32,
}

impl std::str::FromStr for RunAs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("user `{s}` is not UID[:GID] (numbers)");
        let (uid, gid) = s.split_once(':').unwrap_or((s, s));
        Ok(RunAs { uid: uid.parse().map_err(|_| bad())?, gid: gid.parse().map_err(|_| bad())? })
    }
}

/// Lifecycle phase (Kubernetes' PodPhase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted, not running yet.
    Pending,
    /// The command runs (or waits to be restarted).
    Running,
    /// Exited 0 and will not be restarted.
    Succeeded,
    /// Exited non-zero and will not be restarted.
    Failed,
}

/// What the agent observes about a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// Phase.
    pub phase: Phase,
    /// The pod's IP.
    pub pod_ip: Option<IpAddr>,
    /// Whether the command is running now.
    pub ready: bool,
    /// How many times the command was restarted.
    pub restarts: u32,
    /// Why the pod is not running, kubectl style (CrashLoopBackOff, Completed, Error).
    pub reason: Option<String>,
    /// Exit code of the last run.
    pub last_exit_code: Option<i32>,
    /// Unix time the current run started.
    pub started_at: Option<u64>,
    /// The reason in one line a person can act on (why the image pull or
    /// the container failed), as kubectl describe's Message.
    #[serde(default)]
    pub message: Option<String>,
}

/// Something that happened to a pod, as `kubectl describe` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodEvent {
    /// Unix time of the last occurrence.
    pub at: u64,
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Pulling, Pulled, Failed, BackOff, Created, Started, Killing.
    pub reason: String,
    /// What happened.
    pub message: String,
    /// How many times it happened in a row.
    pub count: u32,
}

/// A pod as reported to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// The node running it.
    pub node_name: String,
    /// Desired state.
    pub spec: PodSpec,
    /// Observed state.
    pub status: PodStatus,
}

/// What a user asks for when making a deployment (Default: every optional
/// part left out). Serialized flat, in the shape it had before the
/// template was a struct of its own (see `template.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "template::OwnedDeploymentSpec")]
pub struct DeploymentSpec {
    /// Name (its pods are NAME-<suffix>).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Desired pod count.
    pub replicas: u32,
    /// Labels of the deployment and its pods (always holds app=NAME).
    pub labels: Labels,
    /// What its pods run and expose.
    pub template: PodTemplate,
    /// The deployment's own annotations (not its pods').
    pub annotations: Annotations,
    /// The deployment's own labels (metadata.labels), when they are not
    /// its pods' (`labels`).
    pub object_labels: Option<Labels>,
    /// spec.selector.matchLabels, when it is not all of `labels`.
    pub selector: Option<Labels>,
    /// How a changed template replaces its pods.
    pub strategy: Strategy,
    /// Its pods' annotations (spec.template.metadata.annotations; a
    /// change rolls them, as `kubectl rollout restart` relies on).
    pub template_annotations: Annotations,
}

impl DeploymentSpec {
    /// The pod this deployment makes now, its name left empty: what the
    /// control plane schedules and what a ReplicaSet's hash is taken of.
    pub fn pod_template(&self) -> PodSpec {
        PodSpec {
            name: String::new(),
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            template: self.template.clone(),
            restart_policy: RestartPolicy::Always,
            owner: Some(self.name.clone()),
            node_name: None,
            annotations: self.template_annotations.clone(),
            attachment: None,
        }
    }
}

/// How a deployment replaces its pods when its template changes
/// (spec.strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// New pods first, old ones as the new become ready: at most
    /// `max_surge` pods over the replica count, at most `max_unavailable`
    /// fewer ready.
    RollingUpdate {
        /// maxSurge (rounded up from a percentage).
        max_surge: Amount,
        /// maxUnavailable (rounded down from a percentage).
        max_unavailable: Amount,
    },
    /// Every old pod goes before new ones are made.
    Recreate,
}

impl Default for Strategy {
    /// Kubernetes' default: RollingUpdate, 25% and 25%.
    fn default() -> Self {
        Strategy::RollingUpdate { max_surge: Amount::Percent(25), max_unavailable: Amount::Percent(25) }
    }
}

impl Strategy {
    /// (pods over `replicas` allowed, ready pods under `replicas` allowed)
    /// during a rollout, as Kubernetes resolves them: never both 0.
    pub fn bounds(&self, replicas: u32) -> (u32, u32) {
        match *self {
            Strategy::RollingUpdate { max_surge, max_unavailable } => {
                match (max_surge.of(replicas, true), max_unavailable.of(replicas, false)) {
                    (0, 0) => (0, 1),
                    bounds => bounds,
                }
            }
            Strategy::Recreate => (0, replicas.max(1)),
        }
    }
}

/// A count, or a percentage of the replica count (maxSurge, maxUnavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Amount {
    /// So many pods.
    Count(u32),
    /// This percentage of the replicas.
    Percent(u32),
}

impl Amount {
    /// The pods it stands for with `replicas` replicas.
    pub fn of(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => {
                let scaled = u64::from(replicas) * u64::from(p);
                let n = if round_up { scaled.div_ceil(100) } else { scaled / 100 };
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        }
    }
}

impl DeploymentSpec {
    /// The labels that select its pods (immutable, as in apps/v1).
    pub fn selector(&self) -> &Labels {
        self.selector.as_ref().unwrap_or(&self.labels)
    }

    /// The deployment's own labels.
    pub fn object_labels(&self) -> &Labels {
        self.object_labels.as_ref().unwrap_or(&self.labels)
    }
}

/// A namespace created explicitly (`kubectl create namespace`, `podnet
/// apply`), or one given labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Name (an RFC 1123 label).
    pub name: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Labels set by the user; `kubernetes.io/metadata.name` is added
    /// wherever a namespace is shown or matched ([`Namespace::all_labels`]).
    #[serde(default)]
    pub labels: Labels,
    /// Annotations (kubectl's last-applied-configuration).
    #[serde(default)]
    pub annotations: Annotations,
}

impl Namespace {
    /// Its labels with `kubernetes.io/metadata.name` set to its name, as
    /// Kubernetes sets it on every namespace.
    pub fn all_labels(&self) -> Labels {
        let mut labels = self.labels.clone();
        labels.insert(policy::NAMESPACE_NAME_LABEL.into(), self.name.clone());
        labels
    }
}

/// A deployment as reported to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Desired state.
    pub spec: DeploymentSpec,
    /// Pods that exist.
    pub replicas: u32,
    /// Pods whose command runs.
    pub ready_replicas: u32,
}

/// A node as reported to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Pod subnet.
    pub pod_cidr: String,
    /// Agent version.
    pub version: String,
    /// Unix time the node joined (or the agent started).
    pub started_at: u64,
    /// Ready or NotReady.
    pub ready: bool,
    /// control-plane for the server, else none.
    pub roles: String,
    /// Its address on the network between nodes.
    pub internal_ip: Option<IpAddr>,
    /// Pods on it.
    pub pods: u32,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether `label` is one DNS label (RFC 1123): 1 to 63 letters, digits and
/// '-', not starting or ending with '-'. The one rule behind object names,
/// port names and DNS names; object names also want it lowercase.
pub fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Whether `name` is a DNS name: dot-separated [`is_dns_label`] labels, at
/// most 253 bytes, a trailing dot allowed.
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// A lowercase [`is_dns_label`] of at most `max_len` bytes.
fn is_lowercase_label(name: &str, max_len: usize) -> bool {
    is_dns_label(name) && name.len() <= max_len && !name.bytes().any(|b| b.is_ascii_uppercase())
}

/// Checks an object name is an RFC 1123 label, as Kubernetes requires of pod
/// and namespace names.
pub fn check_name(kind: &str, name: &str, max_len: usize) -> Result<(), ModelError> {
    if is_lowercase_label(name, max_len) {
        Ok(())
    } else {
        Err(ModelError::Name { kind: kind.to_string(), name: name.to_string(), max_len })
    }
}

/// Checks an ExternalName target is a DNS name.
pub fn check_external_name(name: &str) -> Result<(), ModelError> {
    match is_dns_name(name) {
        true => Ok(()),
        false => Err(ModelError::DnsName(name.strip_suffix('.').unwrap_or(name).to_string())),
    }
}

/// Checks a label key and value (a simplified form of Kubernetes' rules).
pub fn check_label(key: &str, value: &str) -> Result<(), ModelError> {
    let part = |s: &str| {
        s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
    };
    let key_ok = !key.is_empty()
        && key.split_once('/').map_or(part(key), |(p, n)| !p.is_empty() && !n.is_empty() && part(n));
    if key_ok && part(value) {
        Ok(())
    } else {
        Err(ModelError::Label { key: key.to_string(), value: value.to_string() })
    }
}

/// Checks annotations as Kubernetes does: keys as label keys, and at
/// most [`MAX_ANNOTATIONS_BYTES`] of keys and values together.
pub fn check_annotations(annotations: &Annotations) -> Result<(), ModelError> {
    let mut total = 0;
    for (key, value) in annotations {
        check_label(key, "").map_err(|_| ModelError::AnnotationKey(key.clone()))?;
        total += key.len() + value.len();
    }
    match total <= MAX_ANNOTATIONS_BYTES {
        true => Ok(()),
        false => Err(ModelError::AnnotationsTooLong(total)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_bounded_as_kubernetes_bounds_them() {
        let mut a = Annotations::new();
        a.insert("kubectl.kubernetes.io/last-applied-configuration".into(), "{}".repeat(1000));
        assert!(check_annotations(&a).is_ok());
        a.insert("big".into(), "x".repeat(MAX_ANNOTATIONS_BYTES));
        assert!(matches!(check_annotations(&a), Err(ModelError::AnnotationsTooLong(_))));
        let bad = Annotations::from([("no spaces".to_string(), String::new())]);
        assert!(matches!(check_annotations(&bad), Err(ModelError::AnnotationKey(_))));
    }

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_does() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let spec = |command: &[&str], args: &[&str]| ImageSpec {
            image: "nginx".into(),
            pull_policy: PullPolicy::Always,
            command: strings(command),
            args: strings(args),
            env: Vec::new(),
            env_refs: Vec::new(),
            env_error: None,
            volumes: Vec::new(),
            mounts: Vec::new(),
            files: Vec::new(),
            stdin_once: false,
            stdin: Default::default(),
        };
        let (entrypoint, cmd) =
            (strings(&["/docker-entrypoint.sh"]), strings(&["nginx", "-g", "daemon off;"]));
        let run = |s: ImageSpec| s.process(&entrypoint, &cmd).join(" ");
        assert_eq!(run(spec(&[], &[])), "/docker-entrypoint.sh nginx -g daemon off;");
        assert_eq!(run(spec(&[], &["sh"])), "/docker-entrypoint.sh sh");
        assert_eq!(run(spec(&["/bin/sh", "-c"], &[])), "/bin/sh -c");
        assert_eq!(run(spec(&["/bin/sh"], &["-c", "x"])), "/bin/sh -c x");
    }

    #[test]
    fn pull_policy_defaults_by_tag() {
        for (image, policy) in [
            ("nginx", PullPolicy::Always),
            ("nginx:latest", PullPolicy::Always),
            ("localhost:5000/app", PullPolicy::Always),
            ("localhost:5000/app:v1", PullPolicy::IfNotPresent),
            ("alpine:3.20", PullPolicy::IfNotPresent),
            ("alpine@sha256:00", PullPolicy::IfNotPresent),
        ] {
            assert_eq!(PullPolicy::default_for(image), policy, "{image}");
        }
        assert!("Sometimes".parse::<PullPolicy>().is_err());
    }

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        let list: ResourceList = "memory=128Mi,cpu=500m".parse().unwrap();
        assert_eq!(list, ResourceList { memory: Some(128 << 20), cpu_millis: Some(500) });
        let list: ResourceList = "cpu=1.5,memory=1G".parse().unwrap();
        assert_eq!(list, ResourceList { memory: Some(1_000_000_000), cpu_millis: Some(1500) });
        assert_eq!("memory=1.5Gi".parse::<ResourceList>().unwrap().memory, Some(3 << 29));
        for bad in
            ["memory", "memory=", "memory=-1Mi", "memory=12Qi", "cpu=0", "cpu=abc", "disk=1G", "memory=NaN"]
        {
            assert!(bad.parse::<ResourceList>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_rfc_1123() {
        assert!(check_name("pod", "web-1", 63).is_ok());
        for bad in ["", "Web", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_name("pod", bad, 63).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports_parse_and_conflict_as_portmap_says() {
        let hp = |s: &str| s.parse::<HostPort>().unwrap();
        assert_eq!(hp("8554:9000/UDP").to_string(), "8554:9000/UDP");
        assert_eq!(hp("192.168.1.5:80:8080").to_string(), "192.168.1.5:80:8080/TCP");
        assert_eq!(hp("0.0.0.0:80:8080").host_ip, None);
        for bad in ["80", "0:80", "a:b:c:d", "1.2.3:80:80", "80:80/SCTP"] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad}");
        }
        assert_eq!(
            "[fd00::1]:80:8080".parse::<HostPort>().unwrap_err().to_string(),
            "IPv6 is not supported yet: hostIP = fd00::1; use an IPv4 address"
        );
        assert!(hp("80:1").conflicts(&hp("80:2")), "same port, protocol, all addresses");
        assert!(hp("80:1").conflicts(&hp("10.0.0.1:80:2")), "all addresses overlap one");
        assert!(!hp("10.0.0.1:80:1").conflicts(&hp("10.0.0.2:80:2")), "different host IPs");
        assert!(!hp("80:1/TCP").conflicts(&hp("80:1/UDP")), "different protocols");
    }

    #[test]
    fn protocol_keeps_its_state_file_and_cluster_channel_encoding() {
        assert_eq!(serde_json::to_string(&Protocol::Udp).unwrap(), "\"UDP\"");
        assert_eq!(serde_json::from_str::<Protocol>("\"TCP\"").unwrap(), Protocol::Tcp);
        assert!(serde_json::from_str::<Protocol>("\"udp\"").is_err(), "JSON names are exact");
        // postcard writes the variant index, as for the enum runtime had.
        assert_eq!(postcard::to_allocvec(&Protocol::Tcp).unwrap(), [0]);
        assert_eq!(postcard::to_allocvec(&Protocol::Udp).unwrap(), [1]);
        assert_eq!("53/udp".parse::<ContainerPort>().unwrap().protocol, Protocol::Udp);
        assert_eq!(
            "80/sctp".parse::<ContainerPort>().unwrap_err().to_string(),
            "protocol `sctp` is not TCP or UDP"
        );
    }

    #[test]
    fn one_label_rule_serves_names_ports_and_dns_names() {
        for good in ["a", "web-1", "0abc", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_name("example.com.") && is_dns_name("Example.COM") && is_dns_name("a"));
        assert!(
            !is_dns_name("a..b") && !is_dns_name(".") && !is_dns_name(&format!("{}.a", "a.".repeat(126)))
        );
        assert!(check_external_name("db.example.com").is_ok());
        assert!(check_external_name("db_example").is_err());
        // Object and port names are the lowercase subset.
        assert!(check_name("pod", "Web", 63).is_err() && is_dns_label("Web"));
        assert!(check_port_name("http").is_ok() && check_port_name("80").is_err());
        assert!(check_port_name("Http").is_err() && check_port_name(&"a".repeat(16)).is_err());
    }

    #[test]
    fn labels_are_checked() {
        assert!(check_label("app", "web").is_ok());
        assert!(check_label("app.kubernetes.io/name", "web").is_ok());
        assert!(check_label("", "x").is_err());
        assert!(check_label("a", "has space").is_err());
    }
}

/// Transport protocol of a port: netstack's, serialized as `"TCP"`/`"UDP"`.
pub use netstack::Protocol;

/// A port a pod declares (a container port in Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPort {
    /// Name a Service's targetPort can refer to.
    pub name: Option<String>,
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl std::str::FromStr for ContainerPort {
    type Err = ModelError;
    /// `[NAME:]PORT[/PROTOCOL]`, e.g. `http:8080/TCP`.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let (rest, protocol) = match s.split_once('/') {
            Some((rest, proto)) => (rest, proto.parse::<Protocol>()?),
            None => (s, Protocol::Tcp),
        };
        let (name, port) = match rest.split_once(':') {
            Some((name, port)) => (Some(name.to_string()), port),
            None => (None, rest),
        };
        if let Some(name) = &name {
            check_port_name(name)?;
        }
        Ok(ContainerPort { name, port: parse_port(port)?, protocol })
    }
}

/// Parses a port number in 1..=65535.
pub fn parse_port(text: &str) -> Result<u16, ModelError> {
    text.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| ModelError::Port(text.to_string()))
}

/// Checks a port name (an IANA service name, as Kubernetes requires).
pub fn check_port_name(name: &str) -> Result<(), ModelError> {
    if is_lowercase_label(name, 15) && name.bytes().any(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(ModelError::PortName(name.to_string()))
    }
}

/// A readiness probe, run from the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// Ready while a TCP connection to the port succeeds.
    Tcp {
        /// Port.
        port: u16,
    },
    /// Ready while GET PATH answers 200-399.
    Http {
        /// Port.
        port: u16,
        /// Path.
        path: String,
    },
}

impl std::str::FromStr for Probe {
    type Err = ModelError;
    /// `tcp:PORT` or `http:PORT/PATH`.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::Probe(s.to_string());
        match s.split_once(':').ok_or_else(bad)? {
            ("tcp", port) => Ok(Probe::Tcp { port: parse_port(port)? }),
            ("http", rest) => {
                let (port, path) =
                    rest.split_once('/').map_or((rest, "/".to_string()), |(p, path)| (p, format!("/{path}")));
                Ok(Probe::Http { port: parse_port(port)?, path })
            }
            _ => Err(bad()),
        }
    }
}

/// Where a Service port sends traffic on its pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A port name the pods declare.
    Name(String),
}

impl std::str::FromStr for TargetPort {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(TargetPort::Number(parse_port(s)?))
        } else {
            check_port_name(s)?;
            Ok(TargetPort::Name(s.to_string()))
        }
    }
}

impl std::fmt::Display for TargetPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(name) => f.write_str(name),
        }
    }
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// Name (required when a Service has several ports; used by DNS SRV).
    pub name: Option<String>,
    /// The port clients connect to.
    pub port: u16,
    /// The port on the pods.
    pub target_port: TargetPort,
    /// Protocol.
    pub protocol: Protocol,
    /// The node port (NodePort and LoadBalancer services).
    #[serde(default)]
    pub node_port: Option<u16>,
}

/// A Service's type: how it is reached from outside the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ServiceType {
    /// Only inside the cluster, on its ClusterIP.
    #[default]
    ClusterIP,
    /// Also on a port of every node address.
    NodePort,
    /// Also on the service port of the node's addresses (k3s ServiceLB style),
    /// and on a node port.
    LoadBalancer,
}

impl std::str::FromStr for ServiceType {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "ClusterIP" => Ok(ServiceType::ClusterIP),
            "NodePort" => Ok(ServiceType::NodePort),
            "LoadBalancer" => Ok(ServiceType::LoadBalancer),
            _ => Err(ModelError::ServiceType(s.to_string())),
        }
    }
}

impl std::fmt::Display for ServiceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A node port proxied to one pod's port (a container's hostPort).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    /// The node address to listen on; None for every address (0.0.0.0).
    pub host_ip: Option<IpAddr>,
    /// Port on the node.
    pub host_port: u16,
    /// Port on the pod.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl HostPort {
    /// Whether two host ports cannot both be served (the CNI portmap rule:
    /// same port and protocol, and the same host IP or either on all addresses).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.host_port == other.host_port
            && self.protocol == other.protocol
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(f, "{}:{}/{}", self.host_port, self.port, self.protocol)
    }
}

impl std::str::FromStr for HostPort {
    type Err = ModelError;
    /// `[HOSTIP:]HOSTPORT:PORT[/PROTOCOL]`, e.g. `8554:8554/UDP`.
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::HostPort(s.to_string());
        let (rest, protocol) = match s.split_once('/') {
            Some((rest, proto)) => (rest, proto.parse::<Protocol>()?),
            None => (s, Protocol::Tcp),
        };
        // From the right: an IPv6 host IP has colons of its own.
        let mut parts = rest.rsplitn(3, ':');
        let (port, host_port) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let host_ip = match parts.next() {
            None => None,
            Some(ip) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip = ip.parse::<IpAddr>().map_err(|_| bad())?;
                Some(address::refuse_ipv6("hostIP", ip)?)
            }
        };
        let host_ip = host_ip.filter(|ip| !ip.is_unspecified());
        Ok(HostPort { host_ip, host_port: parse_port(host_port)?, port: parse_port(port)?, protocol })
    }
}

/// sessionAffinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SessionAffinity {
    /// Every connection is balanced on its own.
    #[default]
    None,
    /// Connections from one client IP go to one pod.
    ClientIp {
        /// sessionAffinityConfig.clientIP.timeoutSeconds.
        timeout_seconds: u32,
    },
}

/// Kubernetes' default ClientIP affinity timeout.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// What ClusterIP a Service asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterIpRequest {
    /// Any free address of the service CIDR.
    Auto,
    /// This address.
    Fixed(IpAddr),
    /// No ClusterIP: a headless Service.
    None,
}

/// What a user asks for when making a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Name (an RFC 1123 label).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// ClusterIP wanted.
    pub cluster_ip: ClusterIpRequest,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Pods whose labels include all of these are the endpoints.
    pub selector: Labels,
    /// Session affinity.
    pub session_affinity: SessionAffinity,
    /// For an ExternalName Service: the name its DNS record is a CNAME to.
    #[serde(default)]
    pub external_name: Option<String>,
    /// ClusterIP, NodePort or LoadBalancer.
    #[serde(default)]
    pub service_type: ServiceType,
    /// Labels of the Service object itself (not a selector).
    #[serde(default)]
    pub labels: Labels,
    /// Annotations.
    #[serde(default)]
    pub annotations: Annotations,
}

/// What the node observes about a LoadBalancer Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerStatus {
    /// Node addresses serving it.
    pub ingress: Vec<IpAddr>,
    /// Why it is not (fully) served, in words.
    pub problem: Option<String>,
}

/// A Service as reported to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// The assigned ClusterIP; None for a headless Service.
    pub cluster_ip: Option<IpAddr>,
    /// Desired state.
    pub spec: ServiceSpec,
    /// LoadBalancer status, filled in when the Service is reported.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerStatus>,
}

/// One ready pod behind a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointAddress {
    /// Pod IP.
    pub ip: IpAddr,
    /// Pod name.
    pub pod: String,
}

/// A Service port resolved to a number on the endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPort {
    /// Service port name.
    pub name: Option<String>,
    /// Port on the pods.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

/// Endpoints: which pods serve a Service now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Service name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Unix time the Service was created.
    pub created_at: u64,
    /// Ready pods, with the ports they serve.
    pub subsets: Vec<(EndpointAddress, Vec<EndpointPort>)>,
    /// Selected pods that are not ready.
    pub not_ready: Vec<EndpointAddress>,
    /// Why endpoints are missing, in words (empty when all is well).
    pub problems: Vec<String>,
}
