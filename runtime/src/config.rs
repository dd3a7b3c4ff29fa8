//! The node configuration: a board config TOML (board-configs/*.toml), every
//! key optional, defaults as Kubernetes has them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use netstack::wire::{EthernetAddress, IpCidr, Ipv4Cidr};
use serde::{Deserialize, Serialize};

use crate::model::address::ipv4_only;

/// A prefix such as `10.244.0.0/24`, host bits cleared: smoltcp's
/// family-generic `IpCidr`, wrapped only to be read and written as that text
/// in board configs, the state file and the cluster channel. netstack is
/// built for IPv4, so every prefix is IPv4 today, and an IPv6 one is refused
/// when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(IpCidr);

impl Cidr {
    /// The prefix `addr/prefix` (at most 32), with host bits cleared.
    pub const fn new(addr: Ipv4Addr, prefix: u8) -> Cidr {
        Cidr(IpCidr::Ipv4(Ipv4Cidr::new(addr, prefix).network()))
    }

    /// The prefix in IPv4 form, for netstack, IPAM and the kernel's
    /// routes. Like `netstack::wire::ipv4_of`, a compile error once IPv6
    /// is built in, which marks where dual-stack needs its decisions.
    pub const fn ipv4(&self) -> Ipv4Cidr {
        match self.0 {
            IpCidr::Ipv4(v4) => v4,
        }
    }

