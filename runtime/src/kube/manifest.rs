//! Manifest files as kubectl takes them (`podnet apply -f FILE|-`): YAML
//! or JSON, several documents separated by `---`, `kind: List` unrolled;
//! each object decoded by the API's own decoder (`decode`), so a file
//! means the same to `podnet apply` as to `kubectl apply`. Every document
//! is checked before anything is sent: a bad one anywhere applies nothing.

use serde::Deserialize;
use serde_json::Value;

use super::decode;
use crate::model::{DeploymentSpec, PodSpec, ServiceSpec};

/// The largest manifest read (the API's body bound).
pub const MAX_BYTES: usize = 3 * 1024 * 1024;
/// The most objects one manifest may hold.
pub const MAX_OBJECTS: usize = 1000;

/// One object of a manifest, as podnet's spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A v1 Pod.
    Pod(PodSpec),
    /// An apps/v1 Deployment.
    Deployment(DeploymentSpec),
    /// A v1 Service.
    Service(ServiceSpec),
    /// A v1 Namespace: its name, labels and annotations.
    Namespace(String, crate::model::Labels, crate::model::Annotations),
    /// A networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy(crate::model::policy::NetworkPolicySpec),
    /// A networking.k8s.io/v1 Ingress.
    Ingress(crate::model::ingress::IngressSpec),
    /// A v1 Secret.
    Secret(crate::model::secret::SecretSpec),
    /// A v1 ConfigMap.
    ConfigMap(crate::model::configmap::ConfigMapSpec),
}

impl Object {
    /// How kubectl names it in its output: `deployment.apps/web`.
    pub fn label(&self) -> String {
        match self {
            Object::Pod(p) => format!("pod/{}", p.name),
            Object::Deployment(d) => format!("deployment.apps/{}", d.name),
            Object::Service(s) => format!("service/{}", s.name),
            Object::Namespace(n, _, _) => format!("namespace/{n}"),
            Object::NetworkPolicy(p) => format!("networkpolicy.networking.k8s.io/{}", p.name),
            Object::Ingress(i) => format!("ingress.networking.k8s.io/{}", i.name),
            Object::Secret(s) => format!("secret/{}", s.name),
            Object::ConfigMap(c) => format!("configmap/{}", c.name),
        }
    }
}

/// Why a manifest cannot be applied: which document, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Past [`MAX_BYTES`].
    #[error("the manifest is larger than {MAX_BYTES} bytes: split it")]
    TooLarge,
    /// Past [`MAX_OBJECTS`].
    #[error("the manifest holds more than {MAX_OBJECTS} objects: split it")]
    TooMany,
    /// Not YAML (nor JSON).
    #[error("document {document} is not YAML or JSON: {reason}")]
    Syntax {
        /// 1-based.
        document: usize,
        /// The parser's words.
        reason: String,
    },
    /// A kind podnet does not take.
    #[error(
        "document {document}: podnet applies v1 Pods, Services, Secrets, ConfigMaps and Namespaces, apps/v1 Deployments and networking.k8s.io/v1 Ingresses and NetworkPolicies, not {api_version} {kind}"
    )]
    Kind {
        /// 1-based.
        document: usize,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// The object is invalid: the API's message, with the field.
    #[error("document {document}: {message}")]
    Invalid {
        /// 1-based.
        document: usize,
        /// What the decoder said (`Deployment "web" is invalid: spec...`).
        message: String,
    },
}

/// The objects of `text`, in order; those without a namespace go to
/// `namespace`.
pub fn read(text: &str, namespace: &str) -> Result<Vec<Object>, ManifestError> {
    if text.len() > MAX_BYTES {
        return Err(ManifestError::TooLarge);
    }
    let mut objects = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document_number = i + 1;
        let value = Value::deserialize(document)
            .map_err(|e| ManifestError::Syntax { document: document_number, reason: e.to_string() })?;
        let items = match value {
            // An empty document (a trailing `---`).
            Value::Null => continue,
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                map.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
            }
            other => vec![other],
        };
        for item in items {
            if objects.len() == MAX_OBJECTS {
                return Err(ManifestError::TooMany);
            }
            objects.push(object(&item, namespace, document_number)?);
        }
    }
    Ok(objects)
}

