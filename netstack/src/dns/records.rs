//! What the runtime tells the zone about services, and the compact form the
//! zone keeps them in.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use crate::Protocol;
use crate::wire::Ipv4Address;

use super::name::{self, MAX_PORT_NAME};

/// A Service as the DNS sees it; the runtime builds one from its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Service name, an RFC 1123 label.
    pub name: String,
    /// Namespace, an RFC 1123 label.
    pub namespace: String,
    /// Ports; only named ones get SRV records.
    pub ports: Vec<ServicePort>,
    /// ClusterIP, headless or ExternalName, with what each needs.
    pub kind: ServiceKind,
}

/// The three shapes of Service the DNS specification distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A virtual IP from the service CIDR.
    ClusterIp(Ipv4Address),
    /// `clusterIP: None`: the ready endpoints are published directly.
    Headless(Vec<Endpoint>),
    /// An alias (CNAME) to a name outside the cluster, e.g. `db.example.com`.
    ExternalName(String),
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port name (at most 15 bytes, RFC 1123 characters), if any.
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
    /// The transport protocol.
    pub protocol: Protocol,
}

/// A ready endpoint of a headless service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod address.
    pub ip: Ipv4Address,
    /// `hostname` from the endpoint (the pod's `spec.hostname` when it sets
    /// `spec.subdomain`); without one the name is derived from the address.
    pub hostname: Option<String>,
}

/// How a service is kept: only what answers need, in as few bytes as fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServiceEntry {
    /// Shape-specific data.
    pub(super) kind: EntryKind,
    /// Named ports only: unnamed ones produce no record.
    pub(super) ports: Box<[PortEntry]>,
}

/// Stored form of [`ServiceKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// The ClusterIP.
    ClusterIp(Ipv4Address),
    /// The ready endpoints.
    Headless(Box<[EndpointEntry]>),
    /// The CNAME target in wire form.
    ExternalName(Box<[u8]>),
}

/// A named port, inline so that ports cost no allocation of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PortEntry {
    name: [u8; MAX_PORT_NAME],
    name_len: u8,
    /// The port number.
    pub(super) port: u16,
    /// The protocol.
    pub(super) protocol: Protocol,
}

impl PortEntry {
    /// A named port; `None` unless `port_name` is a valid port name.
    pub(super) fn new(port_name: &str, port: u16, protocol: Protocol) -> Option<PortEntry> {
        let bytes = port_name.as_bytes();
        if !name::is_dns_label(bytes) || bytes.len() > MAX_PORT_NAME {
            return None;
        }
        let mut name = [0; MAX_PORT_NAME];
        name[..bytes.len()].copy_from_slice(bytes);
        Some(PortEntry { name, name_len: bytes.len() as u8, port, protocol })
    }

    /// The port name.
    pub(super) fn name(&self) -> &[u8] {
        &self.name[..self.name_len as usize]
    }
}

/// A stored endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EndpointEntry {
    /// The pod address.
    pub(super) ip: Ipv4Address,
    /// The explicit hostname, if the endpoint had one.
    hostname: Option<Box<[u8]>>,
}

impl EndpointEntry {
    /// Stores an endpoint; `None` unless its hostname is a valid label.
    pub(super) fn new(endpoint: &Endpoint) -> Option<EndpointEntry> {
        let hostname = match &endpoint.hostname {
            Some(h) if name::is_dns_label(h.as_bytes()) => Some(h.as_bytes().into()),
            Some(_) => return None,
            None => None,
        };
        Some(EndpointEntry { ip: endpoint.ip, hostname })
    }

    /// The label naming this endpoint under its service: its hostname, or
    /// the address with dashes.
    pub(super) fn label(&self) -> HostLabel<'_> {
        match &self.hostname {
            Some(h) => HostLabel::Given(h),
            None => {
                let (buf, len) = name::dashed(self.ip);
                HostLabel::Derived(buf, len)
            }
        }
    }
}

/// An endpoint's label, borrowed or derived on the stack.
pub(super) enum HostLabel<'a> {
    /// From the endpoint's hostname.
    Given(&'a [u8]),
    /// `a-b-c-d` from the address.
    Derived([u8; 15], usize),
}

impl AsRef<[u8]> for HostLabel<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            HostLabel::Given(h) => h,
            HostLabel::Derived(buf, len) => &buf[..*len],
        }
    }
}
