//! The zone's tables and the update API the runtime calls as services and
//! pods come and go.
//!
//! Services are keyed `namespace NUL name`: sorted by namespace, so "does this
//! namespace exist" is a neighbour lookup, and never ambiguous, because a NUL
//! is not a valid label byte. Every table is an ordered map, so a query costs
//! a few logarithmic lookups and no scan.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::fmt;

use crate::wire::Ipv4Address;

use super::config::ZoneConfig;
use super::name::{self, MAX_NAME_WIRE};
use super::records::{EndpointEntry, EntryKind, PortEntry, Service, ServiceEntry, ServiceKind};

/// Named ports kept per service; more would not fit a UDP answer anyway.
pub(super) const MAX_PORTS_PER_SERVICE: usize = 64;

/// Why the zone refused an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneError {
    /// The service table is at `max_services`.
    ServicesFull,
    /// Adding these endpoints would exceed `max_endpoints`.
    EndpointsFull,
    /// The pod table is at `max_pods`.
    PodsFull,
    /// The service has more than 64 named ports.
    TooManyPorts,
    /// A name, namespace, port name, hostname or ExternalName is not valid.
    InvalidName,
    /// A name the zone would serve is longer than 255 bytes on the wire.
    NameTooLong,
    /// The configured cluster domain is not a valid domain name.
    InvalidDomain,
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ZoneError::ServicesFull => {
                "DNS service table full (raise limits.max_services in the board config)"
            }
            ZoneError::EndpointsFull => {
                "DNS endpoint table full (ZoneConfig::max_endpoints, not a board-config key)"
            }
            ZoneError::PodsFull => "DNS pod table full (raise limits.max_cluster_pods in the board config)",
            ZoneError::TooManyPorts => "service has more than 64 named ports",
            ZoneError::InvalidName => "not a valid DNS label or name",
            ZoneError::NameTooLong => "record name longer than 255 bytes",
            ZoneError::InvalidDomain => "cluster domain is not a valid domain name",
        })
    }
}

impl core::error::Error for ZoneError {}

/// The cluster zone: configuration plus the records fed by the runtime.
#[derive(Debug, Clone)]
pub struct Zone {
    pub(super) config: ZoneConfig,
    /// The domain's labels, lowercase, leftmost first.
    pub(super) labels: Vec<Box<[u8]>>,
    /// The domain in wire form, root label included.
    pub(super) wire: Vec<u8>,
    pub(super) services: BTreeMap<Box<[u8]>, ServiceEntry>,
    /// (address, service key) for every ClusterIP and endpoint address: the
    /// PTR index.
    pub(super) reverse: BTreeSet<(u32, Box<[u8]>)>,
    /// Pod address → namespace.
    pub(super) pods: BTreeMap<u32, Box<[u8]>>,
    /// Namespace → number of services and pods in it (empty non-terminals
    /// `<ns>.svc` and `<ns>.pod` exist while it is non-zero).
    pub(super) namespaces: BTreeMap<Box<[u8]>, u32>,
    endpoints: usize,
    /// SOA serial, bumped on every change.
    pub(super) serial: u32,
}

impl Zone {
    /// An empty zone.
    pub fn new(config: ZoneConfig) -> Result<Zone, ZoneError> {
        let lower = config.domain.to_ascii_lowercase();
        let wire = name::dotted_to_wire(&lower).ok_or(ZoneError::InvalidDomain)?;
        let labels: Vec<Box<[u8]>> =
            lower.strip_suffix('.').unwrap_or(&lower).split('.').map(|l| Box::from(l.as_bytes())).collect();
        if !labels.iter().all(|l| name::is_dns_label(l)) {
            return Err(ZoneError::InvalidDomain);
        }
        Ok(Zone {
            config,
            labels,
            wire,
            services: BTreeMap::new(),
            reverse: BTreeSet::new(),
            pods: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            endpoints: 0,
            serial: 1,
        })
    }

