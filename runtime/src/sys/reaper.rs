//! The agent as a child subreaper (prctl PR_SET_CHILD_SUBREAPER): orphaned
//! descendants (a detached container's init, once the OCI runtime that
//! started it exits) become the agent's children rather than init's, so the
//! agent can wait for them and read their exit codes.

use std::io;

/// Makes this process a child subreaper. Call once, early in the agent.
pub fn set_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// True when this process is a child subreaper.
pub fn is_subreaper() -> bool {
    nix::sys::prctl::get_child_subreaper().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphaned_grandchild_becomes_our_child() {
        set_subreaper().unwrap();
        assert!(is_subreaper());
        // sh starts a sleeper in the background, prints its pid and exits.
        let out = std::process::Command::new("sh").args(["-c", "sleep 5 & echo $!"]).output().unwrap();
        let pid: i32 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).unwrap().trim();
        assert_eq!(ppid, std::process::id().to_string());
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(pid, None).unwrap();
    }
}
