//! Services on the agent's side: ClusterIP allocation, endpoints from pod
//! labels and readiness, and the switch's service table derived from them.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use netstack::Duration;
use netstack::service::{Affinity, Backend, ServiceKey};

use crate::config::Cidr;
use crate::model::{
    ClusterIpRequest, EndpointAddress, EndpointPort, Endpoints, Labels, ModelError, PodSpec, Protocol,
    Service, SessionAffinity, TargetPort, address,
};

/// A pod as endpoints see it.
pub struct PodView<'a> {
    /// Its spec (labels, declared ports).
    pub spec: &'a PodSpec,
    /// Its IP.
    pub ip: IpAddr,
    /// Running and passing its readiness probe.
    pub ready: bool,
}

/// Chooses the ClusterIP for a new Service. The first address of the range
/// (kubernetes.default in Kubernetes) and the cluster DNS address are never
/// handed out; the search starts at a pseudo-random offset, as Kubernetes'
/// allocator does, so addresses are not reused in creation order.
pub fn allocate_cluster_ip(
    request: ClusterIpRequest,
    range: Cidr,
    dns: Ipv4Addr,
    used: &HashSet<IpAddr>,
    seed: u32,
) -> Result<Option<IpAddr>, ModelError> {
    let size = 1u32 << (32 - range.prefix_len());
    let usable = |ip: IpAddr| {
        let IpAddr::V4(v4) = ip else { return false };
        let offset = u32::from(v4).wrapping_sub(u32::from(range.ipv4().address()));
        range.contains(v4) && offset >= 2 && offset < size - 1 && v4 != dns
    };
    match request {
        ClusterIpRequest::None => Ok(None),
        ClusterIpRequest::Fixed(ip) if !usable(ip) => Err(ModelError::ClusterIpUnusable { ip, range }),
        ClusterIpRequest::Fixed(ip) if used.contains(&ip) => Err(ModelError::ClusterIpTaken(ip)),
        ClusterIpRequest::Fixed(ip) => Ok(Some(ip)),
        ClusterIpRequest::Auto => {
            let span = size.saturating_sub(3).max(1);
            (0..span)
                .map(|step| IpAddr::V4(range.nth(2 + (seed.wrapping_add(step)) % span)))
                .find(|ip| usable(*ip) && !used.contains(ip))
                .map(Some)
                .ok_or(ModelError::ServiceRangeFull(range))
        }
    }
}

/// Whether `labels` carry every key/value of `selector` (an empty selector
/// selects nothing, as for Services without a selector).
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The endpoints of `service` among `pods` (pods of every namespace may be
/// given; only the service's namespace counts).
pub fn endpoints<'a>(service: &Service, pods: impl Iterator<Item = PodView<'a>>) -> Endpoints {
    let spec = &service.spec;
    let mut result = Endpoints {
        name: spec.name.clone(),
        namespace: spec.namespace.clone(),
        created_at: service.created_at,
        subsets: Vec::new(),
        not_ready: Vec::new(),
        problems: Vec::new(),
    };
    let mut unresolved: BTreeMap<String, usize> = BTreeMap::new();
    let mut selected = 0;
    for pod in pods.filter(|p| p.spec.namespace == spec.namespace && selects(&spec.selector, &p.spec.labels))
    {
        selected += 1;
        let address = EndpointAddress { ip: pod.ip, pod: pod.spec.name.clone() };
        if !pod.ready {
            result.not_ready.push(address);
            continue;
        }
        let mut ports = Vec::with_capacity(spec.ports.len());
        for port in &spec.ports {
            match resolve_target(&port.target_port, port.protocol, pod.spec) {
                Some(number) => ports.push(EndpointPort {
                    name: port.name.clone(),
                    port: number,
                    protocol: port.protocol,
                }),
                None => *unresolved.entry(port.target_port.to_string()).or_default() += 1,
            }
        }
        if !ports.is_empty() {
            result.subsets.push((address, ports));
        }
    }
    if selected == 0 && !spec.selector.is_empty() {
        let selector: Vec<String> = spec.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        result.problems.push(format!("selector {} matches no pod", selector.join(",")));
    }
    for (name, count) in unresolved {
        result.problems.push(format!("port name `{name}` is declared by none of {count} selected pod(s)"));
    }
    // Kept, one per Service, as long as they do not change: exact sizes,
    // not a pushed Vec's spare room (3 of 4 slots for one pod).
    result.subsets.iter_mut().for_each(|(_, ports)| ports.shrink_to_fit());
    result.subsets.shrink_to_fit();
    result.not_ready.shrink_to_fit();
    result
}