    /// The configuration the zone was built with.
    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    /// Number of services held.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Number of headless-service endpoints held.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints
    }

    /// Number of pods held.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The SOA serial: changes whenever the records do.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Adds or replaces a service. On error the zone is unchanged.
    pub fn upsert_service(&mut self, service: &Service) -> Result<(), ZoneError> {
        let key = service_key(&service.namespace, &service.name)?;
        let entry = self.entry_for(service)?;
        let old = self.services.get(&key[..]);
        let old_endpoints = old.map_or(0, endpoint_count);
        if old.is_none() && self.services.len() >= self.config.max_services {
            return Err(ZoneError::ServicesFull);
        }
        let endpoints = self.endpoints - old_endpoints + endpoint_count(&entry);
        if endpoints > self.config.max_endpoints {
            return Err(ZoneError::EndpointsFull);
        }
        match self.services.remove(&key[..]) {
            Some(old) => self.unindex(&key, &old),
            None => self.count_namespace(service.namespace.as_bytes(), true),
        }
        self.index(&key, &entry);
        self.services.insert(key, entry);
        self.endpoints = endpoints;
        self.bump();
        Ok(())
    }

    /// Removes a service; `false` if there was none by that name.
    pub fn remove_service(&mut self, namespace: &str, name: &str) -> bool {
        let Ok(key) = service_key(namespace, name) else {
            return false;
        };
        let Some(old) = self.services.remove(&key[..]) else {
            return false;
        };
        self.unindex(&key, &old);
        self.endpoints -= endpoint_count(&old);
        self.count_namespace(namespace.as_bytes(), false);
        self.bump();
        true
    }

    /// Adds a pod (for `a-b-c-d.<ns>.pod.<zone>` and its PTR) or moves it to
    /// another namespace.
    pub fn upsert_pod(&mut self, ip: Ipv4Address, namespace: &str) -> Result<(), ZoneError> {
        let ns = namespace.as_bytes();
        if !name::is_dns_label(ns) {
            return Err(ZoneError::InvalidName);
        }
        let (dashed, len) = name::dashed(ip);
        if name::wire_len(&[&dashed[..len], ns, b"pod"], &self.wire) > MAX_NAME_WIRE {
            return Err(ZoneError::NameTooLong);
        }
        let key = u32::from(ip);
        match self.pods.get(&key) {
            Some(old) if &old[..] == ns => return Ok(()),
            Some(_) => {}
            None if self.pods.len() >= self.config.max_pods => return Err(ZoneError::PodsFull),
            None => {}
        }
        if let Some(old) = self.pods.insert(key, ns.into()) {
            self.count_namespace(&old, false);
        }
        self.count_namespace(ns, true);
        self.bump();
        Ok(())
    }

    /// Removes a pod; `false` if the address was not registered.
    pub fn remove_pod(&mut self, ip: Ipv4Address) -> bool {
        match self.pods.remove(&u32::from(ip)) {
            Some(ns) => {
                self.count_namespace(&ns, false);
                self.bump();
                true
            }
            None => false,
        }
    }

    /// Validates `service` and converts it to its stored form.
    fn entry_for(&self, service: &Service) -> Result<ServiceEntry, ZoneError> {
        let svc = service.name.as_bytes();
        let ns = service.namespace.as_bytes();
        let mut ports = Vec::new();
        for port in &service.ports {
            if let Some(port_name) = &port.name {
                let entry =
                    PortEntry::new(port_name, port.port, port.protocol).ok_or(ZoneError::InvalidName)?;
                if ports.len() == MAX_PORTS_PER_SERVICE {
                    return Err(ZoneError::TooManyPorts);
                }
                ports.push(entry);
            }
        }
        // The longest name served: `<host>.<svc>.<ns>.svc.<zone>` (a plain
        // `<svc>.<ns>.svc.<zone>` for the other kinds).
        let mut longest_host = 0;
        let kind = match &service.kind {
            ServiceKind::ClusterIp(ip) => EntryKind::ClusterIp(*ip),
            ServiceKind::Headless(endpoints) => {
                let mut stored = Vec::with_capacity(endpoints.len());
                for endpoint in endpoints {
                    let entry = EndpointEntry::new(endpoint).ok_or(ZoneError::InvalidName)?;
                    longest_host = longest_host.max(1 + entry.label().as_ref().len());
                    stored.push(entry);
                }
                EntryKind::Headless(stored.into_boxed_slice())
            }
            ServiceKind::ExternalName(target) => EntryKind::ExternalName(
                name::dotted_to_wire(target).ok_or(ZoneError::InvalidName)?.into_boxed_slice(),
            ),
        };
        if name::wire_len(&[svc, ns, b"svc"], &self.wire) + longest_host > MAX_NAME_WIRE {
            return Err(ZoneError::NameTooLong);
        }
        Ok(ServiceEntry { kind, ports: ports.into_boxed_slice() })
    }

    fn index(&mut self, key: &[u8], entry: &ServiceEntry) {
        for ip in addresses(entry) {
            self.reverse.insert((ip, key.into()));
        }
    }

    fn unindex(&mut self, key: &[u8], entry: &ServiceEntry) {
        for ip in addresses(entry) {
            self.reverse.remove(&(ip, Box::from(key)));
        }
    }

    fn count_namespace(&mut self, ns: &[u8], add: bool) {
        if add {
            *self.namespaces.entry(ns.into()).or_insert(0) += 1;
        } else if let Some(count) = self.namespaces.get_mut(ns) {
            *count -= 1;
            if *count == 0 {
                self.namespaces.remove(ns);
            }
        }
    }

    fn bump(&mut self) {
        self.serial = self.serial.wrapping_add(1);
    }
}

