//! The watched objects, and this node's desired state made from them: the
//! node's subnet (its Node's spec.podCIDR), overlay peers (the other
//! Nodes' InternalIP and podCIDR), every Service with its ready
//! EndpointSlice endpoints (ports matched by name, as kube-proxy does),
//! node ports, DNS records, the NetworkPolicy inputs (policies, pods'
//! labels and named ports, namespaces' labels), and the Ingresses with the
//! TLS Secrets podnet's Ingresses name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::KubernetesError;
use super::objects::{self, SERVICE_NAME_LABEL};
use super::watch::{Change, Key};
use super::watcher::{Changed, Kind};
use crate::config::Cidr;
use crate::desired::{NodeDesired, PeerNode};
use crate::model::ingress::{Ingress, check_ingress};
use crate::model::policy::NAMESPACE_NAME_LABEL;
use crate::model::secret::{Secret, check_secret};
use crate::model::{
    ClusterIpRequest, EndpointAddress, EndpointPort, Endpoints, Protocol, Service, ServicePort, ServiceSpec,
    ServiceType, SessionAffinity, TargetPort,
};
use crate::policy::{PolicyInputs, PolicyPod};

/// Every watched object, by kind and key.
#[derive(Debug, Default)]
pub struct Cluster {
    nodes: BTreeMap<Key, objects::Node>,
    services: BTreeMap<Key, objects::Service>,
    slices: BTreeMap<Key, objects::EndpointSlice>,
    pods: BTreeMap<Key, objects::Pod>,
    namespaces: BTreeMap<Key, objects::Namespace>,
    policies: BTreeMap<Key, objects::NetworkPolicy>,
    ingresses: BTreeMap<Key, objects::Ingress>,
    secrets: BTreeMap<Key, objects::Secret>,
    listed: BTreeSet<Kind>,
    /// The cluster's part of the desired state, for the node it was made
    /// for, until the next change: the event loop converges every 200 ms,
    /// and decoding policies and Services that often would be waste.
    made: Option<(String, NodeDesired)>,
}

fn apply<T: objects::Object>(map: &mut BTreeMap<Key, T>, change: Change<T>) {
    match change {
        Change::Replace(all) => *map = all.into_iter().map(|o| (o.key(), o)).collect(),
        Change::Upsert(one) => {
            map.insert(one.key(), one);
        }
        Change::Delete(key) => {
            map.remove(&key);
        }
    }
}

impl Cluster {
    /// Takes one change.
    pub fn apply(&mut self, changed: Changed) {
        self.made = None;
        let kind = match changed {
            Changed::Nodes(c) => {
                let replace = matches!(c, Change::Replace(_));
                apply(&mut self.nodes, c);
                replace.then_some(Kind::Nodes)
            }
            Changed::Services(c) => {
                let replace = matches!(c, Change::Replace(_));
                apply(&mut self.services, c);
                replace.then_some(Kind::Services)
            }
            Changed::EndpointSlices(c) => {
                let replace = matches!(c, Change::Replace(_));
                apply(&mut self.slices, c);
                replace.then_some(Kind::EndpointSlices)
            }
            Changed::Pods(c) => {
                let replace = matches!(c, Change::Replace(_));
                apply(&mut self.pods, c);
                replace.then_some(Kind::Pods)
            }
            Changed::Namespaces(c) => {
                let replace = matches!(c, Change::Replace(_));
                apply(&mut self.namespaces, c);
                replace.then_some(Kind::Namespaces)
            }
            Changed::NetworkPolicies(c) => {
                let replace = matches!(c, Change::Replace(_));
                apply(&mut self.policies, c);
                replace.then_some(Kind::NetworkPolicies)
            }
            Changed::Ingresses(c) => {
                let replace = matches!(c, Change::Replace(_));
                apply(&mut self.ingresses, c);
                replace.then_some(Kind::Ingresses)
            }
            Changed::TlsSecrets(c) => {
                let replace = matches!(c, Change::Replace(_));
                apply(&mut self.secrets, c);
                replace.then_some(Kind::TlsSecrets)
            }
        };
        if let Some(kind) = kind {
            self.listed.insert(kind);
        }
    }

