//! Processes and threads where nix has no wrapper: pidfds, a thread's nice
//! value, the OOM score of a child about to exec, leaving a forked child.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;

use tokio::io::unix::AsyncFd;

/// A pidfd for process `pid` (pidfd_open(2)): it becomes readable when the
/// process exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, touches no memory of ours and
    // returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd =
        libc::c_int::try_from(fd).map_err(|_| io::Error::other("pidfd_open: descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `fd` with tokio's reactor for `interest`.
pub fn watch(fd: OwnedFd, interest: tokio::io::Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, an OwnedFd, which stays open and the
    // same descriptor until the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

/// Sets the nice value of thread `tid` (setpriority(2) with a thread id, as
/// Linux allows; nix has no setpriority).
pub fn set_thread_nice(tid: nix::unistd::Pid, nice: libc::c_int) -> io::Result<()> {
    let who = libc::id_t::try_from(tid.as_raw()).map_err(|_| io::Error::other("negative thread id"))?;
    // SAFETY: setpriority only reads its integer arguments.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Makes `cmd`'s child write `value` (a decimal number, made before the
/// fork) to its /proc/self/oom_score_adj before exec. Raising it needs no
/// privilege.
pub fn oom_score_adj_before_exec(cmd: &mut Command, value: &'static [u8]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec, where only
    // async-signal-safe calls may be made: it opens a NUL-terminated static
    // path (nix passes a &CStr through without allocating), writes a static
    // buffer and closes the descriptor on drop. No allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            use nix::fcntl::{OFlag, open};
            let fd = open(
                c"/proc/self/oom_score_adj",
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )?;
            nix::unistd::write(&fd, value)?;
            Ok(())
        });
    }
}

/// Ends a forked child at once with `code` (_exit(2)): no atexit handlers,
/// no flushing of buffers the parent owns.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit ends the process and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pidfd_becomes_readable_when_its_process_exits() {
        let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let watched = watch(pidfd_open(pid).unwrap(), tokio::io::Interest::READABLE).unwrap();
        let _ = watched.readable().await.unwrap();
        // Readable means exited: the zombie is there to reap, without waiting.
        assert!(child.try_wait().unwrap().is_some());
    }

    #[test]
    fn a_missing_process_has_no_pidfd() {
        // Above the largest pid_max Linux allows (2^22).
        assert_eq!(pidfd_open(1 << 23).unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn a_thread_lowers_its_own_priority() {
        // Raising the nice value needs no privilege; only this thread changes.
        let nice = std::thread::spawn(|| {
            set_thread_nice(nix::unistd::gettid(), 7).unwrap();
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            // Field 19 is the nice value, counted from after the `)` of the name.
            let rest = &stat[stat.rfind(')').unwrap() + 1..];
            rest.split_whitespace().nth(16).unwrap().parse::<i32>().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(nice, 7);
    }

    #[test]
    fn a_child_gets_the_oom_score_adj_before_exec() {
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/oom_score_adj");
        oom_score_adj_before_exec(&mut cmd, b"1000");
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "1000");
    }
}
