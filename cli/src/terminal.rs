//! The CLI's own terminal for `podnet exec -t` into a member's pod: raw
//! while the remote command runs (the pod's terminal echoes and edits, as
//! with kubectl), restored however the CLI leaves, and its size.

use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};

/// The terminal in raw mode until dropped.
pub(crate) struct Raw {
    saved: Termios,
}

impl Raw {
    /// Puts stdin's terminal in raw mode; None when stdin is no terminal.
    pub(crate) fn enter() -> Option<Raw> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Raw { saved })
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Stdin's terminal size: columns and rows.
pub(crate) fn size() -> Option<(u16, u16)> {
    runtime::sys::terminal::window_size(std::io::stdin().as_fd())
}
