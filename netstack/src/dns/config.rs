//! What a zone is built with: its name, TTL, capacities and cluster ranges.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::wire::{Ipv4Address, Ipv4Cidr};

/// Name, TTL, table capacities and address ranges of a [`super::Zone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster domain, `cluster.local` by default (a trailing dot is allowed).
    pub domain: String,
    /// TTL of every record and of negative answers, 5 s by default as in CoreDNS.
    pub ttl: u32,
    /// Capacity of the service table (ClusterIP, headless and ExternalName).
    pub max_services: usize,
    /// Capacity for ready endpoints, summed over all headless services.
    pub max_endpoints: usize,
    /// Capacity of the pod table.
    pub max_pods: usize,
    /// Address ranges the cluster owns (pod and service CIDRs): reverse
    /// lookups inside them are answered here, NXDOMAIN when unknown, instead
    /// of leaking to the upstream resolver.
    pub cluster_cidrs: Vec<Ipv4Cidr>,
    /// Largest UDP response we send to EDNS0 clients, and the buffer size we
    /// advertise; 1232 by default (DNS flag day 2020: no IP fragmentation).
    pub max_udp_payload: u16,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        ZoneConfig {
            domain: String::from("cluster.local"),
            ttl: 5,
            max_services: 1024,
            max_endpoints: 4096,
            max_pods: 1024,
            cluster_cidrs: vec![
                Ipv4Cidr::new(Ipv4Address::new(10, 244, 0, 0), 16),
                Ipv4Cidr::new(Ipv4Address::new(10, 96, 0, 0), 12),
            ],
            max_udp_payload: 1232,
        }
    }
}
