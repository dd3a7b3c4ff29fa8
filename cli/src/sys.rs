//! The CLI's only `unsafe` code (denied everywhere else), behind safe
//! wrappers: the SIGPIPE disposition, and entering a network namespace
//! between fork and exec.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigHandler, Signal, signal};

/// Restores the default disposition of SIGPIPE (death), which Rust's
/// runtime sets to ignored.
pub(crate) fn default_sigpipe() -> nix::Result<()> {
    // SAFETY: SIG_DFL installs no handler, so no handler code can run at an
    // unsafe moment; the call only changes a disposition.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// Makes `cmd`'s child enter the network namespace `netns` before exec.
pub(crate) fn setns_before_exec(cmd: &mut Command, netns: File) {
    // SAFETY: the hook runs between fork and exec, where only
    // async-signal-safe calls may be made: it makes one setns system call on
    // a descriptor opened before the fork, and on failure converts the errno
    // to an io::Error without allocating.
    unsafe {
        cmd.pre_exec(move || setns(&netns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from));
    }
}
