//! Desired state on disk. Every change the CLI is told succeeded has been
//! written first: a temporary file, fsync, rename over the old one, fsync of
//! the directory. A torn write leaves the previous state, never a mix; a file
//! that does not parse stops the agent instead of starting an empty cluster.
//! The file is root's only (0600). A full disk refuses the change with a
//! message that says so, and leaves the previous state in place.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::address::{Ipv6Unsupported, ipv4_only};
use crate::model::{DeploymentSpec, Namespace, PodSpec, Service};

/// The state file format this podnet reads and writes.
pub(crate) const FORMAT: u32 = 1;

/// A pod as remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// The pod's IP, kept across restarts.
    pub ip: IpAddr,
    /// What the user asked for.
    pub spec: PodSpec,
    /// The node the pod runs on.
    #[serde(default)]
    pub node: String,
}

impl PodRecord {
    /// The pod's address for the node's IPv4-only plumbing (sandbox, switch
    /// port, MAC scheme). Inputs refuse IPv6, so an error here is a
    /// hand-edited state file.
    pub fn ipv4(&self) -> Result<std::net::Ipv4Addr, Ipv6Unsupported> {
        ipv4_only("pod IP", self.ip)
    }
}

/// A deployment as remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// What the user asked for.
    pub spec: DeploymentSpec,
}

/// Everything the node must not forget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// File format version.
    pub format: u32,
    /// Node name.
    pub node_name: String,
    /// Pods.
    pub pods: Vec<PodRecord>,
    /// Deployments.
    pub deployments: Vec<DeploymentRecord>,
    /// Services, with their ClusterIPs (the control plane's own: a save
    /// copies none).
    #[serde(default)]
    pub services: Vec<std::sync::Arc<Service>>,
    /// The cluster's nodes and their pod subnets.
    #[serde(default)]
    pub nodes: Vec<NodeRecord>,
    /// A ceiling over the cluster's revision (the Kubernetes API's
    /// resourceVersion) when saved: a restart starts past it, so the
    /// revision never goes back.
    #[serde(default)]
    pub revision: u64,
    /// Namespaces created explicitly or given labels.
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// NetworkPolicies.
    #[serde(default)]
    pub network_policies: Vec<crate::model::policy::NetworkPolicy>,
    /// Ingresses.
    #[serde(default)]
    pub ingresses: Vec<crate::model::ingress::Ingress>,
    /// Secrets (the state file is root's only, 0600).
    #[serde(default)]
    pub secrets: Vec<crate::model::secret::Secret>,
    /// ConfigMaps.
    #[serde(default)]
    pub configmaps: Vec<crate::model::configmap::ConfigMap>,
}

/// A node as remembered: its pod subnet is kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Its pod subnet.
    pub subnet: crate::config::Cidr,
    /// Its address on the network between nodes, if it joined over one.
    pub address: Option<IpAddr>,
    /// Unix time it first joined.
    pub joined_at: u64,
    /// Its node password's digest, pinned at its first join (none for the
    /// server's own node, and for a node that joined before passwords).
    #[serde(default)]
    pub password: Option<crate::cluster::password::PasswordDigest>,
}

/// The state file of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

/// Why the saved state cannot be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk holding the data dir is full: the change was not saved.
    #[error(
        "the disk holding {} is full, so the change was not saved: free space on it (old pod logs are in {}/logs) and retry",
        dir.display(),
        dir.display()
    )]
    DiskFull {
        /// The data dir.
        dir: PathBuf,
    },
    /// Writing the state failed: the change was not saved.
    #[error("cannot save state to {}: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file exists but cannot be read.
    #[error("cannot read state file {}: {source}", path.display())]
    Read {
        /// state.json.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not a state podnet wrote.
    #[error(
        "state file {} is corrupt ({source}); podnet will not start an empty node over it: restore it from a backup, or move it away to start afresh",
        path.display()
    )]
    Corrupt {
        /// state.json.
        path: PathBuf,
        /// What the parser found.
        #[source]
        source: serde_json::Error,
    },
    /// Another podnet version's format.
    #[error(
        "state file {} has format {found} and this podnet reads format {FORMAT}: use a matching podnet",
        path.display()
    )]
    Format {
        /// state.json.
        path: PathBuf,
        /// The file's format number.
        found: u32,
    },
}

impl Store {
    /// The store in `data_dir` (state.json).
    pub fn new(data_dir: &Path) -> Store {
        Store { path: data_dir.join("state.json") }
    }

