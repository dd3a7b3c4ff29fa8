//! Entering a pod from a freshly forked child. A new pod process gets the
//! pod's network namespace, new PID, mount, UTS and IPC namespaces (see
//! `pod::mounts`: the host read-only, private /tmp, /var/tmp and /run), its
//! hostname, and is confined (see `pod::confine`); `podnet exec` joins the
//! namespaces of the pod's running command instead, so it sees the same
//! files, and is confined the same way.
//!
//! Everything that allocates happens before the fork ([`PodEntry::new_pod`],
//! [`PodEntry::join`]); [`PodEntry::enter`] makes only system calls, as a
//! pre_exec hook must. A PID namespace applies to the children of the thread
//! that enters it, not to the thread itself, so [`PodEntry::spawn`] forks
//! from a thread of its own that enters it first: the pod's command is PID 1
//! of its namespace.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns, unshare};

use super::confine::Confinement;
use super::mounts::Mounts;
use crate::model::SecurityContext;

/// Everything needed to put a child process inside a pod.
#[derive(Debug)]
pub struct PodEntry {
    namespaces: Namespaces,
    confinement: Confinement,
}

#[derive(Debug)]
enum Namespaces {
    /// A pod's command: the pod's network namespace, new other ones.
    New { netns: File, mounts: Mounts, hostname: CString },
    /// `podnet exec`: the namespaces of the pod's command.
    Join { pid: File, others: Vec<(File, CloneFlags)> },
}

impl PodEntry {
    /// Prepares the entry of a pod's command: `hidden` host paths are
    /// covered, `resolv_conf` goes over /etc/resolv.conf, and a sandboxed
    /// pod's /tmp, /var/tmp and /run hold at most `tmpfs_bytes` each.
    pub fn new_pod(
        netns: &Path,
        resolv_conf: &Path,
        hostname: &str,
        hidden: &[PathBuf],
        tmpfs_bytes: u64,
        security: &SecurityContext,
    ) -> io::Result<PodEntry> {
        let netns = File::open(netns)
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", netns.display())))?;
        let mounts = Mounts::new(resolv_conf, hidden, !security.privileged, tmpfs_bytes)?;
        let namespaces = Namespaces::New { netns, mounts, hostname: CString::new(hostname)? };
        Ok(PodEntry { namespaces, confinement: Confinement::new(security)? })
    }

    /// Prepares joining the pod whose command runs as host PID `pid` and
    /// whose network namespace is `netns` (checked, so a PID reused by
    /// another process is never joined).
    pub fn join(pid: i32, netns: &Path, security: &SecurityContext) -> io::Result<PodEntry> {
        let open = |ns: &str| {
            let path = format!("/proc/{pid}/ns/{ns}");
            File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))
        };
        let net = open("net")?;
        let (ours, want) = (net.metadata()?, std::fs::metadata(netns)?);
        if (ours.dev(), ours.ino()) != (want.dev(), want.ino()) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("process {pid} left the pod")));
        }
        // The mount namespace last: the others are opened through the host's /proc.
        let others = vec![
            (open("ipc")?, CloneFlags::CLONE_NEWIPC),
            (open("uts")?, CloneFlags::CLONE_NEWUTS),
            (net, CloneFlags::CLONE_NEWNET),
            (open("mnt")?, CloneFlags::CLONE_NEWNS),
        ];
        let namespaces = Namespaces::Join { pid: open("pid")?, others };
        Ok(PodEntry { namespaces, confinement: Confinement::new(security)? })
    }

    /// Moves the calling (child) process into the pod and confines it.
    pub fn enter(&self) -> io::Result<()> {
        let err = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
        match &self.namespaces {
            Namespaces::New { netns, mounts, hostname } => {
                setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(err)?;
                unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC)
                    .map_err(err)?;
                mounts.apply()?;
                nix::unistd::sethostname(std::ffi::OsStr::from_bytes(hostname.to_bytes())).map_err(err)?;
                // Not tied to the agent's session: a killed agent's pods run on (see `pod::adopt`).
                nix::unistd::setsid().map_err(err)?;
            }
            Namespaces::Join { others, .. } => {
                for (fd, kind) in others {
                    setns(fd.as_fd(), *kind).map_err(err)?;
                }
            }
        }
        self.confinement.apply()
    }

    /// Makes the children the calling thread forks from now on start in the
    /// pod's PID namespace (a new one for a pod's command).
    fn enter_pid_namespace(&self) -> io::Result<()> {
        let err = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
        match &self.namespaces {
            Namespaces::New { .. } => unshare(CloneFlags::CLONE_NEWPID).map_err(err),
            Namespaces::Join { pid, .. } => setns(pid.as_fd(), CloneFlags::CLONE_NEWPID).map_err(err),
        }
    }

    /// Starts `command` inside the pod with `spawn` (which forks), from a
    /// thread of its own that enters the pod's PID namespace first, and
    /// returns what `spawn` returned.
    pub fn spawn<T: Send>(
        self,
        mut command: std::process::Command,
        spawn: impl FnOnce(std::process::Command) -> io::Result<T> + Send,
    ) -> io::Result<T> {
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    self.enter_pid_namespace()?;
                    use std::os::unix::process::CommandExt;
                    // The one hook the crate cannot wrap in `sys`: it enters
                    // the pod with code from `pod::{mounts, confine}`.
                    // SAFETY: `enter` makes only system calls on data
                    // prepared before the fork (no allocation, no lock), as
                    // a hook between fork and exec must.
                    #[allow(unsafe_code)]
                    unsafe {
                        command.pre_exec(move || self.enter());
                    }
                    spawn(command)
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the thread starting a pod process panicked")))
        })
    }
}
