//! The cluster token and the client config. The token is a 32-byte secret
//! that never crosses the network: it is the pre-shared key of the Noise
//! handshake (see `channel.rs`), so only holders of it can talk to the
//! cluster API at all. Holding it lets a node join (with its own node
//! password, `password.rs`); reading or changing the cluster takes the
//! admin token, which the client config carries beside it. Both files are
//! written 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ClusterError;

const PREFIX: &str = "PN1::";

/// The cluster's shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub [u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A fresh random token, or why the kernel gave no random bytes.
    pub fn generate() -> Result<Token, ClusterError> {
        let bytes = crate::sys::random::secret(32)?;
        let mut token = [0u8; 32];
        token.copy_from_slice(&bytes);
        Ok(Token(token))
    }

    /// Parses `PN1::<64 hex digits>`.
    pub fn parse(text: &str) -> Result<Token, ClusterError> {
        let hex = text.trim().strip_prefix(PREFIX).ok_or(ClusterError::TokenFormat)?;
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(ClusterError::TokenFormat);
        }
        let mut token = [0u8; 32];
        for (i, byte) in token.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| ClusterError::TokenFormat)?;
        }
        Ok(Token(token))
    }

    /// Reads a token file, refusing one that group or others may read or
    /// write (as ssh refuses such a private key).
    pub fn load(path: &Path) -> Result<Token, ClusterError> {
        let read = |source| ClusterError::ReadToken { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(read)?;
        // The mode of the file opened, not of whatever the path names later.
        let mode = file.metadata().map_err(read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ClusterError::TokenPermissions { path: path.to_path_buf(), mode });
        }
        let text = std::io::read_to_string(file).map_err(read)?;
        Token::parse(&text)
    }

    /// The token's text form.
    pub fn encode(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}{hex}")
    }
}

/// What a remote CLI needs to reach the cluster (`podnet --kubeconfig FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Always `podnet/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `Config`.
    pub kind: String,
    /// The server's cluster API address.
    pub server: SocketAddr,
    /// The cluster token (the channel's key).
    pub token: String,
    /// The admin token (the Kubernetes API's bearer token too).
    #[serde(default)]
    pub admin: String,
}

impl ClientConfig {
    /// Reads a client config.
    pub fn load(path: &Path) -> Result<(ClientConfig, Token), ClusterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ClusterError::ReadClientConfig { path: path.to_path_buf(), source })?;
        let config: ClientConfig = serde_yaml_ng::from_str(&text)
            .map_err(|source| ClusterError::ClientConfig { path: path.to_path_buf(), source })?;
        let token = Token::parse(&config.token)?;
        if config.admin.is_empty() {
            return Err(ClusterError::NoAdmin(path.to_path_buf()));
        }
        Ok((config, token))
    }
}

/// Writes `text` to `path` readable by root only, replacing it atomically.
pub fn write_private(path: &Path, text: &str) -> Result<(), ClusterError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| ClusterError::Write { path: tmp.clone(), source })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| ClusterError::Write { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| ClusterError::Write { path: path.to_path_buf(), source })
}

/// The server's token, made on the first `--cluster-init` and kept after.
pub fn server_token(data_dir: &Path) -> Result<Token, ClusterError> {
    let path = data_dir.join("token");
    if path.exists() {
        return Token::load(&path);
    }
    let token = Token::generate()?;
    write_private(&path, &format!("{}\n", token.encode()))?;
    Ok(token)
}

/// Writes the client config for remote CLIs next to the token: the
/// server, the join token and the admin token.
pub fn write_client_config(
    data_dir: &Path,
    server: SocketAddr,
    token: &Token,
    admin: &str,
) -> Result<(), ClusterError> {
    let config = ClientConfig {
        api_version: "podnet/v1".into(),
        kind: "Config".into(),
        server,
        token: token.encode(),
        admin: admin.into(),
    };
    let text = serde_yaml_ng::to_string(&config)?;
    write_private(&data_dir.join("podnet.yaml"), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_named() {
        let token = Token::generate().unwrap();
        assert_eq!(Token::parse(&token.encode()).unwrap(), token);
        assert!(Token::parse("PN1::zz").unwrap_err().to_string().contains("not a podnet cluster token"));
        assert!(Token::parse(&token.encode().replace("PN1", "XX1")).is_err());
    }

    #[test]
    fn a_token_file_others_can_read_is_refused_with_the_fix() {
        let dir = std::env::temp_dir().join(format!("podnet-token-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let token = Token::generate().unwrap();
        std::fs::write(&path, format!("{}\n", token.encode())).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let message = Token::load(&path).unwrap_err().to_string();
            assert!(message.contains(&format!("permissions {mode:04o}")), "{message}");
            assert!(message.contains(&format!("chmod 600 {}", path.display())), "{message}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(Token::load(&path).unwrap(), token, "{mode:o}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn private_files_are_0600() {
        let dir = std::env::temp_dir().join(format!("podnet-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = server_token(&dir).unwrap();
        assert_eq!(server_token(&dir).unwrap(), token, "kept across restarts");
        write_client_config(&dir, "192.0.2.1:6443".parse().unwrap(), &token, "admin-token").unwrap();
        for file in ["token", "podnet.yaml"] {
            let mode = std::fs::metadata(dir.join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let (config, parsed) = ClientConfig::load(&dir.join("podnet.yaml")).unwrap();
        assert_eq!((config.server.port(), parsed, config.admin.as_str()), (6443, token, "admin-token"));
        // A client config from before admin tokens names the fix.
        let old =
            std::fs::read_to_string(dir.join("podnet.yaml")).unwrap().replace("admin: admin-token\n", "");
        write_private(&dir.join("old.yaml"), &old).unwrap();
        let e = ClientConfig::load(&dir.join("old.yaml")).unwrap_err().to_string();
        assert!(e.contains("no admin token") && e.contains("copy podnet.yaml again"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
