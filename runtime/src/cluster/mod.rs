//! Several nodes as one cluster: a server (`node up --cluster-init`) owns the
//! control plane; members (`node up --server ADDR --token-file F`) run the
//! pods it assigns them and report back; remote CLIs use a client config.
//! Every connection is a Noise channel keyed by the cluster token.

pub mod channel;
pub mod client;
pub mod member;
pub mod proto;
pub mod server;
pub mod token;

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
