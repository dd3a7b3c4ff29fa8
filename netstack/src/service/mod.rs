//! The Service (ClusterIP) table: (VIP, port, protocol) → the ready backends,
//! backend selection for new connections, and ClientIP session affinity.
//!
//! The runtime fills it from the control plane between frames
//! ([`crate::switch::Switch::upsert_service`]); the data path only asks it
//! for a backend when a connection's first packet arrives — every later
//! packet follows its conntrack entry.
//!
//! Spread: round-robin per service. Each new connection (or new UDP flow)
//! without a sticky client takes the next backend in the list, so N
//! connections over k backends land exactly ⌈N/k⌉ or ⌊N/k⌋ on each; this is
//! what IPVS's `rr` does and is easier to test than iptables' random
//! probabilities. A weight is a backend listed more than once.
//!
//! Affinity: with `ClientIP`, a client's first connection records which
//! backend it got; later connections from that client IP reuse it while the
//! record is younger than the timeout, counted from the last *new
//! connection* (as kube-proxy's `recent` match does), not from the last
//! packet.

mod affinity;
pub mod refuse;

use core::fmt;

use alloc::vec;
use alloc::vec::Vec;

use crate::Protocol;
pub use crate::conntrack::Timeouts;
use crate::table::{Index, Slab, addr_word, hash2};
use crate::wire::{IpAddress, Ipv4Address};
use crate::{Duration, Instant};
use affinity::AffinityTable;

/// Identifies one port of a Service: what clients connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The ClusterIP, inside the switch's service CIDR.
    pub vip: IpAddress,
    /// The Service port (`port:` in the Service spec).
    pub port: u16,
    /// TCP or UDP.
    pub proto: Protocol,
}

impl ServiceKey {
    fn hash(&self, seed: u64) -> u64 {
        let a = (addr_word(self.vip) << 32) | (u64::from(self.port) << 8) | self.proto as u64;
        hash2(seed, a, 0x5e5e)
    }
}

/// One ready endpoint of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// The pod's IP.
    pub ip: IpAddress,
    /// The pod's port (`targetPort` resolved to a number).
    pub port: u16,
}

/// `sessionAffinity` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    /// Every new connection is balanced on its own.
    None,
    /// Connections from one client IP stick to one backend while the
    /// client keeps opening connections at least once per `timeout`.
    ClientIp {
        /// `sessionAffinityConfig.clientIP.timeoutSeconds`.
        timeout: Duration,
    },
}

impl Affinity {
    /// The Kubernetes default ClientIP timeout, 10800 s (3 h).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10_800);

    /// ClientIP affinity with the default timeout.
    pub const CLIENT_IP: Affinity = Affinity::ClientIp { timeout: Self::DEFAULT_TIMEOUT };
}

/// Table sizes and flow timeouts, from the board config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Service ports the table holds (a Service with two ports takes two).
    pub max_services: u16,
    /// Backends per service port.
    pub max_backends: u16,
    /// Tracked connections (see [`crate::conntrack::Conntrack::BYTES_PER_FLOW`]).
    pub max_flows: u32,
    /// Live tracked connections one switch port (a pod) may hold: the
    /// board config's `limits.max_flows_per_pod`, under the same name down
    /// to conntrack ([`crate::conntrack::Capacity::max_flows_per_pod`]).
    pub max_flows_per_pod: u32,
    /// ClientIP affinity records, over all services.
    pub max_affinities: u32,
    /// Conntrack idle timeouts.
    pub timeouts: Timeouts,
    /// Keys the table hashes; the runtime passes a random value.
    pub hash_seed: u64,
}

impl Default for ServiceConfig {
    /// Sized for a small board: about 1 MiB of flow table in all.
    fn default() -> Self {
        ServiceConfig {
            max_services: 256,
            max_backends: 32,
            max_flows: 16_384,
            max_flows_per_pod: 4096,
            max_affinities: 4096,
            timeouts: Timeouts::default(),
            hash_seed: 0,
        }
    }
}

/// Why a service change was refused. Nothing changes when one is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceError {
    /// The service table is at `max_services`.
    TableFull,
    /// More backends than `max_backends`.
    TooManyBackends,
    /// No service with this key.
    NotFound,
    /// The VIP is not inside the switch's service CIDR.
    OutsideServiceCidr,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceError::TableFull => "service table full (raise limits.max_services in the board config)",
            ServiceError::TooManyBackends => {
                "too many backends for one service (raise limits.max_backends in the board config)"
            }
            ServiceError::NotFound => "no such service",
            ServiceError::OutsideServiceCidr => "service IP outside the service CIDR",
        })
    }
}

impl core::error::Error for ServiceError {}

/// A service as the runtime last set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceInfo<'a> {
    /// The ready backends, in selection order.
    pub backends: &'a [Backend],
    /// Its session affinity.
    pub affinity: Affinity,
}

/// What [`ServiceTable::select`] found for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// No service at this (VIP, port, protocol).
    NoService,
    /// The service exists but has no ready backend.
    NoBackend,
    /// Send the connection here.
    Backend(Backend),
}

#[derive(Debug, Clone, Copy)]
struct Service {
    key: ServiceKey,
    len: u16,
    affinity: Affinity,
    /// Round-robin cursor: index of the next backend to hand out.
    next: u32,
}

/// The service table, fixed in size at construction.
#[derive(Debug, Clone)]
pub struct ServiceTable {
    services: Slab<Service>,
    index: Index,
    /// `max_backends` slots per service slot, so upserts never allocate.
    backends: Vec<Backend>,
    max_backends: usize,
    affinity: AffinityTable,
    seed: u64,
}

