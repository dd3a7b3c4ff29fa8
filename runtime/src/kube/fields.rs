//! The fields Kubernetes defines on the objects podnet takes (from
//! k8s.io/api's generated.proto), for `fieldValidation=Strict`: kubectl
//! asks for it by default, and a misspelt field (`replica:`) must be an
//! error, not silently nothing. Levels podnet never reads inside (affinity,
//! probes, volume kinds other than configMap and secret...) are not
//! walked: podnet refuses those fields whole.

use serde_json::Value;

/// One level of an object: its field names, and the levels under some.
pub struct Level {
    fields: &'static [&'static str],
    /// (field, its level, whether the field is a list of them).
    nested: &'static [(&'static str, &'static Level, bool)],
}

static META: Level = Level {
    fields: &[
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    ],
    nested: &[],
};
static ENV_VAR: Level = Level { fields: &["name", "value", "valueFrom"], nested: &[] };
static CONTAINER_PORT: Level =
    Level { fields: &["name", "hostPort", "containerPort", "protocol", "hostIP"], nested: &[] };
static VOLUME_MOUNT: Level = Level {
    fields: &[
        "name",
        "readOnly",
        "recursiveReadOnly",
        "mountPath",
        "subPath",
        "mountPropagation",
        "subPathExpr",
    ],
    nested: &[],
};
static KEY_TO_PATH: Level = Level { fields: &["key", "path", "mode"], nested: &[] };
static CONFIGMAP_VOLUME: Level =
    Level { fields: &["name", "items", "defaultMode", "optional"], nested: &[("items", &KEY_TO_PATH, true)] };
static SECRET_VOLUME: Level = Level {
    fields: &["secretName", "items", "defaultMode", "optional"],
    nested: &[("items", &KEY_TO_PATH, true)],
};
/// A volume: its name and every source Kubernetes defines (podnet reads
/// configMap and secret, and refuses the others by name).
static VOLUME: Level = Level {
    fields: &[
        "name",
        "hostPath",
        "emptyDir",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "persistentVolumeClaim",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "downwardAPI",
        "fc",
        "azureFile",
        "configMap",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "projected",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "csi",
        "ephemeral",
        "image",
    ],
    nested: &[("configMap", &CONFIGMAP_VOLUME, false), ("secret", &SECRET_VOLUME, false)],
};
static CONTAINER: Level = Level {
    fields: &[
        "name",
        "image",
        "command",
        "args",
        "workingDir",
        "ports",
        "envFrom",
        "env",
        "resources",
        "resizePolicy",
        "restartPolicy",
        "restartPolicyRules",
        "volumeMounts",
        "volumeDevices",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
    ],
    nested: &[
        ("ports", &CONTAINER_PORT, true),
        ("env", &ENV_VAR, true),
        ("volumeMounts", &VOLUME_MOUNT, true),
    ],
};
static POD_SPEC: Level = Level {
    fields: &[
        "volumes",
        "initContainers",
        "containers",
        "ephemeralContainers",
        "restartPolicy",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "dnsPolicy",
        "nodeSelector",
        "serviceAccountName",
        "serviceAccount",
        "automountServiceAccountToken",
        "nodeName",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "shareProcessNamespace",
        "securityContext",
        "imagePullSecrets",
        "hostname",
        "subdomain",
        "affinity",
        "schedulerName",
        "tolerations",
        "hostAliases",
        "priorityClassName",
        "priority",
        "dnsConfig",
        "readinessGates",
        "runtimeClassName",
        "enableServiceLinks",
        "preemptionPolicy",
        "overhead",
        "topologySpreadConstraints",
        "setHostnameAsFQDN",
        "os",
        "hostUsers",
        "schedulingGates",
        "resourceClaims",
        "resources",
        "hostnameOverride",
    ],
    nested: &[
        ("containers", &CONTAINER, true),
        ("initContainers", &CONTAINER, true),
        ("volumes", &VOLUME, true),
    ],
};
static TEMPLATE: Level = Level {
    fields: &["metadata", "spec"],
    nested: &[("metadata", &META, false), ("spec", &POD_SPEC, false)],
};
static SELECTOR: Level = Level { fields: &["matchLabels", "matchExpressions"], nested: &[] };
static DEPLOYMENT_SPEC: Level = Level {
    fields: &[
        "replicas",
        "selector",
        "template",
        "strategy",
        "minReadySeconds",
        "revisionHistoryLimit",
        "paused",
        "progressDeadlineSeconds",
    ],
    nested: &[("selector", &SELECTOR, false), ("template", &TEMPLATE, false)],
};
static SERVICE_PORT: Level =
    Level { fields: &["name", "protocol", "appProtocol", "port", "targetPort", "nodePort"], nested: &[] };
