//! Node ports and host ports on the control plane's side: numbers allocated
//! from the node port range and kept with the Service, conflicts refused.
//! A port is also tried on this node (bound and let go), so a port another
//! process holds is an error now, not a silent failure later.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::ControlPlane;
use crate::listeners::proxy::{self, ListenKey};
use crate::model::listeners::{Owner, check_host_ports, host_port_key, pod_owner, service_owner};
use crate::model::{ClusterIpRequest, PodSpec, Protocol, ServiceSpec, ServiceType};

impl ControlPlane {
    /// Ports that services use on every node and pods on `node`, by
    /// protocol and number, with their owner.
    fn used_node_ports(&self, node: Option<&str>) -> BTreeMap<(Protocol, u16), Owner> {
        let mut used = BTreeMap::new();
        for s in self.services.values() {
            for port in &s.spec.ports {
                if let Some(n) = port.node_port {
                    used.insert((port.protocol, n), service_owner(&s.spec));
                }
                if s.spec.service_type == ServiceType::LoadBalancer {
                    used.entry((port.protocol, port.port)).or_insert_with(|| service_owner(&s.spec));
                }
            }
        }
        for p in self.pods.values().filter(|p| node.is_none_or(|n| p.record.node == n)) {
            for hp in &p.record.spec.host_ports {
                used.entry((hp.protocol, hp.host_port)).or_insert_with(|| pod_owner(&p.record.spec));
            }
        }
        used
    }

    /// Checks the type and node ports of a new Service and picks the node
    /// ports not given.
    pub(super) fn allocate_node_ports(&self, spec: &mut ServiceSpec) -> Result<(), String> {
        let range = self.config.network.node_port_range;
        if spec.service_type == ServiceType::ClusterIP {
            if spec.ports.iter().any(|p| p.node_port.is_some()) {
                return Err("--node-port needs --type NodePort or LoadBalancer".into());
            }
            return Ok(());
        }
        if spec.cluster_ip == ClusterIpRequest::None || spec.external_name.is_some() {
            return Err(format!(
                "a {} service needs a ClusterIP: leave out --cluster-ip None",
                spec.service_type
            ));
        }
        let mut used = self.used_node_ports(None);
        let me = service_owner(spec);
        let span = u32::from(range.last - range.first) + 1;
        let seed = u32::from_le_bytes(crate::sys::random::bytes(4).try_into().unwrap_or_default());
        for port in &mut spec.ports {
            let key = |n: u16| ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED, port: n };
            let n = match port.node_port {
                Some(n) => {
                    if !range.contains(n) {
                        return Err(format!(
                            "node port {n} is outside the node port range {range}: choose one inside it, or leave --node-port out"
                        ));
                    }
                    if let Some(owner) = used.get(&(port.protocol, n)) {
                        return Err(format!(
                            "node port {n}/{} is already used by {owner}: choose another, or leave --node-port out",
                            port.protocol
                        ));
                    }
                    proxy::bind(&key(n)).map_err(|e| {
                        format!(
                            "node port {n}/{}: {e} (another process holds it): choose another, or leave --node-port out",
                            port.protocol
                        )
                    })?;
                    n
                }
                None => (0..span)
                    .map(|i| range.first + (seed.wrapping_add(i) % span) as u16)
                    .filter(|n| !used.contains_key(&(port.protocol, *n)))
                    .find(|n| proxy::bind(&key(*n)).is_ok())
                    .ok_or_else(|| {
                        format!(
                            "the node port range {range} has no free {} port: delete services, or widen network.node_port_range",
                            port.protocol
                        )
                    })?,
            };
            port.node_port = Some(n);
            used.insert((port.protocol, n), me.clone());
        }
        Ok(())
    }

    /// Checks a new pod's host ports against the other ports of `node` (and
    /// tries them when `node` is this one).
    pub(super) fn check_pod_host_ports(&self, node: &str, spec: &PodSpec) -> Result<(), String> {
        check_host_ports(&spec.host_ports)?;
        for hp in &spec.host_ports {
            for p in self.pods.values().filter(|p| p.record.node == node) {
                if let Some(other) = p.record.spec.host_ports.iter().find(|o| o.conflicts(hp)) {
                    return Err(format!(
                        "host port {hp} conflicts with {other} of {}: choose another host port",
                        pod_owner(&p.record.spec)
                    ));
                }
            }
        }
        let used = self.used_node_ports(Some(node));
        for hp in &spec.host_ports {
            if let Some(owner) = used.get(&(hp.protocol, hp.host_port)).filter(|o| o.is_service()) {
                return Err(format!("host port {hp} is already used by {owner}: choose another host port"));
            }
            if node == self.local {
                proxy::bind(&host_port_key(hp))
                    .map_err(|e| format!("host port {hp}: {e}: choose another host port"))?;
            }
        }
        Ok(())
    }
}

/// The error for a deployment with host ports and more than one replica.
pub(super) fn one_replica_per_node(namespace: &str, name: &str) -> String {
    format!(
        "deployment {namespace}/{name} has host ports: it can run one replica per node, and one replica for now"
    )
}
