//! Why a port could not join the data plane.

use netstack::switch::SwitchError;

/// An attach refused by the switch, or an fd epoll would not watch.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The switch refused the port (its message names the key to raise).
    #[error(transparent)]
    Switch(#[from] SwitchError),
    /// epoll would not watch the port's fd: the kernel said no, the switch's
    /// table is not full.
    #[error("cannot watch the port's fd: {0}")]
    Epoll(#[source] nix::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoll_failure_is_not_a_full_table() {
        let full = AttachError::from(SwitchError::TableFull);
        assert!(matches!(full, AttachError::Switch(SwitchError::TableFull)));
        assert!(full.to_string().contains("limits.max_pods"), "{full}");
        let epoll = AttachError::Epoll(nix::Error::ENOMEM).to_string();
        assert!(!epoll.contains("full") && epoll.contains("cannot watch"), "{epoll}");
    }
}
