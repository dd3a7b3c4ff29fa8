//! Image pods' containers, run by the node's OCI runtime (crun or runc) as
//! containerd's shim would: podnet writes the bundle (an overlayfs of the
//! image's layers and a `config.json` that joins the pod's network
//! namespace), starts the container detached with the pod's log pipe as its
//! stdout and stderr, and learns its exit as the init's parent.
//!
//! The agent must be a child subreaper ([`crate::sys::reaper::set_subreaper`],
//! once at start, before the first container): a detached container's init
//! is then re-parented to the agent when the runtime exits, and
//! [`wait_exit`] gets its real exit code. Tokio reaps only the children it
//! spawned, by pid, so it never takes an init's status first.
//!
//! The calls that run the runtime ([`OciRuntime::create`], `kill`,
//! `delete`, `state`) block for as long as it runs (tens of milliseconds):
//! call them from `spawn_blocking`, not the agent's event loop.

mod atomic_writer;
pub mod bundle;
mod error;
mod exit;
mod lifecycle;
pub mod oci_runtime;
pub mod rootfs;
pub mod security;
pub mod stdin;
pub mod user;
pub mod volumes;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use bundle::EtcFiles;
pub use error::ContainerError;
pub use exit::{stop_signal, wait_exit};
pub use oci_runtime::{CgroupMode, RuntimeKind};

use crate::image::manifest::RunConfig;
use crate::model::{ImageSpec, Resources, SecurityContext};

/// The default most processes a container may have (`pids.max`).
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// The node's OCI runtime, with its state under podnet's own root.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    found: oci_runtime::Found,
    root: PathBuf,
    cgroups: CgroupMode,
}

impl OciRuntime {
    /// Finds the runtime to use: `configured` (`pods.runtime`: `crun`,
    /// `runc` or a path) if it can work with this node's cgroups, else the
    /// first of crun and runc on PATH that can; a clear error otherwise.
    pub fn detect(configured: Option<&str>) -> Result<OciRuntime, ContainerError> {
        let cgroups = CgroupMode::read(Path::new("/sys/fs/cgroup"))?;
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"));
        let found = oci_runtime::choose(configured, &path, &cgroups, oci_runtime::probe)?;
        let root = Path::new(oci_runtime::STATE_BASE).join(found.kind.name());
        Ok(OciRuntime { found, root, cgroups })
    }

    /// The same runtime keeping its state under `root` instead.
    pub fn with_state_root(mut self, root: PathBuf) -> OciRuntime {
        self.root = root;
        self
    }

    /// Which runtime.
    pub fn kind(&self) -> RuntimeKind {
        self.found.kind
    }

    /// Name and version (`runc 1.1.5`).
    pub fn describe(&self) -> String {
        self.found.describe()
    }

    /// The runtime's executable.
    pub fn program(&self) -> &Path {
        &self.found.path
    }

    /// Where the runtime keeps its containers' state (`--root`).
    pub fn state_root(&self) -> &Path {
        &self.root
    }

    /// The node's cgroup setup.
    pub fn cgroups(&self) -> &CgroupMode {
        &self.cgroups
    }
}

/// What one container is made of.
#[derive(Debug)]
pub struct ContainerSpec {
    /// The container's id for the runtime (letters, digits, `-_.`).
    pub id: String,
    /// The container's own directory (`<data-dir>/pods/<uid>`): bundle,
    /// rootfs, upper and work directories. Removed by `delete`.
    pub pod_dir: PathBuf,
    /// The image's unpacked layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// The pod's image, command and args.
    pub image: ImageSpec,
    /// The image config's run section.
    pub config: RunConfig,
    /// The pod's variables (POD_* and its own); they win over the image's.
    pub env: Vec<(String, String)>,
    /// The pod's name.
    pub hostname: String,
    /// The pod's named network namespace (`/run/netns/pn.<node>.<ns>.<pod>`).
    pub netns: PathBuf,
    /// The pod's resolv.conf, hosts and hostname.
    pub etc: EtcFiles,
    /// Privileged, run as.
    pub security: SecurityContext,
    /// Limits and requests.
    pub resources: Resources,
    /// The most processes it may have ([`DEFAULT_PIDS_LIMIT`]).
    pub pids_limit: i64,
    /// The pod's log pipe: the container's stdout and stderr.
    pub log: File,
}

/// A running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Its id.
    pub id: String,
    /// Its init's pid (in the node's PID namespace).
    pub pid: i32,
}
