//! The pod template: what every pod made from it runs and exposes, held
//! once by a deployment and by each pod (Kubernetes' PodTemplateSpec, its
//! one container). Pods and deployments are still serialized flat, in the
//! shape the state file and the control protocol had before the template
//! was a struct: old state files load as they are, and the users' JSON
//! does not change. Serializing borrows (no copy of a spec per save).

use serde::{Deserialize, Serialize, Serializer};

use super::cni::CniAttachment;
use super::{
    Annotations, ContainerPort, DeploymentSpec, HostPort, ImageSpec, Labels, PodSpec, Probe, Resources,
    RestartPolicy, SecurityContext, Strategy,
};

/// What a pod runs and exposes: its command or image, ports, readiness
/// probe, host ports, confinement and resources. A deployment's pods hold
/// their deployment's, field for field (labels and annotations stay on the
/// pod and the deployment, as metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodTemplate {
    /// The command and its arguments (a command pod's, on the host's
    /// filesystem; empty with an image).
    pub command: Vec<String>,
    /// Ports it declares, so a Service can target them by name.
    pub ports: Vec<ContainerPort>,
    /// Readiness probe: while it fails the pod is no Service endpoint.
    pub readiness: Option<Probe>,
    /// Ports of the node proxied to the pod (hostPort).
    pub host_ports: Vec<HostPort>,
    /// How its processes are confined (securityContext).
    pub security: SecurityContext,
    /// The container image it runs; none for a command pod.
    pub image: Option<ImageSpec>,
    /// Memory and CPU limits and requests (resources).
    pub resources: Resources,
    /// Its container's name, when it is not the pod's (or deployment's).
    pub container: Option<String>,
}

/// The template's fields of a flat spec read (both flat shapes name them alike).
macro_rules! template_of {
    ($f:ident) => {
        PodTemplate {
            command: $f.command,
            ports: $f.ports,
            readiness: $f.readiness,
            host_ports: $f.host_ports,
            security: $f.security,
            image: $f.image,
            resources: $f.resources,
            container: $f.container,
        }
    };
}

/// A [`PodSpec`] as serialized: the fields in their historical order,
/// generic so that one shape serves writing (borrowed) and reading (owned).
/// (No skip_serializing_if: postcard, on the wire, is not self-describing.)
#[derive(Serialize, Deserialize)]
pub(super) struct FlatPodSpec<N, L, C, R, O, P, B, H, S, I, Q, A, K, T> {
    name: N,
    namespace: N,
    labels: L,
    command: C,
    restart_policy: R,
    owner: O,
    #[serde(default)]
    ports: P,
    #[serde(default)]
    readiness: B,
    #[serde(default)]
    node_name: O,
    #[serde(default)]
    host_ports: H,
    #[serde(default)]
    security: S,
    #[serde(default)]
    image: I,
    #[serde(default)]
    resources: Q,
    #[serde(default)]
    annotations: A,
    #[serde(default)]
    container: K,
    #[serde(default)]
    attachment: T,
}

/// The owned form, as read.
pub(super) type OwnedPodSpec = FlatPodSpec<
    String,
    Labels,
    Vec<String>,
    RestartPolicy,
    Option<String>,
    Vec<ContainerPort>,
    Option<Probe>,
    Vec<HostPort>,
    SecurityContext,
    Option<ImageSpec>,
    Resources,
    Annotations,
    Option<String>,
    Option<CniAttachment>,
>;

impl From<OwnedPodSpec> for PodSpec {
    fn from(f: OwnedPodSpec) -> PodSpec {
        PodSpec {
            name: f.name,
            namespace: f.namespace,
            labels: f.labels,
            template: template_of!(f),
            restart_policy: f.restart_policy,
            owner: f.owner,
            node_name: f.node_name,
            annotations: f.annotations,
            attachment: f.attachment,
        }
    }
}

impl Serialize for PodSpec {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        let t = &self.template;
        FlatPodSpec {
            name: &self.name,
            namespace: &self.namespace,
            labels: &self.labels,
            command: &t.command,
            restart_policy: &self.restart_policy,
            owner: &self.owner,
            ports: &t.ports,
            readiness: &t.readiness,
            node_name: &self.node_name,
            host_ports: &t.host_ports,
            security: &t.security,
            image: &t.image,
            resources: &t.resources,
            annotations: &self.annotations,
            container: &t.container,
            attachment: &self.attachment,
        }
        .serialize(z)
    }
}

