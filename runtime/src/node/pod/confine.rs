//! What a pod's process may do once inside: the container default
//! capabilities (bounding, effective and permitted; inheritable and ambient
//! empty, as runc since CVE-2022-24769), the default seccomp filter, the
//! user it runs as and the default fd limit. Prepared by
//! [`Confinement::new`] before the fork; [`Confinement::apply`] makes only
//! system calls, for a pre_exec hook.

use std::io;

use crate::model::{RunAs, SecurityContext};
use crate::sys::caps;

use super::seccomp;

/// The capabilities a container gets by default (Docker's, containerd's).
pub const DEFAULT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// The default set as the mask /proc/PID/status shows (`CapEff`).
pub fn default_caps_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |mask, cap| mask | 1 << cap)
}

/// The soft fd limit pods get, the usual default, whatever the agent raised
/// its own to (#12 item 3).
pub const NOFILE_SOFT: u64 = 1024;

/// Everything [`Confinement::apply`] needs, computed before the fork.
#[derive(Debug)]
pub struct Confinement {
    /// None for a privileged pod: capabilities and filter stay as they are.
    sandbox: Option<Sandboxed>,
    run_as: Option<RunAs>,
}

#[derive(Debug)]
struct Sandboxed {
    /// Highest capability number the kernel knows.
    last_cap: u32,
    filters: Option<seccomp::Filters>,
}

impl Confinement {
    /// Prepares the confinement a pod with `security` gets.
    pub fn new(security: &SecurityContext) -> io::Result<Confinement> {
        let sandbox = if security.privileged {
            None
        } else {
            let last_cap =
                std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?.trim().parse().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "bad /proc/sys/kernel/cap_last_cap")
                })?;
            let filters = seccomp::default_filters()?;
            if filters.is_none() {
                tracing::warn!(
                    arch = std::env::consts::ARCH,
                    "no seccomp filter for pods on this architecture"
                );
            }
            Some(Sandboxed { last_cap, filters })
        };
        Ok(Confinement { sandbox, run_as: security.run_as })
    }

    /// Confines the calling (child) process. The filter goes in while
    /// CAP_SYS_ADMIN is still held, so no_new_privs is not needed (and not
    /// set: setuid tools such as `su` or `ping` keep working, as in Docker
    /// and in Kubernetes' allowPrivilegeEscalation default); the bounding set
    /// still caps what they can regain.
    pub fn apply(&self) -> io::Result<()> {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
        let soft = libc::rlim_t::try_from(NOFILE_SOFT).unwrap_or(libc::rlim_t::MAX).min(hard);
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
        if let Some(sandbox) = &self.sandbox {
            for cap in (0..=sandbox.last_cap).filter(|c| !DEFAULT_CAPS.contains(c)) {
                caps::drop_bounding(cap)?;
            }
            if let Some(filters) = &sandbox.filters {
                seccomp::install(filters)?;
            }
        }
        if let Some(RunAs { uid, gid }) = self.run_as {
            // Leaving uid 0 clears the permitted and effective sets.
            let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
            setgroups(&[gid])?;
            setresgid(gid, gid, gid)?;
            setresuid(uid, uid, uid)?;
        }
        if self.sandbox.is_some() {
            let mask = if self.run_as.is_some_and(|r| r.uid != 0) { 0 } else { default_caps_mask() };
            caps::set(mask)?;
            caps::clear_ambient()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_the_container_runtimes_mask() {
        // Docker's CapEff for a root container.
        assert_eq!(default_caps_mask(), 0x00000000a80425fb);
    }

    #[test]
    fn a_confined_child_has_the_default_caps_fd_limit_and_user() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let read_status = |security: SecurityContext| -> String {
            let confinement = Confinement::new(&security).unwrap();
            let mut cmd = std::process::Command::new("cat");
            cmd.arg("/proc/self/status");
            use std::os::unix::process::CommandExt;
            // SAFETY: `apply` makes only system calls on data made before
            // the fork, as a hook between fork and exec must.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || confinement.apply())
            };
            String::from_utf8(cmd.output().unwrap().stdout).unwrap()
        };
        let field = |status: &str, name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap()
        };
        let root = read_status(SecurityContext::default());
        for name in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(field(&root, name), "00000000a80425fb", "{name} {root}");
        }
        assert_eq!(field(&root, "CapInh:"), "0000000000000000");
        assert_eq!(field(&root, "CapAmb:"), "0000000000000000");
        assert_eq!(field(&root, "Seccomp:"), "2");
        assert_eq!(field(&root, "NoNewPrivs:"), "0");
        let user =
            read_status(SecurityContext { privileged: false, run_as: Some(RunAs { uid: 1000, gid: 1001 }) });
        assert!(field(&user, "Uid:").starts_with("1000\t"), "{user}");
        assert!(field(&user, "Gid:").starts_with("1001\t"), "{user}");
        assert_eq!(field(&user, "CapEff:"), "0000000000000000");
        assert_eq!(field(&user, "CapBnd:"), "00000000a80425fb");
        let privileged = read_status(SecurityContext { privileged: true, run_as: None });
        assert_ne!(field(&privileged, "CapEff:"), "00000000a80425fb");
        assert_eq!(field(&privileged, "Seccomp:"), "0");
    }
}
