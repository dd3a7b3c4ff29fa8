//! Node ports and host ports on the control plane's side: numbers allocated
//! from the node port range and kept with the Service, conflicts refused.
//! A port is also tried on the control plane's node through its [`super::Host`]
//! (bound and let go), so a port another process holds is an error now, not
//! a silent failure later.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{ControlError, ControlPlane};
use crate::listeners::proxy::ListenKey;
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
            for hp in &p.record.spec.template.host_ports {
                used.entry((hp.protocol, hp.host_port)).or_insert_with(|| pod_owner(&p.record.spec));
            }
        }
        used
    }

    /// Checks the type and node ports of a new Service and picks the node
    /// ports not given. Ports in `kept` are the Service's own already (an
    /// update): its listeners hold them, so they are not tried on the host.
    pub(super) fn allocate_node_ports(
        &mut self,
        spec: &mut ServiceSpec,
        kept: &[(Protocol, u16)],
    ) -> Result<(), ControlError> {
        let range = self.config.network.node_port_range;
        if spec.service_type == ServiceType::ClusterIP {
            if spec.ports.iter().any(|p| p.node_port.is_some()) {
                return Err(ControlError::NodePortNeedsType);
            }
            return Ok(());
        }
        if spec.cluster_ip == ClusterIpRequest::None || spec.external_name.is_some() {
            return Err(ControlError::NeedsClusterIp(spec.service_type));
        }
        let mut used = self.used_node_ports(None);
        let me = service_owner(spec);
        let span = u32::from(range.last - range.first) + 1;
        let seed = self.rng.next_u32();
        let host = &mut self.host;
        for port in &mut spec.ports {
            let key = |n: u16| ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED.into(), port: n };
            let n = match port.node_port {
                Some(n) => {
                    if !range.contains(n) {
                        return Err(ControlError::NodePortOutOfRange { port: n, range });
                    }
                    if let Some(owner) = used.get(&(port.protocol, n)) {
                        return Err(ControlError::NodePortUsed {
                            port: n,
                            protocol: port.protocol,
                            owner: owner.clone(),
                        });
                    }
                    if !kept.contains(&(port.protocol, n)) {
                        host.try_bind(&key(n)).map_err(|source| ControlError::NodePortHeld {
                            port: n,
                            protocol: port.protocol,
                            source,
                        })?;
                    }
                    n
                }
                None => (0..span)
                    .map(|i| range.first + (seed.wrapping_add(i) % span) as u16)
                    .filter(|n| !used.contains_key(&(port.protocol, *n)))
                    .find(|n| host.try_bind(&key(*n)).is_ok())
                    .ok_or(ControlError::NodePortsFull { range, protocol: port.protocol })?,
            };
            port.node_port = Some(n);
            used.insert((port.protocol, n), me.clone());
        }
        Ok(())
    }

    /// Checks a new pod's host ports against the other ports of `node` (and
    /// tries them when `node` is this one).
    pub(super) fn check_pod_host_ports(&mut self, node: &str, spec: &PodSpec) -> Result<(), ControlError> {
        check_host_ports(&spec.template.host_ports)?;
        for hp in &spec.template.host_ports {
            for p in self.pods.values().filter(|p| p.record.node == node) {
                if let Some(other) = p.record.spec.template.host_ports.iter().find(|o| o.conflicts(hp)) {
                    return Err(ControlError::HostPortConflict {
                        port: hp.clone(),
                        other: other.clone(),
                        owner: pod_owner(&p.record.spec),
                    });
                }
            }
        }
        let used = self.used_node_ports(Some(node));
        for hp in &spec.template.host_ports {
            if let Some(owner) = used.get(&(hp.protocol, hp.host_port)).filter(|o| o.is_service()) {
                return Err(ControlError::HostPortUsed { port: hp.clone(), owner: owner.clone() });
            }
            if node == self.local {
                self.host
                    .try_bind(&host_port_key(hp))
                    .map_err(|source| ControlError::HostPortHeld { port: hp.clone(), source })?;
            }
        }
        Ok(())
    }
}
