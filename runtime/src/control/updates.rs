//! Changing objects in place (the Kubernetes API's update and patch): a
//! pod's labels and annotations (the rest of a pod is immutable, as in
//! Kubernetes, and podnet refuses an image change too), a deployment's spec
//! (a changed template rolls its pods: see `scheduling.rs`), a Service's
//! spec keeping its ClusterIP and node ports; namespaces made and deleted
//! with what is in them; dry runs.

use std::sync::Arc;

use super::{ControlError, ControlPlane, Key, Now, key};
use crate::api::{Request, Response};
use crate::model::{
    Annotations, ClusterIpRequest, Deployment, DeploymentSpec, Labels, Namespace, Pod, PodSpec, Protocol,
    Service, ServiceSpec, ServiceType, check_annotations, check_label, check_name,
};

impl ControlPlane {
    /// Changes a pod's labels and annotations; any other change is refused
    /// with the field it touches.
    pub(super) fn update_pod(&mut self, mut spec: PodSpec) -> Result<Pod, ControlError> {
        let k = key(&spec.namespace, &spec.name);
        let entry = self.pods.get(&k).ok_or_else(|| ControlError::no_pod(&spec.namespace, &spec.name))?;
        let old = &entry.record.spec;
        for (k, v) in &spec.labels {
            check_label(k, v)?;
        }
        check_annotations(&spec.annotations)?;
        // What the API shows and a client sends back: the node it runs on
        // and its owner are not the user's to change.
        if spec.node_name.as_deref() == Some(entry.record.node.as_str()) {
            spec.node_name = old.node_name.clone();
        }
        spec.owner = old.owner.clone();
        // A CNI container's attachment is its runtime's, never a client's.
        spec.attachment = old.attachment.clone();
        let rest =
            PodSpec { labels: old.labels.clone(), annotations: old.annotations.clone(), ..spec.clone() };
        if rest != *old {
            return Err(ControlError::PodUpdate(changed_pod_field(old, &rest)));
        }
        self.transact(|cp| {
            let entry = cp.pods.get_mut(&k).expect("checked above");
            entry.record.spec.labels = spec.labels;
            entry.record.spec.annotations = spec.annotations;
            Ok(cp.pod(&cp.pods[&k]))
        })
    }

    /// Replaces a deployment's spec; its pods follow (scaled, or rolled
    /// when the template changed).
    pub(super) fn update_deployment(
        &mut self,
        now: Now,
        mut spec: DeploymentSpec,
    ) -> Result<Deployment, ControlError> {
        self.check_deployment(&mut spec)?;
        let k = key(&spec.namespace, &spec.name);
        let old = self
            .deployments
            .get(&k)
            .ok_or_else(|| ControlError::no_deployment(&spec.namespace, &spec.name))?;
        if spec.selector() != old.spec.selector() {
            return Err(ControlError::Immutable {
                field: "spec.selector",
                why: "a deployment's selector cannot change: delete and create it".into(),
            });
        }
        self.transact(|cp| {
            cp.deployments.get_mut(&k).expect("checked above").spec = spec;
            cp.reconcile_pods(now);
            Ok(cp.deployment(&cp.deployments[&k]))
        })
    }