    /// The network address.
    pub fn address(&self) -> IpAddr {
        self.0.address().into()
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` falls inside the prefix (never for another family).
    pub fn contains(&self, ip: impl Into<IpAddr>) -> bool {
        match ip.into() {
            IpAddr::V4(v4) => self.0.contains_addr(&v4.into()),
            IpAddr::V6(_) => false,
        }
    }

    /// IPv4 address at `offset` from the network address.
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ipv4().address()) + offset)
    }
}

// A board config's addresses are read as either family, so that an IPv6
// one is refused with the reason rather than as bad IPv4 syntax.
fn ipv4_key<'de, D: serde::Deserializer<'de>>(key: &str, d: D) -> Result<Ipv4Addr, D::Error> {
    ipv4_only(key, IpAddr::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn cluster_dns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    ipv4_key("network.cluster_dns", d)
}

fn peer_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    ipv4_key("cluster.peers.address", d)
}

fn upstream_dns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Ipv4Addr>, D::Error> {
    Vec::<IpAddr>::deserialize(d)?
        .into_iter()
        .map(|ip| ipv4_only("network.upstream_dns", ip).map_err(serde::de::Error::custom))
        .collect()
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(text: String) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not an IPv4 prefix like 10.244.0.0/24");
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = ipv4_only("prefix", addr).map_err(|e| e.to_string())?;
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
        write!(f, "{}/{}", self.address(), self.prefix_len())
    }
}

/// A MAC address such as `0a:58:0a:f4:01:00`: smoltcp's `EthernetAddress`,
/// wrapped only to be read and written as that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mac(pub EthernetAddress);

impl TryFrom<String> for Mac {
    type Error = String;
    fn try_from(text: String) -> Result<Mac, String> {
        let bad = || format!("`{text}` is not a MAC address like 0a:58:0a:f4:01:00");
        let mut mac = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut mac {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(EthernetAddress(mac)))
    }
}

impl From<Mac> for String {
    fn from(mac: Mac) -> String {
        mac.to_string()
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
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
    #[serde(deserialize_with = "cluster_dns")]
    pub cluster_dns: Ipv4Addr,
    /// The cluster DNS zone.
    pub cluster_domain: String,
    /// MTU of pod interfaces.
    pub mtu: u32,
    /// Name of the node's own port into the switch.
    pub host_interface: String,
    /// Resolvers for names outside the cluster zone; empty: the node's
    /// /etc/resolv.conf nameservers at start.
    #[serde(deserialize_with = "upstream_dns")]
    pub upstream_dns: Vec<Ipv4Addr>,
    /// How long an upstream resolver may take before the pod gets SERVFAIL.
    pub dns_timeout_ms: u64,
    /// TTL of cluster DNS records (CoreDNS's default is 5 s).
    pub dns_ttl: u32,
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
            upstream_dns: Vec::new(),
            dns_timeout_ms: 2_000,
            dns_ttl: 5,
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
    /// Connections tracked through ClusterIPs (64 bytes each).
    pub max_flows: u32,
    /// Open connections through ClusterIPs one pod (or the node itself) may
    /// hold, so one flooding pod cannot fill the table; closed ones do not
    /// count. Default: a quarter of `max_flows`.
    pub max_flows_per_pod: Option<u32>,
    /// ClientIP session-affinity records.
    pub max_affinities: u32,
    /// TCP connections proxied at once through node ports, host ports and
    /// egress together (each holds two sockets; a node-port connection also
    /// a 16 KiB buffer or a pipe per busy direction, see `splice.rs`).
    pub max_proxied_connections: u32,
    /// UDP flows proxied at once through node ports, host ports and egress.
    pub max_proxied_udp_flows: u32,
    /// Egress TCP connections one pod may hold (each holds two 64 KiB
    /// buffers). Default: a quarter of `max_proxied_connections`.
    pub max_egress_connections_per_pod: Option<u32>,
    /// Egress UDP flows one pod may hold. Default: a quarter of
    /// `max_proxied_udp_flows`.
    pub max_egress_udp_flows_per_pod: Option<u32>,
    /// Egress ICMP echo identifiers in use at once (at most 65,535); one pod
    /// may hold a quarter of them.
    pub max_egress_pings: u32,
    /// TCP connections one client (source address) may hold through node
    /// ports, LoadBalancer ports and host ports together, so one client
    /// cannot take them all. Default: a quarter of `max_proxied_connections`.
    pub max_proxied_connections_per_client: Option<u32>,
    /// UDP flows one client may hold through those ports. Default: a quarter
    /// of `max_proxied_udp_flows`.
    pub max_proxied_udp_flows_per_client: Option<u32>,
    /// Seconds a node-port, LoadBalancer or host-port TCP connection may
    /// stay idle (no byte either way) before both ends are reset, as
    /// conntrack forgets an idle established connection for kube-proxy.
    pub proxy_idle_timeout_s: u64,
    /// Connections open at once to each of the agent's own listeners: DNS
    /// over TCP, the cluster API, the metrics endpoint, the control socket.
    pub max_listener_connections: u32,
    /// Connections one client (source address) may hold to one of those
    /// listeners (the control socket, root's only, has the total cap only).
    pub max_listener_connections_per_client: u32,
    /// Milliseconds a request to those listeners may take, whole, once it
    /// started: a DNS message, a metrics request, a control frame. A client
    /// that trickles it or never finishes it is closed.
    pub request_timeout_ms: u64,
    /// Size at which a pod's log is rotated (the kubelet's
    /// containerLogMaxSize, 10 MiB).
    pub pod_log_max_bytes: u64,
    /// Log files kept per pod, the current one included (the kubelet's
    /// containerLogMaxFiles, 5).
    pub pod_log_max_files: u32,
    /// Size of each private tmpfs a sandboxed pod gets on /tmp, /var/tmp
    /// and /run (the host's files are read-only to it); a pod that fills
    /// one gets ENOSPC, its own business.
    pub pod_tmpfs_bytes: u64,
    /// Pod records of the cluster DNS zone (reverse lookups, pod A
    /// records): the whole cluster's pods, not this node's. Pods past it get
    /// no records, counted as `pod_records_refused` in `podnet node stats`.
    pub max_cluster_pods: u32,
}

impl LimitsConfig {
    /// Open ClusterIP connections one pod may hold (see `max_flows_per_pod`).
    pub fn flows_per_pod(&self) -> u32 {
        self.max_flows_per_pod.unwrap_or(self.max_flows.div_ceil(4))
    }

    /// Egress TCP connections one pod may hold.
    pub fn egress_connections_per_pod(&self) -> u32 {
        self.max_egress_connections_per_pod.unwrap_or(self.max_proxied_connections.div_ceil(4))
    }

    /// Egress UDP flows one pod may hold.
    pub fn egress_udp_flows_per_pod(&self) -> u32 {
        self.max_egress_udp_flows_per_pod.unwrap_or(self.max_proxied_udp_flows.div_ceil(4))
    }

    /// Node-port, LoadBalancer and host-port TCP connections one client may hold.
    pub fn proxied_connections_per_client(&self) -> u32 {
        self.max_proxied_connections_per_client.unwrap_or(self.max_proxied_connections.div_ceil(4))
    }

    /// Node-port, LoadBalancer and host-port UDP flows one client may hold.
    pub fn proxied_udp_flows_per_client(&self) -> u32 {
        self.max_proxied_udp_flows_per_client.unwrap_or(self.max_proxied_udp_flows.div_ceil(4))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_pods: 110,
            max_services: 256,
            max_backends: 32,
            max_flows: 16_384,
            max_flows_per_pod: None,
            max_affinities: 4096,
            max_proxied_connections: 4096,
            max_proxied_udp_flows: 1024,
            max_egress_connections_per_pod: None,
            max_egress_udp_flows_per_pod: None,
            max_egress_pings: 4096,
            max_proxied_connections_per_client: None,
            max_proxied_udp_flows_per_client: None,
            proxy_idle_timeout_s: 3600,
            max_listener_connections: 512,
            max_listener_connections_per_client: 32,
            request_timeout_ms: 10_000,
            pod_log_max_bytes: 10 << 20,
            pod_log_max_files: 5,
            pod_tmpfs_bytes: 64 << 20,
            max_cluster_pods: 4096,
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
    /// The OCI runtime for image pods: `crun`, `runc` or a path; the first
    /// that works on this node's cgroups when not set.
    pub runtime: Option<String>,
}

impl Default for PodsConfig {
    fn default() -> Self {
        PodsConfig {
            restart_backoff_initial_ms: 10_000,
            restart_backoff_max_ms: 300_000,
            termination_grace_ms: 5_000,
            runtime: None,
        }
    }
}

/// The image store: unpacking bounds and disk-threshold garbage collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Disk use (percent of the data dir's file system) past which unused
    /// images are removed, least recently used first (the kubelet's
    /// imageGCHighThresholdPercent, 85).
    pub gc_high_percent: u8,
    /// Disk use image GC brings it down to (imageGCLowThresholdPercent, 80).
    pub gc_low_percent: u8,
    /// Uncompressed bytes one layer may unpack to; a layer past it is refused.
    pub max_layer_bytes: u64,
    /// Tar entries one layer may have; a layer past it is refused.
    pub max_layer_entries: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            gc_high_percent: 85,
            gc_low_percent: 80,
            max_layer_bytes: 8 << 30,
            max_layer_entries: 500_000,
        }
    }
}

/// Another node reached through the overlay, given statically (until the
/// cluster control plane programs peers itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The node's pod subnet.
    pub subnet: Cidr,
    /// The node's underlay (LAN) address.
    #[serde(deserialize_with = "peer_address")]
    pub address: Ipv4Addr,
    /// The node's VTEP MAC; podnet nodes derive theirs from their subnet
    /// (`0a:58` + the subnet's network address), which is the default.
    pub vtep_mac: Option<Mac>,
}

impl PeerConfig {
    /// The peer as the switch takes it.
    pub fn to_netstack(&self) -> netstack::overlay::OverlayPeer {
        let podnet = netstack::overlay::OverlayPeer::podnet(self.subnet.ipv4(), self.address);
        netstack::overlay::OverlayPeer { vtep_mac: self.vtep_mac.map_or(podnet.vtep_mac, |m| m.0), ..podnet }
    }
}

/// The multi-node cluster: the VXLAN overlay between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Run the overlay even without static peers (the control plane will
    /// program them). Static peers imply it.
    pub overlay: bool,
    /// VXLAN network identifier (flannel's default is 1).
    pub vni: u32,
    /// UDP port of the overlay, on every node (flannel's default is 8472).
    pub vxlan_port: u16,
    /// MTU of the underlay (the LAN between nodes). With the overlay, pods
    /// and the node port get at most this minus the 50 bytes of VXLAN
    /// overhead.
    pub underlay_mtu: u32,
    /// Other nodes, fixed in the config.
    pub peers: Vec<PeerConfig>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            overlay: false,
            vni: 1,
            vxlan_port: netstack::wire::vxlan::DEFAULT_PORT,
            underlay_mtu: 1500,
            peers: Vec::new(),
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
    /// The overlay to other nodes.
    pub cluster: ClusterConfig,
    /// The image store.
    pub images: ImagesConfig,
    /// The Kubernetes API.
    pub api: crate::kube::ApiConfig,
    /// The Ingress proxy.
    pub ingress: crate::ingress::IngressConfig,
    /// The data plane's threads.
    pub dataplane: DataplaneConfig,
}

/// Most data-plane threads a board config may ask for.
pub const MAX_DATAPLANE_THREADS: u16 = 16;

/// The data plane: how many threads move pod traffic.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneConfig {
    /// Data-plane threads, each with its own switch and its own queue of
    /// every TAP; unset: one per CPU the agent may run on, at most
    /// [`DEFAULT_DATAPLANE_THREADS_MAX`]. 1 is the single-threaded path
    /// (single-queue TAPs, no steering).
    pub threads: Option<u16>,
}

/// Most data-plane threads started when the config names none: a Raspberry
/// Pi's four cores.
pub const DEFAULT_DATAPLANE_THREADS_MAX: usize = 4;

impl DataplaneConfig {
    /// The thread count to start: the configured one, else one per usable
    /// CPU up to [`DEFAULT_DATAPLANE_THREADS_MAX`].
    pub fn threads(&self) -> usize {
        self.threads_on(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// [`Self::threads`] on a machine with `cpus` usable CPUs.
    fn threads_on(&self, cpus: usize) -> usize {
        match self.threads {
            Some(n) => usize::from(n.clamp(1, MAX_DATAPLANE_THREADS)),
            None => cpus.clamp(1, DEFAULT_DATAPLANE_THREADS_MAX),
        }
    }
}

/// One thing wrong in a board config: where (when known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when the problem is tied to a place in it.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, the fix.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a board config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text has problems: every one found, each with its line and fix.
    #[error("{}{}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default(), render(problems))]
    Invalid {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// What is wrong.
        problems: Vec<Problem>,
    },
}

/// Renders problems as one message: `line N: ...` alone for one problem,
/// a count and one indented line per problem for several.
fn render(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut text = format!("{} problems:", many.len());
            for problem in many {
                text.push_str("\n  ");
                text.push_str(&problem.to_string());
            }
            text
        }
    }
}

type Table<'i> = toml::de::DeTable<'i>;

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Removes the entry an error at `offset` belongs to (searching nested
/// tables first); returns whether one was found.
fn remove_at(table: &mut Table<'_>, offset: usize) -> bool {
    let mut found = None;
    for (key, value) in table.iter_mut() {
        let inside = key.span().contains(&offset) || value.span().contains(&offset);
        if let toml::de::DeValue::Table(inner) = value.get_mut()
            && remove_at(inner, offset)
        {
            return true;
        }
        if inside {
            found = Some(key.clone());
            break;
        }
    }
    match found {
        Some(key) => {
            table.remove(&key);
            true
        }
        None => false,
    }
}

/// The line of the key at `path` (`network.mtu`), when the file sets it.
fn line_of(text: &str, table: &Table<'_>, path: &str) -> Option<usize> {
    let mut table = table;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let (key, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == part)?;
        if parts.peek().is_none() {
            return Some(line_at(text, key.span().start));
        }
        table = value.get_ref().as_table()?;
    }
    None
}

impl NodeConfig {
    /// Reads and checks a board config; errors name the file, every bad line and the fix.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        NodeConfig::parse_all(&text)
            .map_err(|problems| ConfigError::Invalid { file: Some(path.to_path_buf()), problems })
    }

    /// Parses and checks config text; the error lists every problem found.
    pub fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse_all(text).map_err(|problems| ConfigError::Invalid { file: None, problems })
    }

    /// Parses and checks config text, collecting every problem rather than
    /// stopping at the first: TOML syntax errors, unknown keys, values of the
    /// wrong type or out of range, and cross-field conflicts.
    pub fn parse_all(text: &str) -> Result<NodeConfig, Vec<Problem>> {
        let (document, syntax) = Table::parse_recoverable(text);
        let mut problems: Vec<Problem> = syntax
            .iter()
            .map(|e| Problem {
                line: e.span().map(|s| line_at(text, s.start)),
                message: e.message().trim_end().to_string(),
            })
            .collect();
        let original = document.get_ref().clone();
        // Deserialize; on an error, note it, drop the offending entry (so its
        // default applies) and try again, until the rest deserializes.
        let mut bad_paths: Vec<String> = Vec::new();
        let mut document = document;
        let config = loop {
            match NodeConfig::deserialize(toml::de::Deserializer::from(document.clone())) {
                Ok(config) => break config,
                Err(e) => {
                    let span = e.span();
                    let path = span.clone().and_then(|s| path_at(&original, s.start));
                    let removed = span.clone().is_some_and(|s| remove_at(document.get_mut(), s.start));
                    let message = e.message().trim_end();
                    let message = match &path {
                        Some(path) => format!("{path}: {message}"),
                        None => message.to_string(),
                    };
                    bad_paths.extend(path);
                    problems.push(Problem { line: span.map(|s| line_at(text, s.start)), message });
                    if !removed {
                        break NodeConfig::default();
                    }
                }
            }
        };
        for (path, message) in config.findings() {
            // A value already reported as malformed is not judged again.
            if path.iter().any(|p| bad_paths.iter().any(|b| b == p)) {
                continue;
            }
            let line = path.iter().filter_map(|p| line_of(text, &original, p)).max();
            problems.push(Problem { line, message });
        }
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        if problems.is_empty() { Ok(config) } else { Err(problems) }
    }

    /// Cross-field checks the types cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let problems: Vec<Problem> =
            self.findings().into_iter().map(|(_, message)| Problem { line: None, message }).collect();
        if problems.is_empty() { Ok(()) } else { Err(ConfigError::Invalid { file: None, problems }) }
    }

    /// Every value or combination the types allow but podnet does not, each
    /// with the keys involved (the last one set in the file gives the line).
    fn findings(&self) -> Vec<(Vec<&'static str>, String)> {
        let mut found = Vec::new();
        let net = &self.network;
        let limits = &self.limits;
        let pods = &self.pods;
        let images = &self.images;
        if images.gc_high_percent > 100 || images.gc_low_percent >= images.gc_high_percent {
            found.push((
                vec!["images.gc_high_percent", "images.gc_low_percent"],
                format!(
                    "images.gc_low_percent {} must be below images.gc_high_percent {}, which is at most 100",
                    images.gc_low_percent, images.gc_high_percent
                ),
            ));
        }
        if !(16..=30).contains(&net.node_subnet.prefix_len()) {
            found.push((
                vec!["network.node_subnet"],
                format!("network.node_subnet {} must be between /16 and /30", net.node_subnet),
            ));
        } else if !net.cluster_cidr.contains(net.node_subnet.address())
            || net.node_subnet.prefix_len() < net.cluster_cidr.prefix_len()
        {
            found.push((
                vec!["network.cluster_cidr", "network.node_subnet"],
                format!(
                    "network.node_subnet {} must lie inside network.cluster_cidr {}",
                    net.node_subnet, net.cluster_cidr
                ),
            ));
        }
        if net.service_cidr.contains(net.cluster_cidr.address())
            || net.cluster_cidr.contains(net.service_cidr.address())
        {
            found.push((
                vec!["network.cluster_cidr", "network.service_cidr"],
                format!(
                    "network.service_cidr {} must not overlap network.cluster_cidr {}",
                    net.service_cidr, net.cluster_cidr
                ),
            ));
        }
        if !net.service_cidr.contains(net.cluster_dns) {
            found.push((
                vec!["network.service_cidr", "network.cluster_dns"],
                format!(
                    "network.cluster_dns {} must lie inside network.service_cidr {}",
                    net.cluster_dns, net.service_cidr
                ),
            ));
        }
        // No trailing dot: the zone appends its own root.
        if net.cluster_domain.ends_with('.') || !crate::model::is_dns_name(&net.cluster_domain) {
            found.push((
                vec!["network.cluster_domain"],
                format!(
                    "network.cluster_domain `{}` must be a DNS name like cluster.local \
                     (labels of letters, digits and '-', dot-separated)",
                    net.cluster_domain
                ),
            ));
        }
        if !(576..=65_000).contains(&net.mtu) {
            found.push((
                vec!["network.mtu"],
                format!("network.mtu {} must be between 576 and 65000", net.mtu),
            ));
        }
        if !(100..=30_000).contains(&net.dns_timeout_ms) {
            found.push((
                vec!["network.dns_timeout_ms"],
                format!("network.dns_timeout_ms {} must be between 100 and 30000", net.dns_timeout_ms),
            ));
        }
        if net.host_interface.is_empty()
            || net.host_interface.len() > 15
            || net.host_interface.contains(['/', ' ', '\0'])
            || net.host_interface == "."
            || net.host_interface == ".."
        {
            found.push((
                vec!["network.host_interface"],
                format!(
                    "network.host_interface `{}` must be 1 to 15 characters, without '/' or spaces",
                    net.host_interface
                ),
            ));
        }
        if let Some(threads) = self.dataplane.threads
            && !(1..=MAX_DATAPLANE_THREADS).contains(&threads)
        {
            found.push((
                vec!["dataplane.threads"],
                format!(
                    "dataplane.threads {threads} must be between 1 and {MAX_DATAPLANE_THREADS} \
                     (or left out: 1)"
                ),
            ));
        }
        let cluster = &self.cluster;
        if cluster.vni > netstack::wire::vxlan::MAX_VNI {
            found.push((vec!["cluster.vni"], format!("cluster.vni {} must be below 2^24", cluster.vni)));
        }
        if cluster.vxlan_port == 0 {
            found.push((vec!["cluster.vxlan_port"], "cluster.vxlan_port must not be 0".into()));
        }
        let overhead = netstack::wire::vxlan::OVERHEAD as u32;
        if !(576 + overhead..=65_000).contains(&cluster.underlay_mtu) {
            found.push((
                vec!["cluster.underlay_mtu"],
                format!("cluster.underlay_mtu {} must be between 626 and 65000", cluster.underlay_mtu),
            ));
        }
        if self.overlay_enabled() {
            let switch_config = netstack::overlay::OverlayConfig {
                cluster_cidr: net.cluster_cidr.ipv4(),
                max_peers: u16::MAX,
                ..Default::default()
            };
            let peers: Vec<_> = cluster.peers.iter().map(PeerConfig::to_netstack).collect();
            if let Err(e) = netstack::overlay::check_peers(&peers, &switch_config, net.node_subnet.ipv4()) {
                found.push((vec!["cluster.peers"], format!("cluster.peers: {e}")));
            }
        }
        if limits.max_pods == 0 || limits.max_pods > 4000 {
            found.push((
                vec!["limits.max_pods"],
                format!("limits.max_pods {} must be between 1 and 4000", limits.max_pods),
            ));
        }
        for (key, value) in [
            ("limits.max_services", u32::from(limits.max_services)),
            ("limits.max_backends", u32::from(limits.max_backends)),
            ("limits.max_flows", limits.max_flows),
            ("limits.max_affinities", limits.max_affinities),
        ] {
            if value == 0 {
                found.push((vec![key], format!("{key} must be at least 1")));
            }
        }
        if let Some(per_pod) = limits.max_flows_per_pod
            && (per_pod == 0 || per_pod > limits.max_flows)
        {
            found.push((
                vec!["limits.max_flows_per_pod"],
                format!(
                    "limits.max_flows_per_pod {per_pod} must be between 1 and limits.max_flows ({})",
                    limits.max_flows
                ),
            ));
        }
        for (key, per_pod, total_key, total) in [
            (
                "limits.max_egress_connections_per_pod",
                limits.max_egress_connections_per_pod,
                "limits.max_proxied_connections",
                limits.max_proxied_connections,
            ),
            (
                "limits.max_egress_udp_flows_per_pod",
                limits.max_egress_udp_flows_per_pod,
                "limits.max_proxied_udp_flows",
                limits.max_proxied_udp_flows,
            ),
            (
                "limits.max_proxied_connections_per_client",
                limits.max_proxied_connections_per_client,
                "limits.max_proxied_connections",
                limits.max_proxied_connections,
            ),
            (
                "limits.max_proxied_udp_flows_per_client",
                limits.max_proxied_udp_flows_per_client,
                "limits.max_proxied_udp_flows",
                limits.max_proxied_udp_flows,
            ),
            (
                "limits.max_listener_connections_per_client",
                Some(limits.max_listener_connections_per_client),
                "limits.max_listener_connections",
                limits.max_listener_connections,
            ),
        ] {
            if let Some(per_pod) = per_pod
                && (per_pod == 0 || per_pod > total)
            {
                found.push((
                    vec![key],
                    format!("{key} {per_pod} must be between 1 and {total_key} ({total})"),
                ));
            }
        }
        if limits.max_listener_connections == 0 {
            found.push((
                vec!["limits.max_listener_connections"],
                "limits.max_listener_connections must be at least 1".into(),
            ));
        }
        // An hour is the default; a week is past anything a proxy should hold.
        if !(1..=604_800).contains(&limits.proxy_idle_timeout_s) {
            found.push((
                vec!["limits.proxy_idle_timeout_s"],
                format!(
                    "limits.proxy_idle_timeout_s {} must be between 1 and 604800 (a week)",
                    limits.proxy_idle_timeout_s
                ),
            ));
        }
        if !(100..=600_000).contains(&limits.request_timeout_ms) {
            found.push((
                vec!["limits.request_timeout_ms"],
                format!(
                    "limits.request_timeout_ms {} must be between 100 and 600000",
                    limits.request_timeout_ms
                ),
            ));
        }
        if limits.max_egress_pings > 65_535 {
            found.push((
                vec!["limits.max_egress_pings"],
                format!("limits.max_egress_pings {} must be at most 65535", limits.max_egress_pings),
            ));
        }
        if limits.pod_log_max_bytes < 4096 {
            found.push((
                vec!["limits.pod_log_max_bytes"],
                format!("limits.pod_log_max_bytes {} must be at least 4096", limits.pod_log_max_bytes),
            ));
        }
        if !(2..=100).contains(&limits.pod_log_max_files) {
            found.push((
                vec!["limits.pod_log_max_files"],
                format!(
                    "limits.pod_log_max_files {} must be between 2 and 100 (the current file and at least one rotated one, as the kubelet's containerLogMaxFiles)",
                    limits.pod_log_max_files
                ),
            ));
        }
        if !(1 << 20..=1 << 40).contains(&limits.pod_tmpfs_bytes) {
            found.push((
                vec!["limits.pod_tmpfs_bytes"],
                format!(
                    "limits.pod_tmpfs_bytes {} must be between 1048576 (1 MiB) and 1099511627776 (1 TiB)",
                    limits.pod_tmpfs_bytes
                ),
            ));
        }
        if !(1..=1 << 20).contains(&limits.max_cluster_pods) {
            found.push((
                vec!["limits.max_cluster_pods"],
                format!("limits.max_cluster_pods {} must be between 1 and 1048576", limits.max_cluster_pods),
            ));
        }
        if pods.restart_backoff_initial_ms == 0 {
            found.push((
                vec!["pods.restart_backoff_initial_ms"],
                "pods.restart_backoff_initial_ms must be at least 1".into(),
            ));
        }
        if pods.restart_backoff_max_ms < pods.restart_backoff_initial_ms {
            found.push((
                vec!["pods.restart_backoff_initial_ms", "pods.restart_backoff_max_ms"],
                format!(
                    "pods.restart_backoff_max_ms {} must not be below pods.restart_backoff_initial_ms {}",
                    pods.restart_backoff_max_ms, pods.restart_backoff_initial_ms
                ),
            ));
        }
        found.extend(self.ingress.findings());
        found
    }
}

/// The dotted key path (`network.mtu`) of the entry an error at `offset` is in.
fn path_at(table: &Table<'_>, offset: usize) -> Option<String> {
    for (key, value) in table.iter() {
        if let Some(inner) = value.get_ref().as_table()
            && let Some(path) = path_at(inner, offset)
        {
            return Some(format!("{}.{path}", key.get_ref()));
        }
        if key.span().contains(&offset) || value.span().contains(&offset) {
            return Some(key.get_ref().to_string());
        }
    }
    None
}

impl NodeConfig {
    /// Whether this node runs the VXLAN overlay.
    pub fn overlay_enabled(&self) -> bool {
        self.cluster.overlay || !self.cluster.peers.is_empty()
    }

    /// MTU of pod interfaces and the node port: `network.mtu`, lowered with
    /// the overlay to leave room for VXLAN's 50 bytes on the underlay.
    pub fn pod_mtu(&self) -> u32 {
        match self.overlay_enabled() {
            true => self.network.mtu.min(self.cluster.underlay_mtu - netstack::wire::vxlan::OVERHEAD as u32),
            false => self.network.mtu,
        }
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
    fn ipv6_addresses_and_prefixes_are_refused_naming_the_key() {
        for (text, key) in [
            ("[network]\ncluster_dns = \"fd00::10\"\n", "network.cluster_dns = fd00::10"),
            (
                "[network]\nupstream_dns = [\"1.1.1.1\", \"2606:4700::1111\"]\n",
                "network.upstream_dns = 2606:4700::1111",
            ),
            ("[network]\nnode_subnet = \"fd00:10:244::/64\"\n", "prefix = fd00:10:244::"),
            (
                "[[cluster.peers]]\nsubnet = \"10.244.1.0/24\"\naddress = \"fe80::2\"\n",
                "cluster.peers.address = fe80::2",
            ),
        ] {
            let err = NodeConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(&format!("IPv6 is not supported yet: {key}; use an IPv4 address")), "{err}");
        }
    }

    #[test]
    fn dataplane_threads_default_to_one_per_cpu_up_to_four_and_are_checked() {
        let unset = NodeConfig::parse("").unwrap().dataplane;
        assert_eq!([1, 2, 3, 4, 8, 64].map(|cpus| unset.threads_on(cpus)), [1, 2, 3, 4, 4, 4]);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(unset.threads(), cpus.min(4));
        let two = NodeConfig::parse("[dataplane]\nthreads = 2\n").unwrap().dataplane;
        assert_eq!((two.threads(), two.threads_on(1), two.threads_on(8)), (2, 2, 2));
        for bad in ["0", "17"] {
            let err = NodeConfig::parse(&format!("[dataplane]\nthreads = {bad}\n")).unwrap_err().to_string();
            assert!(err.contains("line 2") && err.contains("dataplane.threads"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line() {
        let err = NodeConfig::parse("[network]\nmtu = 1400\nmtuu = 1\n").unwrap_err().to_string();
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
        let err =
            NodeConfig::parse("[network]\nnode_port_range = \"32000-31000\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("port range"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = NodeConfig::parse("[network]\nnode_subnet = \"10.244.0.0/33\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("10.244.0.0/33"), "{err}");
        let err = NodeConfig::parse("[network]\nnode_subnet = \"10.1.0.0/24\"\n").unwrap_err().to_string();
        assert!(err.contains("cluster_cidr"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "board = \"x\"\n\
                    [network]\n\
                    mtuu = 1\n\
                    mtu = \"big\"\n\
                    node_subnet = \"10.244.0.0/33\"\n\
                    cluster_domain = \"bad_domain\"\n\
                    [limits]\n\
                    max_pods = 0\n\
                    max_flows = -5\n\
                    [podz]\n";
        let problems = NodeConfig::parse_all(text).unwrap_err();
        let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(3), Some(4), Some(5), Some(6), Some(8), Some(9), Some(10)], "{problems:#?}");
        assert!(problems[0].message.contains("mtuu"), "{problems:#?}");
        assert!(problems[2].message.contains("10.244.0.0/33"), "{problems:#?}");
        assert!(problems[3].message.contains("cluster_domain"), "{problems:#?}");
        assert!(problems[6].message.contains("podz"), "{problems:#?}");
        let err = NodeConfig::parse(text).unwrap_err().to_string();
        assert!(err.starts_with("7 problems:\n  line 3: "), "{err}");
    }

    #[test]
    fn egress_per_pod_caps_default_to_a_quarter_and_are_checked() {
        let config = NodeConfig::parse("[limits]\nmax_proxied_connections = 100\n").unwrap();
        assert_eq!(config.limits.egress_connections_per_pod(), 25);
        assert_eq!(config.limits.egress_udp_flows_per_pod(), 256);
        for bad in ["0", "101"] {
            let text =
                format!("[limits]\nmax_proxied_connections = 100\nmax_egress_connections_per_pod = {bad}\n");
            let err = NodeConfig::parse(&text).unwrap_err().to_string();
            assert!(err.contains("line 3") && err.contains("limits.max_proxied_connections (100)"), "{err}");
        }
        let err = NodeConfig::parse("[limits]\nmax_egress_pings = 70000\n").unwrap_err().to_string();
        assert!(err.contains("at most 65535"), "{err}");
    }

    #[test]
    fn listener_caps_and_timeouts_have_pi_sized_defaults_and_are_checked() {
        let config = NodeConfig::parse("[limits]\nmax_proxied_connections = 100\n").unwrap();
        let limits = &config.limits;
        assert_eq!(limits.proxied_connections_per_client(), 25);
        assert_eq!(limits.proxied_udp_flows_per_client(), 256);
        assert_eq!(limits.proxy_idle_timeout_s, 3600);
        assert_eq!((limits.max_listener_connections, limits.max_listener_connections_per_client), (512, 32));
        assert_eq!(limits.request_timeout_ms, 10_000);
        for (text, needle) in [
            (
                "max_proxied_connections = 100\nmax_proxied_connections_per_client = 101",
                "limits.max_proxied_connections_per_client 101 must be between 1 and limits.max_proxied_connections (100)",
            ),
            ("max_proxied_udp_flows_per_client = 0", "limits.max_proxied_udp_flows_per_client 0 must be"),
            (
                "max_listener_connections = 10\nmax_listener_connections_per_client = 11",
                "limits.max_listener_connections_per_client 11 must be between 1 and limits.max_listener_connections (10)",
            ),
            ("max_listener_connections = 0", "limits.max_listener_connections must be at least 1"),
            ("proxy_idle_timeout_s = 0", "limits.proxy_idle_timeout_s 0 must be between 1 and 604800"),
            ("request_timeout_ms = 10", "limits.request_timeout_ms 10 must be between 100 and 600000"),
        ] {
            let err = NodeConfig::parse(&format!("[limits]\n{text}\n")).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn pod_log_and_cluster_dns_limits_default_to_the_kubelets_and_are_checked() {
        let limits = NodeConfig::default().limits;
        assert_eq!((limits.pod_log_max_bytes, limits.pod_log_max_files), (10 << 20, 5));
        assert_eq!(limits.max_cluster_pods, 4096);
        assert_eq!(limits.pod_tmpfs_bytes, 64 << 20);
        let config =
            NodeConfig::parse("[limits]\npod_log_max_bytes = 65536\npod_log_max_files = 2\n").unwrap();
        assert_eq!((config.limits.pod_log_max_bytes, config.limits.pod_log_max_files), (65536, 2));
        for (text, needle) in [
            ("pod_log_max_bytes = 100", "at least 4096"),
            ("pod_log_max_files = 1", "between 2 and 100"),
            ("max_cluster_pods = 0", "between 1 and 1048576"),
            ("pod_tmpfs_bytes = 4096", "between 1048576 (1 MiB)"),
        ] {
            let err = NodeConfig::parse(&format!("[limits]\n{text}\n")).unwrap_err().to_string();
            assert!(err.contains("line 2") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_per_pod_flow_quota_defaults_to_a_quarter_and_is_checked() {
        let config = NodeConfig::parse("[limits]\nmax_flows = 1000\n").unwrap();
        assert_eq!(config.limits.flows_per_pod(), 250);
        let config = NodeConfig::parse("[limits]\nmax_flows = 1000\nmax_flows_per_pod = 1000\n").unwrap();
        assert_eq!(config.limits.flows_per_pod(), 1000);
        for bad in ["0", "1001"] {
            let text = format!("[limits]\nmax_flows = 1000\nmax_flows_per_pod = {bad}\n");
            let err = NodeConfig::parse(&text).unwrap_err().to_string();
            assert!(err.contains("line 3") && err.contains("between 1 and limits.max_flows (1000)"), "{err}");
        }
    }

    #[test]
    fn a_malformed_value_is_not_judged_again_by_cross_checks() {
        // cluster_cidr is unparseable: only that is reported, not "node_subnet
        // must lie inside cluster_cidr" against the default that replaced it.
        let text = "[network]\ncluster_cidr = \"10.1.0.0\"\nnode_subnet = \"10.1.0.0/24\"\n";
        let problems = NodeConfig::parse_all(text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].line, Some(2));
    }

    #[test]
    fn cross_field_problems_point_at_the_last_key_involved() {
        let text = "[network]\nservice_cidr = \"10.96.0.0/12\"\ncluster_dns = \"10.0.0.10\"\n\
                    [pods]\nrestart_backoff_initial_ms = 5000\nrestart_backoff_max_ms = 100\n";
        let problems = NodeConfig::parse_all(text).unwrap_err();
        let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(3), Some(6)], "{problems:#?}");
        // Overlapping ranges, both from the defaults except one key.
        let problems =
            NodeConfig::parse_all("[network]\nservice_cidr = \"10.0.0.0/8\"\ncluster_dns = \"10.0.0.10\"\n")
                .unwrap_err();
        assert!(problems[0].message.contains("overlap") && problems[0].line == Some(2), "{problems:#?}");
    }

    #[test]
    fn syntax_errors_are_reported_with_the_rest() {
        let text = "[network]\nmtu = = 3\nmtuu = 1\n";
        let problems = NodeConfig::parse_all(text).unwrap_err();
        assert!(problems.iter().any(|p| p.line == Some(2)), "{problems:#?}");
        assert!(problems.iter().any(|p| p.line == Some(3) && p.message.contains("mtuu")), "{problems:#?}");
    }

    #[test]
    fn the_shipped_board_configs_are_clean() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../board-configs");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                NodeConfig::load(&path).unwrap();
                count += 1;
            }
        }
        assert!(count >= 2);
    }

    #[test]
    fn cluster_peers_and_the_overlay_mtu() {
        let config = NodeConfig::parse(
            "[network]\nnode_subnet = \"10.244.0.0/24\"\n[cluster]\nvni = 7\npeers = [\n  { subnet = \"10.244.1.0/24\", address = \"192.168.250.3\" },\n  { subnet = \"10.244.9.0/24\", address = \"192.168.250.9\", vtep_mac = \"02:aa:bb:cc:dd:ee\" },\n]\n",
        )
        .unwrap();
        assert!(config.overlay_enabled());
        assert_eq!(config.cluster.vxlan_port, 8472);
        assert_eq!(config.pod_mtu(), 1450);
        let peers: Vec<_> = config.cluster.peers.iter().map(PeerConfig::to_netstack).collect();
        assert_eq!(peers[0].vtep_mac.0, [0x0a, 0x58, 10, 244, 1, 0]);
        assert_eq!(peers[1].vtep_mac.0, [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        assert_eq!(NodeConfig::parse("").unwrap().pod_mtu(), 1500, "no overlay, no overhead");
        let jumbo =
            NodeConfig::parse("[network]\nmtu = 1400\n[cluster]\noverlay = true\nunderlay_mtu = 9000\n");
        assert_eq!(jumbo.unwrap().pod_mtu(), 1400);
    }

    #[test]
    fn bad_peers_are_named() {
        let err =
            NodeConfig::parse("[[cluster.peers]]\nsubnet = \"10.244.0.0/24\"\naddress = \"192.168.250.3\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("cluster.peers") && err.contains("10.244.0.0/24"), "{err}");
        let err = NodeConfig::parse("[[cluster.peers]]\nsubnet = \"10.244.1.0/24\"\naddress = \"192.168.250.3\"\nvtep_mac = \"0a:58\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("MAC"), "{err}");
        let err = NodeConfig::parse("[cluster]\nvni = 16777216\n").unwrap_err().to_string();
        assert!(err.contains("cluster.vni"), "{err}");
    }

    #[test]
    fn netstack_capacity_errors_name_keys_that_exist() {
        let messages = [
            netstack::switch::SwitchError::TableFull.to_string(),
            netstack::dns::ZoneError::ServicesFull.to_string(),
            netstack::dns::ZoneError::PodsFull.to_string(),
            netstack::service::ServiceError::TableFull.to_string(),
            netstack::service::ServiceError::TooManyBackends.to_string(),
            netstack::conntrack::Refused::TableFull.to_string(),
            netstack::conntrack::Refused::OverQuota.to_string(),
        ];
        for message in messages {
            let (_, rest) = message.split_once("raise limits.").unwrap_or_else(|| panic!("{message}"));
            let key = rest.split_whitespace().next().unwrap();
            // A key the board config does not have is refused by name.
            let text = format!("[limits]\n{key} = 100\n");
            assert!(NodeConfig::parse(&text).is_ok(), "{message}: limits.{key} is not a board-config key");
        }
    }

    /// Prefixes and MACs travel as text in board configs, the state file
    /// (JSON) and the cluster channel (postcard): the exact bytes must not
    /// change with the type behind them.
    #[test]
    fn cidr_and_mac_keep_their_serialized_form() {
        let cidr = Cidr::new(Ipv4Addr::new(10, 244, 3, 77), 24);
        assert_eq!(cidr.to_string(), "10.244.3.0/24", "host bits cleared");
        assert_eq!(serde_json::to_string(&cidr).unwrap(), "\"10.244.3.0/24\"");
        assert_eq!(postcard::to_stdvec(&cidr).unwrap(), b"\x0d10.244.3.0/24");
        assert_eq!(serde_json::from_str::<Cidr>("\"10.244.3.9/24\"").unwrap(), cidr);
        assert_eq!(postcard::from_bytes::<Cidr>(b"\x0d10.244.3.0/24").unwrap(), cidr);
        let zero = Cidr::new(Ipv4Addr::new(1, 2, 3, 4), 0);
        assert_eq!(serde_json::to_string(&zero).unwrap(), "\"0.0.0.0/0\"");
        let err = serde_json::from_str::<Cidr>("\"10.244.0.0/33\"").unwrap_err().to_string();
        assert!(err.contains("`10.244.0.0/33` is not an IPv4 prefix like 10.244.0.0/24"), "{err}");

        let mac = Mac::try_from("0a:58:0A:f4:01:00".to_string()).unwrap();
        assert_eq!(serde_json::to_string(&mac).unwrap(), "\"0a:58:0a:f4:01:00\"");
        assert_eq!(postcard::to_stdvec(&mac).unwrap(), b"\x110a:58:0a:f4:01:00");
        assert!(Mac::try_from("0a:58:0a:f4:01".to_string()).is_err());

        let record = crate::store::NodeRecord {
            name: "n1".into(),
            subnet: cidr,
            address: Some(Ipv4Addr::new(192, 168, 250, 3).into()),
            joined_at: 7,
            password: None,
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"name":"n1","subnet":"10.244.3.0/24","address":"192.168.250.3","joined_at":7,"password":null}"#
        );
        let peer = crate::desired::PeerNode {
            node: "n1".into(),
            subnet: cidr,
            address: Ipv4Addr::new(192, 168, 250, 3).into(),
        };
        // An `IpAddr` is its family's index, then the address (protocol v8).
        assert_eq!(postcard::to_stdvec(&peer).unwrap(), b"\x02n1\x0d10.244.3.0/24\x00\xc0\xa8\xfa\x03");
        let config = NodeConfig::parse(
            "[network]\nnode_subnet = \"10.244.3.0/24\"\n[[cluster.peers]]\nsubnet = \"10.244.1.0/24\"\naddress = \"192.168.250.3\"\nvtep_mac = \"02:aa:bb:cc:dd:ee\"\n",
        )
        .unwrap();
        assert_eq!(config.network.node_subnet, cidr);
        assert_eq!(
            config.cluster.peers[0].vtep_mac,
            Some(Mac::try_from("02:aa:bb:cc:dd:ee".to_string()).unwrap())
        );
    }
}
