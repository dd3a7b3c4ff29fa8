//! The control plane's answers to the CLI: creating, listing, changing and
//! deleting pods, deployments, services and nodes. Every change is one
//! transaction: saved before it is acknowledged, undone if it fails.

use std::sync::Arc;

use netstack::ipam::IpamError;

use super::{ControlError, ControlPlane, Key, Now, PodEntry, key, pending};
use crate::api::{Request, Response, Route};
use crate::model::services;
use crate::model::{
    ClusterIpRequest, Deployment, DeploymentSpec, ImageSpec, Pod, PodSpec, Service, ServiceSpec,
    check_annotations, check_label, check_name,
};
use crate::store::{DeploymentRecord, PodRecord};

impl ControlPlane {
    /// Answers a request at `now`. Node-local requests (see
    /// [`Request::route`]) are refused: a pod's requests name its node.
    pub fn handle(&mut self, now: Now, request: Request) -> Result<Response, ControlError> {
        match request.route() {
            Route::Node => return Err(ControlError::NodeLocal),
            Route::Pod { namespace, name } => {
                return Err(match self.locate(namespace, name) {
                    None => ControlError::no_pod(namespace, name),
                    Some(node) => ControlError::Elsewhere {
                        namespace: namespace.into(),
                        name: name.into(),
                        node: node.into(),
                    },
                });
            }
            Route::Cluster => {}
        }
        match request {
            Request::RunPod(spec) => {
                self.check_pod_spec(&spec)?;
                self.transact(|cp| cp.create_pod(now, spec)).map(Response::Pod)
            }
            Request::CreateDeployment(spec) => self.create_deployment(now, spec).map(Response::Deployment),
            Request::ScaleDeployment { namespace, name, replicas } => {
                let k = key(&namespace, &name);
                let record =
                    self.deployments.get(&k).ok_or_else(|| ControlError::no_deployment(&namespace, &name))?;
                if replicas > 1 && !record.spec.template.host_ports.is_empty() {
                    return Err(ControlError::OneReplicaPerNode { namespace, name });
                }
                self.transact(|cp| {
                    cp.deployments.get_mut(&k).expect("checked above").spec.replicas = replicas;
                    cp.reconcile_pods(now);
                    Ok(())
                })?;
                Ok(Response::Deployment(self.deployment(&self.deployments[&k])))
            }
            Request::GetPods { namespace } => Ok(Response::Pods(
                self.pods
                    .values()
                    .filter(|p| in_namespace(&p.record.spec.namespace, &namespace))
                    .map(|p| self.pod(p))
                    .collect(),
            )),
            Request::GetDeployments { namespace } => Ok(Response::Deployments(
                self.deployments
                    .values()
                    .filter(|d| in_namespace(&d.spec.namespace, &namespace))
                    .map(|d| self.deployment(d))
                    .collect(),
            )),
            Request::DeletePod { namespace, name } => self.transact(|cp| {
                cp.take_pod(&key(&namespace, &name))
                    .ok_or_else(|| ControlError::no_pod(&namespace, &name))?;
                Ok(Response::Done)
            }),
            Request::DeleteDeployment { namespace, name } => self.transact(|cp| {
                cp.deployments
                    .remove(&key(&namespace, &name))
                    .ok_or_else(|| ControlError::no_deployment(&namespace, &name))?;
                let owned: Vec<Key> = cp
                    .pods
                    .iter()
                    .filter(|(_, p)| {
                        p.record.spec.namespace == namespace && p.record.spec.owner.as_deref() == Some(&name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                owned.iter().for_each(|k| {
                    cp.take_pod(k);
                });
                Ok(Response::Done)
            }),
            Request::CreateService(spec) => self.create_service(now, spec).map(Response::Service),
            Request::GetServices { namespace } => Ok(Response::Services(
                self.services
                    .values()
                    .filter(|s| in_namespace(&s.spec.namespace, &namespace))
                    .cloned()
                    .collect(),
            )),
            Request::GetEndpoints { namespace } => Ok(Response::Endpoints(
                self.services
                    .values()
                    .filter(|s| in_namespace(&s.spec.namespace, &namespace))
                    .map(|s| self.endpoints(s))
                    .collect(),
            )),
            Request::DeleteService { namespace, name } => self.transact(|cp| {
                cp.services
                    .remove(&key(&namespace, &name))
                    .ok_or_else(|| ControlError::no_service(&namespace, &name))?;
                Ok(Response::Done)
            }),
            Request::SetSessionAffinity { namespace, name, affinity } => self.transact(|cp| {
                let service = cp
                    .services
                    .get_mut(&key(&namespace, &name))
                    .ok_or_else(|| ControlError::no_service(&namespace, &name))?;
                Arc::make_mut(service).spec.session_affinity = affinity;
                Ok(Response::Service(Service::clone(service)))
            }),
            Request::GetNodes => Ok(Response::Nodes(self.node_infos())),
            Request::DeleteNode { name } => self.delete_node(now, &name).map(|()| Response::Done),
            Request::Changes { since } => {
                Ok(Response::Changes { revision: self.revision(), changes: self.changes(since)? })
            }
            Request::Objects { kind, namespace } => Ok(Response::Objects {
                revision: self.revision(),
                items: self.versioned(kind, namespace.as_deref()),
            }),
            Request::UpdatePod(spec) => self.update_pod(spec).map(Response::Pod),
            Request::UpdateDeployment(spec) => self.update_deployment(now, spec).map(Response::Deployment),
            Request::UpdateService(spec) => self.update_service(spec).map(Response::Service),
            Request::CreateNamespace { name, labels, annotations } => {
                self.create_namespace(now, name, labels, annotations).map(Response::Namespace)
            }
            Request::UpdateNamespace { name, labels, annotations } => {
                self.update_namespace(now, name, labels, annotations).map(Response::Namespace)
            }
            Request::CreateNetworkPolicy(spec) => self.create_policy(now, spec).map(Response::NetworkPolicy),
            Request::UpdateNetworkPolicy(spec) => self.update_policy(spec).map(Response::NetworkPolicy),
            Request::GetNetworkPolicies { namespace } => Ok(Response::NetworkPolicies(
                self.policies
                    .values()
                    .filter(|p| in_namespace(&p.spec.namespace, &namespace))
                    .cloned()
                    .collect(),
            )),
            Request::DeleteNetworkPolicy { namespace, name } => {
                self.delete_policy(&namespace, &name).map(|()| Response::Done)
            }
            Request::DeleteNamespace { name } => self.delete_namespace(&name).map(|()| Response::Done),
            Request::GetNamespaces => Ok(Response::Namespaces(self.namespaces.values().cloned().collect())),
            Request::DryRun(request) => self.dry_run(now, *request),
            request @ (Request::CreateIngress(_)
            | Request::UpdateIngress(_)
            | Request::GetIngresses { .. }
            | Request::DeleteIngress { .. }
            | Request::CreateSecret(_)
            | Request::UpdateSecret(_)
            | Request::GetSecrets { .. }
            | Request::DeleteSecret { .. }) => self.ingress_request(now, request),
            request @ (Request::CreateConfigMap(_)
            | Request::UpdateConfigMap(_)
            | Request::GetConfigMaps { .. }
            | Request::DeleteConfigMap { .. }) => self.configmap_request(now, request),
            Request::ExecTarget { .. }
            | Request::Exec { .. }
            | Request::Input(_)
            | Request::Resize { .. }
            | Request::Logs { .. }
            | Request::DescribePod { .. }
            | Request::Capture { .. }
            | Request::FollowLogs { .. }
            | Request::NodeStats
            | Request::Resolve { .. }
            | Request::ImagePull { .. }
            | Request::ImageList
            | Request::ImageRemove { .. }
            | Request::ImageImport { .. }
            | Request::CniAdd(_)
            | Request::CniDel { .. }
            | Request::CniCheck { .. }
            | Request::CniGc { .. }
            | Request::CniStatus => unreachable!("routed above"),
        }
    }

    /// Places a pod and gives it an address from its node's subnet (inside
    /// a transaction).
    pub(super) fn create_pod(&mut self, now: Now, spec: PodSpec) -> Result<Pod, ControlError> {
        let k = key(&spec.namespace, &spec.name);
        if self.pods.contains_key(&k) {
            return Err(ControlError::PodExists { namespace: spec.namespace, name: spec.name });
        }
        let node = self.place(&spec)?;
        self.check_pod_host_ports(&node, &spec)?;
        let entry = self.nodes.get_mut(&node).expect("placed on a known node");
        let ip = entry.ipam.allocate().map_err(|e| match e {
            IpamError::Exhausted => {
                ControlError::SubnetFull { node: node.clone(), subnet: entry.record.subnet }
            }
            source => ControlError::Ipam { node: node.clone(), source },
        })?;
        let ip = std::net::IpAddr::V4(ip);
        let record = PodRecord { uid: self.rng.id(16), created_at: now.unix, ip, spec, node };
        self.pods.insert(k.clone(), PodEntry { status: pending(ip), record });
        Ok(self.pod(&self.pods[&k]))
    }

    /// Removes a pod and frees its address; its node tears it down when told.
    pub(super) fn take_pod(&mut self, k: &Key) -> Option<PodEntry> {
        let pod = self.pods.remove(k)?;
        if let Some(node) = self.nodes.get_mut(&pod.record.node)
            && let Ok(ip) = pod.record.ipv4()
        {
            node.ipam.release(ip);
        }
        Some(pod)
    }

    /// Removes a pod its node could not start, so a failed `podnet run`
    /// leaves nothing behind (a change to save).
    pub fn forget_pod(&mut self, uid: &str) -> Option<Pod> {
        let k = self.pods.iter().find(|(_, p)| p.record.uid == uid).map(|(k, _)| k.clone())?;
        self.transact(|cp| Ok(cp.take_pod(&k).map(|pod| cp.pod(&pod)))).ok().flatten()
    }

    /// Checks a deployment's spec (new or replacing one) and fills in
    /// what podnet derives: `app=NAME` when no selector was given (the
    /// CLI's deployments), and no copies of `labels` in `selector` and
    /// `object_labels`.
    pub(super) fn check_deployment(&self, spec: &mut DeploymentSpec) -> Result<(), ControlError> {
        check_name("deployment", &spec.name, 57)?;
        check_name("namespace", &spec.namespace, 63)?;
        self.check_workload(&spec.template.command, spec.template.image.as_ref())?;
        if spec.replicas > 1 && !spec.template.host_ports.is_empty() {
            return Err(ControlError::OneReplicaPerNode {
                namespace: spec.namespace.clone(),
                name: spec.name.clone(),
            });
        }
        crate::model::listeners::check_host_ports(&spec.template.host_ports)?;
        if spec.selector.is_none() && !spec.labels.contains_key("app") {
            spec.labels.insert("app".into(), spec.name.clone());
        }
        for labels in
            [Some(&spec.labels), spec.selector.as_ref(), spec.object_labels.as_ref()].into_iter().flatten()
        {
            for (k, v) in labels {
                check_label(k, v)?;
            }
        }
        if spec.selector().is_empty() || spec.selector().iter().any(|(k, v)| spec.labels.get(k) != Some(v)) {
            return Err(ControlError::SelectorMismatch);
        }
        check_annotations(&spec.annotations)?;
        check_annotations(&spec.template_annotations)?;
        if spec.selector.as_ref() == Some(&spec.labels) {
            spec.selector = None;
        }
        if spec.object_labels.as_ref() == Some(&spec.labels) {
            spec.object_labels = None;
        }
        Ok(())
    }

    fn create_deployment(&mut self, now: Now, mut spec: DeploymentSpec) -> Result<Deployment, ControlError> {
        self.check_deployment(&mut spec)?;
        let k = key(&spec.namespace, &spec.name);
        if self.deployments.contains_key(&k) {
            return Err(ControlError::DeploymentExists { namespace: spec.namespace, name: spec.name });
        }
        self.transact(|cp| {
            let uid = cp.rng.id(16);
            cp.deployments.insert(k.clone(), DeploymentRecord { uid, created_at: now.unix, spec });
            cp.reconcile_pods(now);
            Ok(cp.deployment(&cp.deployments[&k]))
        })
    }

    /// Checks and stores a new Service, with its ClusterIP.
    fn create_service(&mut self, now: Now, mut spec: ServiceSpec) -> Result<Service, ControlError> {
        self.check_service(&spec)?;
        let k = key(&spec.namespace, &spec.name);
        if self.services.contains_key(&k) {
            return Err(ControlError::ServiceExists { namespace: spec.namespace, name: spec.name });
        }
        let net = &self.config.network;
        let used = self.services.values().filter_map(|s| s.cluster_ip).collect();
        let seed = self.rng.next_u32();
        let request = if spec.external_name.is_some() { ClusterIpRequest::None } else { spec.cluster_ip };
        let cluster_ip =
            services::allocate_cluster_ip(request, net.service_cidr, net.cluster_dns, &used, seed)?;
        self.allocate_node_ports(&mut spec, &[])?;
        let uid = self.rng.id(16);
        let service = Service { uid, created_at: now.unix, cluster_ip, spec, load_balancer: None };
        self.transact(|cp| {
            cp.services.insert(k, Arc::new(service.clone()));
            Ok(service)
        })
    }

    /// Checks a Service's spec, new or replacing one.
    pub(super) fn check_service(&self, spec: &ServiceSpec) -> Result<(), ControlError> {
        check_name("service", &spec.name, 63)?;
        check_name("namespace", &spec.namespace, 63)?;
        if let Some(target) = &spec.external_name {
            crate::model::check_external_name(target)?;
        } else if spec.ports.is_empty() {
            return Err(ControlError::NoPorts);
        }
        let mut seen = std::collections::BTreeSet::new();
        for port in &spec.ports {
            if !seen.insert((port.port, port.protocol)) {
                return Err(ControlError::PortTwice { port: port.port, protocol: port.protocol });
            }
            if spec.ports.len() > 1 && port.name.is_none() {
                return Err(ControlError::PortNeedsName);
            }
        }
        for (k, v) in spec.selector.iter().chain(&spec.labels) {
            check_label(k, v)?;
        }
        check_annotations(&spec.annotations)?;
        Ok(())
    }

    fn check_pod_spec(&self, spec: &PodSpec) -> Result<(), ControlError> {
        check_name("pod", &spec.name, 63)?;
        check_name("namespace", &spec.namespace, 63)?;
        for (k, v) in &spec.labels {
            check_label(k, v)?;
        }
        check_annotations(&spec.annotations)?;
        self.check_workload(&spec.template.command, spec.template.image.as_ref())
    }

    /// An image pod needs a reference that parses (whether it exists is
    /// the node's business: it pulls); a command pod a command on the node.
    fn check_workload(&self, command: &[String], image: Option<&ImageSpec>) -> Result<(), ControlError> {
        match image {
            Some(image) if !command.is_empty() => Err(ControlError::CommandAndImage(image.image.clone())),
            Some(image) => {
                crate::model::check_env(&image.env)?;
                crate::image::Reference::parse(&image.image).map(drop).map_err(ControlError::Image)
            }
            None => self.check_command(command),
        }
    }

    /// A command must be given and must exist (on the control plane's node:
    /// nodes of one cluster are alike), so a typo is an error now rather
    /// than a pod in CrashLoopBackOff.
    fn check_command(&self, command: &[String]) -> Result<(), ControlError> {
        let program = command.first().ok_or(ControlError::NoCommand)?;
        if self.host.has_command(program) {
            Ok(())
        } else {
            Err(ControlError::CommandNotFound(program.clone()))
        }
    }
}

fn in_namespace(ns: &str, filter: &Option<String>) -> bool {
    filter.as_deref().is_none_or(|f| f == ns)
}