    /// Replaces a Service's spec. Its ClusterIP stays (asking for another
    /// is refused, as Kubernetes does), and so does the node port of each
    /// port that keeps its number and protocol without naming one.
    pub(super) fn update_service(&mut self, mut spec: ServiceSpec) -> Result<Service, ControlError> {
        self.check_service(&spec)?;
        let k = key(&spec.namespace, &spec.name);
        let old =
            self.services.get(&k).ok_or_else(|| ControlError::no_service(&spec.namespace, &spec.name))?;
        if spec.external_name.is_some() != old.spec.external_name.is_some() {
            return Err(ControlError::Immutable {
                field: "spec.type",
                why: "podnet does not turn a Service into an ExternalName one or back: delete and create it"
                    .into(),
            });
        }
        let keeps_ip = match (spec.cluster_ip, old.cluster_ip) {
            (ClusterIpRequest::Auto, _) | (ClusterIpRequest::None, None) => true,
            (ClusterIpRequest::Fixed(ip), Some(current)) => ip == current,
            _ => false,
        };
        if !keeps_ip {
            let current = old.cluster_ip.map_or("None".to_string(), |ip| ip.to_string());
            return Err(ControlError::Immutable {
                field: "spec.clusterIP",
                why: format!("the Service's ClusterIP is {current}"),
            });
        }
        spec.cluster_ip = old.spec.cluster_ip;
        let kept: Vec<(Protocol, u16)> =
            old.spec.ports.iter().filter_map(|p| Some((p.protocol, p.node_port?))).collect();
        if spec.service_type == ServiceType::ClusterIP && old.spec.service_type != ServiceType::ClusterIP {
            // Node ports the client sent back unchanged go with the type
            // that needed them (Kubernetes' dropTypeDependentFields).
            for port in spec.ports.iter_mut() {
                if port.node_port.is_some_and(|n| kept.contains(&(port.protocol, n))) {
                    port.node_port = None;
                }
            }
        }
        if spec.service_type != ServiceType::ClusterIP {
            for port in spec.ports.iter_mut().filter(|p| p.node_port.is_none()) {
                port.node_port = old
                    .spec
                    .ports
                    .iter()
                    .find(|o| (o.port, o.protocol) == (port.port, port.protocol))
                    .and_then(|o| o.node_port);
            }
        }
        self.transact(|cp| {
            let mut service = cp.services.remove(&k).expect("checked above");
            cp.allocate_node_ports(&mut spec, &kept)?;
            Arc::make_mut(&mut service).spec = spec;
            cp.services.insert(k.clone(), service.clone());
            Ok(Service::clone(&service))
        })
    }

    /// Creates a namespace; one that exists (made, or holding objects) is
    /// refused.
    pub(super) fn create_namespace(
        &mut self,
        now: Now,
        name: String,
        labels: Labels,
        annotations: Annotations,
    ) -> Result<Namespace, ControlError> {
        check_name("namespace", &name, 63)?;
        if self.namespace_exists(&name) {
            return Err(ControlError::NamespaceExists(name));
        }
        let labels = namespace_labels(labels)?;
        check_annotations(&annotations)?;
        self.transact(|cp| {
            let namespace = Namespace { name: name.clone(), created_at: now.unix, labels, annotations };
            cp.namespaces.insert(name, namespace.clone());
            Ok(namespace)
        })
    }

    /// Deletes a namespace with its pods, deployments and Services.
    pub(super) fn delete_namespace(&mut self, name: &str) -> Result<(), ControlError> {
        if name == "default" {
            return Err(ControlError::DeleteDefault);
        }
        if !self.namespaces.contains_key(name) && !self.holds(name) {
            return Err(ControlError::NoNamespace(name.to_string()));
        }
        self.transact(|cp| {
            cp.namespaces.remove(name);
            cp.deployments.retain(|(ns, _), _| ns != name);
            cp.services.retain(|(ns, _), _| ns != name);
            cp.policies.retain(|(ns, _), _| ns != name);
            cp.ingresses.retain(|(ns, _), _| ns != name);
            cp.secrets.retain(|(ns, _), _| ns != name);
            cp.configmaps.retain(|(ns, _), _| ns != name);
            let pods: Vec<Key> = cp.pods.keys().filter(|(ns, _)| ns == name).cloned().collect();
            pods.iter().for_each(|k| {
                cp.take_pod(k);
            });
            Ok(())
        })
    }