    /// Whether every resource has been listed once.
    pub fn listed_all(&self) -> bool {
        Kind::ALL.iter().all(|k| self.listed.contains(k))
    }

    /// `node`'s pod subnet: its Node's spec.podCIDR.
    pub fn node_subnet(&self, node: &str) -> Result<Cidr, KubernetesError> {
        let record = self
            .nodes
            .get(&(String::new(), node.to_string()))
            .ok_or_else(|| KubernetesError::NoNode { node: node.into() })?;
        let cidr = record.spec.pod_cidr.clone().filter(|c| !c.is_empty());
        let cidr = cidr.ok_or_else(|| KubernetesError::NoPodCidr { node: node.into() })?;
        Cidr::try_from(cidr.clone()).map_err(|message| KubernetesError::BadPodCidr {
            node: node.into(),
            cidr,
            message,
        })
    }

    /// What `node` programs: the cluster's Services, DNS records, policy
    /// and peers, with `local`'s pods (the CNI attachments this node made)
    /// added where the API does not list them.
    pub fn desired(&mut self, node: &str, local: &NodeDesired) -> NodeDesired {
        let made = match self.made.take() {
            Some((for_node, made)) if for_node == node => made,
            _ => self.make(node),
        };
        let mut desired = made.clone();
        self.made = Some((node.to_string(), made));
        desired.pods = local.pods.clone();
        let known: BTreeSet<IpAddr> = desired.pod_ips.iter().map(|(ip, _)| *ip).collect();
        desired.pod_ips.extend(local.pod_ips.iter().filter(|(ip, _)| !known.contains(ip)).cloned());
        if !desired.policy.policies.is_empty() {
            self.add_local_pods(&mut desired.policy, &local.pods);
        }
        desired
    }

    /// The cluster's part alone.
    fn make(&self, node: &str) -> NodeDesired {
        let pod_ips = self
            .pods
            .values()
            .filter(|p| !p.spec.host_network)
            .filter_map(|p| Some((p.status.pod_ip.as_deref()?.parse().ok()?, p.metadata.namespace.clone())))
            .collect();
        NodeDesired {
            pods: Vec::new(),
            services: self
                .services
                .values()
                .filter_map(|s| Some((Arc::new(service(s)?), Arc::new(self.endpoints(s)))))
                .collect(),
            pod_ips,
            peers: self.peers(node),
            policy: self.policy(),
            ingresses: self.ingresses(),
            secrets: self.secrets(),
        }
    }

    /// The Ingresses, as podnet's own API decodes them; one it cannot
    /// serve is left out with a warning (its class is checked by the node:
    /// podnet serves its own class and those without one).
    fn ingresses(&self) -> Vec<Ingress> {
        self.ingresses
            .values()
            .filter_map(|i| {
                let (namespace, name) = (&i.metadata.namespace, &i.metadata.name);
                let spec = crate::kube::ingresses::decode_ingress(&i.json, namespace)
                    .map_err(|e| e.message)
                    .and_then(|spec| check_ingress(&spec).map(|()| spec).map_err(|e| e.to_string()));
                match spec {
                    Ok(spec) => Some(Ingress {
                        uid: i.metadata.uid.clone(),
                        created_at: unix_time(&i.metadata.creation_timestamp),
                        spec,
                        load_balancer: None,
                    }),
                    Err(e) => {
                        tracing::warn!(ingress = %format!("{namespace}/{name}"), "Ingress not served: {e}");
                        None
                    }
                }
            })
            .collect()
    }

