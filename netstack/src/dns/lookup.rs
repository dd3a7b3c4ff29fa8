//! Name resolution inside the zone, per the Kubernetes DNS specification:
//! which records a query name owns, whether it exists at all, or whether it
//! belongs upstream. Record types are filtered later, so that a known name
//! asked for another type is NODATA and not NXDOMAIN.

use alloc::vec;
use alloc::vec::Vec;

use domain::base::{Name, Rtype};

use crate::wire::{Ipv4Address, Ipv4Cidr};

use super::name::{self, Labels};
use super::records::{EntryKind, ServiceEntry};
use super::zone::{Zone, lookup_key, split_key};

/// `dns-version.<zone>` TXT: the schema version CoreDNS reports.
pub(super) const DNS_SCHEMA_VERSION: &[u8] = b"1.1.0";

/// One record's data; its owner is the query name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Data {
    /// An address.
    A(Ipv4Address),
    /// A service port; `target_ip` becomes an A record in the additional section.
    Srv {
        /// Port number.
        port: u16,
        /// `<svc>.<ns>.svc.<zone>` or `<host>.<svc>.<ns>.svc.<zone>`.
        target: Name<Vec<u8>>,
        /// The address of `target`.
        target_ip: Ipv4Address,
    },
    /// A reverse pointer.
    Ptr(Name<Vec<u8>>),
    /// An ExternalName alias.
    Cname(Name<Vec<u8>>),
    /// The schema version.
    Txt(&'static [u8]),
    /// The zone's SOA (only at the apex).
    Soa,
}

impl Data {
    /// The record type this data is sent as.
    pub(super) fn rtype(&self) -> Rtype {
        match self {
            Data::A(_) => Rtype::A,
            Data::Srv { .. } => Rtype::SRV,
            Data::Ptr(_) => Rtype::PTR,
            Data::Cname(_) => Rtype::CNAME,
            Data::Txt(_) => Rtype::TXT,
            Data::Soa => Rtype::SOA,
        }
    }
}

/// Which apex a negative answer's SOA is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Apex {
    /// `<zone>`
    Cluster,
    /// `in-addr.arpa`, for the cluster's address ranges.
    Reverse,
}

/// Result of looking a name up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Not ours: the runtime forwards the query.
    Forward,
    /// The name exists and owns `records` (possibly none: an empty non-terminal).
    Found {
        /// Every record at the name, of every type.
        records: Vec<Data>,
        /// The zone the name is in.
        apex: Apex,
    },
    /// The name does not exist in the zone.
    NxDomain(Apex),
}

const IN_ADDR_ARPA: [&[u8]; 2] = [b"in-addr", b"arpa"];

impl Zone {
    /// Resolves a (lowercased) query name.
    pub(super) fn lookup(&self, q: &Labels) -> Lookup {
        if q.ends_with(&self.labels) {
            self.lookup_cluster(q, q.len() - self.labels.len())
        } else if q.ends_with(&IN_ADDR_ARPA) {
            self.lookup_reverse(q, q.len() - IN_ADDR_ARPA.len())
        } else {
            Lookup::Forward
        }
    }

    /// `n` labels in front of the zone.
    fn lookup_cluster(&self, q: &Labels, n: usize) -> Lookup {
        if !(0..n).all(|i| name::is_lookup_label(q.get(i))) {
            return Lookup::NxDomain(Apex::Cluster);
        }
        if n == 0 {
            return found(vec![Data::Soa]);
        }
        match q.get(n - 1) {
            b"svc" => self.lookup_svc(q, n - 1),
            b"pod" => self.lookup_pod(q, n - 1),
            b"dns-version" if n == 1 => found(vec![Data::Txt(DNS_SCHEMA_VERSION)]),
            _ => Lookup::NxDomain(Apex::Cluster),
        }
    }

