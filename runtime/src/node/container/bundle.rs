//! The container's `config.json` (OCI runtime spec 1.0): what runc's default
//! spec and containerd's CRI plugin would write for a Kubernetes container,
//! with the pod's network namespace joined, never created.
//!
//! Own serde structs rather than the `oci-spec` crate: its runtime part
//! alone pulls in `regex` (non-optional), `derive_builder`, `getset`,
//! `strum` and `const_format`, and the binary is already over its size
//! budget (BENCHMARKS.md); podnet writes one document and reads none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ContainerError;
use super::security::{self, Seccomp};
use super::user::User;
use crate::image::manifest::RunConfig;
use crate::model::{ImageSpec, Resources};
use crate::node::pod::confine::NOFILE_SOFT;

/// The PATH a container gets when its image sets none (containerd's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hard fd limit runtimes default to; the node's own may be lower.
pub const NOFILE_HARD_MAX: u64 = 1 << 20;

/// The CFS period of CPU limits, in microseconds (the kubelet's).
pub const CPU_PERIOD: u64 = 100_000;

/// The node's /etc files a container gets, bind-mounted over its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    /// The pod's resolv.conf.
    pub resolv_conf: PathBuf,
    /// The pod's hosts (`127.0.0.1 localhost`, `POD_IP name`).
    pub hosts: PathBuf,
    /// The pod's hostname file.
    pub hostname: PathBuf,
}

/// The node's limits a bundle is made within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// The node's hard RLIMIT_NOFILE.
    pub nofile_hard: u64,
    /// The node's memory, for the kubelet's OOM score of burstable pods.
    pub memory_total: u64,
    /// The capabilities the node can give (the agent's bounding set).
    pub bounding: u64,
    /// The lowest OOM score adjustment the runtime (the agent's child) may
    /// set: any without CAP_SYS_RESOURCE, else none below the agent's own.
    pub oom_score_adj_min: i32,
    /// The node's cgroups account swap (v2, or v1's memsw files): a memory
    /// limit then covers swap too, as Kubernetes' NoSwap default.
    pub swap_accounting: bool,
}

impl NodeLimits {
    /// This node's limits.
    pub fn of_this_node() -> NodeLimits {
        let nofile_hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(_, hard)| hard)
            .unwrap_or(NOFILE_SOFT);
        let memory_total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024);
        NodeLimits {
            nofile_hard,
            memory_total,
            bounding: security::node_bounding(),
            oom_score_adj_min: oom_floor(),
            swap_accounting: Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
                || Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists(),
        }
    }
}

/// The lowest OOM score adjustment this process's children may set: a
/// lower one than their own needs CAP_SYS_RESOURCE (which a node in a
/// container may lack; the runtime would then fail to start anything).
fn oom_floor() -> i32 {
    const CAP_SYS_RESOURCE: u32 = 24;
    if security::own_caps("CapEff").unwrap_or(0) & (1 << CAP_SYS_RESOURCE) != 0 {
        return -1000;
    }
    std::fs::read_to_string("/proc/self/oom_score_adj").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Everything a bundle is made of.
#[derive(Debug, Clone)]
pub struct BundleSpec<'a> {
    /// The merged rootfs.
    pub rootfs: &'a Path,
    /// The process, from [`process_args`].
    pub args: Vec<String>,
    /// `NAME=value`, from [`environment`].
    pub env: Vec<String>,
    /// Who it runs as.
    pub user: User,
    /// The image's WorkingDir (`/` when empty).
    pub working_dir: &'a str,
    /// The pod's name.
    pub hostname: &'a str,
    /// The pod's named network namespace (`/run/netns/...`).
    pub netns: &'a Path,
    /// The pod's /etc files.
    pub etc: &'a EtcFiles,
    /// Its ConfigMap and Secret volumes, mounted read-only.
    pub volumes: &'a [super::volumes::VolumeBind],
    /// All capabilities, no seccomp, nothing masked.
    pub privileged: bool,
    /// Limits and requests.
    pub resources: &'a Resources,
    /// The most processes it may have.
    pub pids_limit: i64,
    /// `/podnet/<container id>`.
    pub cgroups_path: String,
    /// The node's limits.
    pub node: NodeLimits,
}

/// The process Kubernetes runs: the pod's command and args combined with
/// the image's ENTRYPOINT and CMD.
pub fn process_args(image: &ImageSpec, config: &RunConfig) -> Result<Vec<String>, ContainerError> {
    let args = image.process(&config.entrypoint, &config.cmd);
    if args.is_empty() { Err(ContainerError::NoCommand) } else { Ok(args) }
}