fn object(value: &Value, namespace: &str, document: usize) -> Result<Object, ManifestError> {
    let namespace = value["metadata"]["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(namespace);
    let invalid =
        |status: super::status::Status| ManifestError::Invalid { document, message: status.message };
    let (api_version, kind) =
        (value["apiVersion"].as_str().unwrap_or(""), value["kind"].as_str().unwrap_or(""));
    // kubectl validates strictly by default: a misspelt field is an error
    // here too, not silently nothing (a policy's misspelt podSelector would
    // select every pod of its namespace).
    if let Some(field) = super::fields::unknown(kind, value) {
        return Err(ManifestError::Invalid {
            document,
            message: format!(
                "{kind} {:?}: unknown field \"{field}\": check its spelling",
                value["metadata"]["name"].as_str().unwrap_or("")
            ),
        });
    }
    match (api_version, kind) {
        ("v1", "Pod") => decode::pod(value, namespace).map(Object::Pod).map_err(invalid),
        ("apps/v1", "Deployment") => {
            decode::deployment(value, namespace).map(Object::Deployment).map_err(invalid)
        }
        ("v1", "Service") => decode::service(value, namespace).map(Object::Service).map_err(invalid),
        ("networking.k8s.io/v1", "Ingress") => {
            super::ingresses::decode_ingress(value, namespace).map(Object::Ingress).map_err(invalid)
        }
        ("v1", "Secret") => {
            super::ingresses::decode_secret(value, namespace).map(Object::Secret).map_err(invalid)
        }
        ("v1", "ConfigMap") => {
            super::configmaps::decode(value, namespace).map(Object::ConfigMap).map_err(invalid)
        }
        ("v1", "Namespace") => {
            decode::namespace(value).map(|(n, l, a)| Object::Namespace(n, l, a)).map_err(invalid)
        }
        (super::netpol::API_VERSION, "NetworkPolicy") => {
            super::netpol::decode(value, namespace).map(Object::NetworkPolicy).map_err(invalid)
        }
        _ => Err(ManifestError::Kind { document, api_version: api_version.into(), kind: kind.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: app, image: nginx:1.27, ports: [{containerPort: 80}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n---\n";

    #[test]
    fn documents_and_lists_become_objects_in_order() {
        let objects = read(APP, "default").unwrap();
        assert_eq!(
            objects.iter().map(Object::label).collect::<Vec<_>>(),
            ["deployment.apps/web", "service/web"]
        );
        let Object::Deployment(d) = &objects[0] else { panic!() };
        assert_eq!(
            (d.replicas, d.namespace.as_str(), d.template.container.as_deref()),
            (2, "default", Some("app"))
        );
        let Object::Service(s) = &objects[1] else { panic!() };
        assert_eq!(s.namespace, "shop", "the object's namespace wins");
        let list = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}]}"#;
        assert_eq!(
            read(list, "default").unwrap(),
            [Object::Namespace("shop".into(), Default::default(), Default::default())]
        );
    }

    #[test]
    fn a_bad_document_is_named_with_its_field() {
        let bad = APP.replace("containerPort: 80", "containerPort: 70000");
        let e = read(&bad, "default").unwrap_err().to_string();
        assert!(e.starts_with("document 1: Deployment \"web\" is invalid: spec.template.spec.containers[0].ports[0].containerPort"), "{e}");
        let e = read(&APP.replace("replicas: 2", "replica: 2"), "default").unwrap_err().to_string();
        assert_eq!(e, "document 1: Deployment \"web\": unknown field \"spec.replica\": check its spelling");
        let e = read("a: [", "default").unwrap_err().to_string();
        assert!(e.starts_with("document 1 is not YAML or JSON"), "{e}");
        let e =
            read("---\napiVersion: v1\nkind: ReplicationController\n", "default").unwrap_err().to_string();
        assert!(e.contains("not v1 ReplicationController"), "{e}");
        // Aliases that expand to billions of nodes are cut by the parser.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ('b'..='k').zip('a'..='j') {
            bomb.push_str(&format!("{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(matches!(read(&bomb, "default"), Err(ManifestError::Syntax { .. })));
        let many = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n".repeat(MAX_OBJECTS + 1);
        assert!(matches!(read(&many, "default"), Err(ManifestError::TooMany)));
    }
}