    /// `m` labels in front of `svc.<zone>`: `[[_port._proto.|host.]svc.]ns`.
    fn lookup_svc(&self, q: &Labels, m: usize) -> Lookup {
        if m == 0 {
            return found(Vec::new());
        }
        let ns = q.get(m - 1);
        if m == 1 {
            return self.namespace(ns);
        }
        let svc = q.get(m - 2);
        let mut key = [0; 128];
        let Some(entry) = self.services.get(lookup_key(ns, svc, &mut key)) else {
            return Lookup::NxDomain(Apex::Cluster);
        };
        // A headless service without ready endpoints does not exist, nor does
        // anything under it (the spec's NXDOMAIN).
        if matches!(&entry.kind, EntryKind::Headless(e) if e.is_empty()) {
            return Lookup::NxDomain(Apex::Cluster);
        }
        match m {
            2 => found(self.service_records(entry)),
            3 => {
                let first = q.get(0);
                match first.strip_prefix(b"_") {
                    // `_proto.<svc>…` exists as the parent of its SRV names.
                    Some(proto) if entry.ports.iter().any(|p| p.protocol.srv_label() == proto) => {
                        found(Vec::new())
                    }
                    Some(_) => Lookup::NxDomain(Apex::Cluster),
                    None => self.endpoint_records(entry, first),
                }
            }
            4 => self.srv_records(entry, q.get(0), q.get(1), svc, ns),
            _ => Lookup::NxDomain(Apex::Cluster),
        }
    }

    /// `<svc>.<ns>.svc.<zone>`.
    fn service_records(&self, entry: &ServiceEntry) -> Vec<Data> {
        match &entry.kind {
            EntryKind::ClusterIp(ip) => vec![Data::A(*ip)],
            EntryKind::Headless(endpoints) => endpoints.iter().map(|e| Data::A(e.ip)).collect(),
            // Validated when stored; an unparsable target would only leave
            // the name without records.
            EntryKind::ExternalName(target) => {
                Name::from_octets(target.to_vec()).map(|target| vec![Data::Cname(target)]).unwrap_or_default()
            }
        }
    }

