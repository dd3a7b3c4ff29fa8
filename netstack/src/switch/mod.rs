//! The virtual switch: a port table filled from IPAM, an ARP responder, source
//! checks, and L3-aware forwarding between pods and the node.
//!
//! Every frame handed to [`Switch::process`] starts with a virtio-net header
//! (all ports are TAPs opened with `IFF_VNET_HDR`). The switch never floods:
//! it knows every address on the subnet, so ARP is answered from the table and
//! a frame either has exactly one egress port or is dropped and counted.
//!
//! It also carries Services: packets to a VIP in the service CIDR are
//! DNAT'd to a backend chosen by [`crate::service`] and tracked by
//! [`crate::conntrack`], and the backend's replies translated back (see
//! `ipv4.rs` for the path a packet takes).
//!
//! It enforces NetworkPolicy on each connection's first packet
//! (`policy.rs`), with [`crate::policy`]'s verdict.
//!
//! And it answers cluster DNS: UDP queries to the cluster DNS address are
//! answered from the [`crate::dns::Zone`] it holds, or handed to the runtime
//! to relay upstream (`dns.rs`).

pub mod arp;
mod dns;
mod ipv4;
mod overlay;
mod policy;
mod port;
mod verdict;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

pub use crate::service::refuse::MIN_REPLY_LEN;
pub use dns::{DNS_PORT, DNS_REPLY_OVERHEAD, DnsClient, DnsStats, DnsUpstream, MIN_DNS_REPLY_LEN};
pub use port::{PortId, PortKind, PortSpec, PortStats};
pub use verdict::{DropReason, Verdict};

use crate::Instant;
use crate::Protocol;
use crate::conntrack::{Capacity, Conntrack, Owner};
use crate::dns::{Zone, ZoneConfig, ZoneError};
use crate::overlay::{OverlayConfig, PeerTable};
use crate::policy::PolicyTable;
use crate::service::{Affinity, Backend, ServiceConfig, ServiceError, ServiceKey, ServiceTable};
use crate::wire::{EthernetFrame, EthernetProtocol, IpAddress, Ipv4Address, Ipv4Cidr, ipv4_of, vnet};
use port::Port;

/// Sizes and addresses a switch is built with.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    /// This node's pod subnet; its first host address is the gateway.
    pub subnet: Ipv4Cidr,
    /// Capacity of the port table (pods plus the host port).
    pub max_ports: u16,
    /// Addresses whose traffic is Service traffic: DNAT'd when a service
    /// port matches, refused otherwise. Must not overlap `subnet`.
    pub service_cidr: Ipv4Cidr,
    /// Service, flow and affinity table sizes and flow timeouts.
    pub services: ServiceConfig,
    /// The cluster DNS address pods' resolv.conf names: UDP to it, port 53,
    /// is answered by the switch. Normally inside `service_cidr`; never in
    /// `subnet`.
    pub cluster_dns: Ipv4Address,
    /// The cluster zone the switch answers from.
    pub dns: ZoneConfig,
    /// The VXLAN overlay to other nodes (used once an overlay port is
    /// attached).
    pub overlay: OverlayConfig,
}

impl SwitchConfig {
    /// The Kubernetes default service CIDR, 10.96.0.0/12.
    pub const DEFAULT_SERVICE_CIDR: Ipv4Cidr = Ipv4Cidr::new(Ipv4Address::new(10, 96, 0, 0), 12);
    /// The Kubernetes default cluster DNS address, 10.96.0.10.
    pub const DEFAULT_CLUSTER_DNS: Ipv4Address = Ipv4Address::new(10, 96, 0, 10);
}

impl Default for SwitchConfig {
    /// Kubernetes' defaults: node subnet 10.244.0.0/24 with 110 pods plus
    /// the host port, service CIDR 10.96.0.0/12, DNS at 10.96.0.10 for
    /// `cluster.local`.
    fn default() -> Self {
        SwitchConfig {
            subnet: Ipv4Cidr::new(Ipv4Address::new(10, 244, 0, 0), 24),
            max_ports: 111,
            service_cidr: Self::DEFAULT_SERVICE_CIDR,
            services: ServiceConfig::default(),
            cluster_dns: Self::DEFAULT_CLUSTER_DNS,
            dns: ZoneConfig::default(),
            overlay: OverlayConfig::default(),
        }
    }
}