/// `namespace NUL name`, both checked to be RFC 1123 labels.
fn service_key(namespace: &str, name: &str) -> Result<Box<[u8]>, ZoneError> {
    let (ns, svc) = (namespace.as_bytes(), name.as_bytes());
    if !name::is_dns_label(ns) || !name::is_dns_label(svc) {
        return Err(ZoneError::InvalidName);
    }
    let mut key = Vec::with_capacity(ns.len() + 1 + svc.len());
    key.extend_from_slice(ns);
    key.push(0);
    key.extend_from_slice(svc);
    Ok(key.into_boxed_slice())
}

/// Splits a service key back into (namespace, name).
pub(super) fn split_key(key: &[u8]) -> (&[u8], &[u8]) {
    match key.iter().position(|c| *c == 0) {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => (key, &[]),
    }
}

/// The key for a lookup from query labels, built on the stack: labels are at
/// most 63 bytes each, so 127 bytes always suffice.
pub(super) fn lookup_key<'b>(ns: &[u8], name: &[u8], buf: &'b mut [u8; 128]) -> &'b [u8] {
    let len = (ns.len() + 1 + name.len()).min(buf.len());
    let ns_len = ns.len().min(len);
    buf[..ns_len].copy_from_slice(&ns[..ns_len]);
    if ns_len < len {
        buf[ns_len] = 0;
        let rest = len - ns_len - 1;
        buf[ns_len + 1..len].copy_from_slice(&name[..rest]);
    }
    &buf[..len]
}

fn endpoint_count(entry: &ServiceEntry) -> usize {
    match &entry.kind {
        EntryKind::Headless(endpoints) => endpoints.len(),
        _ => 0,
    }
}

/// Addresses a service answers PTR queries for.
fn addresses(entry: &ServiceEntry) -> impl Iterator<Item = u32> + '_ {
    let (cluster_ip, endpoints) = match &entry.kind {
        EntryKind::ClusterIp(ip) => (Some(u32::from(*ip)), &[][..]),
        EntryKind::Headless(endpoints) => (None, &endpoints[..]),
        EntryKind::ExternalName(_) => (None, &[][..]),
    };
    cluster_ip.into_iter().chain(endpoints.iter().map(|e| u32::from(e.ip)))
}
