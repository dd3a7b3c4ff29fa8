//! What a container may do, in OCI form: the container default
//! capabilities, runc's masked and read-only paths, and podnet's default
//! seccomp filter as an OCI seccomp profile that runc or crun compile with
//! libseccomp. The lists are those of command pods (`node/pod/mounts.rs`,
//! `node/pod/seccomp.rs`), so both kinds of pod are confined alike.

use serde::Serialize;

use crate::node::pod::confine::DEFAULT_CAPS;
use crate::node::pod::{mounts, seccomp};

/// Capability names by number (linux/capability.h), as OCI spells them.
pub const CAP_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The container default set ([`DEFAULT_CAPS`]) by name, those in
/// `bounding` (the node's own set: a runtime cannot grant more).
pub fn default_caps(bounding: u64) -> Vec<String> {
    DEFAULT_CAPS.iter().filter(|cap| bounding & (1 << **cap) != 0).filter_map(|cap| name(*cap)).collect()
}

/// Every capability in `bounding` (the node's own set), for a privileged
/// container.
pub fn all_caps(bounding: u64) -> Vec<String> {
    (0..64).filter(|cap| bounding & (1 << cap) != 0).filter_map(name).collect()
}

fn name(cap: u32) -> Option<String> {
    CAP_NAMES.get(cap as usize).map(|n| n.to_string())
}

/// A capability set of this process from /proc/self/status (`CapBnd`,
/// `CapEff`, …).
pub fn own_caps(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    u64::from_str_radix(value.trim(), 16).ok()
}

/// The capabilities a container of this node can be given: the agent's
/// bounding set (every capability on an ordinary node; fewer when the node
/// itself runs in a container).
pub fn node_bounding() -> u64 {
    own_caps("CapBnd").unwrap_or_else(|| {
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(CAP_NAMES.len() as u32 - 1);
        (1u64 << (last + 1)) - 1
    })
}

/// The paths runc masks, as command pods have them masked
/// (`node/pod/mounts.rs`): files, then directories.
pub fn masked_paths() -> Vec<String> {
    mounts::MASKED_FILES.iter().chain(mounts::MASKED_DIRS).map(|p| p.to_string_lossy().into_owned()).collect()
}

/// The paths runc makes read-only, as for command pods.
pub fn readonly_paths() -> Vec<String> {
    mounts::READ_ONLY.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

/// An OCI seccomp profile (`linux.seccomp`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    /// What calls no rule names get.
    pub default_action: String,
    /// The architectures the filter covers.
    pub architectures: Vec<String>,
    /// The rules.
    pub syscalls: Vec<SyscallRule>,
}

/// One rule of a profile: the calls, what they get, and (all of) the
/// argument conditions.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// System call names.
    pub names: Vec<String>,
    /// `SCMP_ACT_ERRNO`.
    pub action: String,
    /// The errno returned.
    pub errno_ret: u32,
    /// Conditions, all of which must hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<SyscallArg>,
}

/// One argument condition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SyscallArg {
    /// Which argument.
    pub index: u32,
    /// The mask, for SCMP_CMP_MASKED_EQ.
    pub value: u64,
    /// What the masked argument must equal.
    pub value_two: u64,
    /// The comparison.
    pub op: String,
}

/// The libseccomp architectures of this build: the native one plus those
/// whose programs the kernel also runs (Docker's choice).
fn architectures() -> Vec<String> {
    let names: &[&str] = match std::env::consts::ARCH {
        "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "arm" => &["SCMP_ARCH_ARM"],
        "riscv64" => &["SCMP_ARCH_RISCV64"],
        _ => &[],
    };
    names.iter().map(|n| n.to_string()).collect()
}