/// The port number `target` means on `pod`.
fn resolve_target(target: &TargetPort, protocol: Protocol, pod: &PodSpec) -> Option<u16> {
    match target {
        TargetPort::Number(n) => Some(*n),
        TargetPort::Name(name) => pod
            .template
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name) && p.protocol == protocol)
            .map(|p| p.port),
    }
}

/// One entry of the switch's service table.
pub type SwitchEntry = (ServiceKey, Vec<Backend>, Affinity);

/// The switch entries a Service with a ClusterIP needs: one per port.
pub fn switch_entries(service: &Service, endpoints: &Endpoints) -> Vec<SwitchEntry> {
    let Some(vip) = service.cluster_ip.and_then(address::to_netstack) else { return Vec::new() };
    let affinity = match service.spec.session_affinity {
        SessionAffinity::None => Affinity::None,
        SessionAffinity::ClientIp { timeout_seconds } => {
            Affinity::ClientIp { timeout: Duration::from_secs(u64::from(timeout_seconds)) }
        }
    };
    service
        .spec
        .ports
        .iter()
        .map(|port| {
            let proto = port.protocol;
            let mut backends: Vec<Backend> = endpoints
                .subsets
                .iter()
                .filter_map(|(address, ports)| {
                    let ip = address::to_netstack(address.ip)?;
                    ports
                        .iter()
                        .find(|p| p.name == port.name && p.protocol == port.protocol)
                        .map(|p| Backend { ip, port: p.port })
                })
                .collect();
            backends.sort();
            (ServiceKey { vip, port: port.port, proto }, backends, affinity)
        })
        .collect()
}

