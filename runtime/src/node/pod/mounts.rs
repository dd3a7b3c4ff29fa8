//! The mounts of a pod's private mount namespace: the host's files (a pod
//! has no image), with its own /proc for its PID namespace, runc's masked
//! and read-only /proc and /sys paths, a fresh read-only /sys, a /dev with
//! only the usual devices, the agent's socket and data dir covered by empty
//! read-only mounts, and the pod's resolv.conf. Without CAP_SYS_ADMIN (and
//! with mount/umount refused by the seccomp filter) none of it can be undone
//! from inside. Paths are prepared by [`Mounts::new`] before the fork;
//! [`Mounts::apply`] makes only system calls.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, makedev, mknod, umask};
use nix::unistd::{mkdir, symlinkat};

/// Files runc masks with /dev/null.
const MASKED_FILES: &[&CStr] = &[
    c"/proc/kcore",
    c"/proc/keys",
    c"/proc/latency_stats",
    c"/proc/timer_list",
    c"/proc/timer_stats",
    c"/proc/sched_debug",
];

/// Directories runc masks with an empty read-only tmpfs.
const MASKED_DIRS: &[&CStr] =
    &[c"/proc/acpi", c"/proc/asound", c"/proc/scsi", c"/sys/firmware", c"/sys/devices/virtual/powercap"];

/// Paths runc makes read-only.
const READ_ONLY: &[&CStr] = &[c"/proc/bus", c"/proc/fs", c"/proc/irq", c"/proc/sys", c"/proc/sysrq-trigger"];

/// The character devices of a container's /dev: name, major, minor.
const DEVICES: &[(&CStr, u32, u32)] = &[
    (c"/dev/null", 1, 3),
    (c"/dev/zero", 1, 5),
    (c"/dev/full", 1, 7),
    (c"/dev/random", 1, 8),
    (c"/dev/urandom", 1, 9),
    (c"/dev/tty", 5, 0),
];

/// Symlinks of a container's /dev: link, target.
const DEV_LINKS: &[(&CStr, &CStr)] = &[
    (c"/dev/fd", c"/proc/self/fd"),
    (c"/dev/stdin", c"/proc/self/fd/0"),
    (c"/dev/stdout", c"/proc/self/fd/1"),
    (c"/dev/stderr", c"/proc/self/fd/2"),
    (c"/dev/ptmx", c"pts/ptmx"),
];

/// The mounts a new pod gets.
#[derive(Debug)]
pub struct Mounts {
    resolv_conf: Option<CString>,
    /// Host paths the pod must not see, and whether each is a directory.
    hidden: Vec<(CString, bool)>,
    /// False for a privileged pod: the host's /dev and /sys, nothing masked.
    sandboxed: bool,
}

impl Mounts {
    /// Prepares the paths: `hidden` are covered (those that exist), the
    /// pod's `resolv_conf` goes over /etc/resolv.conf.
    pub fn new(resolv_conf: &Path, hidden: &[PathBuf], sandboxed: bool) -> io::Result<Mounts> {
        let resolv_conf =
            resolv_conf.exists().then(|| CString::new(resolv_conf.as_os_str().as_bytes())).transpose()?;
        let hidden = hidden
            .iter()
            .filter(|p| p.exists())
            .map(|p| Ok((CString::new(p.as_os_str().as_bytes())?, p.is_dir())))
            .collect::<io::Result<_>>()?;
        Ok(Mounts { resolv_conf, hidden, sandboxed })
    }

    /// Sets up the mounts in the calling process, which has just unshared its
    /// mount namespace and is the first process of its PID namespace.
    pub fn apply(&self) -> io::Result<()> {
        let none = None::<&str>;
        let (nosuid, nodev, noexec) = (MsFlags::MS_NOSUID, MsFlags::MS_NODEV, MsFlags::MS_NOEXEC);
        // Keep our mounts to ourselves, while still seeing the host's.
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none).map_err(err)?;
        // A /proc for our PID namespace: the host's processes are not in it.
        mount(Some("proc"), "/proc", Some("proc"), nosuid | nodev | noexec, none).map_err(err)?;
        if self.sandboxed {
            // A fresh sysfs shows this network namespace's devices, read-only.
            let ro = MsFlags::MS_RDONLY | nosuid | nodev | noexec;
            mount(Some("sysfs"), "/sys", Some("sysfs"), ro, none).map_err(err)?;
            self.dev()?;
            for path in MASKED_FILES {
                ignore_missing(mount(Some("/dev/null"), *path, none, MsFlags::MS_BIND, none))?;
            }
            for path in MASKED_DIRS {
                ignore_missing(mount(
                    Some("tmpfs"),
                    *path,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    Some("size=4k"),
                ))?;
            }
            for path in READ_ONLY {
                if ignore_missing(mount(Some(*path), *path, none, MsFlags::MS_BIND | MsFlags::MS_REC, none))?
                {
                    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro;
                    mount(none, *path, none, flags, none).map_err(err)?;
                }
            }
        }
        for (path, is_dir) in &self.hidden {
            if *is_dir {
                let flags = MsFlags::MS_RDONLY | nosuid | nodev | noexec;
                mount(Some("tmpfs"), path.as_c_str(), Some("tmpfs"), flags, Some("size=4k,mode=000"))
                    .map_err(err)?;
            } else {
                mount(Some("/dev/null"), path.as_c_str(), none, MsFlags::MS_BIND, none).map_err(err)?;
                let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                mount(none, path.as_c_str(), none, flags, none).map_err(err)?;
            }
        }
        if let Some(resolv) = &self.resolv_conf {
            mount(Some(resolv.as_c_str()), "/etc/resolv.conf", none, MsFlags::MS_BIND, none).map_err(err)?;
        }
        Ok(())
    }

    /// A /dev as a container has it: a few devices, its own ptys, a shm.
    fn dev(&self) -> io::Result<()> {
        let none = None::<&str>;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        mount(Some("tmpfs"), "/dev", Some("tmpfs"), flags, Some("mode=755,size=64k")).map_err(err)?;
        // Paths are &CStr: nix passes them through without allocating, as a
        // hook between fork and exec must.
        let old_umask = umask(Mode::empty());
        let made = DEVICES.iter().try_for_each(|(path, major, minor)| {
            mknod(
                *path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev((*major).into(), (*minor).into()),
            )
        });
        umask(old_umask);
        made.map_err(err)?;
        for (link, target) in DEV_LINKS {
            symlinkat(*target, AT_FDCWD, *link).map_err(err)?;
        }
        mkdir(c"/dev/pts", Mode::from_bits_truncate(0o755)).map_err(err)?;
        mkdir(c"/dev/shm", Mode::from_bits_truncate(0o1777)).map_err(err)?;
        mkdir(c"/dev/mqueue", Mode::from_bits_truncate(0o755)).map_err(err)?;
        let pts = Some("newinstance,ptmxmode=0666,mode=0620");
        mount(Some("devpts"), "/dev/pts", Some("devpts"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, pts)
            .map_err(err)?;
        let shm = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("shm"), "/dev/shm", Some("tmpfs"), shm, Some("mode=1777,size=65536k")).map_err(err)?;
        // The message queues of our own IPC namespace, where the kernel has them.
        let _ = mount(Some("mqueue"), "/dev/mqueue", Some("mqueue"), shm, none);
        Ok(())
    }
}

fn err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Ok(false) for a path this kernel does not have.
fn ignore_missing(result: nix::Result<()>) -> io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(nix::Error::ENOENT) => Ok(false),
        Err(e) => Err(err(e)),
    }
}
