//! The control plane's answers to the CLI: creating, listing, changing and
//! deleting pods, deployments and services. Every change is saved before it
//! is acknowledged, and undone in memory if saving fails.

use std::path::Path;

use netstack::ipam::IpamError;

use super::{ControlPlane, Key, PodEntry, key, pending};
use crate::api::{Request, Response};
use crate::model::services;
use crate::model::{
    ClusterIpRequest, Deployment, DeploymentSpec, Pod, PodSpec, Service, ServiceSpec, check_label,
    check_name, unix_now,
};
use crate::store::{DeploymentRecord, PodRecord};
use crate::sys::random;

impl ControlPlane {
    /// Answers a request about cluster state (everything but the node-local
    /// requests: exec, logs, capture, node stats, resolve).
    pub fn handle(&mut self, request: Request) -> Result<Response, String> {
        match request {
            Request::RunPod(spec) => {
                check_pod_spec(&spec)?;
                self.create_pod(spec).map(Response::Pod)
            }
            Request::CreateDeployment(spec) => self.create_deployment(spec).map(Response::Deployment),
            Request::ScaleDeployment { namespace, name, replicas } => {
                let k = key(&namespace, &name);
                let record = self.deployments.get_mut(&k).ok_or_else(|| no_deployment(&namespace, &name))?;
                if replicas > 1 && !record.spec.host_ports.is_empty() {
                    return Err(super::ports::one_replica_per_node(&namespace, &name));
                }
                let before = std::mem::replace(&mut record.spec.replicas, replicas);
                if let Err(e) = self.save() {
                    if let Some(record) = self.deployments.get_mut(&k) {
                        record.spec.replicas = before;
                    }
                    return Err(e);
                }
                self.reconcile();
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
            Request::DeletePod { namespace, name } => {
                let pod = self.take_pod(&key(&namespace, &name)).ok_or_else(|| no_pod(&namespace, &name))?;
                if let Err(e) = self.save() {
                    self.put_back(pod);
                    return Err(e);
                }
                Ok(Response::Done)
            }
            Request::DeleteDeployment { namespace, name } => {
                let k = key(&namespace, &name);
                let record = self.deployments.remove(&k).ok_or_else(|| no_deployment(&namespace, &name))?;
                let owned: Vec<Key> = self
                    .pods
                    .iter()
                    .filter(|(_, p)| {
                        p.record.spec.namespace == namespace && p.record.spec.owner.as_deref() == Some(&name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                let pods: Vec<PodEntry> = owned.iter().filter_map(|k| self.take_pod(k)).collect();
                if let Err(e) = self.save() {
                    self.deployments.insert(k, record);
                    pods.into_iter().for_each(|pod| self.put_back(pod));
                    return Err(e);
                }
                Ok(Response::Done)
            }
            Request::CreateService(spec) => self.create_service(spec).map(Response::Service),
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
            Request::DeleteService { namespace, name } => {
                let k = key(&namespace, &name);
                let service = self.services.remove(&k).ok_or_else(|| no_service(&namespace, &name))?;
                if let Err(e) = self.save() {
                    self.services.insert(k, service);
                    return Err(e);
                }
                Ok(Response::Done)
            }
            Request::SetSessionAffinity { namespace, name, affinity } => {
                let k = key(&namespace, &name);
                let service = self.services.get_mut(&k).ok_or_else(|| no_service(&namespace, &name))?;
                let before = std::mem::replace(&mut service.spec.session_affinity, affinity);
                if let Err(e) = self.save() {
                    if let Some(service) = self.services.get_mut(&k) {
                        service.spec.session_affinity = before;
                    }
                    return Err(e);
                }
                Ok(Response::Service(self.services[&k].clone()))
            }
            Request::GetNodes => Ok(Response::Nodes(self.node_infos())),
            Request::ExecTarget { namespace, name }
            | Request::Logs { namespace, name }
            | Request::Capture { namespace, name } => match self.locate(&namespace, &name) {
                None => Err(no_pod(&namespace, &name)),
                Some(node) => Err(format!(
                    "pod {namespace}/{name} runs on node {node}: run the command there (podnet on that node)"
                )),
            },
            Request::NodeStats
            | Request::Resolve { .. }
            | Request::ImagePull { .. }
            | Request::ImageList
            | Request::ImageRemove { .. }
            | Request::ImageImport { .. } => Err("this request is answered by a node".into()),
        }
    }

    /// Places a pod, gives it an address from its node's subnet, and saves it.
    pub(super) fn create_pod(&mut self, spec: PodSpec) -> Result<Pod, String> {
        let k = key(&spec.namespace, &spec.name);
        if self.pods.contains_key(&k) {
            return Err(format!(
                "pod {}/{} already exists: delete it first or choose another name",
                spec.namespace, spec.name
            ));
        }
        let node = self.place(&spec)?;
        self.check_pod_host_ports(&node, &spec)?;
        let entry = self.nodes.get_mut(&node).expect("placed on a known node");
        let ip = entry.ipam.allocate().map_err(|e| match e {
            IpamError::Exhausted => format!(
                "node {node} subnet {} has no free address: delete pods, or give the node a larger network.node_subnet",
                entry.record.subnet
            ),
            other => other.to_string(),
        })?;
        let record = PodRecord { uid: random::id(16), created_at: unix_now(), ip, spec, node };
        self.pods.insert(k.clone(), PodEntry { status: pending(ip), record });
        if let Err(e) = self.save() {
            self.take_pod(&k);
            return Err(e);
        }
        Ok(self.pod(&self.pods[&k]))
    }

    /// Removes a pod and frees its address; its node tears it down when told.
    pub(super) fn take_pod(&mut self, k: &Key) -> Option<PodEntry> {
        let pod = self.pods.remove(k)?;
        if let Some(node) = self.nodes.get_mut(&pod.record.node) {
            node.ipam.release(pod.record.ip);
        }
        Some(pod)
    }

    /// Undoes [`ControlPlane::take_pod`] when saving the change failed.
    fn put_back(&mut self, pod: PodEntry) {
        if let Some(node) = self.nodes.get_mut(&pod.record.node) {
            let _ = node.ipam.reserve(pod.record.ip);
        }
        self.pods.insert(key(&pod.record.spec.namespace, &pod.record.spec.name), pod);
    }

    /// Removes a pod its node could not start, so a failed `podnet run`
    /// leaves nothing behind.
    pub fn forget_pod(&mut self, uid: &str) -> Option<Pod> {
        let k = self.pods.iter().find(|(_, p)| p.record.uid == uid).map(|(k, _)| k.clone())?;
        let pod = self.take_pod(&k)?;
        if let Err(e) = self.save() {
            tracing::warn!("{e}");
        }
        Some(self.pod(&pod))
    }

    fn create_deployment(&mut self, mut spec: DeploymentSpec) -> Result<Deployment, String> {
        check_name("deployment", &spec.name, 57)?;
        check_name("namespace", &spec.namespace, 63)?;
        check_command(&spec.command)?;
        if spec.replicas > 1 && !spec.host_ports.is_empty() {
            return Err(super::ports::one_replica_per_node(&spec.namespace, &spec.name));
        }
        crate::model::listeners::check_host_ports(&spec.host_ports)?;
        spec.labels.entry("app".into()).or_insert_with(|| spec.name.clone());
        for (k, v) in &spec.labels {
            check_label(k, v)?;
        }
        let k = key(&spec.namespace, &spec.name);
        if self.deployments.contains_key(&k) {
            return Err(format!(
                "deployment {}/{} already exists: scale it, or delete it first",
                spec.namespace, spec.name
            ));
        }
        self.deployments
            .insert(k.clone(), DeploymentRecord { uid: random::id(16), created_at: unix_now(), spec });
        if let Err(e) = self.save() {
            self.deployments.remove(&k);
            return Err(e);
        }
        self.reconcile();
        Ok(self.deployment(&self.deployments[&k]))
    }

    /// Checks and stores a new Service, with its ClusterIP.
    fn create_service(&mut self, mut spec: ServiceSpec) -> Result<Service, String> {
        check_name("service", &spec.name, 63)?;
        check_name("namespace", &spec.namespace, 63)?;
        let k = key(&spec.namespace, &spec.name);
        if self.services.contains_key(&k) {
            return Err(format!(
                "service {}/{} already exists: delete it first or choose another --name",
                spec.namespace, spec.name
            ));
        }
        if let Some(target) = &spec.external_name {
            crate::model::check_external_name(target)?;
        } else if spec.ports.is_empty() {
            return Err("a service needs at least one port: give --port".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for port in &spec.ports {
            if !seen.insert((port.port, port.protocol)) {
                return Err(format!("port {}/{} is listed twice", port.port, port.protocol));
            }
            if spec.ports.len() > 1 && port.name.is_none() {
                return Err("every port of a multi-port service needs a name: --port NAME:PORT".into());
            }
        }
        for (k, v) in &spec.selector {
            check_label(k, v)?;
        }
        let net = &self.config.network;
        let used = self.services.values().filter_map(|s| s.cluster_ip).collect();
        let seed = u32::from_le_bytes(random::bytes(4).try_into().unwrap_or_default());
        let request = if spec.external_name.is_some() { ClusterIpRequest::None } else { spec.cluster_ip };
        let cluster_ip =
            services::allocate_cluster_ip(request, net.service_cidr, net.cluster_dns, &used, seed)?;
        self.allocate_node_ports(&mut spec)?;
        let service =
            Service { uid: random::id(16), created_at: unix_now(), cluster_ip, spec, load_balancer: None };
        self.services.insert(k.clone(), service.clone());
        if let Err(e) = self.save() {
            self.services.remove(&k);
            return Err(e);
        }
        Ok(service)
    }
}

fn in_namespace(ns: &str, filter: &Option<String>) -> bool {
    filter.as_deref().is_none_or(|f| f == ns)
}

/// The error for a pod that does not exist.
pub fn no_pod(namespace: &str, name: &str) -> String {
    format!("pod {namespace}/{name} not found: list pods with `podnet get pods -n {namespace}`")
}

fn no_deployment(namespace: &str, name: &str) -> String {
    format!("deployment {namespace}/{name} not found: list them with `podnet get deployments -n {namespace}`")
}

fn no_service(namespace: &str, name: &str) -> String {
    format!("service {namespace}/{name} not found: list them with `podnet get svc -n {namespace}`")
}

fn check_pod_spec(spec: &PodSpec) -> Result<(), String> {
    check_name("pod", &spec.name, 63)?;
    check_name("namespace", &spec.namespace, 63)?;
    for (k, v) in &spec.labels {
        check_label(k, v)?;
    }
    check_command(&spec.command)
}

/// A command must be given and must exist (on the control plane's node:
/// nodes of one cluster are alike), so a typo is an error now rather than a
/// pod in CrashLoopBackOff.
fn check_command(command: &[String]) -> Result<(), String> {
    let program = command
        .first()
        .ok_or("no command given: put it after `--`, e.g. `podnet run client -- sleep infinity`")?;
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    if found {
        Ok(())
    } else {
        Err(format!("command `{program}` not found on the node: install it, or give its full path"))
    }
}
