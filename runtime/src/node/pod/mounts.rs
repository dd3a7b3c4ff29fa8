//! The mounts of a pod's private mount namespace: the host's files (a pod
//! has no image) as a recursive read-only bind, as systemd's
//! ProtectSystem=strict, with private size-bounded tmpfs on /tmp, /var/tmp
//! and /run, its own /proc for its PID namespace, runc's masked and
//! read-only /proc and /sys paths, a fresh read-only /sys, a /dev with only
//! the usual devices, the agent's socket and data dir covered by empty
//! read-only mounts, and the pod's resolv.conf. Without CAP_SYS_ADMIN (and
//! with mount/umount refused by the seccomp filter) none of it can be undone
//! from inside. A privileged pod keeps the host read-write and its /tmp.
//! Paths are prepared by [`Mounts::new`] before the fork; [`Mounts::apply`]
//! makes only system calls.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, makedev, mknod, umask};
use nix::unistd::{mkdir, symlinkat};

use crate::sys;
use crate::sys::mountinfo;

/// Host directories a sandboxed pod gets a private, writable tmpfs on.
const PRIVATE_DIRS: &[&CStr] = &[c"/tmp", c"/var/tmp", c"/run"];

/// Where the pod's resolv.conf goes.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Files runc masks with /dev/null.
pub(crate) const MASKED_FILES: &[&CStr] = &[
    c"/proc/kcore",
    c"/proc/keys",
    c"/proc/latency_stats",
    c"/proc/timer_list",
    c"/proc/timer_stats",
    c"/proc/sched_debug",
];

/// Directories runc masks with an empty read-only tmpfs.
pub(crate) const MASKED_DIRS: &[&CStr] =
    &[c"/proc/acpi", c"/proc/asound", c"/proc/scsi", c"/sys/firmware", c"/sys/devices/virtual/powercap"];

/// Paths runc makes read-only.
pub(crate) const READ_ONLY: &[&CStr] =
    &[c"/proc/bus", c"/proc/fs", c"/proc/irq", c"/proc/sys", c"/proc/sysrq-trigger"];

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
    resolv_conf: Option<ResolvConf>,
    /// Host paths the pod must not see, and whether each is a directory.
    hidden: Vec<(CString, bool)>,
    /// None for a privileged pod: the host read-write, its /dev, /sys and
    /// /tmp, nothing masked.
    sandbox: Option<HostView>,
}

/// The pod's resolv.conf and where it goes.
#[derive(Debug)]
struct ResolvConf {
    source: CString,
    /// /etc/resolv.conf, or what its symlink points to.
    target: CString,
    /// When the target lies in a private tmpfs (systemd-resolved's
    /// /run/systemd/resolve/stub-resolv.conf): the directories to make
    /// there, outermost first, before the file itself is made.
    in_private: Option<Vec<CString>>,
}

/// How a sandboxed pod sees the host's files.
#[derive(Debug)]
struct HostView {
    /// Every host mount point with the flags to keep, for kernels without
    /// mount_setattr (before 5.12), which remount one by one.
    host_mounts: Vec<(CString, MsFlags)>,
    /// tmpfs options of /tmp and /var/tmp, and of /run.
    tmp_options: CString,
    run_options: CString,
}

impl Mounts {
    /// Prepares the paths: `hidden` are covered (those that exist), the
    /// pod's `resolv_conf` goes over /etc/resolv.conf. A `sandboxed` pod
    /// sees the host read-only, with tmpfs of at most `tmpfs_bytes` each on
    /// /tmp, /var/tmp and /run.
    pub fn new(
        resolv_conf: &Path,
        hidden: &[PathBuf],
        sandboxed: bool,
        tmpfs_bytes: u64,
    ) -> io::Result<Mounts> {
        let hidden = hidden
            .iter()
            .filter(|p| p.exists())
            .map(|p| Ok((cstring(p)?, p.is_dir())))
            .collect::<io::Result<_>>()?;
        let sandbox = sandboxed.then(|| HostView::new(tmpfs_bytes)).transpose()?;
        let resolv_conf = if resolv_conf.exists() {
            let target = resolv_target();
            let in_private = match sandbox.is_some().then(|| private_parents(&target)).flatten() {
                Some(parents) => Some(parents.iter().map(|p| cstring(p)).collect::<io::Result<_>>()?),
                None => None,
            };
            Some(ResolvConf { source: cstring(resolv_conf)?, target: cstring(&target)?, in_private })
        } else {
            None
        };
        Ok(Mounts { resolv_conf, hidden, sandbox })
    }