/// Why a port could not be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchError {
    /// The port table is at its configured capacity.
    TableFull,
    /// Another port already owns this IP.
    AddressInUse,
    /// The IP is not in the pod subnet.
    OutsideSubnet,
    /// A host port (or an egress port) is attached already.
    HostPortExists,
    /// An overlay port is attached already.
    OverlayPortExists,
    /// The pod subnet is wider than /16.
    SubnetTooLarge,
    /// The service CIDR and the pod subnet overlap.
    ServiceCidrOverlap,
    /// The cluster DNS address is inside the pod subnet (or unspecified).
    DnsAddress,
    /// The zone configuration was refused.
    Dns(ZoneError),
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwitchError::TableFull => "switch port table full (raise limits.max_pods in the board config)",
            SwitchError::AddressInUse => "address already attached to another port",
            SwitchError::OutsideSubnet => "address outside the node's pod subnet",
            SwitchError::HostPortExists => "host port already attached",
            SwitchError::OverlayPortExists => "overlay port already attached",
            SwitchError::SubnetTooLarge => "pod subnet wider than /16",
            SwitchError::ServiceCidrOverlap => "service CIDR overlaps the pod subnet",
            SwitchError::DnsAddress => "cluster DNS address inside the pod subnet",
            SwitchError::Dns(e) => return write!(f, "cluster DNS zone: {e}"),
        })
    }
}

impl core::error::Error for SwitchError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SwitchError::Dns(e) => Some(e),
            _ => None,
        }
    }
}

/// The switch state: ports and the address table derived from them.
#[derive(Debug)]
pub struct Switch {
    subnet: Ipv4Cidr,
    gateway: Ipv4Address,
    ports: Vec<Option<Port>>,
    /// Port owning each address of the subnet, by offset from the network
    /// address: one array index per frame instead of a search.
    by_offset: Vec<Option<PortId>>,
    service_cidr: Ipv4Cidr,
    services: ServiceTable,
    conntrack: Conntrack,
    cluster_dns: Ipv4Address,
    zone: Zone,
    dns_stats: DnsStats,
    /// Where the zone writes answers; kept to reuse its allocation.
    dns_buf: Vec<u8>,
    overlay: OverlayConfig,
    peers: PeerTable,
    overlay_port: Option<PortId>,
    /// The egress endpoint's port, when attached: off-subnet traffic from
    /// pods goes there instead of to the node's kernel.
    egress: Option<PortId>,
    /// The node's NetworkPolicy; empty, it costs the data path nothing.
    policy: PolicyTable,
}

impl Switch {
    /// An empty switch for `config.subnet`.
    pub fn new(config: SwitchConfig) -> Result<Switch, SwitchError> {
        if config.subnet.prefix_len() < 16 {
            return Err(SwitchError::SubnetTooLarge);
        }
        let network = config.subnet.network().address();
        let service_cidr = config.service_cidr.network();
        if service_cidr.contains_addr(&network) || config.subnet.contains_addr(&service_cidr.address()) {
            return Err(SwitchError::ServiceCidrOverlap);
        }
        if config.subnet.contains_addr(&config.cluster_dns) || config.cluster_dns.is_unspecified() {
            return Err(SwitchError::DnsAddress);
        }
        let zone = Zone::new(config.dns).map_err(SwitchError::Dns)?;
        let services = &config.services;
        Ok(Switch {
            subnet: Ipv4Cidr::new(network, config.subnet.prefix_len()),
            gateway: Ipv4Address::from(u32::from(network) + 1),
            ports: vec![None; config.max_ports as usize],
            by_offset: vec![None; 1 << (32 - config.subnet.prefix_len())],
            service_cidr,
            services: ServiceTable::new(services),
            conntrack: Conntrack::new(
                Capacity {
                    flows: services.max_flows as usize,
                    owners: usize::from(config.max_ports),
                    max_flows_per_pod: services.max_flows_per_pod as usize,
                },
                services.timeouts,
                services.hash_seed,
            ),
            cluster_dns: config.cluster_dns,
            zone,
            dns_stats: DnsStats::default(),
            dns_buf: Vec::new(),
            peers: PeerTable::new(config.overlay.max_peers),
            overlay: config.overlay,
            overlay_port: None,
            egress: None,
            policy: PolicyTable::default(),
        })
    }

    /// The service CIDR the switch DNATs for.
    pub fn service_cidr(&self) -> Ipv4Cidr {
        self.service_cidr
    }

    /// The Service table, read-only (change it with the methods below, which
    /// keep the flow table consistent).
    pub fn services(&self) -> &ServiceTable {
        &self.services
    }

