//! What the API serves, and the discovery documents kubectl reads to learn
//! it (`/api`, `/api/v1`, `/apis`, `/apis/apps/v1`, `/version`): legacy
//! (unaggregated) discovery, which every kubectl falls back to when the
//! answer is plain `application/json`.

use serde_json::{Value, json};

/// One resource type of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// Plural, as in the URL (`pods`).
    pub name: &'static str,
    /// Singular (`pod`).
    pub singular: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// API group: "" for the core group, `apps`.
    pub group: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs served.
    pub verbs: &'static [&'static str],
    /// kubectl's aliases (`po`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`, for `kubectl get all`).
    pub categories: &'static [&'static str],
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> &'static str {
        match self.group {
            "" => "v1",
            "apps" => "apps/v1",
            super::endpointslices::GROUP => super::endpointslices::API_VERSION,
            _ => super::netpol::API_VERSION,
        }
    }
}

const READ: &[&str] = &["get", "list"];
const WRITE: &[&str] = &["create", "delete", "get", "list"];

/// The core group's resources.
pub const CORE: [Resource; 8] = [
    Resource {
        name: "pods",
        singular: "pod",
        kind: "Pod",
        group: "",
        namespaced: true,
        verbs: WRITE,
        short_names: &["po"],
        categories: &["all"],
    },
    Resource {
        name: "services",
        singular: "service",
        kind: "Service",
        group: "",
        namespaced: true,
        verbs: WRITE,
        short_names: &["svc"],
        categories: &["all"],
    },
    Resource {
        name: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        group: "",
        namespaced: true,
        verbs: READ,
        short_names: &["ep"],
        categories: &[],
    },
    Resource {
        name: "nodes",
        singular: "node",
        kind: "Node",
        group: "",
        namespaced: false,
        verbs: &["delete", "get", "list"],
        short_names: &["no"],
        categories: &[],
    },
    Resource {
        name: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        group: "",
        namespaced: false,
        verbs: READ,
        short_names: &["ns"],
        categories: &[],
    },
    Resource {
        name: "secrets",
        singular: "secret",
        kind: "Secret",
        group: "",
        namespaced: true,
        verbs: WRITE,
        short_names: &[],
        categories: &[],
    },
    Resource {
        name: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        group: "",
        namespaced: true,
        verbs: WRITE,
        short_names: &["cm"],
        categories: &[],
    },
    Resource {
        name: "events",
        singular: "event",
        kind: "Event",
        group: "",
        namespaced: true,
        verbs: READ,
        short_names: &["ev"],
        categories: &[],
    },
];

/// The apps group's resources.
pub const APPS: [Resource; 2] = [
    Resource {
        name: "deployments",
        singular: "deployment",
        kind: "Deployment",
        group: "apps",
        namespaced: true,
        verbs: WRITE,
        short_names: &["deploy"],
        categories: &["all"],
    },
    Resource {
        name: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        group: "apps",
        namespaced: true,
        verbs: READ,
        short_names: &["rs"],
        categories: &["all"],
    },
];

/// The networking group: NetworkPolicies, Ingresses, IngressClasses.
pub const NETWORKING_GROUP: &str = "networking.k8s.io";

/// The networking group's resources.
pub const NETWORKING: [Resource; 3] = [
    Resource {
        name: "networkpolicies",
        singular: "networkpolicy",
        kind: "NetworkPolicy",
        group: NETWORKING_GROUP,
        namespaced: true,
        verbs: WRITE,
        short_names: &["netpol"],
        categories: &[],
    },
    Resource {
        name: "ingresses",
        singular: "ingress",
        kind: "Ingress",
        group: NETWORKING_GROUP,
        namespaced: true,
        verbs: WRITE,
        short_names: &["ing"],
        categories: &[],
    },
    Resource {
        name: "ingressclasses",
        singular: "ingressclass",
        kind: "IngressClass",
        group: NETWORKING_GROUP,
        namespaced: false,
        verbs: READ,
        short_names: &[],
        categories: &[],
    },
];

/// The discovery group's resources: EndpointSlices.
pub const DISCOVERY: [Resource; 1] = [Resource {
    name: "endpointslices",
    singular: "endpointslice",
    kind: "EndpointSlice",
    group: super::endpointslices::GROUP,
    namespaced: true,
    verbs: READ,
    short_names: &[],
    categories: &[],
}];

