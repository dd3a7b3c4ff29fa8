//! The cluster token and the client config. The token is a 32-byte secret
//! that never crosses the network: it is the pre-shared key of the Noise
//! handshake (see `channel.rs`), so only holders of it can join, read or
//! change the cluster. Both files are written 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
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
    /// A fresh random token.
    pub fn generate() -> Token {
        let bytes = crate::sys::random::bytes(32);
        let mut token = [0u8; 32];
        token.copy_from_slice(&bytes);
        Token(token)
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

    /// Reads a token file.
    pub fn load(path: &Path) -> Result<Token, ClusterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ClusterError::ReadToken { path: path.to_path_buf(), source })?;
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
    /// The cluster token.
    pub token: String,
}

impl ClientConfig {
    /// Reads a client config.
    pub fn load(path: &Path) -> Result<(ClientConfig, Token), ClusterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ClusterError::ReadClientConfig { path: path.to_path_buf(), source })?;
        let config: ClientConfig = serde_yaml_ng::from_str(&text)
            .map_err(|source| ClusterError::ClientConfig { path: path.to_path_buf(), source })?;
        let token = Token::parse(&config.token)?;
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
    let token = Token::generate();
    write_private(&path, &format!("{}\n", token.encode()))?;
    Ok(token)
}

/// Writes the client config for remote CLIs next to the token.
pub fn write_client_config(data_dir: &Path, server: SocketAddr, token: &Token) -> Result<(), ClusterError> {
    let config = ClientConfig {
        api_version: "podnet/v1".into(),
        kind: "Config".into(),
        server,
        token: token.encode(),
    };
    let text = serde_yaml_ng::to_string(&config)?;
    write_private(&data_dir.join("podnet.yaml"), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_named() {
        let token = Token::generate();
        assert_eq!(Token::parse(&token.encode()).unwrap(), token);
        assert!(Token::parse("PN1::zz").unwrap_err().to_string().contains("not a podnet cluster token"));
        assert!(Token::parse(&token.encode().replace("PN1", "XX1")).is_err());
    }

    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("podnet-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = server_token(&dir).unwrap();
        assert_eq!(server_token(&dir).unwrap(), token, "kept across restarts");
        write_client_config(&dir, "192.0.2.1:6443".parse().unwrap(), &token).unwrap();
        for file in ["token", "podnet.yaml"] {
            let mode = std::fs::metadata(dir.join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let (config, parsed) = ClientConfig::load(&dir.join("podnet.yaml")).unwrap();
        assert_eq!((config.server.port(), parsed), (6443, token));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