    /// Every namespace as the API shows it: `default`, the ones made, and
    /// every one an object is in; each created when it was made or, if it
    /// was not, at its oldest object's time (`default`: when this node
    /// first started).
    pub(super) fn namespace_views<'a>(&'a self) -> Vec<Namespace> {
        let started = self.nodes.get(&self.local).map_or(0, |n| n.record.joined_at);
        let mut times: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        let mut at = |ns: &'a str, t: u64| {
            let e = times.entry(ns).or_insert(t);
            *e = (*e).min(t);
        };
        at("default", started);
        self.pods.values().for_each(|p| at(&p.record.spec.namespace, p.record.created_at));
        self.deployments.values().for_each(|d| at(&d.spec.namespace, d.created_at));
        self.services.values().for_each(|s| at(&s.spec.namespace, s.created_at));
        self.policies.values().for_each(|p| at(&p.spec.namespace, p.created_at));
        self.ingresses.values().for_each(|i| at(&i.spec.namespace, i.created_at));
        self.secrets.values().for_each(|s| at(&s.spec.namespace, s.created_at));
        self.configmaps.values().for_each(|c| at(&c.spec.namespace, c.created_at));
        self.namespaces.values().for_each(|n| at(&n.name, n.created_at));
        times
            .into_iter()
            .map(|(name, created_at)| match self.namespaces.get(name) {
                Some(made) => Namespace { created_at, ..made.clone() },
                None => Namespace {
                    name: name.to_string(),
                    created_at,
                    labels: Default::default(),
                    annotations: Default::default(),
                },
            })
            .collect()
    }

    /// Whether any object is in namespace `name`.
    pub(super) fn holds(&self, name: &str) -> bool {
        self.pods.keys().any(|(ns, _)| ns == name)
            || self.deployments.keys().any(|(ns, _)| ns == name)
            || self.services.keys().any(|(ns, _)| ns == name)
            || self.policies.keys().any(|(ns, _)| ns == name)
            || self.ingresses.keys().any(|(ns, _)| ns == name)
            || self.secrets.keys().any(|(ns, _)| ns == name)
            || self.configmaps.keys().any(|(ns, _)| ns == name)
    }

    /// Whether namespace `name` exists: `default`, made, or holding objects.
    pub(super) fn namespace_exists(&self, name: &str) -> bool {
        name == "default" || self.namespaces.contains_key(name) || self.holds(name)
    }

    /// Answers `request` as if it were made, then puts everything back:
    /// the state, what waits to be saved, and the random source (so a dry
    /// run does not change the names later pods get).
    pub(super) fn dry_run(&mut self, now: Now, request: Request) -> Result<Response, ControlError> {
        let (before, unsaved, dirty, rng) =
            (self.snapshot(), self.unsaved.take(), self.dirty, self.rng.clone());
        let result = self.handle(now, request);
        self.restore(before);
        (self.unsaved, self.dirty, self.rng) = (unsaved, dirty, rng);
        result
    }
}

/// Checks a namespace's labels; `kubernetes.io/metadata.name` is not
/// stored (it is always the name, as Kubernetes sets it).
pub(super) fn namespace_labels(mut labels: Labels) -> Result<Labels, ControlError> {
    labels.remove(crate::model::policy::NAMESPACE_NAME_LABEL);
    for (k, v) in &labels {
        check_label(k, v)?;
    }
    Ok(labels)
}

/// The first field a pod update changes besides labels and annotations,
/// named as the API names it.
fn changed_pod_field(old: &PodSpec, new: &PodSpec) -> &'static str {
    match () {
        _ if old.template.image.as_ref().map(|i| &i.image)
            != new.template.image.as_ref().map(|i| &i.image) =>
        {
            "spec.containers[0].image"
        }
        _ if old.template.command != new.template.command
            || old.template.image.as_ref().map(|i| (&i.command, &i.args))
                != new.template.image.as_ref().map(|i| (&i.command, &i.args)) =>
        {
            "spec.containers[0].command"
        }
        _ if old.template.ports != new.template.ports
            || old.template.host_ports != new.template.host_ports =>
        {
            "spec.containers[0].ports"
        }
        _ if old.template.readiness != new.template.readiness => "spec.containers[0].readinessProbe",
        _ if old.template.resources != new.template.resources => "spec.containers[0].resources",
        _ if old.template.security != new.template.security => "spec.containers[0].securityContext",
        _ if old.restart_policy != new.restart_policy => "spec.restartPolicy",
        _ if old.node_name != new.node_name => "spec.nodeName",
        _ => "spec",
    }
}