impl ServiceTable {
    /// An empty table sized by `config`.
    pub fn new(config: &ServiceConfig) -> ServiceTable {
        let (services, max_backends) = (usize::from(config.max_services), usize::from(config.max_backends));
        let unset = Backend { ip: IpAddress::Ipv4(Ipv4Address::UNSPECIFIED), port: 0 };
        ServiceTable {
            services: Slab::new(services),
            index: Index::new(services),
            backends: vec![unset; services * max_backends],
            max_backends,
            affinity: AffinityTable::new(config.max_affinities as usize, config.hash_seed),
            seed: config.hash_seed,
        }
    }

    /// Service ports in the table.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// True when no service is set.
    pub fn is_empty(&self) -> bool {
        self.services.len() == 0
    }

    /// The most service ports the table holds.
    pub fn capacity(&self) -> usize {
        self.services.capacity()
    }

    /// ClientIP affinity records held (expired ones not yet swept included).
    pub fn affinity_len(&self) -> usize {
        self.affinity.len()
    }

    /// New ClientIP clients left without a record because the affinity
    /// table was full of live records (their connections still worked).
    pub fn affinity_unrecorded(&self) -> u64 {
        self.affinity.unrecorded
    }

    /// A service by key.
    pub fn get(&self, key: &ServiceKey) -> Option<ServiceInfo<'_>> {
        let slot = self.find(key)?;
        let service = self.services.get(slot)?;
        Some(ServiceInfo { backends: self.backends_of(slot, service.len), affinity: service.affinity })
    }

    /// Every service.
    pub fn iter(&self) -> impl Iterator<Item = (ServiceKey, ServiceInfo<'_>)> {
        self.services.iter().map(|(slot, s)| {
            let info = ServiceInfo { backends: self.backends_of(slot, s.len), affinity: s.affinity };
            (s.key, info)
        })
    }

    /// Creates the service or replaces its backends and affinity at once.
    pub fn upsert(
        &mut self,
        key: ServiceKey,
        backends: &[Backend],
        affinity: Affinity,
    ) -> Result<(), ServiceError> {
        if backends.len() > self.max_backends {
            return Err(ServiceError::TooManyBackends);
        }
        let slot = match self.find(&key) {
            Some(slot) => slot,
            None => {
                let slot = self
                    .services
                    .insert(Service { key, len: 0, affinity, next: 0 })
                    .ok_or(ServiceError::TableFull)?;
                self.index.insert(key.hash(self.seed), slot);
                slot
            }
        };
        let start = slot as usize * self.max_backends;
        self.backends[start..start + backends.len()].copy_from_slice(backends);
        if let Some(service) = self.services.get_mut(slot) {
            service.len = backends.len() as u16;
        }
        self.set_affinity(key, affinity)
    }

    /// Removes a service and its affinity records.
    pub fn remove(&mut self, key: &ServiceKey) -> Result<(), ServiceError> {
        let slot = self.find(key).ok_or(ServiceError::NotFound)?;
        let (seed, services) = (self.seed, &self.services);
        self.index.remove(key.hash(seed), slot, |at| services.get(at).map_or(0, |s| s.key.hash(seed)));
        self.services.remove(slot);
        self.affinity.forget_service(slot as u16);
        Ok(())
    }

    /// Changes a live service's affinity. Turning it off forgets the
    /// clients recorded so far; a new timeout applies to existing records at
    /// once (records keep their last-use time, not a deadline).
    pub fn set_affinity(&mut self, key: ServiceKey, affinity: Affinity) -> Result<(), ServiceError> {
        let slot = self.find(&key).ok_or(ServiceError::NotFound)?;
        let service = self.services.get_mut(slot).ok_or(ServiceError::NotFound)?;
        service.affinity = affinity;
        if affinity == Affinity::None {
            self.affinity.forget_service(slot as u16);
        }
        Ok(())
    }

    /// Picks the backend for a new connection from `client` to `key`.
    pub fn select(&mut self, now: Instant, key: &ServiceKey, client: IpAddress) -> Selection {
        let Some(slot) = self.find(key) else {
            return Selection::NoService;
        };
        let Some(&service) = self.services.get(slot) else {
            return Selection::NoService;
        };
        let backends = &self.backends[slot as usize * self.max_backends..][..service.len as usize];
        if backends.is_empty() {
            return Selection::NoBackend;
        }
        let timeout = match service.affinity {
            Affinity::None => None,
            Affinity::ClientIp { timeout } => Some(timeout),
        };
        let sticky = timeout.and_then(|timeout| {
            // A record naming a backend that has since gone is ignored.
            self.affinity.get(now, client, slot as u16, timeout).filter(|b| backends.contains(b))
        });
        let backend = sticky.unwrap_or_else(|| backends[service.next as usize % backends.len()]);
        if sticky.is_none()
            && let Some(service) = self.services.get_mut(slot)
        {
            service.next = service.next.wrapping_add(1) % u32::from(service.len);
        }
        if timeout.is_some() {
            let services = &self.services;
            let timeout_of = |slot: u16| match services.get(u32::from(slot))?.affinity {
                Affinity::None => None,
                Affinity::ClientIp { timeout } => Some(timeout),
            };
            self.affinity.set(now, client, slot as u16, backend, timeout_of);
        }
        Selection::Backend(backend)
    }

    fn find(&self, key: &ServiceKey) -> Option<u32> {
        let services = &self.services;
        self.index.find(key.hash(self.seed), |at| services.get(at).is_some_and(|s| s.key == *key))
    }

    fn backends_of(&self, slot: u32, len: u16) -> &[Backend] {
        &self.backends[slot as usize * self.max_backends..][..usize::from(len)]
    }
}

#[cfg(test)]
mod datapath_tests;
#[cfg(test)]
mod tests;
