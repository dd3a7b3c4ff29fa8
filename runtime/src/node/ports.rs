//! This node's listeners for the outside: node ports and LoadBalancer ports
//! of every Service, host ports of its own pods, kept in line with the
//! desired state like the switch's tables.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::NodeRuntime;
use crate::desired::NodeDesired;
use crate::listeners::proxy::{self, Forward, ListenKey};
use crate::model::listeners::{pod_forwards, service_forwards, service_owner};
use crate::model::{LoadBalancerStatus, Service, ServiceType};

impl NodeRuntime {
    /// Binds missing listeners and stops unwanted ones. When two owners want
    /// one port the older Service wins (the other shows it as its problem).
    pub(super) async fn sync_proxies(&mut self, desired: &NodeDesired) {
        let mut wanted = BTreeMap::new();
        let mut services: Vec<&Service> = desired.services.iter().map(|(s, _)| &**s).collect();
        services.sort_by_key(|s| s.created_at);
        for s in services {
            for (key, forward) in service_forwards(s) {
                wanted.entry(key).or_insert(forward);
            }
        }
        for pod in self.pods.values() {
            for (key, forward) in pod_forwards(&pod.record) {
                wanted.entry(key).or_insert(forward);
            }
        }
        // Every turn: listeners that could not bind are retried by `sync`.
        self.proxies.sync(&wanted).await;
        self.forwards = wanted;
    }

    /// An Ingress as users see it from this node: the addresses serving it,
    /// or why none does.
    pub fn reported_ingress(
        &self,
        ingress: &crate::model::ingress::Ingress,
    ) -> crate::model::ingress::Ingress {
        self.ingress.reported(ingress)
    }

    /// The ports this node serves Ingresses on.
    pub fn ingress_ports(&self) -> Vec<u16> {
        self.ingress.ports()
    }

    /// The Ingress proxy's counters.
    pub fn ingress_stats(&self) -> Vec<(String, u64)> {
        self.ingress.stats()
    }

    /// A Service as users see it from this node: a LoadBalancer's addresses,
    /// or why it is not served.
    /// Shared, not copied, when there is nothing to fill in.
    pub fn reported_service(&self, service: &Arc<Service>) -> Arc<Service> {
        if service.spec.service_type != ServiceType::LoadBalancer {
            return service.clone();
        }
        let mut out = Service::clone(service);
        let me = service_owner(&service.spec);
        let mut problem = None;
        for port in &service.spec.ports {
            let key = ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED.into(), port: port.port };
            let why = match self.forwards.get(&key) {
                Some(Forward { owner, .. }) if *owner != me => Some(format!("port {key} in use by {owner}")),
                _ if self.proxies.serving(&key) => None,
                _ => Some(self.proxies.problem(&key).unwrap_or("not bound yet").to_string()),
            };
            problem = problem.or(why);
        }
        let ingress = match problem {
            None => proxy::node_addresses(&self.options.config.network.host_interface),
            Some(_) => Vec::new(),
        };
        out.load_balancer = Some(LoadBalancerStatus { ingress, problem });
        Arc::new(out)
    }
}