/// The resource `name` of `group`, if served.
pub fn find(group: &str, name: &str) -> Option<&'static Resource> {
    let list: &'static [Resource] = match group {
        "" => &CORE,
        "apps" => &APPS,
        NETWORKING_GROUP => &NETWORKING,
        super::endpointslices::GROUP => &DISCOVERY,
        _ => return None,
    };
    list.iter().find(|r| r.name == name)
}

fn resource_json(r: &Resource) -> Value {
    let mut out = json!({
        "name": r.name,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    });
    if super::versioned::kind_of(r.name).is_some() {
        out["verbs"].as_array_mut().expect("a list").push(json!("watch"));
    }
    if !r.short_names.is_empty() {
        out["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        out["categories"] = json!(r.categories);
    }
    out
}

/// `/api`: the core group's versions.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// `/apis`: the named groups.
pub fn groups() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [apps_group(), networking_group(), discovery_group()],
    })
}

/// `/apis/apps`: the apps group.
pub fn apps_group() -> Value {
    let version = json!({ "groupVersion": "apps/v1", "version": "v1" });
    json!({ "kind": "APIGroup", "apiVersion": "v1", "name": "apps", "versions": [version], "preferredVersion": version })
}

/// `/apis/networking.k8s.io`: the networking group.
pub fn networking_group() -> Value {
    let version = json!({ "groupVersion": "networking.k8s.io/v1", "version": "v1" });
    json!({ "kind": "APIGroup", "apiVersion": "v1", "name": NETWORKING_GROUP, "versions": [version], "preferredVersion": version })
}

/// `/apis/networking.k8s.io/v1`: network policies, ingresses and ingress classes.
pub fn networking_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "networking.k8s.io/v1",
        "resources": NETWORKING.iter().map(resource_json).collect::<Vec<_>>(),
    })
}

/// `/apis/discovery.k8s.io`: the discovery group.
pub fn discovery_group() -> Value {
    let version = json!({ "groupVersion": super::endpointslices::API_VERSION, "version": "v1" });
    json!({ "kind": "APIGroup", "apiVersion": "v1", "name": super::endpointslices::GROUP, "versions": [version], "preferredVersion": version })
}

/// `/apis/discovery.k8s.io/v1`: endpoint slices.
pub fn discovery_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": super::endpointslices::API_VERSION,
        "resources": DISCOVERY.iter().map(resource_json).collect::<Vec<_>>(),
    })
}

/// `/api/v1`: the core resources.
pub fn core_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": CORE.iter().map(resource_json).collect::<Vec<_>>(),
    })
}

/// `/apis/apps/v1`: deployments and their scale subresource.
pub fn apps_resources() -> Value {
    let mut resources: Vec<Value> = APPS.iter().map(resource_json).collect();
    resources.push(json!({
        "name": "deployments/scale",
        "singularName": "",
        "namespaced": true,
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
        "verbs": ["get", "patch", "update"],
    }));
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": resources })
}

/// `/version`: a Kubernetes version kubectl 1.31 to 1.33 accepts without a
/// skew warning, and podnet's own.
pub fn version() -> Value {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "x86_64" => "amd64",
        "arm" => "arm",
        other => other,
    };
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("v1.32.0+podnet-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("linux/{arch}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_aliases_and_categories_are_published() {
        let core = core_resources();
        let pods = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let apps = apps_resources();
        assert_eq!(apps["resources"][0]["shortNames"], json!(["deploy"]));
        assert!(apps["resources"].as_array().unwrap().iter().any(|r| r["kind"] == "Scale"));
        assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
        assert!(find("", "deployments").is_none() && find("apps", "deployments").is_some());
        let net = networking_resources();
        assert_eq!(net["resources"][0]["shortNames"], json!(["netpol"]));
        assert!(net["resources"][0]["verbs"].as_array().unwrap().contains(&json!("watch")));
        assert_eq!(
            find("networking.k8s.io", "networkpolicies").unwrap().api_version(),
            "networking.k8s.io/v1"
        );
        assert!(groups()["groups"].as_array().unwrap().iter().any(|g| g["name"] == "networking.k8s.io"));
        for short in ["svc", "ep", "no", "ns"] {
            assert!(CORE.iter().any(|r| r.short_names.contains(&short)), "{short}");
        }
    }
}