/// podnet's default filter as an OCI profile: everything allowed but the
/// denied calls, new namespaces through clone/unshare, and device nodes
/// (EPERM); clone3, whose flags a filter cannot read, gets ENOSYS so C
/// libraries fall back to clone.
pub fn default_seccomp() -> Seccomp {
    let eperm = libc::EPERM as u32;
    let rule = |names: &[&str], errno_ret: u32, args: Vec<SyscallArg>| SyscallRule {
        names: names.iter().map(|n| n.to_string()).collect(),
        action: "SCMP_ACT_ERRNO".into(),
        errno_ret,
        args,
    };
    let masked = |index: u32, mask: u64, value: u64| SyscallArg {
        index,
        value: mask,
        value_two: value,
        op: "SCMP_CMP_MASKED_EQ".into(),
    };
    let denied: Vec<&str> = seccomp::DENIED.iter().map(|(name, _)| *name).collect();
    let mut syscalls = vec![rule(&denied, eperm, Vec::new())];
    // One rule per flag: conditions of one rule must all hold.
    for flag in seccomp::NEW_NAMESPACES {
        syscalls.push(rule(&["clone", "unshare"], eperm, vec![masked(0, *flag, *flag)]));
    }
    let kind_mask = u64::from(libc::S_IFMT);
    for kind in [libc::S_IFCHR, libc::S_IFBLK] {
        syscalls.push(rule(&["mknodat"], eperm, vec![masked(2, kind_mask, u64::from(kind))]));
        syscalls.push(rule(&["mknod"], eperm, vec![masked(1, kind_mask, u64::from(kind))]));
    }
    syscalls.push(rule(&["clone3"], libc::ENOSYS as u32, Vec::new()));
    Seccomp { default_action: "SCMP_ACT_ALLOW".into(), architectures: architectures(), syscalls }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_caps_are_the_container_default_set_by_name() {
        let caps = default_caps(u64::MAX);
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        for name in ["CAP_CHOWN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE", "CAP_SETFCAP"] {
            assert!(caps.iter().any(|c| c == name), "{name}");
        }
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN" || c == "CAP_NET_ADMIN"));
        // Numbers and names agree where the kernel's header defines them.
        assert_eq!(CAP_NAMES[21], "CAP_SYS_ADMIN");
        assert_eq!(CAP_NAMES[40], "CAP_CHECKPOINT_RESTORE");
        assert_eq!(all_caps((1 << 41) - 1).len(), 41);
        // Only what the node itself has.
        let without_kill = !(1u64 << 5);
        assert!(!default_caps(without_kill).iter().any(|c| c == "CAP_KILL"));
        assert!(!all_caps(without_kill).iter().any(|c| c == "CAP_KILL"));
        assert!(own_caps("CapBnd").is_some());
    }

    #[test]
    fn the_profile_allows_by_default_and_refuses_mounts_namespaces_and_devices() {
        let profile = serde_json::to_value(default_seccomp()).unwrap();
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
        let rules = profile["syscalls"].as_array().unwrap();
        let denied = &rules[0];
        assert_eq!(denied["action"], "SCMP_ACT_ERRNO");
        assert_eq!(denied["errnoRet"], 1);
        for name in ["mount", "umount2", "setns", "bpf", "kexec_load", "init_module", "keyctl"] {
            assert!(denied["names"].as_array().unwrap().iter().any(|n| n == name), "{name}");
        }
        assert!(denied.get("args").is_none());
        let user_ns = rules
            .iter()
            .find(|r| r["names"][0] == "clone" && r["args"][0]["value"] == libc::CLONE_NEWUSER as u64)
            .unwrap();
        assert_eq!(user_ns["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(user_ns["args"][0]["valueTwo"], libc::CLONE_NEWUSER as u64);
        assert!(
            rules.iter().any(|r| r["names"][0] == "mknodat" && r["args"][0]["valueTwo"] == libc::S_IFCHR)
        );
        let clone3 = rules.iter().find(|r| r["names"][0] == "clone3").unwrap();
        assert_eq!(clone3["errnoRet"], libc::ENOSYS);
    }
}
