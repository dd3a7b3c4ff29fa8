//! What a node listens on for the outside: the node ports and LoadBalancer
//! ports of Services, and the host ports of its pods. Pure functions of the
//! model, shared by the control plane (to allocate and check) and the node
//! runtime (to bind and proxy).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::listeners::proxy::{Forward, ListenKey};
use crate::model::{HostPort, ModelError, PodSpec, Service, ServiceSpec, ServiceType};
use crate::store::PodRecord;

/// Host ports of one pod must not conflict among themselves.
pub fn check_host_ports(ports: &[HostPort]) -> Result<(), ModelError> {
    for (i, a) in ports.iter().enumerate() {
        if let Some(b) = ports[i + 1..].iter().find(|b| a.conflicts(b)) {
            return Err(ModelError::HostPortConflict(a.clone(), b.clone()));
        }
    }
    Ok(())
}

/// Who a node port, LoadBalancer port or host port belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A Service's node port or LoadBalancer port.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A pod's host port.
    Pod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

impl Owner {
    /// Whether a Service owns the port (a pod's host port may not take it).
    pub fn is_service(&self) -> bool {
        matches!(self, Owner::Service { .. })
    }
}

/// `service default/web` or `pod default/cam`, as messages name them.
impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Service { namespace, name } => write!(f, "service {namespace}/{name}"),
            Owner::Pod { namespace, name } => write!(f, "pod {namespace}/{name}"),
        }
    }
}

/// The owner of a Service's ports.
pub fn service_owner(spec: &ServiceSpec) -> Owner {
    Owner::Service { namespace: spec.namespace.clone(), name: spec.name.clone() }
}

/// The owner of a pod's host ports.
pub fn pod_owner(spec: &PodSpec) -> Owner {
    Owner::Pod { namespace: spec.namespace.clone(), name: spec.name.clone() }
}

/// The listener of a host port.
pub fn host_port_key(hp: &HostPort) -> ListenKey {
    ListenKey {
        proto: hp.protocol,
        ip: hp.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        port: hp.host_port,
    }
}

/// The listeners a Service needs: its node ports, and for a LoadBalancer its
/// ports on every node address, all forwarding to its ClusterIP.
pub fn service_forwards(service: &Service) -> BTreeMap<ListenKey, Forward> {
    let mut out = BTreeMap::new();
    let Some(vip) = service.cluster_ip else { return out };
    if service.spec.service_type == ServiceType::ClusterIP {
        return out;
    }
    let owner = service_owner(&service.spec);
    for port in &service.spec.ports {
        let forward = Forward { target: SocketAddr::new(vip, port.port), owner: owner.clone() };
        if let Some(n) = port.node_port {
            out.insert(
                ListenKey { proto: port.protocol, ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), port: n },
                forward.clone(),
            );
        }
        if service.spec.service_type == ServiceType::LoadBalancer {
            out.insert(
                ListenKey { proto: port.protocol, ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), port: port.port },
                forward,
            );
        }
    }
    out
}

/// The listeners of a pod's host ports, forwarding to the pod.
pub fn pod_forwards(record: &PodRecord) -> Vec<(ListenKey, Forward)> {
    record
        .spec
        .template
        .host_ports
        .iter()
        .map(|hp| {
            let forward =
                Forward { target: SocketAddr::new(record.ip, hp.port), owner: pod_owner(&record.spec) };
            (host_port_key(hp), forward)
        })
        .collect()
}
