//! Objects with the revision of their last change (the control plane's
//! [`Versioned`]) as the API shows them: each carries its own
//! resourceVersion, a deployment its generation and the status kubectl's
//! `rollout status` reads.

use serde_json::{Value, json};

use super::objects;
use crate::api::changes::{Object, ObjectKind, Versioned};
use crate::model::Deployment;

/// The kind a resource's objects are (None: not one the control plane numbers).
pub fn kind_of(resource: &str) -> Option<ObjectKind> {
    Some(match resource {
        "pods" => ObjectKind::Pod,
        "deployments" | "replicasets" => ObjectKind::Deployment,
        "services" => ObjectKind::Service,
        "nodes" => ObjectKind::Node,
        "networkpolicies" => ObjectKind::NetworkPolicy,
        "ingresses" => ObjectKind::Ingress,
        "secrets" => ObjectKind::Secret,
        "configmaps" => ObjectKind::ConfigMap,
        "endpoints" | "endpointslices" => ObjectKind::Endpoints,
        "namespaces" => ObjectKind::Namespace,
        _ => return None,
    })
}

/// The object's JSON.
pub fn render(v: &Versioned) -> Value {
    match &v.object {
        Object::Pod(p) => objects::pod(p, v.revision),
        Object::Deployment(d) => deployment(d, v.revision, v.generation),
        Object::Service(s) => objects::service(s, v.revision),
        Object::Node(n) => objects::node(n, v.revision),
        Object::NetworkPolicy(p) => super::netpol::render(p, v.revision),
        Object::Ingress(i) => super::ingresses::ingress(i, v.revision),
        Object::Secret(s) => super::ingresses::secret(s, v.revision),
        Object::ConfigMap(c) => super::configmaps::configmap(c, v.revision),
        Object::Endpoints(e) => objects::endpoints(e, v.revision),
        Object::Namespace(n) => objects::namespace(n, v.revision),
    }
}

/// A deployment with its generation, and the status the deployment
/// controller would write: every replica is of the current template
/// (podnet does not roll pods to a new template), available once ready.
pub fn deployment(d: &Deployment, rv: u64, generation: u64) -> Value {
    let mut o = objects::deployment(d, rv);
    let want = d.spec.replicas;
    let rs = format!("{}-{}", d.spec.name, super::replicasets::deployment_hash(&d.spec));
    let available = d.ready_replicas >= want;
    let (a_reason, a_message) = match available {
        true => ("MinimumReplicasAvailable", "Deployment has minimum availability."),
        false => ("MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
    };
    let complete = available && d.replicas == want;
    let (p_reason, p_message) = match complete {
        true => ("NewReplicaSetAvailable", format!("ReplicaSet \"{rs}\" has successfully progressed.")),
        false => ("ReplicaSetUpdated", format!("ReplicaSet \"{rs}\" is progressing.")),
    };
    o["metadata"]["generation"] = json!(generation);
    let status = &mut o["status"];
    status["observedGeneration"] = json!(generation);
    status["unavailableReplicas"] = json!(d.replicas.saturating_sub(d.ready_replicas));
    status["conditions"] = json!([
        { "type": "Available", "status": if available { "True" } else { "False" },
          "reason": a_reason, "message": a_message },
        { "type": "Progressing", "status": "True",
          "reason": p_reason, "message": p_message },
    ]);
    o
}