    /// The flow table, read-only.
    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// Creates a service port or replaces its backends and affinity at once.
    /// Open TCP connections to backends no longer listed go on (a pod that
    /// is terminating finishes its work); UDP flows to them are dropped so
    /// the next datagram picks a live backend, as kube-proxy clears them.
    pub fn upsert_service(
        &mut self,
        key: ServiceKey,
        backends: &[Backend],
        affinity: Affinity,
    ) -> Result<(), ServiceError> {
        if !self.service_cidr.contains_addr(&ipv4_of(key.vip)) {
            return Err(ServiceError::OutsideServiceCidr);
        }
        self.services.upsert(key, backends, affinity)?;
        self.forget_udp_flows(&key, backends);
        Ok(())
    }

    /// Removes a service port. As with [`Switch::upsert_service`], its TCP
    /// connections live out their flows and its UDP flows are dropped.
    pub fn remove_service(&mut self, key: &ServiceKey) -> Result<(), ServiceError> {
        self.services.remove(key)?;
        self.forget_udp_flows(key, &[]);
        Ok(())
    }

    /// Changes the session affinity of a live service port.
    pub fn set_service_affinity(&mut self, key: ServiceKey, affinity: Affinity) -> Result<(), ServiceError> {
        self.services.set_affinity(key, affinity)
    }

    /// Removes flows idle past their timeout; the runtime calls this now and
    /// then (say every few seconds) so memory is reclaimed before it is
    /// needed. Returns how many went.
    pub fn expire_flows(&mut self, now: Instant) -> usize {
        self.conntrack.expire(now)
    }

    fn forget_udp_flows(&mut self, key: &ServiceKey, keep: &[Backend]) {
        if key.proto != Protocol::Udp {
            return;
        }
        self.conntrack.retain(|flow| {
            let (o, r) = (flow.original(), flow.reply());
            let backend = Backend { ip: r.src, port: r.src_port };
            o.proto != Protocol::Udp || o.dst != key.vip || o.dst_port != key.port || keep.contains(&backend)
        });
    }

    /// The gateway address of the pod subnet (the host port's address).
    pub fn gateway(&self) -> Ipv4Address {
        self.gateway
    }

    /// Attaches a port. Pod ports must use an address of the subnet; the host
    /// port always owns the gateway address, whatever `spec.ip` says; the
    /// overlay port owns no address (its `ip` becomes unspecified) and its
    /// MAC is the VTEP MAC of the switch's overlay config.
    pub fn attach(&mut self, mut spec: PortSpec) -> Result<PortId, SwitchError> {
        if spec.kind == PortKind::Overlay {
            if self.overlay_port.is_some() {
                return Err(SwitchError::OverlayPortExists);
            }
            spec.ip = Ipv4Address::UNSPECIFIED.into();
            spec.mac = self.overlay.vtep_mac;
            let slot = self.ports.iter().position(Option::is_none).ok_or(SwitchError::TableFull)?;
            let id = PortId(slot as u16);
            self.ports[slot] = Some(Port { spec, stats: PortStats::default() });
            self.overlay_port = Some(id);
            return Ok(id);
        }
        if spec.kind == PortKind::Egress {
            if self.egress.is_some() {
                return Err(SwitchError::HostPortExists);
            }
            let slot = self.ports.iter().position(Option::is_none).ok_or(SwitchError::TableFull)?;
            self.ports[slot] = Some(Port { spec, stats: PortStats::default() });
            self.egress = Some(PortId(slot as u16));
            return Ok(PortId(slot as u16));
        }
        if spec.kind == PortKind::Host {
            if self.owner(self.gateway).is_some() {
                return Err(SwitchError::HostPortExists);
            }
            spec.ip = self.gateway.into();
        }
        let offset = self.offset_of(spec.ip).ok_or(SwitchError::OutsideSubnet)?;
        if self.by_offset[offset].is_some() {
            return Err(SwitchError::AddressInUse);
        }
        let slot = self.ports.iter().position(Option::is_none).ok_or(SwitchError::TableFull)?;
        let id = PortId(slot as u16);
        self.ports[slot] = Some(Port { spec, stats: PortStats::default() });
        self.by_offset[offset] = Some(id);
        Ok(id)
    }

    /// Detaches a port, returning its final counters. The connections it
    /// opened through Services go with it: the next pod on its address or
    /// slot starts with none.
    pub fn detach(&mut self, id: PortId) -> Option<PortStats> {
        let port = self.ports.get_mut(id.0 as usize)?.take()?;
        self.conntrack.retain(|flow| flow.owner() != Owner(id.0));
        if self.overlay_port == Some(id) {
            self.overlay_port = None;
        }
        if port.spec.kind == PortKind::Egress {
            self.egress = None;
            return Some(port.stats);
        }
        if let Some(offset) = self.offset_of(port.spec.ip) {
            self.by_offset[offset] = None;
        }
        Some(port.stats)
    }

