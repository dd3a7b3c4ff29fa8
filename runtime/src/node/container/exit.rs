//! A container's end: the signal that stops it (the image's StopSignal)
//! and its exit, seen by its init's parent: the agent, as a child subreaper
//! once the runtime that started it has exited.

use std::os::fd::AsFd;

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};

use crate::sys::process::{pidfd_open, watch};

/// The signal that stops a container of an image whose config says
/// `stop_signal` (`SIGQUIT`, `QUIT` or `3`; SIGTERM when empty or unknown,
/// as Docker falls back).
pub fn stop_signal(stop_signal: &str) -> nix::sys::signal::Signal {
    use nix::sys::signal::Signal;
    let text = stop_signal.trim();
    if text.is_empty() {
        return Signal::SIGTERM;
    }
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).unwrap_or(Signal::SIGTERM);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse().unwrap_or(Signal::SIGTERM)
}

/// Waits for process `pid` to end and returns its exit code, 128 + the
/// signal for a killed one (as Kubernetes reports it). None when `pid` is
/// gone already or is not the agent's child (an init started before the
/// agent restarted, or by an agent that is not a subreaper): then nobody
/// here can know its code, only that it ended.
pub async fn wait_exit(pid: i32) -> Option<i32> {
    let watched = watch(pidfd_open(pid).ok()?, tokio::io::Interest::READABLE).ok()?;
    // Readable once it has exited; the zombie waits for us, no one else
    // reaps it (tokio waits for its own children by pid).
    let _ = watched.readable().await.ok()?;
    loop {
        match waitid(Id::PIDFd(watched.get_ref().as_fd()), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Some(128 + signal as i32),
            Err(nix::Error::EINTR) => continue,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_are_read_by_name_or_number() {
        use nix::sys::signal::Signal;
        assert_eq!(stop_signal("SIGQUIT"), Signal::SIGQUIT);
        assert_eq!(stop_signal("quit"), Signal::SIGQUIT);
        assert_eq!(stop_signal("SIGWINCH"), Signal::SIGWINCH);
        assert_eq!(stop_signal("3"), Signal::SIGQUIT);
        assert_eq!(stop_signal(""), Signal::SIGTERM);
        assert_eq!(stop_signal("SIGNOPE"), Signal::SIGTERM);
        assert_eq!(stop_signal("99"), Signal::SIGTERM);
    }

    #[tokio::test]
    #[allow(clippy::zombie_processes)] // wait_exit reaps them
    async fn a_childs_exit_code_and_signal_are_read() {
        // Spawned with std: tokio's reaper knows nothing of it, as of a
        // container's init.
        let child = std::process::Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        assert_eq!(wait_exit(child.id() as i32).await, Some(7));
        let child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert_eq!(wait_exit(pid).await, Some(137));
        // Reaped already: nothing to learn.
        assert_eq!(wait_exit(pid).await, None);
    }
}
