//! What can go wrong running a container, each with the fix in its message.

use std::io;
use std::path::PathBuf;

/// A container could not be made, run, signalled or removed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Neither crun nor runc is on PATH.
    #[error("no OCI runtime: apt-get install runc (or crun)")]
    NoRuntime,
    /// The configured runtime is not there.
    #[error(
        "OCI runtime `{0}` (pods.runtime) not found: install it (apt-get install runc or crun) or fix pods.runtime"
    )]
    RuntimeNotFound(String),
    /// The runtime answers `--version` with something podnet does not know.
    #[error("`{path}` is neither runc nor crun ({detail}): set pods.runtime to runc or crun")]
    UnknownRuntime {
        /// The program.
        path: PathBuf,
        /// What it said, or why it said nothing.
        detail: String,
    },
    /// The runtime cannot run containers with this node's cgroups.
    #[error("{runtime} cannot run containers on this node: {reason}; {fix}")]
    RuntimeUnusable {
        /// Name and version.
        runtime: String,
        /// Why, in words.
        reason: String,
        /// What to do instead.
        fix: String,
    },
    /// Every installed runtime is unusable.
    #[error("no OCI runtime works on this node: {0}")]
    NoUsableRuntime(String),
    /// No cgroup filesystem is mounted.
    #[error("no cgroup filesystem at /sys/fs/cgroup: mount cgroup2 there (or boot with systemd)")]
    NoCgroups,
    /// A container id the runtime would refuse or that could name a path.
    #[error("bad container id `{0}`: use 1-64 letters, digits, `-`, `_` or `.`, not starting with `.`")]
    BadId(String),
    /// The runtime has a container of this id, or its rootfs is mounted.
    #[error("container {0} exists already: delete it first")]
    Exists(String),
    /// Neither the pod nor the image gives a command.
    #[error("the image has no command: give one after --")]
    NoCommand,
    /// An image with no layers.
    #[error("the image has no layers: pull it again")]
    NoLayers,
    /// More layers than overlayfs stacks.
    #[error("the image has {0} layers, more than overlayfs stacks ({max}): flatten the image", max = super::rootfs::MAX_LAYERS)]
    TooManyLayers(usize),
    /// The image's user cannot be resolved in its rootfs.
    #[error("the image's user `{user}`: {problem}")]
    User {
        /// The user as the image config gives it.
        user: String,
        /// What is wrong, with the fix.
        problem: String,
    },
    /// A file or directory of the container could not be made or read.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The overlay rootfs could not be mounted or unmounted.
    #[error("{what} the rootfs at {}: {source}", path.display())]
    Mount {
        /// Mounting or unmounting.
        what: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: nix::Error,
    },
    /// A Secret volume's tmpfs could not be mounted or unmounted.
    #[error("{what} the secret volume's tmpfs at {}: {source}", path.display())]
    VolumeMount {
        /// Mounting or unmounting.
        what: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: nix::Error,
    },
    /// The runtime could not be started.
    #[error("cannot start {runtime} {action}: {source}")]
    Spawn {
        /// Runtime name.
        runtime: String,
        /// The subcommand.
        action: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The runtime refused; `message` is its own last error line.
    #[error("{runtime} {action} {id}: {message}")]
    Runtime {
        /// Runtime name.
        runtime: String,
        /// The subcommand.
        action: &'static str,
        /// The container.
        id: String,
        /// The runtime's error text.
        message: String,
    },
    /// The runtime started the container but wrote no usable pid file.
    #[error("{runtime} started {id} but its pid file {} holds no pid", path.display())]
    PidFile {
        /// Runtime name.
        runtime: String,
        /// The container.
        id: String,
        /// The pid file.
        path: PathBuf,
    },
}

impl ContainerError {
    /// An I/O error on `path` while doing `what`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> ContainerError {
        let path = path.into();
        move |source| ContainerError::Io { what, path, source }
    }
}
