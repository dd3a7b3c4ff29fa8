//! The object schemas of the OpenAPI v3 documents, for `kubectl explain`:
//! every field of the kinds podnet takes that podnet reads, each with what
//! podnet does with it (in podnet's words, not Kubernetes'); the read-only
//! kinds get their top level. Names follow Kubernetes' (`io.k8s.api.core.v1.Pod`)
//! so tools that key on them find them. Lists carry their strategic-merge
//! keys as Kubernetes publishes them.

use serde_json::{Map, Value, json};

/// A field's type.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    /// A string or an integer (a port by number or name).
    IntOrStr,
    /// A map of strings (labels, selectors).
    Strings,
    /// Another schema of this module.
    Ref(&'static str),
    /// A list of strings.
    StrList,
    /// A list of another schema, with its merge key if it has one.
    List(&'static str, Option<&'static str>),
    /// An object podnet does not describe further.
    Object,
}

/// One field: name, type, what podnet does with it.
type Field = (&'static str, Ty, &'static str);

/// One schema: its name, description, kind (for the top-level ones) and fields.
struct Schema {
    name: &'static str,
    description: &'static str,
    kind: Option<(&'static str, &'static str)>,
    fields: &'static [Field],
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const SELECTOR: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector";

/// apiVersion, kind and metadata: the head of every top-level kind.
const HEAD: [Field; 3] = [
    ("apiVersion", Ty::Str, "The group and version this object is written in (v1, apps/v1)."),
    ("kind", Ty::Str, "The kind of object."),
    ("metadata", Ty::Ref(META), "The object's name, namespace, labels and annotations."),
];

static SCHEMAS: &[Schema] = &[
    Schema {
        name: META,
        description: "What every object carries: its name, where it lives, its labels.",
        kind: None,
        fields: &[
            (
                "name",
                Ty::Str,
                "The object's name, unique in its namespace: a DNS label for pods and services.",
            ),
            ("generateName", Ty::Str, "A prefix podnet completes with a random suffix when name is empty."),
            ("namespace", Ty::Str, "The namespace; default when left out."),
            (
                "labels",
                Ty::Strings,
                "Key/value pairs selectors match: Services and Deployments find pods by them.",
            ),
            ("annotations", Ty::Strings, "Key/value pairs for tools; podnet keeps them."),
            ("uid", Ty::Str, "Set by podnet: the object's unique id."),
            ("resourceVersion", Ty::Str, "Set by podnet: changes whenever the object does."),
            ("creationTimestamp", Ty::Str, "Set by podnet: when the object was made (RFC 3339)."),
            ("ownerReferences", Ty::Object, "Set by podnet: the deployment a replica belongs to."),
        ],
    },
    Schema {
        name: SELECTOR,
        description: "Which objects to take, by their labels.",
        kind: None,
        fields: &[
            ("matchLabels", Ty::Strings, "Labels an object must all carry."),
            (
                "matchExpressions",
                Ty::Object,
                "key In/NotIn values, Exists, DoesNotExist: taken in NetworkPolicy selectors; deployments refuse them (use matchLabels).",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.Pod",
        description: "A pod: one container with its own IP address on the cluster's flat network, on one node.",
        kind: Some(("", "Pod")),
        fields: &[
            HEAD[0],
            HEAD[1],
            HEAD[2],
            ("spec", Ty::Ref("io.k8s.api.core.v1.PodSpec"), "What the pod runs and where."),
            ("status", Ty::Object, "Set by podnet: phase, pod IP, node, container state."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.PodSpec",
        description: "What a pod runs and where: podnet runs one container per pod.",
        kind: None,
        fields: &[
            (
                "containers",
                Ty::List("io.k8s.api.core.v1.Container", Some("name")),
                "The pod's container: exactly one.",
            ),
            ("nodeName", Ty::Str, "Pins the pod to this node."),
            ("nodeSelector", Ty::Strings, "Pins the pod to the node named by kubernetes.io/hostname."),
            ("restartPolicy", Ty::Str, "Always (default), OnFailure or Never."),
            ("hostNetwork", Ty::Bool, "Refused by podnet: every pod has its own address."),
            ("securityContext", Ty::Object, "runAsUser and runAsGroup: the user the container runs as."),
            (
                "volumes",
                Ty::List("io.k8s.api.core.v1.Volume", Some("name")),
                "ConfigMaps and Secrets as files (other volume kinds are refused).",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.Volume",
        description: "A ConfigMap or Secret as a directory of files, one per key, mounted read-only.",
        kind: None,
        fields: &[
            ("name", Ty::Str, "Its name, as volumeMounts name it."),
            (
                "configMap",
                Ty::Object,
                "{name, items: [{key, path, mode}], defaultMode (0644), optional}: the ConfigMap's keys as files.",
            ),
            (
                "secret",
                Ty::Object,
                "{secretName, items: [{key, path, mode}], defaultMode (0644), optional}: the Secret's keys as files.",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.VolumeMount",
        description: "Where the container sees a volume (always read-only).",
        kind: None,
        fields: &[
            ("name", Ty::Str, "The volume's name."),
            ("mountPath", Ty::Str, "The directory in the container: absolute, not /."),
            ("readOnly", Ty::Bool, "Read-only either way, as the kubelet mounts ConfigMaps and Secrets."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.Container",
        description: "A container: an OCI image's process, run by crun or runc in the pod's namespaces.",
        kind: None,
        fields: &[
            ("name", Ty::Str, "The container's name."),
            (
                "image",
                Ty::Str,
                "The image reference (nginx, docker.io/library/busybox:1.36, registry:5000/app@sha256:...).",
            ),
            (
                "imagePullPolicy",
                Ty::Str,
                "Always, IfNotPresent or Never; Always for :latest or no tag, else IfNotPresent.",
            ),
            ("command", Ty::StrList, "Replaces the image's ENTRYPOINT."),
            ("args", Ty::StrList, "Replaces the image's CMD."),
            (
                "ports",
                Ty::List("io.k8s.api.core.v1.ContainerPort", Some("containerPort")),
                "The ports the container listens on; named ones serve Services' targetPort by name.",
            ),
            (
                "readinessProbe",
                Ty::Ref("io.k8s.api.core.v1.Probe"),
                "When the pod is ready: only ready pods are a Service's endpoints.",
            ),
            (
                "resources",
                Ty::Ref("io.k8s.api.core.v1.ResourceRequirements"),
                "Memory and CPU limits (cgroup settings) and requests.",
            ),
            ("securityContext", Ty::Object, "privileged, runAsUser, runAsGroup."),
            (
                "env",
                Ty::List("io.k8s.api.core.v1.EnvVar", Some("name")),
                "Variables over the image's: a value, or valueFrom a ConfigMap's or Secret's key.",
            ),
            (
                "envFrom",
                Ty::List("io.k8s.api.core.v1.EnvFromSource", None),
                "Every key of a ConfigMap or Secret as a variable, with an optional prefix.",
            ),
            (
                "volumeMounts",
                Ty::List("io.k8s.api.core.v1.VolumeMount", Some("mountPath")),
                "Where the pod's volumes appear in the container.",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.ContainerPort",
        description: "A port a container listens on.",
        kind: None,
        fields: &[
            ("containerPort", Ty::Int, "The port, 1 to 65535."),
            ("name", Ty::Str, "A name Services can target."),
            ("protocol", Ty::Str, "TCP (default) or UDP."),
            ("hostPort", Ty::Int, "The node's port that forwards here (a host port)."),
            ("hostIP", Ty::Str, "The node address the host port listens on."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.EnvVar",
        description: "An environment variable.",
        kind: None,
        fields: &[
            ("name", Ty::Str, "Its name."),
            ("value", Ty::Str, "Its value."),
            (
                "valueFrom",
                Ty::Object,
                "configMapKeyRef or secretKeyRef: {name, key, optional}; or fieldRef: {fieldPath} (metadata.name, status.podIP, ...).",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.EnvFromSource",
        description: "Every key of a ConfigMap or Secret as a variable.",
        kind: None,
        fields: &[
            ("configMapRef", Ty::Object, "{name, optional}: the ConfigMap."),
            ("secretRef", Ty::Object, "{name, optional}: the Secret."),
            ("prefix", Ty::Str, "Put before each key."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.Probe",
        description: "A check podnet runs from the node against the pod.",
        kind: None,
        fields: &[
            ("tcpSocket", Ty::Object, "Ready when a TCP connection to port opens."),
            ("httpGet", Ty::Object, "Ready when GET path on port answers 2xx or 3xx."),
            ("timeoutSeconds", Ty::Int, "How long one check may take."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.ResourceRequirements",
        description: "Memory and CPU for a container.",
        kind: None,
        fields: &[
            ("limits", Ty::Strings, "memory (128Mi) and cpu (500m): the cgroup's limits."),
            ("requests", Ty::Strings, "memory and cpu: the cgroup's weights."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.PodTemplateSpec",
        description: "The pods a deployment makes.",
        kind: None,
        fields: &[
            ("metadata", Ty::Ref(META), "Their labels (the selector must match them)."),
            ("spec", Ty::Ref("io.k8s.api.core.v1.PodSpec"), "What each runs."),
        ],
    },
    Schema {
        name: "io.k8s.api.apps.v1.Deployment",
        description: "A deployment: a number of identical pods, spread over the nodes, replaced when they go.",
        kind: Some(("apps", "Deployment")),
        fields: &[
            HEAD[0],
            HEAD[1],
            HEAD[2],
            ("spec", Ty::Ref("io.k8s.api.apps.v1.DeploymentSpec"), "How many pods, and what they run."),
            ("status", Ty::Object, "Set by podnet: replicas, ready and available replicas."),
        ],
    },
    Schema {
        name: "io.k8s.api.apps.v1.DeploymentSpec",
        description: "How many pods a deployment keeps, and what they run.",
        kind: None,
        fields: &[
            ("replicas", Ty::Int, "How many pods; 1 when left out."),
            ("selector", Ty::Ref(SELECTOR), "Must match the template's labels."),
            ("template", Ty::Ref("io.k8s.api.core.v1.PodTemplateSpec"), "The pods it makes."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.Service",
        description: "A Service: one stable address (a ClusterIP and a DNS name) for the ready pods its selector finds, balanced by podnet's switch.",
        kind: Some(("", "Service")),
        fields: &[
            HEAD[0],
            HEAD[1],
            HEAD[2],
            ("spec", Ty::Ref("io.k8s.api.core.v1.ServiceSpec"), "Its selector, ports and type."),
            ("status", Ty::Object, "Set by podnet: a LoadBalancer's address."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.ServiceSpec",
        description: "Which pods a Service reaches, on which ports, and how it is reached.",
        kind: None,
        fields: &[
            ("selector", Ty::Strings, "Labels of the pods it reaches."),
            ("ports", Ty::List("io.k8s.api.core.v1.ServicePort", Some("port")), "Its ports."),
            ("type", Ty::Str, "ClusterIP (default), NodePort, LoadBalancer or ExternalName."),
            (
                "clusterIP",
                Ty::Str,
                "Its address in the service range; None for a headless Service; given by podnet when left out.",
            ),
            ("externalName", Ty::Str, "The DNS name an ExternalName Service is a CNAME to."),
            ("sessionAffinity", Ty::Str, "None (default) or ClientIP: a client stays on one pod."),
            ("sessionAffinityConfig", Ty::Object, "clientIP.timeoutSeconds: how long a client stays."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.ServicePort",
        description: "One port of a Service.",
        kind: None,
        fields: &[
            ("port", Ty::Int, "The port on the ClusterIP."),
            (
                "targetPort",
                Ty::IntOrStr,
                "The pods' port, by number or by the container port's name; port when left out.",
            ),
            ("protocol", Ty::Str, "TCP (default) or UDP."),
            ("name", Ty::Str, "The port's name (SRV records carry it)."),
            (
                "nodePort",
                Ty::Int,
                "For NodePort and LoadBalancer: the port every node opens (30000-32767); given by podnet when left out.",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.Namespace",
        description: "A namespace: a scope for names and DNS (NAME.NAMESPACE.svc.cluster.local).",
        kind: Some(("", "Namespace")),
        fields: &[HEAD[0], HEAD[1], HEAD[2]],
    },
    Schema {
        name: "io.k8s.api.core.v1.Node",
        description: "A node: a board running the podnet agent, with its own pod subnet. Read-only.",
        kind: Some(("", "Node")),
        fields: &[
            HEAD[0],
            HEAD[1],
            HEAD[2],
            ("spec", Ty::Object, "podCIDR: the node's pod subnet."),
            ("status", Ty::Object, "Ready, addresses, podnet's version."),
        ],
    },
    Schema {
        name: "io.k8s.api.core.v1.Endpoints",
        description: "The ready pod addresses and ports of a Service, as podnet's switch balances over them. Read-only.",
        kind: Some(("", "Endpoints")),
        fields: &[HEAD[0], HEAD[1], HEAD[2], ("subsets", Ty::Object, "Addresses and ports.")],
    },
    Schema {
        name: "io.k8s.api.discovery.v1.EndpointSlice",
        description: "A Service's endpoints as kube-proxy reads them: one slice per Service, labelled kubernetes.io/service-name, shown from its Endpoints. Read-only.",
        kind: Some(("discovery.k8s.io", "EndpointSlice")),
        fields: &[
            HEAD[0],
            HEAD[1],
            HEAD[2],
            ("addressType", Ty::Str, "IPv4."),
            (
                "endpoints",
                Ty::Object,
                "The pods: addresses, conditions (ready, serving, terminating), targetRef.",
            ),
            ("ports", Ty::Object, "The ports every endpoint of this slice serves: name, port, protocol."),
        ],
    },
    Schema {
        name: "io.k8s.api.networking.v1.NetworkPolicy",
        description: "A NetworkPolicy: which connections the pods it selects may accept and open, enforced by podnet's switch on every node.",
        kind: Some(("networking.k8s.io", "NetworkPolicy")),
        fields: &[
            HEAD[0],
            HEAD[1],
            HEAD[2],
            (
                "spec",
                Ty::Ref("io.k8s.api.networking.v1.NetworkPolicySpec"),
                "The pods it selects and the rules.",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.networking.v1.NetworkPolicySpec",
        description: "The pods a policy isolates, for which directions, and what it admits.",
        kind: None,
        fields: &[
            ("podSelector", Ty::Ref(SELECTOR), "The pods of its namespace it applies to; {} selects all."),
            (
                "policyTypes",
                Ty::StrList,
                "Ingress and/or Egress; Ingress, plus Egress when egress rules are given, when left out.",
            ),
            (
                "ingress",
                Ty::List("io.k8s.api.networking.v1.NetworkPolicyIngressRule", None),
                "What may connect to the selected pods.",
            ),
            (
                "egress",
                Ty::List("io.k8s.api.networking.v1.NetworkPolicyEgressRule", None),
                "What the selected pods may connect to.",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.networking.v1.NetworkPolicyIngressRule",
        description: "Connections from any of its peers to any of its ports (none given: all).",
        kind: None,
        fields: &[
            (
                "from",
                Ty::List("io.k8s.api.networking.v1.NetworkPolicyPeer", None),
                "The peers; none: every source.",
            ),
            (
                "ports",
                Ty::List("io.k8s.api.networking.v1.NetworkPolicyPort", None),
                "The ports; none: every port.",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.networking.v1.NetworkPolicyEgressRule",
        description: "Connections to any of its peers on any of its ports (none given: all).",
        kind: None,
        fields: &[
            (
                "to",
                Ty::List("io.k8s.api.networking.v1.NetworkPolicyPeer", None),
                "The peers; none: every destination.",
            ),
            (
                "ports",
                Ty::List("io.k8s.api.networking.v1.NetworkPolicyPort", None),
                "The ports; none: every port.",
            ),
        ],
    },
    Schema {
        name: "io.k8s.api.networking.v1.NetworkPolicyPeer",
        description: "Pods by label (both selectors in one peer: both must match), or an address block.",
        kind: None,
        fields: &[
            (
                "podSelector",
                Ty::Ref(SELECTOR),
                "Pods, in the policy's namespace unless namespaceSelector is given.",
            ),
            (
                "namespaceSelector",
                Ty::Ref(SELECTOR),
                "Namespaces, by labels (kubernetes.io/metadata.name is each one's name).",
            ),
            ("ipBlock", Ty::Ref("io.k8s.api.networking.v1.IPBlock"), "An IPv4 CIDR, alone in its peer."),
        ],
    },
    Schema {
        name: "io.k8s.api.networking.v1.IPBlock",
        description: "An address block less its exceptions.",
        kind: None,
        fields: &[
            ("cidr", Ty::Str, "An IPv4 CIDR without host bits (10.0.0.0/8)."),
            ("except", Ty::StrList, "CIDRs strictly inside cidr that are not admitted."),
        ],
    },
    Schema {
        name: "io.k8s.api.networking.v1.NetworkPolicyPort",
        description: "A protocol and a port, a named port, or a range.",
        kind: None,
        fields: &[
            ("protocol", Ty::Str, "TCP (default) or UDP; SCTP is refused."),
            (
                "port",
                Ty::IntOrStr,
                "A number, or a container port's name (resolved on each pod); none: every port.",
            ),
            ("endPort", Ty::Int, "The last port of a range starting at a numbered port."),
        ],
    },
];

/// The `components.schemas` of a group's document: every schema, with
/// `x-kubernetes-group-version-kind` on the kinds of `group`.
pub fn components(group: &str) -> Value {
    let mut schemas = Map::new();
    for schema in SCHEMAS {
        let mut properties = Map::new();
        for (name, ty, description) in schema.fields {
            let mut field = typed(*ty);
            field.insert("description".into(), json!(description));
            properties.insert(name.to_string(), Value::Object(field));
        }
        let mut out =
            json!({ "type": "object", "description": schema.description, "properties": properties });
        if let Some((kind_group, kind)) = schema.kind
            && kind_group == group
        {
            out["x-kubernetes-group-version-kind"] =
                json!([{ "group": group, "version": "v1", "kind": kind }]);
        }
        schemas.insert(schema.name.into(), out);
    }
    Value::Object(schemas)
}

/// A field's schema without its description.
fn typed(ty: Ty) -> Map<String, Value> {
    let reference = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let value = match ty {
        Ty::Str => json!({ "type": "string" }),
        Ty::Int => json!({ "type": "integer", "format": "int32" }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::IntOrStr => json!({ "x-kubernetes-int-or-string": true }),
        Ty::Strings => json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        // OpenAPI 3.0 ignores siblings of $ref: Kubernetes wraps it in allOf
        // so the field keeps its own description.
        Ty::Ref(name) => json!({ "allOf": [reference(name)] }),
        Ty::StrList => json!({ "type": "array", "items": { "type": "string" } }),
        Ty::List(name, key) => {
            let mut list = json!({ "type": "array", "items": { "allOf": [reference(name)] } });
            if let Some(key) = key {
                list["x-kubernetes-patch-merge-key"] = json!(key);
                list["x-kubernetes-patch-strategy"] = json!("merge");
            }
            list
        }
        Ty::Object => json!({ "type": "object" }),
    };
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_names_a_schema_and_each_kind_is_in_its_group_only() {
        let core = components("");
        let text = core.to_string();
        for (at, _) in text.match_indices("#/components/schemas/") {
            let name: String = text[at + 21..].chars().take_while(|c| *c != '"').collect();
            assert!(core.get(&name).is_some(), "{name} is referenced and missing");
        }
        assert_eq!(core["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(core["io.k8s.api.apps.v1.Deployment"].get("x-kubernetes-group-version-kind").is_none());
        let apps = components("apps");
        assert_eq!(
            apps["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["group"],
            "apps"
        );
        let containers = &core["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert!(containers["description"].as_str().unwrap().contains("exactly one"));
    }
}