    /// Sets up the mounts in the calling process, which has just unshared its
    /// mount namespace and is the first process of its PID namespace.
    pub fn apply(&self) -> io::Result<()> {
        let none = None::<&str>;
        let (nosuid, nodev, noexec) = (MsFlags::MS_NOSUID, MsFlags::MS_NODEV, MsFlags::MS_NOEXEC);
        // Keep our mounts to ourselves, while still seeing the host's.
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none).map_err(err)?;
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
        if let Some(view) = &self.sandbox {
            // The host read-only first: what is mounted below is the pod's own.
            view.read_only_host(true)?;
        }
        // A /proc for our PID namespace: the host's processes are not in it.
        mount(Some("proc"), "/proc", Some("proc"), nosuid | nodev | noexec, none).map_err(err)?;
        if let Some(view) = &self.sandbox {
            let ro = MsFlags::MS_RDONLY | nosuid | nodev | noexec;
            for dir in PRIVATE_DIRS {
                let options = if *dir == c"/run" { &view.run_options } else { &view.tmp_options };
                ignore_missing(mount(
                    Some("tmpfs"),
                    *dir,
                    Some("tmpfs"),
                    nosuid | nodev,
                    Some(options.as_c_str()),
                ))?;
            }
            // A fresh sysfs shows this network namespace's devices, read-only.
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
        if let Some(resolv) = &self.resolv_conf {
            resolv.apply(self.sandbox.is_some())?;
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

impl HostView {
    fn new(tmpfs_bytes: u64) -> io::Result<HostView> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        // An inode per 4 KiB page: empty files cost memory too.
        let inodes = (tmpfs_bytes / 4096).max(1024);
        let options = |mode: &str| CString::new(format!("mode={mode},size={tmpfs_bytes},nr_inodes={inodes}"));
        Ok(HostView {
            host_mounts: host_mounts(&mountinfo),
            tmp_options: options("1777")?,
            run_options: options("755")?,
        })
    }

    /// Makes every mount of the host read-only in our namespace: at once
    /// with mount_setattr when `atomic` and the kernel has it, else one
    /// mount at a time, keeping each one's nosuid, nodev, noexec and atime
    /// flags. The pod cannot make them writable again without CAP_SYS_ADMIN.
    fn read_only_host(&self, atomic: bool) -> io::Result<()> {
        if atomic {
            match sys::mount::read_only_recursive(c"/") {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
                done => return done,
            }
        }
        let none = None::<&str>;
        for (path, keep) in &self.host_mounts {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | *keep;
            match mount(none, path.as_c_str(), none, flags, none) {
                // Gone since the list was read.
                Ok(()) | Err(nix::Error::ENOENT | nix::Error::EINVAL) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }
}

impl ResolvConf {
    /// Binds the pod's resolv.conf, read-only in a sandboxed pod.
    fn apply(&self, sandboxed: bool) -> io::Result<()> {
        let none = None::<&str>;
        if let Some(parents) = &self.in_private {
            for dir in parents {
                match mkdir(dir.as_c_str(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(e) => return Err(err(e)),
                }
            }
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC;
            drop(open(self.target.as_c_str(), flags, Mode::from_bits_truncate(0o644)).map_err(err)?);
        }
        mount(Some(self.source.as_c_str()), self.target.as_c_str(), none, MsFlags::MS_BIND, none)
            .map_err(err)?;
        if sandboxed {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(none, self.target.as_c_str(), none, flags, none).map_err(err)?;
        }
        Ok(())
    }
}

/// Where a bind over /etc/resolv.conf lands: the file, or where its
/// symlink points (dangling too: systemd-resolved's stub when it is down).
fn resolv_target() -> PathBuf {
    let path = Path::new(RESOLV_CONF);
    std::fs::canonicalize(path)
        .or_else(|_| std::fs::read_link(path).map(|link| Path::new("/etc").join(link)))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// For a path inside one of [`PRIVATE_DIRS`], the directories between
/// that dir and the path, outermost first; None for a path outside them.
fn private_parents(path: &Path) -> Option<Vec<PathBuf>> {
    let private = PRIVATE_DIRS.iter().map(|d| Path::new(std::ffi::OsStr::from_bytes(d.to_bytes())));
    let root = private.into_iter().find(|dir| path.starts_with(dir))?;
    let mut parents: Vec<PathBuf> =
        path.parent()?.ancestors().take_while(|p| *p != root).map(Path::to_path_buf).collect();
    parents.reverse();
    Some(parents)
}

/// The mount points of a /proc/PID/mountinfo text and the flags a
/// read-only remount of each must keep.
fn host_mounts(mountinfo: &str) -> Vec<(CString, MsFlags)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let point = fields.nth(4)?;
            let options = fields.next()?;
            let keep = options.split(',').fold(MsFlags::empty(), |flags, option| {
                flags
                    | match option {
                        "nosuid" => MsFlags::MS_NOSUID,
                        "nodev" => MsFlags::MS_NODEV,
                        "noexec" => MsFlags::MS_NOEXEC,
                        "noatime" => MsFlags::MS_NOATIME,
                        "nodiratime" => MsFlags::MS_NODIRATIME,
                        "relatime" => MsFlags::MS_RELATIME,
                        _ => MsFlags::empty(),
                    }
            });
            Some((CString::new(mountinfo::unescape(point)).ok()?, keep))
        })
        .collect()
}

fn cstring(path: &Path) -> io::Result<CString> {
    Ok(CString::new(path.as_os_str().as_bytes())?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolv_conf_in_a_private_dir_gets_its_parents_made() {
        let parents = private_parents(Path::new("/run/systemd/resolve/stub-resolv.conf")).unwrap();
        assert_eq!(parents, [PathBuf::from("/run/systemd"), PathBuf::from("/run/systemd/resolve")]);
        assert_eq!(private_parents(Path::new("/run/resolv.conf")).unwrap(), Vec::<PathBuf>::new());
        assert_eq!(private_parents(Path::new("/etc/resolv.conf")), None);
        assert_eq!(private_parents(Path::new("/running/resolv.conf")), None);
    }

    #[test]
    fn mount_points_are_read_with_the_flags_to_keep() {
        let mountinfo = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                         23 22 0:5 / /dev rw,nosuid,noexec shared:2 - devtmpfs udev rw\n\
                         24 22 8:2 / /mnt/my\\040disk ro,nodev,noatime - ext4 /dev/sdb1 ro\n\
                         garbage\n";
        let mounts = host_mounts(mountinfo);
        let points: Vec<&[u8]> = mounts.iter().map(|(p, _)| p.to_bytes()).collect();
        assert_eq!(points, [&b"/"[..], b"/dev", b"/mnt/my disk"]);
        assert_eq!(mounts[0].1, MsFlags::MS_RELATIME);
        assert_eq!(mounts[1].1, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(mounts[2].1, MsFlags::MS_NODEV | MsFlags::MS_NOATIME);
    }

    /// Makes the host read-only in a child's new mount namespace (at once
    /// or mount by mount) and returns whether the child could write `dir`.
    fn child_writes(view: HostView, atomic: bool, dir: &Path) -> bool {
        use nix::sched::{CloneFlags, unshare};
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("touch");
        cmd.arg(dir.join("written"));
        // SAFETY: the hook makes only system calls on data made before the
        // fork, as a hook between fork and exec must.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                unshare(CloneFlags::CLONE_NEWNS).map_err(err)?;
                mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
                    .map_err(err)?;
                view.read_only_host(atomic)
            })
        };
        cmd.stderr(std::process::Stdio::null()).status().unwrap().success()
    }

    #[test]
    fn the_host_is_read_only_in_the_pods_namespace_with_or_without_mount_setattr() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("podnet-ro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for atomic in [true, false] {
            assert!(!child_writes(HostView::new(1 << 20).unwrap(), atomic, &dir), "atomic: {atomic}");
            assert!(!dir.join("written").exists());
        }
        // The host itself stays writable.
        std::fs::write(dir.join("written"), "").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