    /// Loads the state; a missing file is a fresh node, a bad one an error.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Read { path: self.path.clone(), source }),
        };
        let state: State = serde_json::from_slice(&text)
            .map_err(|source| StoreError::Corrupt { path: self.path.clone(), source })?;
        if state.format != FORMAT {
            return Err(StoreError::Format { path: self.path.clone(), found: state.format });
        }
        Ok(Some(state))
    }

    /// Replaces the state on disk atomically and durably (blocks on
    /// fsync: the agent calls it off its event loop).
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let tmp = self.path.with_extension("json.tmp");
        self.write(state, &tmp).map_err(|source| {
            // A partial temporary file takes space a full disk lacks.
            let _ = fs::remove_file(&tmp);
            self.failed(source)
        })
    }

    /// The error for a failed save: a full disk is named as such.
    pub(crate) fn failed(&self, source: io::Error) -> StoreError {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StoreError::DiskFull { dir: self.dir() },
            _ => StoreError::Write { path: self.path.clone(), source },
        }
    }

    fn write(&self, state: &State, tmp: &Path) -> io::Result<()> {
        // Stamped with the format this podnet writes; a copy only when the
        // caller left it unset (a copy of every object costs a Pi).
        let _ = fs::remove_file(tmp);
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
        // Written as it is encoded: the whole state is never in memory
        // twice (a thousand Services are a MiB of JSON).
        let mut out = io::BufWriter::new(file);
        match state.format == FORMAT {
            true => serde_json::to_writer_pretty(&mut out, state),
            false => serde_json::to_writer_pretty(&mut out, &State { format: FORMAT, ..state.clone() }),
        }
        // An I/O error comes back as itself (a full disk stays ENOSPC).
        .map_err(io::Error::from)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(tmp, &self.path)?;
        File::open(self.dir())?.sync_all()
    }

    /// The data dir.
    pub fn dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podnet-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn saves_and_loads() {
        let dir = tmpdir("roundtrip");
        let store = Store::new(&dir);
        assert_eq!(store.load().unwrap(), None);
        let state = State { format: FORMAT, node_name: "n1".into(), ..State::default() };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), Some(state));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_state_file_is_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmpdir("mode");
        let store = Store::new(&dir);
        store.save(&State { node_name: "n1".into(), ..State::default() }).unwrap();
        let mode = fs::metadata(dir.join("state.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_disk_is_named_with_the_data_dir_and_the_fix() {
        let store = Store::new(Path::new("/var/lib/podnet"));
        let err = store.failed(io::Error::from_raw_os_error(libc::ENOSPC)).to_string();
        assert!(err.contains("disk holding /var/lib/podnet is full") && err.contains("free space"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let other = store.failed(io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(other, StoreError::Write { .. }), "{other}");
    }

    /// A state file written by podnet's `Store::save` at commit 30ba0e3,
    /// before addresses were `IpAddr` and deployments held a pod template:
    /// IPv4 strings, and a deployment's container fields flat in its spec.
    const BEFORE_IPADDR: &str = include_str!("store_fixtures/state-30ba0e3.json");

    #[test]
    fn a_state_file_written_before_ipaddr_and_templates_still_loads() {
        use std::net::{IpAddr, Ipv4Addr};
        let dir = tmpdir("old-format");
        fs::write(dir.join("state.json"), BEFORE_IPADDR).unwrap();
        let store = Store::new(&dir);
        let state = store.load().unwrap().unwrap();
        let ip = |a: [u8; 4]| IpAddr::from(Ipv4Addr::from(a));
        assert_eq!(state.pods[0].ip, ip([10, 244, 0, 5]));
        assert_eq!(state.pods[0].spec.template.host_ports[0].host_ip, Some(ip([192, 168, 1, 5])));
        assert_eq!(state.nodes[0].address, Some(ip([192, 168, 1, 2])));
        assert_eq!(state.services[0].cluster_ip, Some(ip([10, 96, 0, 99])));
        assert_eq!(
            state.services[0].spec.cluster_ip,
            crate::model::ClusterIpRequest::Fixed(ip([10, 96, 0, 99]))
        );
        let web = &state.deployments[0].spec;
        assert_eq!(web.template.command, ["sleep", "1000"]);
        assert_eq!(web.template.ports[0].port, 8080);
        assert_eq!(web.pod_template().template.command, ["sleep", "1000"]);
        // Saved again, it reads the same and keeps the old shape.
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap().unwrap(), state);
        let text = fs::read_to_string(dir.join("state.json")).unwrap();
        // ConfigMaps came after 30ba0e3: their (empty) list is the only addition.
        let without_newer = text.replace(",\n  \"configmaps\": []", "");
        assert_eq!(without_newer, BEFORE_IPADDR, "saved again, byte for byte what 30ba0e3 wrote");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["pods"][0]["ip"], "10.244.0.5");
        assert_eq!(json["deployments"][0]["spec"]["command"][0], "sleep", "container fields stay flat");
        assert!(json["deployments"][0]["spec"].get("template").is_none(), "{text}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_truncated_file_is_an_error_not_an_empty_node() {
        let dir = tmpdir("corrupt");
        let store = Store::new(&dir);
        store.save(&State { node_name: "n1".into(), ..State::default() }).unwrap();
        let text = fs::read(dir.join("state.json")).unwrap();
        fs::write(dir.join("state.json"), &text[..text.len() / 2]).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
