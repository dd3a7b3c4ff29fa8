//! The admin token: made once from the kernel's random source, kept in the
//! data dir (`kube/token`), compared in constant time. It is the bearer
//! token of the kubeconfig and the admin credential of podnet's own client
//! config: one admin, whichever API it uses.

use std::path::Path;

use super::KubeError;
use super::files::read_or_make;

/// The admin credential: whoever holds it is the cluster's admin.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The admin token of the agent whose data dir is `data_dir`, made on
    /// its first start.
    pub fn admin(data_dir: &Path) -> Result<Token, KubeError> {
        Token::load(&data_dir.join("kube").join("token"))
    }

    /// Loads the token from `path`, making it on first start.
    pub fn load(path: &Path) -> Result<Token, KubeError> {
        let text = read_or_make(path, || {
            let bytes = crate::sys::random::secret(32)?;
            Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
        })?;
        let token = text.trim().to_string();
        if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KubeError::BadToken(path.to_path_buf()));
        }
        Ok(Token(token))
    }

    /// A token with the text `text`, for tests.
    #[cfg(test)]
    pub fn fixed(text: &str) -> Token {
        Token(text.into())
    }

    /// The token's text (for the kubeconfig).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        authorization.and_then(|h| h.strip_prefix(b"Bearer ")).is_some_and(|given| self.matches(given))
    }

    /// Whether `given` is this token (a remote CLI's, on the cluster API).
    pub fn is(&self, given: &str) -> bool {
        self.matches(given.as_bytes())
    }

    fn matches(&self, given: &[u8]) -> bool {
        same_secret(given, self.0.as_bytes())
    }
}

/// Whether two secrets are equal, in constant time over their length: no
/// early exit on a mismatch (the admin token, node password digests).
pub fn same_secret(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let dir = std::env::temp_dir().join(format!("podnet-kube-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let token = Token::load(&dir.join("token")).unwrap();
        assert_eq!(token.as_str().len(), 64);
        assert_eq!(Token::load(&dir.join("token")).unwrap().as_str(), token.as_str(), "kept across starts");
        let header = format!("Bearer {}", token.as_str());
        assert!(token.admits(Some(header.as_bytes())));
        assert!(!token.admits(None));
        assert!(!token.admits(Some(token.as_str().as_bytes())), "the Bearer scheme is required");
        assert!(!token.admits(Some(&header.as_bytes()[..header.len() - 1])));
        let mut wrong = header.into_bytes();
        *wrong.last_mut().unwrap() ^= 1;
        assert!(!token.admits(Some(&wrong)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