    /// The TLS Secrets podnet's Ingresses name, and no other (as the
    /// control plane hands them to nodes).
    fn secrets(&self) -> Vec<Secret> {
        let named: BTreeSet<(&str, &str)> = self
            .ingresses
            .values()
            .flat_map(|i| {
                let namespace = i.metadata.namespace.as_str();
                i.json["spec"]["tls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(move |t| Some((namespace, t["secretName"].as_str()?)))
            })
            .collect();
        self.secrets
            .values()
            .filter(|s| named.contains(&(s.metadata.namespace.as_str(), s.metadata.name.as_str())))
            .filter_map(|s| {
                let (namespace, name) = (&s.metadata.namespace, &s.metadata.name);
                let spec = crate::kube::ingresses::decode_secret(&s.json, namespace)
                    .map_err(|e| e.message)
                    .and_then(|spec| check_secret(&spec).map(|()| spec).map_err(|e| e.to_string()));
                match spec {
                    Ok(spec) => Some(Secret {
                        uid: s.metadata.uid.clone(),
                        created_at: unix_time(&s.metadata.creation_timestamp),
                        spec,
                    }),
                    Err(e) => {
                        tracing::warn!(secret = %format!("{namespace}/{name}"), "TLS Secret not used: {e}");
                        None
                    }
                }
            })
            .collect()
    }

    fn peers(&self, me: &str) -> Vec<PeerNode> {
        self.nodes
            .values()
            .filter(|n| n.metadata.name != me)
            .filter_map(|n| {
                Some(PeerNode {
                    node: n.metadata.name.clone(),
                    subnet: Cidr::try_from(n.spec.pod_cidr.clone()?).ok()?,
                    address: n.internal_ip()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// A Service's ready endpoints: those of its EndpointSlices (IPv4
    /// ones; an endpoint whose readiness is unknown counts as ready), each
    /// address once.
    fn endpoints(&self, s: &objects::Service) -> Endpoints {
        let (namespace, name) = (&s.metadata.namespace, &s.metadata.name);
        let mut endpoints = Endpoints {
            name: name.clone(),
            namespace: namespace.clone(),
            created_at: 0,
            subsets: Vec::new(),
            not_ready: Vec::new(),
            problems: Vec::new(),
        };
        let mut seen = BTreeSet::new();
        let slices = self
            .slices
            .range((namespace.clone(), String::new())..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, slice)| slice)
            .filter(|slice| slice.metadata.labels.get(SERVICE_NAME_LABEL) == Some(name))
            .filter(|slice| slice.address_type == "IPv4");
        for slice in slices {
            let ports: Vec<EndpointPort> = slice
                .ports
                .iter()
                .filter_map(|p| {
                    Some(EndpointPort {
                        name: port_name(&p.name),
                        port: p.port?,
                        protocol: protocol(&p.protocol)?,
                    })
                })
                .collect();
            for endpoint in &slice.endpoints {
                for address in &endpoint.addresses {
                    let Ok(ip) = address.parse::<IpAddr>() else { continue };
                    let pod = endpoint.target_ref.as_ref().map(|t| t.name.clone()).unwrap_or_default();
                    let address = EndpointAddress { ip, pod };
                    if endpoint.conditions.ready == Some(false) {
                        endpoints.not_ready.push(address);
                    } else if seen.insert(ip) {
                        endpoints.subsets.push((address, ports.clone()));
                    }
                }
            }
        }
        endpoints
    }

    /// The NetworkPolicy inputs; none without a policy (as the control
    /// plane's).
    fn policy(&self) -> PolicyInputs {
        if self.policies.is_empty() {
            return PolicyInputs::default();
        }
        let policies = self
            .policies
            .values()
            .filter_map(|p| {
                let namespace = &p.metadata.namespace;
                match crate::kube::netpol::decode(&p.json, namespace) {
                    Ok(spec) => Some(spec),
                    Err(e) => {
                        let policy = format!("{namespace}/{}", p.metadata.name);
                        tracing::warn!(%policy, "NetworkPolicy not enforced: {}", e.message);
                        None
                    }
                }
            })
            .collect();
        let mut namespaces: BTreeMap<String, crate::model::Labels> = BTreeMap::new();
        let pods = self
            .pods
            .values()
            .filter(|p| !p.spec.host_network)
            .filter_map(|p| {
                let IpAddr::V4(ip) = p.status.pod_ip.as_deref()?.parse().ok()? else { return None };
                let namespace = &p.metadata.namespace;
                namespaces.entry(namespace.clone()).or_insert_with(|| self.namespace_labels(namespace));
                let ports = p
                    .spec
                    .containers
                    .iter()
                    .flat_map(|c| &c.ports)
                    .filter_map(|port| {
                        Some((port.name.clone()?, protocol(&port.protocol)?, port.container_port))
                    })
                    .collect();
                Some(PolicyPod {
                    ip,
                    namespace: namespace.clone(),
                    labels: p.metadata.labels.clone().into(),
                    ports,
                })
            })
            .collect();
        PolicyInputs { policies, namespaces: namespaces.into_iter().collect(), pods }
    }

    /// This node's own attachments count as pods too while the API does
    /// not list them (a container a runtime other than the kubelet
    /// attached), with the labels and namespace they were given.
    fn add_local_pods(&self, policy: &mut PolicyInputs, local: &[crate::store::PodRecord]) {
        let listed: BTreeSet<std::net::Ipv4Addr> = policy.pods.iter().map(|p| p.ip).collect();
        for record in local {
            let Ok(ip) = record.ipv4() else { continue };
            if listed.contains(&ip) {
                continue;
            }
            let spec = &record.spec;
            if !policy.namespaces.iter().any(|(name, _)| *name == spec.namespace) {
                policy.namespaces.push((spec.namespace.clone(), self.namespace_labels(&spec.namespace)));
                policy.namespaces.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let ports = spec
                .template
                .ports
                .iter()
                .filter_map(|c| Some((c.name.clone()?, c.protocol, c.port)))
                .collect();
            policy.pods.push(PolicyPod {
                ip,
                namespace: spec.namespace.clone(),
                labels: spec.labels.clone(),
                ports,
            });
        }
    }
}

impl Cluster {
    /// A namespace's labels, `kubernetes.io/metadata.name` included (the
    /// API sets it; a namespace not listed yet gets it alone).
    fn namespace_labels(&self, namespace: &str) -> crate::model::Labels {
        let mut labels = self
            .namespaces
            .get(&(String::new(), namespace.to_string()))
            .map(|n| crate::model::Labels::from(n.metadata.labels.clone()))
            .unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.into(), namespace.to_string());
        labels
    }
}

/// An empty port name is an unnamed port, as in the Service.
fn port_name(name: &Option<String>) -> Option<String> {
    name.clone().filter(|n| !n.is_empty())
}

/// TCP or UDP (TCP when absent); SCTP and others are not served.
fn protocol(p: &Option<String>) -> Option<Protocol> {
    match p.as_deref() {
        None | Some("TCP") => Some(Protocol::Tcp),
        Some("UDP") => Some(Protocol::Udp),
        Some(_) => None,
    }
}

/// A Service as the switch, the zone and the node ports take it; None for
/// one podnet cannot serve (an IPv6 ClusterIP).
fn service(s: &objects::Service) -> Option<Service> {
    let spec = &s.spec;
    let external_name = match spec.kind.as_deref() {
        Some("ExternalName") => Some(spec.external_name.clone()?),
        _ => None,
    };
    let cluster_ip = match spec.cluster_ip.as_deref() {
        _ if external_name.is_some() => None,
        None | Some("") | Some("None") => None,
        Some(ip) => match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
            IpAddr::V6(_) => return None,
        },
    };
    let service_type = match spec.kind.as_deref() {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        _ => ServiceType::ClusterIP,
    };
    let session_affinity = match spec.session_affinity.as_deref() {
        Some("ClientIP") => SessionAffinity::ClientIp {
            timeout_seconds: spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref()?.timeout_seconds)
                .unwrap_or(crate::model::DEFAULT_AFFINITY_TIMEOUT),
        },
        _ => SessionAffinity::None,
    };
    let ports = spec
        .ports
        .iter()
        .filter_map(|p| {
            Some(ServicePort {
                name: port_name(&p.name),
                port: p.port,
                // Endpoints carry the resolved port: the target is not read.
                target_port: TargetPort::Number(p.port),
                protocol: protocol(&p.protocol)?,
                node_port: p.node_port.filter(|_| service_type != ServiceType::ClusterIP),
            })
        })
        .collect();
    Some(Service {
        uid: s.metadata.uid.clone(),
        created_at: 0,
        cluster_ip,
        spec: ServiceSpec {
            name: s.metadata.name.clone(),
            namespace: s.metadata.namespace.clone(),
            cluster_ip: cluster_ip.map_or(ClusterIpRequest::None, ClusterIpRequest::Fixed),
            ports,
            selector: Default::default(),
            session_affinity,
            external_name,
            service_type,
            labels: s.metadata.labels.clone().into(),
            annotations: Default::default(),
        },
        load_balancer: None,
    })
}

/// An RFC 3339 timestamp as Unix seconds; 0 when absent or not one.
fn unix_time(timestamp: &str) -> u64 {
    humantime::parse_rfc3339(timestamp)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::kubernetes::objects::Object;
    use crate::model::services::switch_entries;

    fn obj<T: Object>(v: Value) -> T {
        T::from_json(v).unwrap()
    }

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> objects::Node {
        obj(json!({
            "metadata": { "name": name },
            "spec": { "podCIDR": cidr },
            "status": { "addresses": [{ "type": "Hostname", "address": name }, { "type": "InternalIP", "address": ip }] }
        }))
    }

    fn web() -> objects::Service {
        obj(json!({
            "metadata": { "name": "web-svc", "namespace": "default", "uid": "u1" },
            "spec": { "type": "NodePort", "clusterIP": "10.43.0.20", "sessionAffinity": "None",
                "ports": [{ "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080 },
                          { "name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP", "nodePort": 30053 }] }
        }))
    }

    fn slice(name: &str, service: &str, endpoints: Value) -> objects::EndpointSlice {
        obj(json!({
            "metadata": { "name": name, "namespace": "default", "labels": { "kubernetes.io/service-name": service } },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }, { "name": "dns", "port": 5353, "protocol": "UDP" }]
        }))
    }

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        c.apply(Changed::Nodes(Change::Replace(vec![
            node("pi1", Some("10.42.0.0/24"), "192.168.1.10"),
            node("pi2", Some("10.42.1.0/24"), "192.168.1.11"),
            node("bare", None, "192.168.1.12"),
        ])));
        c.apply(Changed::Services(Change::Replace(vec![web()])));
        c.apply(Changed::EndpointSlices(Change::Replace(vec![
            slice("web-svc-abc", "web-svc", json!([
                { "addresses": ["10.42.0.5"], "conditions": { "ready": true }, "targetRef": { "kind": "Pod", "name": "web-1" } },
                { "addresses": ["10.42.1.7"], "targetRef": { "kind": "Pod", "name": "web-2" } },
                { "addresses": ["10.42.1.8"], "conditions": { "ready": false }, "targetRef": { "kind": "Pod", "name": "web-3" } }
            ])),
            slice("other-xyz", "other", json!([{ "addresses": ["10.42.0.99"] }])),
        ])));
        c
    }

    #[test]
    fn the_nodes_subnet_is_its_pod_cidr_and_the_others_are_peers() {
        let mut c = cluster();
        assert_eq!(c.node_subnet("pi2").unwrap().to_string(), "10.42.1.0/24");
        assert!(matches!(c.node_subnet("nope"), Err(KubernetesError::NoNode { .. })));
        let e = c.node_subnet("bare").unwrap_err();
        assert!(
            e.to_string().contains("no spec.podCIDR") && e.to_string().contains("kubectl patch node bare")
        );
        let peers = c.desired("pi2", &NodeDesired::default()).peers;
        assert_eq!(peers.len(), 1, "pi1 only: pi2 is this node, bare has no subnet");
        assert_eq!((peers[0].node.as_str(), peers[0].address.to_string()), ("pi1", "192.168.1.10".into()));
    }

    #[test]
    fn services_get_their_slices_ready_endpoints_with_ports_by_name() {
        let mut c = cluster();
        let desired = c.desired("pi1", &NodeDesired::default());
        assert_eq!(desired.services.len(), 1);
        let (service, endpoints) = &desired.services[0];
        assert_eq!(service.cluster_ip, Some("10.43.0.20".parse().unwrap()));
        assert_eq!(service.spec.service_type, ServiceType::NodePort);
        assert_eq!(service.spec.ports[0].node_port, Some(30080));
        let ready: Vec<String> = endpoints.subsets.iter().map(|(a, _)| a.pod.clone()).collect();
        assert_eq!(ready, ["web-1", "web-2"], "ready, or readiness unknown; never the other Service's");
        assert_eq!(endpoints.not_ready.len(), 1);
        let entries = switch_entries(service, endpoints);
        let http = entries.iter().find(|(k, _, _)| k.port == 80).unwrap();
        assert_eq!(http.1.iter().map(|b| b.port).collect::<Vec<_>>(), [8080, 8080]);
        let dns = entries.iter().find(|(k, _, _)| k.port == 53).unwrap();
        assert_eq!(dns.0.proto, Protocol::Udp);
        assert_eq!(dns.1.iter().map(|b| b.port).collect::<Vec<_>>(), [5353, 5353]);
    }

    #[test]
    fn watch_changes_reach_the_desired_state() {
        let mut c = cluster();
        c.apply(Changed::EndpointSlices(Change::Delete(("default".into(), "web-svc-abc".into()))));
        let desired = c.desired("pi1", &NodeDesired::default());
        assert!(desired.services[0].1.subsets.is_empty(), "scaled to zero");
        c.apply(Changed::Services(Change::Delete(("default".into(), "web-svc".into()))));
        assert!(c.desired("pi1", &NodeDesired::default()).services.is_empty());
    }

    #[test]
    fn headless_external_name_and_ipv6_services() {
        let mut c = Cluster::default();
        let headless: objects::Service = obj(json!({ "metadata": { "name": "db", "namespace": "default" },
            "spec": { "clusterIP": "None", "ports": [{ "port": 5432 }] } }));
        let external: objects::Service = obj(json!({ "metadata": { "name": "ext", "namespace": "default" },
            "spec": { "type": "ExternalName", "externalName": "example.com" } }));
        let v6: objects::Service = obj(json!({ "metadata": { "name": "six", "namespace": "default" },
            "spec": { "clusterIP": "fd00::1", "ports": [{ "port": 80 }] } }));
        c.apply(Changed::Services(Change::Replace(vec![headless, external, v6])));
        let services = c.desired("pi1", &NodeDesired::default()).services;
        let names: Vec<&str> = services.iter().map(|(s, _)| s.spec.name.as_str()).collect();
        assert_eq!(names, ["db", "ext"]);
        assert_eq!(services[0].0.cluster_ip, None);
        assert_eq!(services[1].0.spec.external_name.as_deref(), Some("example.com"));
    }

    #[test]
    fn pods_give_dns_records_and_policy_inputs() {
        let mut c = cluster();
        let pod = |name: &str, ip: Option<&str>, host: bool| -> objects::Pod {
            obj(json!({ "metadata": { "name": name, "namespace": "shop", "labels": { "app": name } },
                "spec": { "hostNetwork": host, "containers": [{ "ports": [{ "name": "http", "containerPort": 8080 }] }] },
                "status": { "podIP": ip } }))
        };
        c.apply(Changed::Pods(Change::Replace(vec![
            pod("a", Some("10.42.0.5"), false),
            pod("pending", None, false),
            pod("host", Some("192.168.1.10"), true),
        ])));
        c.apply(Changed::Namespaces(Change::Replace(vec![obj(json!({
            "metadata": { "name": "shop", "labels": { "team": "x" } } }))])));
        let local = NodeDesired {
            pod_ips: vec![("10.42.1.3".parse().unwrap(), "default".into())],
            ..Default::default()
        };
        let desired = c.desired("pi2", &local);
        let ips: Vec<String> = desired.pod_ips.iter().map(|(ip, _)| ip.to_string()).collect();
        assert_eq!(ips, ["10.42.0.5", "10.42.1.3"]);
        assert_eq!(desired.policy, PolicyInputs::default(), "no policy, no inputs");
        c.apply(Changed::NetworkPolicies(Change::Replace(vec![obj(json!({
            "metadata": { "name": "deny", "namespace": "shop", "resourceVersion": "9" },
            "spec": { "podSelector": { "matchLabels": { "app": "a" } }, "policyTypes": ["Ingress"] } }))])));
        let policy = c.desired("pi2", &local).policy;
        assert_eq!(policy.policies.len(), 1);
        assert_eq!(policy.pods.len(), 1);
        assert_eq!(policy.pods[0].ports, [("http".to_string(), Protocol::Tcp, 8080)]);
        let labels = &policy.namespaces[0].1;
        assert_eq!((labels["team"].as_str(), labels[NAMESPACE_NAME_LABEL].as_str()), ("x", "shop"));
    }

    /// Ingresses reach the node as podnet's API reads them, with their age;
    /// of the TLS Secrets only those an Ingress names (and usable ones).
    #[test]
    fn ingresses_and_the_tls_secrets_they_name_reach_the_node() {
        use base64::Engine;
        let mut c = cluster();
        let ingress = |name: &str, at: &str, secret: &str| -> objects::Ingress {
            obj(json!({ "metadata": { "name": name, "namespace": "shop", "creationTimestamp": at },
                "spec": { "tls": [{ "hosts": ["shop.example"], "secretName": secret }],
                    "rules": [{ "host": "shop.example", "http": { "paths": [{ "path": "/", "pathType": "Prefix",
                        "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }] } }))
        };
        c.apply(Changed::Ingresses(Change::Replace(vec![
            ingress("shop", "2026-12-06T02:00:00Z", "shop-tls"),
            // Refused by podnet's decoder: left out, the others served.
            obj(json!({ "metadata": { "name": "bad", "namespace": "shop" },
                "spec": { "rules": [{ "host": "*", "http": { "paths": [] } }] } })),
        ])));
        let made = crate::model::secret::SecretSpec::self_signed("x", "shop.example");
        let secret = |name: &str, key: &[u8]| -> objects::Secret {
            let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
            obj(json!({ "metadata": { "name": name, "namespace": "shop" }, "type": "kubernetes.io/tls",
                "data": { "tls.crt": b64(&made.data["tls.crt"]), "tls.key": b64(key) } }))
        };
        c.apply(Changed::TlsSecrets(Change::Replace(vec![
            secret("shop-tls", &made.data["tls.key"]),
            secret("unnamed", &made.data["tls.key"]),
        ])));
        let desired = c.desired("pi1", &NodeDesired::default());
        assert_eq!(desired.ingresses.len(), 1);
        assert_eq!(desired.ingresses[0].spec.name, "shop");
        assert_eq!(desired.ingresses[0].created_at, 1_796_522_400);
        let secrets: Vec<&str> = desired.secrets.iter().map(|s| s.spec.name.as_str()).collect();
        assert_eq!(secrets, ["shop-tls"]);
        // A Secret whose key is not one is not handed on.
        c.apply(Changed::TlsSecrets(Change::Upsert(secret("shop-tls", b"not a key"))));
        assert!(c.desired("pi1", &NodeDesired::default()).secrets.is_empty());
    }

    #[test]
    fn core_endpoints_read_as_one_slice() {
        let endpoints: objects::Endpoints = obj(json!({
            "metadata": { "name": "web-svc", "namespace": "default" },
            "subsets": [{ "addresses": [{ "ip": "10.42.0.5", "targetRef": { "name": "web-1" } }],
                "notReadyAddresses": [{ "ip": "10.42.0.6" }],
                "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }] }]
        }));
        let mut c = cluster();
        c.apply(Changed::EndpointSlices(Change::Replace(vec![objects::EndpointSlice::from(endpoints)])));
        let desired = c.desired("pi1", &NodeDesired::default());
        let (_, e) = &desired.services[0];
        assert_eq!(e.subsets.len(), 1);
        assert_eq!(e.not_ready.len(), 1);
        assert_eq!(e.subsets[0].1[0].port, 8080);
    }
}
