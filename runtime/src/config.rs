//! The node configuration: a board config TOML (board-configs/*.toml), every
//! key optional, defaults as Kubernetes has them.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// An IPv4 prefix such as `10.244.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// The prefix `addr/prefix`, with host bits cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Cidr {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Cidr { addr: Ipv4Addr::from(u32::from(addr) & mask), prefix }
    }

    /// Whether `ip` falls inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        Cidr::new(ip, self.prefix).addr == self.addr
    }

    /// Address at `offset` from the network address.
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + offset)
    }

    /// The same prefix as netstack's type.
    pub fn to_netstack(self) -> netstack::wire::Ipv4Cidr {
        netstack::wire::Ipv4Cidr::new(self.addr, self.prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(text: String) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not an IPv4 prefix like 10.244.0.0/24");
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
        Ok(Cidr::new(addr, prefix))
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> String {
        cidr.to_string()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An inclusive port range such as `30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

impl PortRange {
    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(text: String) -> Result<PortRange, String> {
        let bad = || format!("`{text}` is not a port range like 30000-32767");
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if last < first {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl From<PortRange> for String {
    fn from(range: PortRange) -> String {
        range.to_string()
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Addresses and names of the cluster network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// The whole cluster's pod range.
    pub cluster_cidr: Cidr,
    /// This node's share of it; its first address is the pods' gateway.
    pub node_subnet: Cidr,
    /// Range ClusterIPs are allocated from.
    pub service_cidr: Cidr,
    /// The cluster DNS address written into every pod's resolv.conf.
    pub cluster_dns: Ipv4Addr,
    /// The cluster DNS zone.
    pub cluster_domain: String,
    /// MTU of pod interfaces.
    pub mtu: u32,
    /// Name of the node's own port into the switch.
    pub host_interface: String,
    /// Range NodePorts are allocated from (Kubernetes' --service-node-port-range).
    pub node_port_range: PortRange,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            cluster_cidr: Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 16),
            node_subnet: Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 24),
            service_cidr: Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 12),
            cluster_dns: Ipv4Addr::new(10, 96, 0, 10),
            cluster_domain: "cluster.local".into(),
            mtu: 1500,
            host_interface: "podnet0".into(),
            node_port_range: PortRange { first: 30_000, last: 32_767 },
        }
    }
}

/// Table capacities, sized to the board's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Pods on this node (Kubernetes' default is 110).
    pub max_pods: u16,
    /// Service ports (a Service with two ports takes two).
    pub max_services: u16,
    /// Backends per service port.
    pub max_backends: u16,
    /// Connections tracked through ClusterIPs (60 bytes each).
    pub max_flows: u32,
    /// ClientIP session-affinity records.
    pub max_affinities: u32,
    /// TCP connections proxied at once through node ports, host ports and
    /// egress together (each holds two sockets and two 16 KiB buffers).
    pub max_proxied_connections: u32,
    /// UDP flows proxied at once through node ports, host ports and egress.
    pub max_proxied_udp_flows: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_pods: 110,
            max_services: 256,
            max_backends: 32,
            max_flows: 16_384,
            max_affinities: 4096,
            max_proxied_connections: 4096,
            max_proxied_udp_flows: 1024,
        }
    }
}

/// How pod processes are supervised.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PodsConfig {
    /// First restart delay after a pod's command exits (Kubernetes: 10 s).
    pub restart_backoff_initial_ms: u64,
    /// Longest restart delay (Kubernetes: 5 min).
    pub restart_backoff_max_ms: u64,
    /// Time between SIGTERM and SIGKILL when a pod is deleted.
    pub termination_grace_ms: u64,
}

impl Default for PodsConfig {
    fn default() -> Self {
        PodsConfig {
            restart_backoff_initial_ms: 10_000,
            restart_backoff_max_ms: 300_000,
            termination_grace_ms: 5_000,
        }
    }
}

/// A whole board config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Free text: which board this file is for.
    pub board: Option<String>,
    /// Addresses and names.
    pub network: NetworkConfig,
    /// Table capacities.
    pub limits: LimitsConfig,
    /// Pod supervision.
    pub pods: PodsConfig,
}

impl NodeConfig {
    /// Reads and checks a board config; errors name the file, the line and the fix.
    pub fn load(path: &Path) -> Result<NodeConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        NodeConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks config text.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            match e.span() {
                Some(span) => format!("line {}: {msg}", text[..span.start].matches('\n').count() + 1),
                None => msg,
            }
        })?;
        config.check()?;
        Ok(config)
    }

    /// Cross-field checks the types cannot express.
    pub fn check(&self) -> Result<(), String> {
        let net = &self.network;
        if !(16..=30).contains(&net.node_subnet.prefix) {
            return Err(format!("network.node_subnet {} must be between /16 and /30", net.node_subnet));
        }
        if !net.cluster_cidr.contains(net.node_subnet.addr)
            || net.node_subnet.prefix < net.cluster_cidr.prefix
        {
            return Err(format!(
                "network.node_subnet {} must lie inside network.cluster_cidr {}",
                net.node_subnet, net.cluster_cidr
            ));
        }
        if !net.service_cidr.contains(net.cluster_dns) {
            return Err(format!(
                "network.cluster_dns {} must lie inside network.service_cidr {}",
                net.cluster_dns, net.service_cidr
            ));
        }
        if !(576..=65_000).contains(&net.mtu) {
            return Err(format!("network.mtu {} must be between 576 and 65000", net.mtu));
        }
        if net.host_interface.is_empty() || net.host_interface.len() > 15 {
            return Err("network.host_interface must be 1 to 15 characters".into());
        }
        if self.limits.max_pods == 0 || self.limits.max_pods > 4000 {
            return Err(format!("limits.max_pods {} must be between 1 and 4000", self.limits.max_pods));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_kubernetes_default() {
        let config = NodeConfig::parse("").unwrap();
        assert_eq!(config.network.node_subnet.to_string(), "10.244.0.0/24");
        assert_eq!(config.network.cluster_dns, Ipv4Addr::new(10, 96, 0, 10));
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let err = NodeConfig::parse("[network]\nmtu = 1400\nmtuu = 1\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        assert!(err.contains("mtuu"), "{err}");
    }

    #[test]
    fn node_port_range_parses_and_is_checked() {
        let config = NodeConfig::parse("[network]\nnode_port_range = \"31000-31999\"\n").unwrap();
        assert!(
            config.network.node_port_range.contains(31000) && !config.network.node_port_range.contains(32000)
        );
        assert_eq!(NodeConfig::default().network.node_port_range.to_string(), "30000-32767");
        let err = NodeConfig::parse("[network]\nnode_port_range = \"32000-31000\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("port range"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = NodeConfig::parse("[network]\nnode_subnet = \"10.244.0.0/33\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("10.244.0.0/33"), "{err}");
        let err = NodeConfig::parse("[network]\nnode_subnet = \"10.1.0.0/24\"\n").unwrap_err();
        assert!(err.contains("cluster_cidr"), "{err}");
    }
}
