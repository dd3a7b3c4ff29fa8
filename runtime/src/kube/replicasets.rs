//! ReplicaSets (apps/v1, read-only), derived from podnet's deployments as
//! the deployment controller would keep them: one per pod template, named
//! `<deployment>-<pod-template-hash>`, owning the pods made from that
//! template and owned by the deployment. `kubectl rollout status` and
//! `kubectl describe deployment` (NewReplicaSet) read them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{
    Annotations, ContainerPort, Deployment, DeploymentSpec, HostPort, ImageSpec, Labels, Pod, PodSpec, Probe,
    Resources, SecurityContext,
};

/// The label a ReplicaSet's selector and pods carry.
pub const HASH_LABEL: &str = "pod-template-hash";

/// What a pod template is made of: the parts a deployment hands its pods.
#[derive(Serialize)]
struct Template<'a> {
    labels: &'a Labels,
    command: &'a [String],
    ports: &'a [ContainerPort],
    readiness: &'a Option<Probe>,
    host_ports: &'a [HostPort],
    security: &'a SecurityContext,
    image: &'a Option<ImageSpec>,
    resources: &'a Resources,
    // Left out when empty, so the hashes of templates without them are
    // those they had before these fields counted.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a Annotations,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: &'a Option<String>,
}

/// FNV-1a, 64 bits: a stable hash of the template's JSON (the standard
/// library's hasher may change between Rust releases; a template hash must
/// not change across an upgrade).
pub(super) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// `len` characters of `n` in the alphabet Kubernetes' generated names use
/// (no vowels, no look-alikes).
pub(super) fn safe_encode(mut n: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn hash(template: &Template<'_>) -> String {
    safe_encode(fnv(&serde_json::to_vec(template).unwrap_or_default()), 10)
}

/// The pod-template-hash of a deployment's current template.
pub fn deployment_hash(spec: &DeploymentSpec) -> String {
    pod_hash(&spec.pod_template())
}

/// The pod-template-hash of the template a pod was made from.
pub fn pod_hash(spec: &PodSpec) -> String {
    hash(&Template {
        labels: &spec.labels,
        command: &spec.template.command,
        ports: &spec.template.ports,
        readiness: &spec.template.readiness,
        host_ports: &spec.template.host_ports,
        security: &spec.template.security,
        image: &spec.template.image,
        resources: &spec.template.resources,
        annotations: &spec.annotations,
        container: &spec.template.container,
    })
}

/// A ReplicaSet's uid, the same wherever it is derived (a pod's owner
/// reference and the ReplicaSet itself).
pub(super) fn uid(namespace: &str, name: &str) -> String {
    let h = fnv(format!("{namespace}/{name}").as_bytes());
    format!("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xffff, 0x8000, h >> 16)
}

/// A deployment pod's owner reference: its ReplicaSet.
pub fn owner_of(spec: &PodSpec) -> Option<Value> {
    let deployment = spec.owner.as_ref()?;
    let name = format!("{deployment}-{}", pod_hash(spec));
    Some(json!([{
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": name,
        "uid": uid(&spec.namespace, &name),
        "controller": true,
        "blockOwnerDeletion": true,
    }]))
}

/// The pod-template-hash label a deployment's pod carries.
pub fn pod_labels(spec: &PodSpec) -> Value {
    let mut labels = json!(spec.labels);
    if spec.owner.is_some() {
        labels[HASH_LABEL] = json!(pod_hash(spec));
    }
    labels
}

/// The ReplicaSets of `deployment` (rendered as `object`, the deployment's
/// JSON), given its pods: the current template's one, and one per older
/// template some pods still run; at revision `rv`.
pub fn of(deployment: &Deployment, object: &Value, pods: &[&Pod], rv: u64) -> Vec<Value> {
    let spec = &deployment.spec;
    let current = deployment_hash(spec);
    let mut hashes = vec![current.clone()];
    for pod in pods {
        let h = pod_hash(&pod.spec);
        if !hashes.contains(&h) {
            hashes.push(h);
        }
    }
    hashes
        .into_iter()
        .map(|h| {
            let mine: Vec<&&Pod> = pods.iter().filter(|p| pod_hash(&p.spec) == h).collect();
            let ready = mine.iter().filter(|p| p.status.ready).count();
            let want = if h == current { spec.replicas } else { 0 };
            let created = mine.iter().map(|p| p.created_at).min().unwrap_or(deployment.created_at);
            let name = format!("{}-{h}", spec.name);
            let mut labels = json!(spec.labels);
            labels[HASH_LABEL] = json!(h);
            let mut template = object["spec"]["template"].clone();
            template["metadata"]["labels"] = labels.clone();
            json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": name,
                    "namespace": spec.namespace,
                    "uid": uid(&spec.namespace, &name),
                    "resourceVersion": rv.to_string(),
                    "generation": object["metadata"]["generation"],
                    "creationTimestamp": super::objects::timestamp(created),
                    "labels": labels,
                    "annotations": { "deployment.kubernetes.io/desired-replicas": spec.replicas.to_string() },
                    "ownerReferences": [{
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": spec.name,
                        "uid": deployment.uid,
                        "controller": true,
                        "blockOwnerDeletion": true,
                    }],
                },
                "spec": {
                    "replicas": want,
                    "selector": { "matchLabels": labels },
                    "template": template,
                },
                "status": {
                    "replicas": mine.len(),
                    "fullyLabeledReplicas": mine.len(),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "observedGeneration": object["metadata"]["generation"],
                },
            })
        })
        .collect()
}