/// The Service's DNS record: a ClusterIP, its ready endpoints when headless,
/// or a CNAME for an ExternalName Service.
pub fn dns_record(service: &Service, endpoints: &Endpoints) -> netstack::dns::Service {
    use netstack::dns::{Endpoint, ServiceKind};
    let kind = match (&service.spec.external_name, service.cluster_ip) {
        (Some(target), _) => ServiceKind::ExternalName(target.clone()),
        // A-records only: IPv6 is refused where addresses come in.
        (None, Some(IpAddr::V4(vip))) => ServiceKind::ClusterIp(vip),
        (None, Some(IpAddr::V6(_))) => ServiceKind::Headless(Vec::new()),
        (None, None) => ServiceKind::Headless(
            endpoints
                .subsets
                .iter()
                .filter_map(|(a, _)| match a.ip {
                    IpAddr::V4(ip) => Some(Endpoint { ip, hostname: None }),
                    IpAddr::V6(_) => None,
                })
                .collect(),
        ),
    };
    let ports = service
        .spec
        .ports
        .iter()
        .map(|p| netstack::dns::ServicePort { name: p.name.clone(), port: p.port, protocol: p.protocol })
        .collect();
    netstack::dns::Service {
        name: service.spec.name.clone(),
        namespace: service.spec.namespace.clone(),
        ports,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerPort, RestartPolicy, ServicePort, ServiceSpec};

    fn range() -> Cidr {
        Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 12)
    }

    fn pod(name: &str, app: &str, ports: Vec<ContainerPort>) -> PodSpec {
        PodSpec {
            name: name.into(),
            namespace: "default".into(),
            labels: [("app".to_string(), app.to_string())].into(),
            template: crate::model::PodTemplate {
                command: vec!["x".into()],
                ports,
                readiness: None,
                host_ports: vec![],
                security: Default::default(),
                image: None,
                resources: Default::default(),
                container: None,
            },
            restart_policy: RestartPolicy::Always,
            owner: None,
            node_name: None,
            annotations: Default::default(),
            attachment: None,
        }
    }

    fn service(target: TargetPort) -> Service {
        Service {
            uid: "u".into(),
            created_at: 0,
            cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 42).into()),
            spec: ServiceSpec {
                name: "web".into(),
                namespace: "default".into(),
                cluster_ip: ClusterIpRequest::Auto,
                ports: vec![ServicePort {
                    name: None,
                    port: 80,
                    target_port: target,
                    protocol: Protocol::Tcp,
                    node_port: None,
                }],
                selector: [("app".to_string(), "web".to_string())].into(),
                session_affinity: SessionAffinity::None,
                external_name: None,
                service_type: Default::default(),
                labels: Default::default(),
                annotations: Default::default(),
            },
            load_balancer: None,
        }
    }

    #[test]
    fn cluster_ips_avoid_reserved_and_taken_addresses() {
        let dns = Ipv4Addr::new(10, 96, 0, 10);
        let small = Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 29); // .2 .. .6 usable
        let mut used = HashSet::new();
        for seed in 0..5 {
            let ip = allocate_cluster_ip(ClusterIpRequest::Auto, small, dns, &used, seed).unwrap().unwrap();
            assert!(used.insert(ip), "{ip} handed out twice");
            let IpAddr::V4(v4) = ip else { panic!("{ip} is not IPv4") };
            assert!(![0u8, 1, 7].contains(&v4.octets()[3]), "{ip}");
        }
        assert!(allocate_cluster_ip(ClusterIpRequest::Auto, small, dns, &used, 0).is_err());
        assert!(
            allocate_cluster_ip(ClusterIpRequest::Fixed(dns.into()), range(), dns, &HashSet::new(), 0)
                .is_err()
        );
        let outside = Ipv4Addr::new(10, 200, 0, 1);
        assert!(
            allocate_cluster_ip(ClusterIpRequest::Fixed(outside.into()), range(), dns, &HashSet::new(), 0)
                .is_err()
        );
        assert_eq!(allocate_cluster_ip(ClusterIpRequest::None, range(), dns, &HashSet::new(), 0), Ok(None));
    }

    #[test]
    fn endpoints_follow_labels_readiness_and_named_ports() {
        let named = vec![ContainerPort { name: Some("http".into()), port: 8080, protocol: Protocol::Tcp }];
        let pods = [pod("a", "web", named.clone()), pod("b", "web", vec![]), pod("c", "other", named)];
        let views = |ready: [bool; 3]| {
            pods.iter().zip(ready).enumerate().map(|(i, (spec, ready))| PodView {
                spec,
                ip: Ipv4Addr::new(10, 244, 0, 2 + i as u8).into(),
                ready,
            })
        };
        let svc = service(TargetPort::Name("http".into()));
        let eps = endpoints(&svc, views([true, true, true]));
        assert_eq!(eps.subsets.len(), 1, "only pod a declares http");
        assert_eq!(eps.subsets[0].1[0].port, 8080);
        assert!(eps.problems[0].contains("`http`"), "{:?}", eps.problems);
        let entries = switch_entries(&svc, &eps);
        assert_eq!(entries[0].1, vec![Backend { ip: Ipv4Addr::new(10, 244, 0, 2).into(), port: 8080 }]);

        let eps = endpoints(&svc, views([false, true, true]));
        assert!(eps.subsets.is_empty());
        assert_eq!(eps.not_ready.len(), 1);

        let mut lonely = service(TargetPort::Number(80));
        lonely.spec.selector = [("app".to_string(), "nobody".to_string())].into();
        assert!(endpoints(&lonely, views([true; 3])).problems[0].contains("matches no pod"));

        // Kept per Service: no spare room in what one pod's endpoints hold.
        let eps = endpoints(&service(TargetPort::Number(80)), views([true, true, false]));
        assert_eq!(eps.subsets.len(), 2);
        assert_eq!(eps.subsets.capacity(), 2);
        assert!(eps.subsets.iter().all(|(_, ports)| ports.capacity() == 1));
    }
}