/// The image's Env overlaid by the pod's (the pod wins, as in Kubernetes),
/// with a PATH when neither sets one; order kept, image first.
pub fn environment(image_env: &[String], pod_env: &[(String, String)]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let pairs = image_env
        .iter()
        .map(|e| {
            e.split_once('=').map_or((e.clone(), String::new()), |(k, v)| (k.to_string(), v.to_string()))
        })
        .chain(pod_env.iter().cloned());
    for (key, value) in pairs {
        if key.is_empty() {
            continue;
        }
        if values.insert(key.clone(), value).is_none() {
            order.push(key);
        }
    }
    let mut env: Vec<String> = order.iter().map(|k| format!("{k}={}", values[k])).collect();
    if !values.contains_key("PATH") {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env
}

/// The kubelet's OOM score adjustment for the container's QoS class:
/// BestEffort 1000, Guaranteed -997, Burstable by its memory request.
pub fn oom_score_adj(resources: &Resources, memory_total: u64) -> i32 {
    let (limits, requests) = (&resources.limits, &resources.requests);
    // A request defaults to its limit (Kubernetes' defaulting).
    let memory_request = requests.memory.or(limits.memory);
    let cpu_request = requests.cpu_millis.or(limits.cpu_millis);
    if memory_request.is_none() && cpu_request.is_none() {
        return 1000;
    }
    let guaranteed = limits.memory.is_some()
        && limits.cpu_millis.is_some()
        && memory_request == limits.memory
        && cpu_request == limits.cpu_millis;
    if guaranteed {
        return -997;
    }
    let request = memory_request.unwrap_or(0);
    if memory_total == 0 {
        return 999;
    }
    let adj = 1000 - (1000u128 * u128::from(request) / u128::from(memory_total)).min(1000) as i32;
    adj.clamp(3, 999)
}

/// The kubelet's cpu shares for a request (MilliCPUToShares, at least 2).
pub fn cpu_shares(request_millis: Option<u64>) -> u64 {
    request_millis.map_or(2, |m| (m * 1024 / 1000).max(2))
}

/// The CFS quota for a limit (MilliCPUToQuota, at least 1 ms).
pub fn cpu_quota(limit_millis: u64) -> i64 {
    i64::try_from(limit_millis * CPU_PERIOD / 1000).unwrap_or(i64::MAX).max(1000)
}

/// Writes `spec` as `<dir>/config.json`.
pub fn write(dir: &Path, spec: &BundleSpec<'_>) -> Result<(), ContainerError> {
    let path = dir.join("config.json");
    let json = serde_json::to_vec_pretty(&config(spec)).map_err(|e| ContainerError::Io {
        what: "cannot encode",
        path: path.clone(),
        source: e.into(),
    })?;
    std::fs::write(&path, json).map_err(ContainerError::io("cannot write", &path))
}

/// The OCI config for `spec`.
pub fn config(spec: &BundleSpec<'_>) -> Spec {
    let caps = if spec.privileged {
        security::all_caps(spec.node.bounding)
    } else {
        security::default_caps(spec.node.bounding)
    };
    let limits = &spec.resources.limits;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mount = |destination: &str, kind: &str, source: &str, options: &[&str]| Mount {
        destination: destination.into(),
        kind: kind.into(),
        source: source.into(),
        options: list(options),
    };
    let bind = |destination: &str, source: &Path| Mount {
        destination: destination.into(),
        kind: "bind".into(),
        source: path(source),
        options: list(&["rbind", "rprivate", "rw"]),
    };
    let sys_options: &[&str] = if spec.privileged {
        &["nosuid", "noexec", "nodev", "rw"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", sys_options),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
        bind("/etc/resolv.conf", &spec.etc.resolv_conf),
        bind("/etc/hosts", &spec.etc.hosts),
        bind("/etc/hostname", &spec.etc.hostname),
    ];
    mounts.extend(spec.volumes.iter().map(|v| Mount {
        destination: v.destination.clone(),
        kind: "bind".into(),
        source: path(&v.source),
        options: list(&["rbind", "rprivate", "ro"]),
    }));
    let namespace = |kind: &str| Namespace { kind: kind.into(), path: None };
    let namespaces = vec![
        namespace("pid"),
        namespace("ipc"),
        namespace("uts"),
        namespace("mount"),
        namespace("cgroup"),
        Namespace { kind: "network".into(), path: Some(path(spec.netns)) },
    ];
    let cpu_request = spec.resources.requests.cpu_millis.or(limits.cpu_millis);
    let resources = LinuxResources {
        // Deny every device but those the runtimes always allow (null,
        // zero, tty, …); a privileged container may use any.
        devices: vec![DeviceRule { allow: spec.privileged, access: "rwm".into() }],
        memory: limits.memory.map(|bytes| {
            let limit = i64::try_from(bytes).unwrap_or(i64::MAX);
            // Memory plus swap = the limit: no swap (v2: memory.swap.max 0).
            Memory { limit, swap: spec.node.swap_accounting.then_some(limit) }
        }),
        cpu: Some(Cpu {
            shares: cpu_shares(cpu_request),
            quota: limits.cpu_millis.map(cpu_quota),
            period: limits.cpu_millis.map(|_| CPU_PERIOD),
        }),
        pids: Some(Pids { limit: spec.pids_limit }),
    };
    // OCI wants an absolute cwd; Docker reads a relative WorkingDir from `/`.
    let cwd = match spec.working_dir {
        "" => "/".to_string(),
        dir if dir.starts_with('/') => dir.to_string(),
        dir => format!("/{dir}"),
    };
    Spec {
        oci_version: "1.0.2".into(),
        process: Process {
            terminal: false,
            user: OciUser {
                uid: spec.user.uid,
                gid: spec.user.gid,
                additional_gids: spec.user.additional_gids.clone(),
            },
            args: spec.args.clone(),
            env: spec.env.clone(),
            cwd,
            capabilities: Capabilities { bounding: caps.clone(), effective: caps.clone(), permitted: caps },
            rlimits: vec![Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                hard: spec.node.nofile_hard.min(NOFILE_HARD_MAX),
                soft: NOFILE_SOFT.min(spec.node.nofile_hard),
            }],
            no_new_privileges: false,
            oom_score_adj: oom_score_adj(spec.resources, spec.node.memory_total)
                .max(spec.node.oom_score_adj_min),
        },
        root: Root { path: path(spec.rootfs), readonly: false },
        hostname: spec.hostname.into(),
        mounts,
        linux: Linux {
            resources,
            cgroups_path: spec.cgroups_path.clone(),
            namespaces,
            masked_paths: if spec.privileged { Vec::new() } else { security::masked_paths() },
            readonly_paths: if spec.privileged { Vec::new() } else { security::readonly_paths() },
            seccomp: (!spec.privileged).then(security::default_seccomp),
        },
    }
}

/// The OCI runtime configuration (the parts podnet sets).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    oci_version: String,
    process: Process,
    root: Root,
    hostname: String,
    mounts: Vec<Mount>,
    linux: Linux,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    terminal: bool,
    user: OciUser,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    capabilities: Capabilities,
    rlimits: Vec<Rlimit>,
    no_new_privileges: bool,
    oom_score_adj: i32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct OciUser {
    uid: u32,
    gid: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
struct Capabilities {
    bounding: Vec<String>,
    effective: Vec<String>,
    permitted: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Rlimit {
    #[serde(rename = "type")]
    kind: String,
    hard: u64,
    soft: u64,
}

#[derive(Debug, Clone, Serialize)]
struct Root {
    path: String,
    readonly: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Mount {
    destination: String,
    #[serde(rename = "type")]
    kind: String,
    source: String,
    options: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Linux {
    resources: LinuxResources,
    cgroups_path: String,
    namespaces: Vec<Namespace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    masked_paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    readonly_paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seccomp: Option<Seccomp>,
}

#[derive(Debug, Clone, Serialize)]
struct Namespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct LinuxResources {
    devices: Vec<DeviceRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<Cpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids: Option<Pids>,
}

#[derive(Debug, Clone, Serialize)]
struct DeviceRule {
    allow: bool,
    access: String,
}

#[derive(Debug, Clone, Serialize)]
struct Memory {
    limit: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    swap: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
struct Cpu {
    shares: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
struct Pids {
    limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PullPolicy, ResourceList};
    use serde_json::{Value, json};

    fn image(command: &[&str], args: &[&str]) -> ImageSpec {
        ImageSpec {
            image: "busybox".into(),
            pull_policy: PullPolicy::IfNotPresent,
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            env_refs: Vec::new(),
            env_error: None,
            volumes: Vec::new(),
            mounts: Vec::new(),
            files: Vec::new(),
            stdin_once: false,
            stdin: Default::default(),
        }
    }

    fn run_config(entrypoint: &[&str], cmd: &[&str]) -> RunConfig {
        RunConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..RunConfig::default()
        }
    }

    fn etc() -> EtcFiles {
        EtcFiles {
            resolv_conf: "/pods/u1/resolv.conf".into(),
            hosts: "/pods/u1/hosts".into(),
            hostname: "/pods/u1/hostname".into(),
        }
    }

    fn node() -> NodeLimits {
        NodeLimits {
            nofile_hard: 20_000,
            memory_total: 4 << 30,
            bounding: (1 << 41) - 1,
            oom_score_adj_min: -1000,
            swap_accounting: true,
        }
    }

    fn json_of(privileged: bool, resources: &Resources, node: NodeLimits) -> Value {
        json_in("", privileged, resources, node)
    }

    fn json_in(working_dir: &str, privileged: bool, resources: &Resources, node: NodeLimits) -> Value {
        let etc = etc();
        let spec = BundleSpec {
            rootfs: Path::new("/pods/u1/rootfs"),
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: environment(&["A=1".into()], &[("POD_NAME".into(), "web".into())]),
            user: User { uid: 101, gid: 101, additional_gids: vec![44] },
            working_dir,
            hostname: "web",
            netns: Path::new("/run/netns/pn.n1.default.web"),
            etc: &etc,
            volumes: &[],
            privileged,
            resources,
            pids_limit: 4096,
            cgroups_path: "/podnet/c1".into(),
            node,
        };
        serde_json::to_value(config(&spec)).unwrap()
    }

    #[test]
    fn the_process_combines_command_args_entrypoint_and_cmd_as_kubernetes() {
        let config = run_config(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]);
        assert_eq!(
            process_args(&image(&[], &[]), &config).unwrap(),
            ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
        assert_eq!(
            process_args(&image(&[], &["sleep", "1"]), &config).unwrap(),
            ["/docker-entrypoint.sh", "sleep", "1"]
        );
        assert_eq!(process_args(&image(&["sh"], &["-c", "x"]), &config).unwrap(), ["sh", "-c", "x"]);
        let err = process_args(&image(&[], &[]), &RunConfig::default()).unwrap_err();
        assert_eq!(err.to_string(), "the image has no command: give one after --");
    }

    #[test]
    fn the_pods_env_wins_over_the_images_and_a_path_is_always_there() {
        let image_env: Vec<String> = vec!["PATH=/opt/bin".into(), "MODE=image".into(), "KEEP=1".into()];
        let pod = [("MODE".into(), "pod".into()), ("POD_NAME".into(), "web".into())];
        assert_eq!(environment(&image_env, &pod), ["PATH=/opt/bin", "MODE=pod", "KEEP=1", "POD_NAME=web"]);
        assert_eq!(environment(&[], &pod[1..]), [DEFAULT_PATH, "POD_NAME=web"]);
    }

    #[test]
    fn a_default_container_gets_the_runtime_defaults_and_the_pods_namespace() {
        let config = json_of(false, &Resources::default(), node());
        let process = &config["process"];
        assert_eq!(process["terminal"], false);
        assert_eq!(process["args"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(process["env"], json!([DEFAULT_PATH, "A=1", "POD_NAME=web"]));
        assert_eq!(process["cwd"], "/");
        let cwd = |dir: &str| json_in(dir, false, &Resources::default(), node())["process"]["cwd"].clone();
        assert_eq!(cwd("/srv/app"), "/srv/app");
        assert_eq!(cwd("app"), "/app");
        assert_eq!(process["user"], json!({"uid": 101, "gid": 101, "additionalGids": [44]}));
        let caps = &process["capabilities"];
        assert_eq!(caps["effective"], json!(security::default_caps(u64::MAX)));
        assert_eq!(caps["bounding"], caps["effective"]);
        assert_eq!(caps["permitted"], caps["effective"]);
        assert!(caps.get("inheritable").is_none() && caps.get("ambient").is_none());
        // The node's hard limit (20000) is below runtimes' 1048576 default.
        assert_eq!(process["rlimits"], json!([{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 1024}]));
        assert_eq!(process["oomScoreAdj"], 1000);
        assert_eq!(config["hostname"], "web");
        assert_eq!(config["root"]["path"], "/pods/u1/rootfs");

        let linux = &config["linux"];
        assert_eq!(linux["cgroupsPath"], "/podnet/c1");
        let namespaces = linux["namespaces"].as_array().unwrap();
        for kind in ["pid", "ipc", "uts", "mount", "cgroup"] {
            assert!(namespaces.contains(&json!({"type": kind})), "{kind}");
        }
        // The pod's network namespace is joined, never a new one.
        assert!(namespaces.contains(&json!({"type": "network", "path": "/run/netns/pn.n1.default.web"})));
        assert_eq!(namespaces.len(), 6);
        assert!(linux["maskedPaths"].as_array().unwrap().contains(&json!("/proc/kcore")));
        assert!(linux["readonlyPaths"].as_array().unwrap().contains(&json!("/proc/sys")));
        assert_eq!(linux["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(linux["resources"]["pids"]["limit"], 4096);
        assert_eq!(linux["resources"]["devices"], json!([{"allow": false, "access": "rwm"}]));
        assert_eq!(linux["resources"]["cpu"], json!({"shares": 2}));
        assert!(linux["resources"].get("memory").is_none());

        let mounts = config["mounts"].as_array().unwrap();
        let at = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).unwrap().clone();
        assert_eq!(at("/proc")["type"], "proc");
        assert_eq!(at("/dev/pts")["type"], "devpts");
        assert!(at("/sys")["options"].as_array().unwrap().contains(&json!("ro")));
        assert!(at("/sys/fs/cgroup")["options"].as_array().unwrap().contains(&json!("ro")));
        assert_eq!(at("/etc/hosts")["source"], "/pods/u1/hosts");
        assert_eq!(at("/etc/hosts")["type"], "bind");
        assert_eq!(at("/etc/resolv.conf")["source"], "/pods/u1/resolv.conf");
        assert_eq!(at("/etc/hostname")["source"], "/pods/u1/hostname");
    }

    #[test]
    fn a_privileged_container_gets_every_capability_and_no_filter_or_masks() {
        let config = json_of(true, &Resources::default(), node());
        assert_eq!(config["process"]["capabilities"]["effective"].as_array().unwrap().len(), 41);
        assert!(config["linux"].get("seccomp").is_none());
        assert!(config["linux"].get("maskedPaths").is_none());
        assert!(config["linux"].get("readonlyPaths").is_none());
        assert_eq!(config["linux"]["resources"]["devices"], json!([{"allow": true, "access": "rwm"}]));
    }

    #[test]
    fn limits_and_requests_become_cgroup_settings_and_the_qos_oom_score() {
        let mi = 1 << 20;
        let burstable = Resources {
            limits: ResourceList { memory: Some(128 * mi), cpu_millis: Some(500) },
            requests: ResourceList { memory: Some(64 * mi), cpu_millis: Some(250) },
        };
        let config = json_of(false, &burstable, node());
        let resources = &config["linux"]["resources"];
        assert_eq!(resources["memory"], json!({"limit": 128 * mi, "swap": 128 * mi}));
        let no_swap = json_of(false, &burstable, NodeLimits { swap_accounting: false, ..node() });
        assert_eq!(no_swap["linux"]["resources"]["memory"], json!({"limit": 128 * mi}));
        assert_eq!(resources["cpu"], json!({"shares": 256, "quota": 50_000, "period": 100_000}));
        // 1000 - 1000 * 64 MiB / 4 GiB
        assert_eq!(config["process"]["oomScoreAdj"], 985);

        let guaranteed = Resources {
            limits: ResourceList { memory: Some(128 * mi), cpu_millis: Some(500) },
            requests: ResourceList::default(),
        };
        let config = json_of(false, &guaranteed, node());
        assert_eq!(config["process"]["oomScoreAdj"], -997);
        assert_eq!(config["linux"]["resources"]["cpu"]["shares"], 512);
        // Without CAP_SYS_RESOURCE the runtime cannot go below its own score.
        let config = json_of(false, &guaranteed, NodeLimits { oom_score_adj_min: 0, ..node() });
        assert_eq!(config["process"]["oomScoreAdj"], 0);

        // A tiny node: the nofile hard limit and the soft one stay within it.
        let small = NodeLimits { nofile_hard: 512, ..node() };
        let config = json_of(false, &Resources::default(), small);
        assert_eq!(
            config["process"]["rlimits"][0],
            json!({"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512})
        );
        let big = NodeLimits { nofile_hard: u64::MAX, ..node() };
        let config = json_of(false, &Resources::default(), big);
        assert_eq!(config["process"]["rlimits"][0]["hard"], NOFILE_HARD_MAX);
    }

    #[test]
    fn the_oom_score_follows_the_kubelets_qos_rules() {
        let mi = 1u64 << 20;
        let list = |memory: Option<u64>, cpu: Option<u64>| ResourceList { memory, cpu_millis: cpu };
        let total = 1024 * mi;
        assert_eq!(oom_score_adj(&Resources::default(), total), 1000);
        let request_all = Resources { limits: list(None, None), requests: list(Some(total), None) };
        assert_eq!(oom_score_adj(&request_all, total), 3);
        let cpu_only = Resources { limits: list(None, Some(100)), requests: list(None, None) };
        assert_eq!(oom_score_adj(&cpu_only, total), 999);
        assert_eq!(cpu_shares(Some(1)), 2);
        assert_eq!(cpu_quota(1), 1000);
    }
}
