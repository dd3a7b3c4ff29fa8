//! Entering a pod from a freshly forked child: its network namespace, a
//! private mount namespace with the pod's resolv.conf over /etc/resolv.conf
//! (as `ip netns exec` does with /etc/netns/NAME), and its hostname.
//!
//! Everything that allocates happens in [`PodEntry::open`], before the fork;
//! [`PodEntry::enter`] makes only system calls, as a pre_exec hook must.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

/// Everything needed to put a child process inside a pod.
#[derive(Debug)]
pub struct PodEntry {
    netns: File,
    resolv_conf: Option<CString>,
    hostname: CString,
    new_session: bool,
    /// Host paths the pod must not see, and whether each is a directory.
    hidden: Vec<(CString, bool)>,
}

impl PodEntry {
    /// Opens the pod's namespace file and prepares the paths.
    pub fn open(netns: &Path, resolv_conf: &Path, hostname: &str, new_session: bool) -> io::Result<PodEntry> {
        let netns = File::open(netns)
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", netns.display())))?;
        let resolv_conf =
            resolv_conf.exists().then(|| CString::new(resolv_conf.as_os_str().as_bytes())).transpose()?;
        Ok(PodEntry {
            netns,
            resolv_conf,
            hostname: CString::new(hostname)?,
            new_session,
            hidden: Vec::new(),
        })
    }

    /// Hides `paths` from the pod (the agent's control socket, its data dir
    /// with the cluster token): a pod shares the host's files, and its
    /// processes may run as root.
    pub fn hide(mut self, paths: &[std::path::PathBuf]) -> io::Result<PodEntry> {
        for path in paths.iter().filter(|p| p.exists()) {
            self.hidden.push((CString::new(path.as_os_str().as_bytes())?, path.is_dir()));
        }
        Ok(self)
    }

    /// Moves the calling (child) process into the pod.
    pub fn enter(&self) -> io::Result<()> {
        let err = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
        setns(self.netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(err)?;
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(err)?;
        // Keep our mounts to ourselves, while still seeing the host's.
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
            .map_err(err)?;
        for (path, is_dir) in &self.hidden {
            if *is_dir {
                let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                mount(Some("tmpfs"), path.as_c_str(), Some("tmpfs"), flags, Some("size=4k,mode=000"))
                    .map_err(err)?;
            } else {
                mount(Some("/dev/null"), path.as_c_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(err)?;
            }
        }
        if let Some(resolv) = &self.resolv_conf {
            mount(Some(resolv.as_c_str()), "/etc/resolv.conf", None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(err)?;
        }
        nix::unistd::sethostname(std::ffi::OsStr::from_bytes(self.hostname.to_bytes())).map_err(err)?;
        if self.new_session {
            nix::unistd::setsid().map_err(err)?;
        }
        Ok(())
    }

    /// Installs [`PodEntry::enter`] as the command's pre_exec hook.
    pub fn apply(self, command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: `enter` makes only system calls on data prepared before the fork.
        unsafe {
            command.pre_exec(move || self.enter());
        }
    }
}