/// A [`DeploymentSpec`] as serialized: the fields in their historical order.
#[derive(Serialize, Deserialize)]
pub(super) struct FlatDeploymentSpec<N, U, L, C, P, B, H, S, I, Q, A, O, K, G> {
    name: N,
    namespace: N,
    replicas: U,
    labels: L,
    command: C,
    #[serde(default)]
    ports: P,
    #[serde(default)]
    readiness: B,
    #[serde(default)]
    host_ports: H,
    #[serde(default)]
    security: S,
    #[serde(default)]
    image: I,
    #[serde(default)]
    resources: Q,
    #[serde(default)]
    annotations: A,
    #[serde(default)]
    object_labels: O,
    #[serde(default)]
    selector: O,
    #[serde(default)]
    container: K,
    #[serde(default)]
    strategy: G,
    #[serde(default)]
    template_annotations: A,
}

/// The owned form, as read.
pub(super) type OwnedDeploymentSpec = FlatDeploymentSpec<
    String,
    u32,
    Labels,
    Vec<String>,
    Vec<ContainerPort>,
    Option<Probe>,
    Vec<HostPort>,
    SecurityContext,
    Option<ImageSpec>,
    Resources,
    Annotations,
    Option<Labels>,
    Option<String>,
    Strategy,
>;

impl From<OwnedDeploymentSpec> for DeploymentSpec {
    fn from(f: OwnedDeploymentSpec) -> DeploymentSpec {
        DeploymentSpec {
            name: f.name,
            namespace: f.namespace,
            replicas: f.replicas,
            labels: f.labels,
            template: template_of!(f),
            annotations: f.annotations,
            object_labels: f.object_labels,
            selector: f.selector,
            strategy: f.strategy,
            template_annotations: f.template_annotations,
        }
    }
}

impl Serialize for DeploymentSpec {
    fn serialize<Z: Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        let t = &self.template;
        FlatDeploymentSpec {
            name: &self.name,
            namespace: &self.namespace,
            replicas: &self.replicas,
            labels: &self.labels,
            command: &t.command,
            ports: &t.ports,
            readiness: &t.readiness,
            host_ports: &t.host_ports,
            security: &t.security,
            image: &t.image,
            resources: &t.resources,
            annotations: &self.annotations,
            object_labels: &self.object_labels,
            selector: &self.selector,
            container: &t.container,
            strategy: &self.strategy,
            template_annotations: &self.template_annotations,
        }
        .serialize(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        value.as_object().unwrap().keys().map(String::as_str).collect()
    }

    /// The users' JSON, the state file and the control protocol keep the
    /// flat shape, field for field and in order.
    #[test]
    fn pods_and_deployments_serialize_flat_as_before() {
        let template = PodTemplate {
            command: vec!["sleep".into()],
            ports: vec!["http:8080".parse().unwrap()],
            readiness: Some(Probe::Tcp { port: 8080 }),
            host_ports: vec!["80:8080".parse().unwrap()],
            container: Some("app".into()),
            ..Default::default()
        };
        let pod = PodSpec {
            name: "web".into(),
            namespace: "default".into(),
            template: template.clone(),
            ..Default::default()
        };
        let json = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            keys(&json),
            [
                "name",
                "namespace",
                "labels",
                "command",
                "restart_policy",
                "owner",
                "ports",
                "readiness",
                "node_name",
                "host_ports",
                "security",
                "image",
                "resources",
                "annotations",
                "container",
                "attachment"
            ]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        );
        assert_eq!(json["command"][0], "sleep");
        assert_eq!(serde_json::from_value::<PodSpec>(json).unwrap(), pod);
        let bytes = postcard::to_allocvec(&pod).unwrap();
        assert_eq!(postcard::from_bytes::<PodSpec>(&bytes).unwrap(), pod);
        // postcard writes fields in order: the name, then the namespace...
        assert_eq!(&bytes[..4], b"\x03web");

        let deployment = DeploymentSpec { name: "web".into(), replicas: 2, template, ..Default::default() };
        let json = serde_json::to_value(&deployment).unwrap();
        assert_eq!(json["readiness"]["Tcp"]["port"], 8080);
        assert!(json.get("template").is_none());
        assert_eq!(serde_json::from_value::<DeploymentSpec>(json).unwrap(), deployment);
        let bytes = postcard::to_allocvec(&deployment).unwrap();
        assert_eq!(postcard::from_bytes::<DeploymentSpec>(&bytes).unwrap(), deployment);
        assert_eq!(deployment.pod_template().template, deployment.template);
    }
}
