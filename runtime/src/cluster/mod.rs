//! Several nodes as one cluster: a server (`node up --cluster-init`) owns the
//! control plane; members (`node up --server ADDR --token-file F`) run the
//! pods it assigns them and report back; remote CLIs use a client config.
//! Every connection is a Noise channel keyed by the cluster (join) token;
//! inside it a node proves its name with its node password and a CLI its
//! admin with the admin token.

pub mod channel;
pub mod client;
pub mod member;
pub mod password;
pub mod proto;
pub mod serve_stream;
pub mod server;
pub mod streams;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong with the cluster's files and its channel, as a CLI or a
/// member sees it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The text is not a token.
    #[error(
        "the token is not a podnet cluster token (PN1::<64 hex digits>): copy it again from the server's data dir"
    )]
    TokenFormat,
    /// The token file cannot be read.
    #[error("cannot read the token file {}: {source}", path.display())]
    ReadToken {
        /// --token-file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client config cannot be read.
    #[error("cannot read the client config {}: {source}", path.display())]
    ReadClientConfig {
        /// --kubeconfig.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client config is not one podnet wrote.
    #[error("{} is not a podnet client config: {source}", path.display())]
    ClientConfig {
        /// --kubeconfig.
        path: PathBuf,
        /// What the parser found.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A private file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client config cannot be rendered.
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    /// The server refused the handshake: another cluster's token.
    #[error("the cluster server at {0} refused the connection: check that the token is this cluster's")]
    Refused(SocketAddr),
    /// The server cannot be reached.
    #[error("cannot reach the cluster server at {server}: {source}")]
    Unreachable {
        /// Its address.
        server: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server took the connection but did not finish the handshake or
    /// its answer in time.
    #[error(
        "the cluster server at {server} did not answer within {} s: check that its agent runs (`podnet node up --cluster-init`, `systemctl status podnet` there) and that {server} is its cluster API address (`server:` in the client config)",
        waited.as_secs_f32()
    )]
    Silent {
        /// Its address.
        server: SocketAddr,
        /// How long the client waited.
        waited: std::time::Duration,
    },
    /// The channel broke mid-request.
    #[error("talking to the cluster server at {server} failed: {source}")]
    Talk {
        /// Its address.
        server: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No random bytes for a new token.
    #[error(transparent)]
    Random(#[from] crate::sys::random::RandomError),
    /// The token file can be read by others than its owner.
    #[error(
        "permissions {mode:04o} for the token file {} are too open: it must be readable by its owner only (run `chmod 600 {}`)",
        path.display(),
        path.display()
    )]
    TokenPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A client config without the admin token (written before there was one).
    #[error(
        "the client config {} has no admin token: copy podnet.yaml again from the server's data dir (the join token alone reads and changes nothing)",
        .0.display()
    )]
    NoAdmin(PathBuf),
    /// The server answered with an error, already in words.
    #[error("{0}")]
    Remote(String),
}

/// The cluster API's default port (k3s's, so firewall habits carry over).
pub const DEFAULT_PORT: u16 = 6443;

/// This host's first IPv4 address on an interface other than loopback and
/// podnet's own: the address other nodes reach it at.
pub fn node_address(exclude: &str) -> Option<std::net::Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name == "lo" || ifa.interface_name == exclude {
            return None;
        }
        let ip = ifa.address?.as_sockaddr_in()?.ip();
        (!ip.is_loopback()).then_some(ip)
    })
}