    /// A port's identity and counters.
    pub fn port(&self, id: PortId) -> Option<(&PortSpec, &PortStats)> {
        let port = self.ports.get(id.0 as usize)?.as_ref()?;
        Some((&port.spec, &port.stats))
    }

    /// Every attached port.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &PortSpec, &PortStats)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (PortId(i as u16), &p.spec, &p.stats)))
    }

    /// Decides what to do with `frame` (virtio-net header first), received on
    /// `ingress` at `now`. The frame may be rewritten in place; a reply is
    /// built in `reply`, which must hold at least [`MIN_REPLY_LEN`] bytes,
    /// and [`Switch::min_reply_len`] ([`MIN_DNS_REPLY_LEN`] with the default
    /// zone) for DNS answers to go out whole: larger ones are truncated to
    /// fit, and clients retry them over TCP.
    pub fn process(&mut self, now: Instant, ingress: PortId, frame: &mut [u8], reply: &mut [u8]) -> Verdict {
        let Some(port) = self.ports.get_mut(ingress.0 as usize).and_then(Option::as_mut) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        port.stats.rx_packets += 1;
        port.stats.rx_bytes += frame.len().saturating_sub(vnet::HEADER_LEN) as u64;
        let spec = port.spec;
        let frame_len = frame.len();
        let offload =
            vnet::Header::new_checked(&frame[..]).map(|h| vnet::Repr::parse(&h)).unwrap_or(vnet::Repr::PLAIN);

        let verdict = match EthernetFrame::new_checked(&mut frame[vnet::HEADER_LEN.min(frame_len)..]) {
            Err(_) => Verdict::Drop(DropReason::Malformed),
            // Overlay frames come with their sender: `process_overlay`.
            Ok(_) if spec.kind == PortKind::Overlay => Verdict::Drop(DropReason::UnknownPeer),
            Ok(eth) if eth.src_addr() != spec.mac => Verdict::Drop(DropReason::SpoofedMac),
            Ok(mut eth) => match eth.ethertype() {
                EthernetProtocol::Arp => self.answer_arp(&spec, &mut eth, reply),
                EthernetProtocol::Ipv4 => self.route_ipv4(now, ingress, &spec, &offload, &mut eth, reply),
                _ => Verdict::Drop(DropReason::UnsupportedProtocol),
            },
        };

        self.account(ingress, frame_len, verdict);
        verdict
    }

    /// Counts a verdict on the ports it touches.
    fn account(&mut self, ingress: PortId, frame_len: usize, verdict: Verdict) {
        let (port, len) = match verdict {
            Verdict::Forward { egress } => (egress, frame_len),
            Verdict::Reply { len } => (ingress, len),
            Verdict::Encapsulate { .. } => match self.overlay_port {
                Some(overlay) => (overlay, frame_len),
                None => return,
            },
            // Sent, if at all, by the runtime through `dns_reply_frame`.
            Verdict::Upstream(_) => return,
            Verdict::Drop(reason) => {
                if let Some(port) = self.port_mut(ingress) {
                    port.stats.count_drop(reason);
                }
                return;
            }
        };
        if let Some(port) = self.port_mut(port) {
            port.stats.tx_packets += 1;
            port.stats.tx_bytes += len.saturating_sub(vnet::HEADER_LEN) as u64;
        }
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut Port> {
        self.ports.get_mut(id.0 as usize)?.as_mut()
    }

    /// The port that owns `ip` on this subnet (the host port for the gateway).
    fn owner(&self, ip: impl Into<IpAddress>) -> Option<(PortId, &PortSpec)> {
        let id = self.by_offset[self.offset_of(ip.into())?]?;
        Some((id, &self.ports[id.0 as usize].as_ref()?.spec))
    }

    /// Where `ip` sits in the address table: its offset in the node
    /// subnet. (An IPv6 subnet will index its own table here.)
    fn offset_of(&self, ip: IpAddress) -> Option<usize> {
        match ip {
            IpAddress::Ipv4(ip) => self
                .subnet
                .contains_addr(&ip)
                .then(|| (u32::from(ip) - u32::from(self.subnet.network().address())) as usize),
        }
    }
}

#[cfg(test)]
mod dns_tests;
#[cfg(test)]
mod overlay_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod tests;
