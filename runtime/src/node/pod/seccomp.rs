//! The pods' default seccomp filter, in the spirit of the container runtimes'
//! default profile: what only an administrator of the whole machine needs
//! fails with EPERM (loading kernels and modules, mounts, keyrings, bpf,
//! perf, reboot, swap, the clock, new namespaces and joining others). It is
//! a deny list, so ordinary programs keep working; the capability set does
//! the rest. Compiled with `seccompiler` before the fork, installed by
//! [`install`] in the child without allocating.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// Syscalls a pod never makes, refused whatever their arguments: by name
/// (what an OCI profile gives runc or crun, resolved by libseccomp) and
/// number (what the filter of command pods is compiled from).
pub(crate) const DENIED: &[(&str, i64)] = &[
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("bpf", libc::SYS_bpf),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_settime", libc::SYS_clock_settime),
    ("settimeofday", libc::SYS_settimeofday),
    ("delete_module", libc::SYS_delete_module),
    ("finit_module", libc::SYS_finit_module),
    ("init_module", libc::SYS_init_module),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("request_key", libc::SYS_request_key),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("quotactl", libc::SYS_quotactl),
    ("reboot", libc::SYS_reboot),
    ("setns", libc::SYS_setns),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("syslog", libc::SYS_syslog),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("vhangup", libc::SYS_vhangup),
    ("nfsservctl", libc::SYS_nfsservctl),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
    #[cfg(target_arch = "x86_64")]
    ("uselib", libc::SYS_uselib),
    #[cfg(target_arch = "x86_64")]
    ("_sysctl", libc::SYS__sysctl),
];

/// Namespace flags `clone` and `unshare` may not carry: a pod stays in the
/// namespaces it was given (a new user namespace would give it every
/// capability over new ones, the kernel's largest attack surface).
pub(crate) const NEW_NAMESPACES: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

/// The compiled filters, installed in order.
pub type Filters = Vec<BpfProgram>;

/// Compiles the default filter for this machine's architecture; None where
/// `seccompiler` has no backend (32-bit ARM), where pods run without one.
pub fn default_filters() -> io::Result<Option<Filters>> {
    let Ok(arch) = seccompiler::TargetArch::try_from(std::env::consts::ARCH) else {
        return Ok(None);
    };
    let invalid = |e: seccompiler::BackendError| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    let flag_rules = |arg: u8| -> io::Result<Vec<SeccompRule>> {
        NEW_NAMESPACES
            .iter()
            .map(|flag| {
                let cond =
                    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*flag), *flag)
                        .map_err(invalid)?;
                SeccompRule::new(vec![cond]).map_err(invalid)
            })
            .collect()
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    rules.insert(libc::SYS_unshare, flag_rules(0)?);
    rules.insert(libc::SYS_clone, flag_rules(0)?);
    // Device nodes: the device cgroup's job in a container runtime. FIFOs
    // and sockets stay allowed (CAP_MKNOD stays in the set for them).
    let device_rules = |arg: u8| -> io::Result<Vec<SeccompRule>> {
        [libc::S_IFCHR, libc::S_IFBLK]
            .iter()
            .map(|kind| {
                let mask = u64::from(libc::S_IFMT);
                let cond = SeccompCondition::new(
                    arg,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::MaskedEq(mask),
                    u64::from(*kind),
                )
                .map_err(invalid)?;
                SeccompRule::new(vec![cond]).map_err(invalid)
            })
            .collect()
    };
    rules.insert(libc::SYS_mknodat, device_rules(2)?);
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_mknod, device_rules(1)?);
    let eperm = SeccompAction::Errno(libc::EPERM as u32);
    let deny = SeccompFilter::new(rules, SeccompAction::Allow, eperm, arch).map_err(invalid)?;
    // clone3 passes its flags in memory a filter cannot read: ENOSYS makes
    // the C libraries fall back to clone, whose flags are checked above.
    let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let clone3 =
        SeccompFilter::new(clone3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), arch)
            .map_err(invalid)?;
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut filters =
        vec![BpfProgram::try_from(deny).map_err(invalid)?, BpfProgram::try_from(clone3).map_err(invalid)?];
    #[cfg(target_arch = "x86_64")]
    filters.push(no_x32());
    Ok(Some(filters))
}

/// x32 syscalls carry bit 30 in their number and the x86_64 architecture
/// tag, so they would slip past a deny list keyed by number: refuse them all.
#[cfg(target_arch = "x86_64")]
fn no_x32() -> BpfProgram {
    use seccompiler::sock_filter;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    vec![
        sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: 0 }, // seccomp_data.nr
        sock_filter { code: JGE_K, jt: 0, jf: 1, k: 0x4000_0000 },
        sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32 },
        sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
    ]
}

/// Installs `filters` on the calling thread. Unlike
/// `seccompiler::apply_filter` it does not set no_new_privs (the caller
/// still holds CAP_SYS_ADMIN), so setuid tools keep working. Makes only
/// system calls, for a pre_exec hook.
pub fn install(filters: &Filters) -> io::Result<()> {
    for filter in filters {
        crate::sys::seccomp::set_mode_filter(filter)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a forked child with the filters installed and returns
    /// what it exited with.
    fn in_filtered_child(f: impl FnOnce() -> i32) -> i32 {
        use nix::sys::wait::{WaitStatus, waitpid};
        use nix::unistd::{ForkResult, fork};
        let filters = default_filters().unwrap().expect("a seccomp backend on the test machine");
        // SAFETY: the child makes only system calls (on constant arguments,
        // no allocation) and leaves with _exit.
        #[allow(unsafe_code)]
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = if install(&filters).is_ok() { f() } else { 99 };
                crate::sys::process::exit_child(code)
            }
            ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, code) => code,
                other => panic!("filtered child: {other:?}"),
            },
        }
    }

    /// The errno of a failed call, 0 for success.
    fn errno<T>(result: nix::Result<T>) -> i32 {
        result.err().map_or(0, |e| e as i32)
    }

    #[test]
    fn the_filter_refuses_namespaces_mounts_and_devices_and_allows_the_rest() {
        use nix::fcntl::AT_FDCWD;
        use nix::sys::stat::{Mode, SFlag, mknodat};
        if !nix::unistd::Uid::effective().is_root() {
            return; // installing a filter without no_new_privs needs CAP_SYS_ADMIN
        }
        let unshare_user =
            in_filtered_child(|| errno(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)));
        assert_eq!(unshare_user, libc::EPERM);
        let umount = in_filtered_child(|| errno(nix::mount::umount2(c"/", nix::mount::MntFlags::MNT_DETACH)));
        assert_eq!(umount, libc::EPERM);
        let rw = Mode::from_bits_truncate(0o600);
        let device = in_filtered_child(|| {
            errno(mknodat(AT_FDCWD, c"/tmp/podnet-seccomp-test-dev", SFlag::S_IFCHR, rw, 0))
        });
        assert_eq!(device, libc::EPERM);
        // A FIFO is allowed, as are ordinary calls.
        let fifo = in_filtered_child(|| {
            let path = c"/tmp/podnet-seccomp-test-fifo";
            let _ = nix::unistd::unlink(path);
            let made = errno(mknodat(AT_FDCWD, path, SFlag::S_IFIFO, rw, 0));
            let _ = nix::unistd::unlink(path);
            made
        });
        assert_eq!(fifo, 0);
        let pid = in_filtered_child(|| i32::from(nix::unistd::getpid().as_raw() > 0));
        assert_eq!(pid, 1);
    }
}