static SERVICE_SPEC: Level = Level {
    fields: &[
        "ports",
        "selector",
        "clusterIP",
        "clusterIPs",
        "type",
        "externalIPs",
        "sessionAffinity",
        "loadBalancerIP",
        "loadBalancerSourceRanges",
        "externalName",
        "externalTrafficPolicy",
        "healthCheckNodePort",
        "publishNotReadyAddresses",
        "sessionAffinityConfig",
        "ipFamilies",
        "ipFamilyPolicy",
        "allocateLoadBalancerNodePorts",
        "loadBalancerClass",
        "internalTrafficPolicy",
        "trafficDistribution",
    ],
    nested: &[("ports", &SERVICE_PORT, true)],
};
static REQUIREMENT: Level = Level { fields: &["key", "operator", "values"], nested: &[] };
static POLICY_SELECTOR: Level = Level {
    fields: &["matchLabels", "matchExpressions"],
    nested: &[("matchExpressions", &REQUIREMENT, true)],
};
static IP_BLOCK: Level = Level { fields: &["cidr", "except"], nested: &[] };
static POLICY_PEER: Level = Level {
    fields: &["podSelector", "namespaceSelector", "ipBlock"],
    nested: &[
        ("podSelector", &POLICY_SELECTOR, false),
        ("namespaceSelector", &POLICY_SELECTOR, false),
        ("ipBlock", &IP_BLOCK, false),
    ],
};
static POLICY_PORT: Level = Level { fields: &["protocol", "port", "endPort"], nested: &[] };
static INGRESS_RULE: Level = Level {
    fields: &["from", "ports"],
    nested: &[("from", &POLICY_PEER, true), ("ports", &POLICY_PORT, true)],
};
static EGRESS_RULE: Level =
    Level { fields: &["to", "ports"], nested: &[("to", &POLICY_PEER, true), ("ports", &POLICY_PORT, true)] };
static POLICY_SPEC: Level = Level {
    fields: &["podSelector", "policyTypes", "ingress", "egress"],
    nested: &[
        ("podSelector", &POLICY_SELECTOR, false),
        ("ingress", &INGRESS_RULE, true),
        ("egress", &EGRESS_RULE, true),
    ],
};
const TOP: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
static POD: Level = Level { fields: TOP, nested: &[("metadata", &META, false), ("spec", &POD_SPEC, false)] };
static DEPLOYMENT: Level =
    Level { fields: TOP, nested: &[("metadata", &META, false), ("spec", &DEPLOYMENT_SPEC, false)] };
static SERVICE: Level =
    Level { fields: TOP, nested: &[("metadata", &META, false), ("spec", &SERVICE_SPEC, false)] };
static NETWORK_POLICY: Level =
    Level { fields: TOP, nested: &[("metadata", &META, false), ("spec", &POLICY_SPEC, false)] };

/// The first field of `body` (a `kind` object) that Kubernetes does not
/// define, as its path (`spec.template.spec.containers[0].imagee`).
pub fn unknown(kind: &str, body: &Value) -> Option<String> {
    let level = match kind {
        "Pod" => &POD,
        "Deployment" => &DEPLOYMENT,
        "Service" => &SERVICE,
        "NetworkPolicy" => &NETWORK_POLICY,
        _ => return None,
    };
    walk(body, level, "")
}

fn walk(value: &Value, level: &Level, path: &str) -> Option<String> {
    for (key, child) in value.as_object()? {
        if !level.fields.contains(&key.as_str()) {
            return Some(format!("{path}{key}"));
        }
        let Some((_, inner, list)) = level.nested.iter().find(|(k, _, _)| k == key) else { continue };
        let found = match list {
            true => child
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .find_map(|(i, item)| walk(item, inner, &format!("{path}{key}[{i}]."))),
            false => walk(child, inner, &format!("{path}{key}.")),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_misspelt_network_policy_field_is_found_with_its_path() {
        let ok = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "p" },
            "spec": { "podSelector": { "matchExpressions": [{ "key": "a", "operator": "Exists" }] }, "policyTypes": ["Ingress"],
                "ingress": [{ "from": [{ "ipBlock": { "cidr": "10.0.0.0/8", "except": [] } }], "ports": [{ "port": 80, "endPort": 81 }] }] } });
        assert_eq!(unknown("NetworkPolicy", &ok), None);
        let mut bad = ok.clone();
        bad["spec"]["ingress"][0]["from"][0]["ipBlock"]["excpt"] = json!([]);
        assert_eq!(unknown("NetworkPolicy", &bad).as_deref(), Some("spec.ingress[0].from[0].ipBlock.excpt"));
    }

    #[test]
    fn a_misspelt_field_is_found_with_its_path() {
        let ok = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "w", "labels": { "any": "x" } },
            "spec": { "replicas": 1, "selector": { "matchLabels": { "a": "b" } }, "strategy": {},
                "template": { "metadata": { "labels": { "a": "b" } }, "spec": { "containers": [{ "name": "c", "image": "i", "resources": {} }] } } } });
        assert_eq!(unknown("Deployment", &ok), None);
        let mut bad = ok.clone();
        bad["spec"]["replica"] = json!(2);
        assert_eq!(unknown("Deployment", &bad).as_deref(), Some("spec.replica"));
        let mut bad = ok.clone();
        bad["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
        assert_eq!(unknown("Deployment", &bad).as_deref(), Some("spec.template.spec.containers[0].imagee"));
        let mut bad = ok.clone();
        bad["spec"]["template"]["spec"]["volumes"] =
            json!([{ "name": "v", "configMap": { "name": "c", "items": [{ "key": "k", "pth": "p" }] } }]);
        assert_eq!(
            unknown("Deployment", &bad).as_deref(),
            Some("spec.template.spec.volumes[0].configMap.items[0].pth")
        );
        let svc = json!({ "kind": "Service", "spec": { "ports": [{ "port": 80, "targetport": 8080 }] } });
        assert_eq!(unknown("Service", &svc).as_deref(), Some("spec.ports[0].targetport"));
    }
}