/// A deployment's current ReplicaSet alone, its counts the deployment's
/// (what a watch of ReplicaSets shows: podnet keeps every replica at the
/// current template).
pub fn current(deployment: &Deployment, object: &Value) -> Value {
    let rv = object["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0);
    let mut rs = of(deployment, object, &[], rv).swap_remove(0);
    rs["status"]["replicas"] = json!(deployment.replicas);
    rs["status"]["fullyLabeledReplicas"] = json!(deployment.replicas);
    rs["status"]["readyReplicas"] = json!(deployment.ready_replicas);
    rs["status"]["availableReplicas"] = json!(deployment.ready_replicas);
    rs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploymentSpec {
        DeploymentSpec {
            name: "web".into(),
            namespace: "default".into(),
            replicas: 2,
            labels: [("app".to_string(), "web".to_string())].into(),
            template: crate::model::PodTemplate { command: vec!["sleep".into()], ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn a_deployments_pods_name_its_replicaset_and_the_hash_is_stable() {
        let d = spec();
        // As the control plane makes a replica (control/scheduling.rs).
        let pod = PodSpec {
            name: "web-abcde".into(),
            namespace: d.namespace.clone(),
            labels: d.labels.clone(),
            template: crate::model::PodTemplate {
                command: d.template.command.clone(),
                ports: d.template.ports.clone(),
                readiness: d.template.readiness.clone(),
                host_ports: d.template.host_ports.clone(),
                security: d.template.security,
                image: d.template.image.clone(),
                resources: d.template.resources,
                container: d.template.container.clone(),
            },
            restart_policy: crate::model::RestartPolicy::Always,
            owner: Some(d.name.clone()),
            node_name: None,
            annotations: d.template_annotations.clone(),
            attachment: None,
        };
        let h = deployment_hash(&d);
        assert_eq!(pod_hash(&pod), h);
        assert_eq!(h.len(), 10);
        assert_eq!(h, deployment_hash(&spec()), "the same template, the same hash");
        let owner = owner_of(&pod).unwrap();
        assert_eq!(owner[0]["name"], format!("web-{h}"));
        assert_eq!(pod_labels(&pod)[HASH_LABEL], h);
        let mut other = spec();
        other.template.command = vec!["true".into()];
        assert_ne!(deployment_hash(&other), h, "another template, another ReplicaSet");
        let replicas_only = DeploymentSpec { replicas: 5, ..spec() };
        assert_eq!(deployment_hash(&replicas_only), h, "scaling is not a new template");
        // `kubectl rollout restart` stamps a template annotation: new pods,
        // so a new ReplicaSet, which the pods made from it name.
        let mut restarted = spec();
        restarted.template_annotations.insert("kubectl.kubernetes.io/restartedAt".into(), "now".into());
        let h2 = deployment_hash(&restarted);
        assert_ne!(h2, h, "a restart is a new template");
        let pod2 = PodSpec { annotations: restarted.template_annotations.clone(), ..pod.clone() };
        assert_eq!(pod_hash(&pod2), h2);
    }
}
