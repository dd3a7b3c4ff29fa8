//! What a node listens on for the outside: the node ports and LoadBalancer
//! ports of Services, and the host ports of its pods. Pure functions of the
//! model, shared by the control plane (to allocate and check) and the node
//! runtime (to bind and proxy).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::listeners::proxy::{Forward, ListenKey};
use crate::model::{HostPort, PodSpec, Service, ServiceSpec, ServiceType};
use crate::store::PodRecord;

/// Host ports of one pod must not conflict among themselves.
pub fn check_host_ports(ports: &[HostPort]) -> Result<(), String> {
    for (i, a) in ports.iter().enumerate() {
        if let Some(b) = ports[i + 1..].iter().find(|b| a.conflicts(b)) {
            return Err(format!("host ports {a} and {b} conflict: give each its own port"));
        }
    }
    Ok(())
}

/// How a Service is named in messages about ports.
pub fn service_owner(spec: &ServiceSpec) -> String {
    format!("service {}/{}", spec.namespace, spec.name)
}

/// How a pod is named in messages about ports.
pub fn pod_owner(spec: &PodSpec) -> String {
    format!("pod {}/{}", spec.namespace, spec.name)
}

/// The listener of a host port.
pub fn host_port_key(hp: &HostPort) -> ListenKey {
    ListenKey { proto: hp.protocol, ip: hp.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port: hp.host_port }
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
        let forward = Forward { target: SocketAddrV4::new(vip, port.port), owner: owner.clone() };
        if let Some(n) = port.node_port {
            out.insert(
                ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED, port: n },
                forward.clone(),
            );
        }
        if service.spec.service_type == ServiceType::LoadBalancer {
            out.insert(
                ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED, port: port.port },
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
        .host_ports
        .iter()
        .map(|hp| {
            let forward =
                Forward { target: SocketAddrV4::new(record.ip, hp.port), owner: pod_owner(&record.spec) };
            (host_port_key(hp), forward)
        })
        .collect()
}
