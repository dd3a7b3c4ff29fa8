//! The kernel interfaces the agent needs beyond sockets: named network
//! namespaces, rtnetlink, the kernel's random source, and safe wrappers for
//! the system calls nix does not cover (capabilities, seccomp, TAP ioctls,
//! mount_setattr, pidfds, thread priority). The crate denies `unsafe` everywhere else: each
//! `unsafe` block lives here, with a `SAFETY:` comment saying why it is sound.

pub mod caps;
pub mod mount;
pub mod mountinfo;
pub mod netlink;
pub mod netns;
pub mod process;
pub mod random;
pub mod reaper;
pub mod seccomp;
pub mod terminal;
pub mod tun;
pub mod xattr;

use std::path::PathBuf;

/// What went wrong talking to the kernel about namespaces and interfaces.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// An rtnetlink request failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// No interface has this name.
    #[error("no interface {0}")]
    NoInterface(String),
    /// A namespace or mount system call failed.
    #[error("{what}: {source}")]
    Call {
        /// The call, in words.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: nix::Error,
    },
    /// The named namespace exists already.
    #[error("network namespace {} already exists", .0.display())]
    NetnsExists(PathBuf),
    /// The thread doing namespace work panicked.
    #[error("namespace thread panicked")]
    ThreadPanicked,
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
