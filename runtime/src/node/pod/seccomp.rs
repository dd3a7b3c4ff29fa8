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

/// Syscalls a pod never makes, refused whatever their arguments.
const DENIED: &[i64] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_settimeofday,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_init_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_request_key,
    libc::SYS_lookup_dcookie,
    libc::SYS_open_by_handle_at,
    libc::SYS_perf_event_open,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_setns,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
    libc::SYS_nfsservctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
];

/// Namespace flags `clone` and `unshare` may not carry: a pod stays in the
/// namespaces it was given (a new user namespace would give it every
/// capability over new ones, the kernel's largest attack surface).
const NEW_NAMESPACES: &[u64] = &[
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
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|nr| (*nr, Vec::new())).collect();
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
        let program =
            libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
        // SAFETY: the kernel copies the program; `filter` outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &program as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a forked child with the filters installed and returns
    /// what it exited with.
    fn in_filtered_child(f: impl FnOnce() -> i32) -> i32 {
        let filters = default_filters().unwrap().expect("a seccomp backend on the test machine");
        // SAFETY: the child only makes system calls and exits.
        match unsafe { libc::fork() } {
            0 => {
                let code = if install(&filters).is_ok() { f() } else { 99 };
                // SAFETY: leaving the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                libc::WEXITSTATUS(status)
            }
        }
    }

    fn errno() -> i32 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn the_filter_refuses_namespaces_mounts_and_devices_and_allows_the_rest() {
        if !nix::unistd::Uid::effective().is_root() {
            return; // installing a filter without no_new_privs needs CAP_SYS_ADMIN
        }
        // SAFETY (all closures): plain system calls on constant arguments.
        let unshare_user = in_filtered_child(|| unsafe { libc::unshare(libc::CLONE_NEWUSER) + errno() });
        assert_eq!(unshare_user, -1 + libc::EPERM);
        let umount =
            in_filtered_child(|| unsafe { libc::umount2(c"/".as_ptr(), libc::MNT_DETACH) + errno() });
        assert_eq!(umount, -1 + libc::EPERM);
        let device = in_filtered_child(|| unsafe {
            libc::mknodat(libc::AT_FDCWD, c"/tmp/podnet-seccomp-test-dev".as_ptr(), libc::S_IFCHR | 0o600, 0)
                + errno()
        });
        assert_eq!(device, -1 + libc::EPERM);
        // A FIFO is allowed, as are ordinary calls.
        let fifo = in_filtered_child(|| unsafe {
            let path = c"/tmp/podnet-seccomp-test-fifo";
            libc::unlink(path.as_ptr());
            let rc = libc::mknodat(libc::AT_FDCWD, path.as_ptr(), libc::S_IFIFO | 0o600, 0);
            libc::unlink(path.as_ptr());
            rc
        });
        assert_eq!(fifo, 0);
        let pid = in_filtered_child(|| unsafe { i32::from(libc::getpid() > 0) });
        assert_eq!(pid, 1);
    }
}