    /// `<host>.<svc>.<ns>.svc.<zone>`: headless services only.
    fn endpoint_records(&self, entry: &ServiceEntry, host: &[u8]) -> Lookup {
        let EntryKind::Headless(endpoints) = &entry.kind else {
            return Lookup::NxDomain(Apex::Cluster);
        };
        let records: Vec<Data> =
            endpoints.iter().filter(|e| e.label().as_ref() == host).map(|e| Data::A(e.ip)).collect();
        if records.is_empty() { Lookup::NxDomain(Apex::Cluster) } else { found(records) }
    }

    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`.
    fn srv_records(&self, entry: &ServiceEntry, port: &[u8], proto: &[u8], svc: &[u8], ns: &[u8]) -> Lookup {
        let (Some(port), Some(proto)) = (port.strip_prefix(b"_"), proto.strip_prefix(b"_")) else {
            return Lookup::NxDomain(Apex::Cluster);
        };
        let mut records = Vec::new();
        for p in entry.ports.iter().filter(|p| p.name() == port && p.protocol.srv_label() == proto) {
            match &entry.kind {
                EntryKind::ClusterIp(ip) => {
                    if let Some(target) = self.service_name(svc, ns) {
                        records.push(Data::Srv { port: p.port, target, target_ip: *ip });
                    }
                }
                EntryKind::Headless(endpoints) => {
                    for e in endpoints.iter() {
                        let host = e.label();
                        if let Some(target) = name::join(&[host.as_ref(), svc, ns, b"svc"], &self.wire) {
                            records.push(Data::Srv { port: p.port, target, target_ip: e.ip });
                        }
                    }
                }
                EntryKind::ExternalName(_) => {}
            }
        }
        if records.is_empty() { Lookup::NxDomain(Apex::Cluster) } else { found(records) }
    }

    /// `m` labels in front of `pod.<zone>`: `[a-b-c-d.]ns`.
    fn lookup_pod(&self, q: &Labels, m: usize) -> Lookup {
        match m {
            0 => found(Vec::new()),
            1 => self.namespace(q.get(0)),
            2 => {
                let ns = q.get(1);
                match name::parse_dashed(q.get(0)) {
                    Some(ip) if self.pods.get(&u32::from(ip)).is_some_and(|p| &p[..] == ns) => {
                        found(vec![Data::A(ip)])
                    }
                    _ => Lookup::NxDomain(Apex::Cluster),
                }
            }
            _ => Lookup::NxDomain(Apex::Cluster),
        }
    }

    /// `<ns>.svc.<zone>` and `<ns>.pod.<zone>` exist while the namespace has
    /// a service or a pod.
    fn namespace(&self, ns: &[u8]) -> Lookup {
        if self.namespaces.contains_key(ns) { found(Vec::new()) } else { Lookup::NxDomain(Apex::Cluster) }
    }

    /// `k` labels in front of `in-addr.arpa`.
    fn lookup_reverse(&self, q: &Labels, k: usize) -> Lookup {
        // Octets read from the right: `d.c.b.a.in-addr.arpa` is a.b.c.d.
        let mut octets = [0u8; 4];
        let mut parsed = 0;
        while parsed < 4 && parsed < k {
            match name::parse_octet(q.get(k - 1 - parsed)) {
                Some(octet) => octets[parsed] = octet,
                None => break,
            }
            parsed += 1;
        }
        let prefix = Ipv4Cidr::new(Ipv4Address::from_octets(octets), 8 * parsed as u8);
        let ours = self.in_cluster(prefix);
        if parsed == 4 && k == 4 {
            let records = self.ptr_records(prefix.address());
            if !records.is_empty() {
                return Lookup::Found { records, apex: Apex::Reverse };
            }
        }
        match (ours, parsed == k) {
            (false, _) => Lookup::Forward,
            // A shorter name inside our ranges (`0.244.10.in-addr.arpa`) is
            // an empty non-terminal: NODATA, never NXDOMAIN, which would
            // deny everything below it (RFC 8020).
            (true, true) if parsed < 4 => Lookup::Found { records: Vec::new(), apex: Apex::Reverse },
            (true, _) => Lookup::NxDomain(Apex::Reverse),
        }
    }

    /// Whether `prefix` lies inside one of the cluster's ranges.
    fn in_cluster(&self, prefix: Ipv4Cidr) -> bool {
        self.config
            .cluster_cidrs
            .iter()
            .any(|cidr| cidr.prefix_len() <= prefix.prefix_len() && cidr.contains_addr(&prefix.address()))
    }

    /// PTR targets of `ip`: services and headless endpoints, else the pod name.
    fn ptr_records(&self, ip: Ipv4Address) -> Vec<Data> {
        let key = u32::from(ip);
        let mut records = Vec::new();
        for (_, svc_key) in self.reverse.range((key, Default::default())..).take_while(|(k, _)| *k == key) {
            let Some(entry) = self.services.get(svc_key) else {
                continue;
            };
            let (ns, svc) = split_key(svc_key);
            match &entry.kind {
                EntryKind::ClusterIp(cluster_ip) if *cluster_ip == ip => {
                    records.extend(self.service_name(svc, ns).map(Data::Ptr));
                }
                EntryKind::Headless(endpoints) => {
                    for e in endpoints.iter().filter(|e| e.ip == ip) {
                        let host = e.label();
                        records
                            .extend(name::join(&[host.as_ref(), svc, ns, b"svc"], &self.wire).map(Data::Ptr));
                    }
                }
                _ => {}
            }
        }
        if records.is_empty()
            && let Some(ns) = self.pods.get(&key)
        {
            let (dashed, len) = name::dashed(ip);
            records.extend(name::join(&[&dashed[..len], ns, b"pod"], &self.wire).map(Data::Ptr));
        }
        records
    }

    /// `<svc>.<ns>.svc.<zone>`.
    fn service_name(&self, svc: &[u8], ns: &[u8]) -> Option<Name<Vec<u8>>> {
        name::join(&[svc, ns, b"svc"], &self.wire)
    }
}

fn found(records: Vec<Data>) -> Lookup {
    Lookup::Found { records, apex: Apex::Cluster }
}
