//! A node's password: 32 random bytes the node makes on its first join and
//! keeps in `<data-dir>/node-password` (0600). The server pins the
//! password's SHA-256 to the node's name when the node first joins (k3s's
//! node password, the same idea), so another machine holding the join
//! token cannot take that name, its address or its subnet, and a member's
//! requests on behalf of its CLI are known to come from that node. It
//! crosses the network only inside the Noise channel.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::ClusterError;
use super::token::{Token, write_private};

/// The file in a member's data dir.
pub const FILE: &str = "node-password";

/// A node's secret, as it sends it in its hello.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePassword([u8; 32]);

impl std::fmt::Debug for NodePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodePassword(..)")
    }
}

/// What the server keeps of a node's password: its SHA-256, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordDigest(String);

impl NodePassword {
    /// The node's password from its data dir, made (from the kernel's
    /// random source) and written 0600 on the first start; a file others
    /// can read is refused, as the token file is.
    pub fn load_or_make(data_dir: &Path) -> Result<NodePassword, ClusterError> {
        let path = data_dir.join(FILE);
        if !path.exists() {
            let fresh = Token::generate()?;
            write_private(&path, &format!("{}\n", fresh.encode()))?;
        }
        Ok(NodePassword(Token::load(&path)?.0))
    }

    /// A password of 32 times `byte`, for tests.
    #[cfg(test)]
    pub fn fixed(byte: u8) -> NodePassword {
        NodePassword([byte; 32])
    }

    /// What the server compares and keeps.
    pub fn digest(&self) -> PasswordDigest {
        let hash: [u8; 32] = Sha256::digest(self.0).into();
        PasswordDigest(hash.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl PasswordDigest {
    /// Whether `other` is the same digest, compared in constant time.
    pub fn matches(&self, other: &PasswordDigest) -> bool {
        crate::kube::auth::same_secret(self.0.as_bytes(), other.0.as_bytes())
    }

    /// A digest for tests of the control plane (which sees digests only).
    #[cfg(test)]
    pub fn of(text: &str) -> PasswordDigest {
        PasswordDigest(text.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_node_keeps_its_password_and_only_it_matches() {
        let dir = std::env::temp_dir().join(format!("podnet-node-password-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let password = NodePassword::load_or_make(&dir).unwrap();
        let mode = std::fs::metadata(dir.join(FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = NodePassword::load_or_make(&dir).unwrap();
        assert!(password.digest().matches(&again.digest()), "kept across starts");
        let other = NodePassword([7; 32]);
        assert!(!password.digest().matches(&other.digest()));
        assert_eq!(password.digest().0.len(), 64);
        std::fs::set_permissions(dir.join(FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(NodePassword::load_or_make(&dir).is_err(), "a password others can read is refused");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
