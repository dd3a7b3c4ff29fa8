//! A container's variables from ConfigMaps and Secrets: `env[].valueFrom`
//! (`configMapKeyRef`, `secretKeyRef`) and `envFrom` (`configMapRef`,
//! `secretRef`, with a prefix); and from the pod itself, the downward API
//! (`valueFrom.fieldRef`). They are resolved for the node a pod runs
//! on, so the node holds the values its pods use and no other (the
//! Kubernetes node authorizer's rule); what cannot be resolved keeps the
//! container from starting, as the kubelet's CreateContainerConfigError.

use serde::{Deserialize, Serialize};

/// Where a reference points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// A ConfigMap (its `data`).
    ConfigMap,
    /// A Secret (its data, as text).
    Secret,
}

impl Source {
    /// Its kind's name in the kubelet's messages.
    pub fn kind(self) -> &'static str {
        match self {
            Source::ConfigMap => "ConfigMap",
            Source::Secret => "Secret",
        }
    }
}

/// One reference of a container's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvRef {
    /// `env[].valueFrom.{configMapKeyRef,secretKeyRef}`: variable `var`
    /// is `key` of object `object`.
    Key {
        /// The variable.
        var: String,
        /// ConfigMap or Secret.
        source: Source,
        /// The object's name (in the pod's namespace).
        object: String,
        /// The key.
        key: String,
        /// Left unset when the object or key is missing, instead of an error.
        optional: bool,
    },
    /// `envFrom[]`: every key of the object, as `prefix` + key.
    All {
        /// ConfigMap or Secret.
        source: Source,
        /// The object's name (in the pod's namespace).
        object: String,
        /// Put before each key.
        prefix: String,
        /// No error when the object is missing.
        optional: bool,
    },
    /// `env[].valueFrom.fieldRef`: variable `var` is a field of the pod.
    Field {
        /// The variable.
        var: String,
        /// The pod's field.
        field: FieldPath,
    },
}

/// A pod field the downward API gives a variable (`fieldRef.fieldPath`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldPath {
    /// `metadata.name`.
    Name,
    /// `metadata.namespace`.
    Namespace,
    /// `metadata.uid`.
    Uid,
    /// `metadata.labels['key']` (empty when the pod has no such label).
    Label(String),
    /// `metadata.annotations['key']`.
    Annotation(String),
    /// `spec.nodeName`.
    NodeName,
    /// `spec.serviceAccountName` (podnet's pods are all `default`'s).
    ServiceAccountName,
    /// `status.podIP` (and `status.podIPs`: podnet's pods have one).
    PodIp,
    /// `status.hostIP` (and `status.hostIPs`): the node's address.
    HostIp,
}

/// The fieldPaths Kubernetes gives env (its validation's list), in its message.
pub const FIELD_PATHS: &str = "\"metadata.annotations\", \"metadata.labels\", \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"";

impl FieldPath {
    /// Reads a `fieldPath` (`metadata.labels['app']`), or None when it is
    /// not one the downward API gives env.
    pub fn parse(path: &str) -> Option<FieldPath> {
        let subscript = |prefix: &str| -> Option<String> {
            let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
            (!key.is_empty() && !key.contains('\'')).then(|| key.to_string())
        };
        Some(match path {
            "metadata.name" => FieldPath::Name,
            "metadata.namespace" => FieldPath::Namespace,
            "metadata.uid" => FieldPath::Uid,
            "spec.nodeName" => FieldPath::NodeName,
            "spec.serviceAccountName" => FieldPath::ServiceAccountName,
            "status.podIP" | "status.podIPs" => FieldPath::PodIp,
            "status.hostIP" | "status.hostIPs" => FieldPath::HostIp,
            _ => match (subscript("metadata.labels['"), subscript("metadata.annotations['")) {
                (Some(key), _) => FieldPath::Label(key),
                (_, Some(key)) => FieldPath::Annotation(key),
                _ => return None,
            },
        })
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldPath::Name => f.write_str("metadata.name"),
            FieldPath::Namespace => f.write_str("metadata.namespace"),
            FieldPath::Uid => f.write_str("metadata.uid"),
            FieldPath::Label(key) => write!(f, "metadata.labels['{key}']"),
            FieldPath::Annotation(key) => write!(f, "metadata.annotations['{key}']"),
            FieldPath::NodeName => f.write_str("spec.nodeName"),
            FieldPath::ServiceAccountName => f.write_str("spec.serviceAccountName"),
            FieldPath::PodIp => f.write_str("status.podIP"),
            FieldPath::HostIp => f.write_str("status.hostIP"),
        }
    }
}

/// Most references one container may make.
pub const MAX_ENV_REFS: usize = 64;

/// What resolution reads: each key of object `name` of `source` in the
/// pod's namespace, or None if there is no such object; and the pod's own
/// fields. Borrowed: a large ConfigMap is not copied to be read.
pub trait Lookup {
    /// The keys and values of the object as text, if it exists.
    fn values<'a>(&'a self, source: Source, name: &str) -> Option<Values<'a>>;
    /// The keys and values of the object as bytes (a Secret's as they are,
    /// a ConfigMap's `data` and `binaryData`), for volumes.
    fn bytes<'a>(&'a self, source: Source, name: &str) -> Option<Bytes<'a>>;
    /// The pod's field, as the downward API gives it (empty when unset).
    fn field(&self, path: &FieldPath) -> String;
}

/// An object's keys and values as [`Lookup`] gives them.
pub type Values<'a> = Box<dyn Iterator<Item = (&'a str, std::borrow::Cow<'a, str>)> + 'a>;

/// An object's keys and raw values as [`Lookup::bytes`] gives them.
pub type Bytes<'a> = Box<dyn Iterator<Item = (&'a str, &'a [u8])> + 'a>;

/// Resolves `refs` in the kubelet's order: every `envFrom` first, then the
/// `env` entries (the caller's literal values go between them, so a later
/// one wins). Variables whose names are not valid (an envFrom key) are
/// skipped, as the kubelet does. The error is the kubelet's message, or
/// the bound the variables passed ([`super::MAX_ENV_BYTES`], counted as
/// they are read).
pub fn resolve(refs: &[EnvRef], namespace: &str, lookup: &dyn Lookup) -> Result<Resolved, EnvRefError> {
    let mut resolved = Resolved::default();
    let mut bytes = 0usize;
    let mut take = |bytes_now: usize| -> Result<(), EnvRefError> {
        bytes += bytes_now;
        match bytes > super::MAX_ENV_BYTES {
            true => Err(EnvRefError::TooLarge),
            false => Ok(()),
        }
    };
    for r in refs {
        if let EnvRef::All { source, object, prefix, optional } = r {
            match lookup.values(*source, object) {
                Some(values) => {
                    for (k, v) in values {
                        let var = format!("{prefix}{k}");
                        if super::env_name_ok(&var) {
                            take(var.len() + v.len())?;
                            resolved.from.push((var, v.into_owned()));
                        }
                    }
                }
                None if *optional => {}
                None => return Err(EnvRefError::NoObject { kind: *source, object: object.clone() }),
            }
        }
    }
    for r in refs {
        if let EnvRef::Field { var, field } = r {
            let value = lookup.field(field);
            take(var.len() + value.len())?;
            resolved.keys.push((var.clone(), value));
            continue;
        }
        if let EnvRef::Key { var, source, object, key, optional } = r {
            let Some(mut values) = lookup.values(*source, object) else {
                if *optional {
                    continue;
                }
                return Err(EnvRefError::NoObject { kind: *source, object: object.clone() });
            };
            match values.find(|(k, _)| k == key) {
                Some((_, v)) => {
                    take(var.len() + v.len())?;
                    resolved.keys.push((var.clone(), v.into_owned()));
                }
                None if *optional => {}
                None => {
                    return Err(EnvRefError::NoKey {
                        key: key.clone(),
                        kind: *source,
                        namespace: namespace.into(),
                        object: object.clone(),
                    });
                }
            }
        }
    }
    Ok(resolved)
}

/// What [`resolve`] found: the `envFrom` variables, and the `env` ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// From `envFrom`, set before the literal values.
    pub from: Vec<(String, String)>,
    /// From `env[].valueFrom`, set after them.
    pub keys: Vec<(String, String)>,
}

/// Why a container's references cannot be resolved now, in the kubelet's
/// words (shown as the pod's CreateContainerConfigError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvRefError {
    /// The ConfigMap or Secret does not exist.
    #[error("{} \"{object}\" not found", kind.kind().to_ascii_lowercase())]
    NoObject {
        /// ConfigMap or Secret (not `source`: thiserror's name for a cause).
        kind: Source,
        /// Its name.
        object: String,
    },
    /// It exists without the key.
    #[error("couldn't find key {key} in {} {namespace}/{object}", kind.kind())]
    NoKey {
        /// The key asked for.
        key: String,
        /// ConfigMap or Secret (not `source`: thiserror's name for a cause).
        kind: Source,
        /// The pod's namespace.
        namespace: String,
        /// Its name.
        object: String,
    },
    /// The variables read passed [`super::MAX_ENV_BYTES`].
    #[error(
        "the variables from ConfigMaps and Secrets are over {} bytes: name fewer keys",
        super::MAX_ENV_BYTES
    )]
    TooLarge,
    /// A volume's `items` names a key its object does not have.
    #[error("{} references non-existent {} key: {key}", kind.kind().to_ascii_lowercase(), if *kind == Source::ConfigMap { "config" } else { "secret" })]
    NoVolumeKey {
        /// ConfigMap or Secret.
        kind: Source,
        /// The key asked for.
        key: String,
    },
    /// The files of a pod's volumes passed [`super::volumes::MAX_VOLUME_BYTES`].
    #[error(
        "the files of the pod's ConfigMap and Secret volumes are over {} bytes: mount fewer keys (items)",
        super::volumes::MAX_VOLUME_BYTES
    )]
    VolumesTooLarge,
    /// The pod's volumes would hold more files than a node writes for one pod.
    #[error(
        "the pod's ConfigMap and Secret volumes would hold more than {} files and directories: mount fewer keys (items)",
        super::volumes::MAX_VOLUME_ENTRIES
    )]
    TooManyVolumeFiles,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) struct Objects;

    fn pairs(source: Source, name: &str) -> Option<&'static [(&'static str, &'static str)]> {
        Some(match (source, name) {
            (Source::ConfigMap, "app") => &[("mode", "fast"), ("bad name", "x")],
            (Source::ConfigMap, "big") => &[("a", BIG), ("b", BIG)],
            (Source::Secret, "db") => &[("password", "hunter2")],
            _ => return None,
        })
    }

    impl Lookup for Objects {
        fn values<'a>(&'a self, source: Source, name: &str) -> Option<Values<'a>> {
            Some(Box::new(pairs(source, name)?.iter().map(|(k, v)| (*k, std::borrow::Cow::Borrowed(*v)))))
        }
        fn bytes<'a>(&'a self, source: Source, name: &str) -> Option<Bytes<'a>> {
            Some(Box::new(pairs(source, name)?.iter().map(|(k, v)| (*k, v.as_bytes()))))
        }
        fn field(&self, path: &FieldPath) -> String {
            match path {
                FieldPath::Name => "web-1".into(),
                FieldPath::Label(k) if k == "app" => "web".into(),
                _ => String::new(),
            }
        }
    }

    const BIG: &str = include_str!("mod.rs");

    fn key(var: &str, source: Source, object: &str, key: &str, optional: bool) -> EnvRef {
        EnvRef::Key { var: var.into(), source, object: object.into(), key: key.into(), optional }
    }

    #[test]
    fn references_resolve_in_the_kubelets_order_and_missing_ones_say_why() {
        let refs = vec![
            key("PASSWORD", Source::Secret, "db", "password", false),
            EnvRef::All {
                source: Source::ConfigMap,
                object: "app".into(),
                prefix: "APP_".into(),
                optional: false,
            },
            key("GONE", Source::ConfigMap, "nope", "k", true),
            key("NOKEY", Source::ConfigMap, "app", "absent", true),
            EnvRef::All {
                source: Source::Secret,
                object: "nope".into(),
                prefix: String::new(),
                optional: true,
            },
        ];
        let r = resolve(&refs, "default", &Objects).unwrap();
        assert_eq!(r.from, vec![("APP_mode".to_string(), "fast".to_string())], "invalid names skipped");
        assert_eq!(r.keys, vec![("PASSWORD".to_string(), "hunter2".to_string())]);

        // The downward API: the pod's own fields, a missing label empty.
        let field =
            |var: &str, path: &str| EnvRef::Field { var: var.into(), field: FieldPath::parse(path).unwrap() };
        let refs = [
            field("MY_NAME", "metadata.name"),
            field("APP", "metadata.labels['app']"),
            field("NONE", "metadata.labels['x']"),
        ];
        let r = resolve(&refs, "default", &Objects).unwrap();
        let pairs =
            |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(r.keys, pairs(&[("MY_NAME", "web-1"), ("APP", "web"), ("NONE", "")]));

        let e = resolve(&[key("X", Source::ConfigMap, "app", "absent", false)], "default", &Objects);
        assert_eq!(e.unwrap_err().to_string(), "couldn't find key absent in ConfigMap default/app");
        let e = resolve(&[key("X", Source::Secret, "nope", "k", false)], "default", &Objects);
        assert_eq!(e.unwrap_err().to_string(), "secret \"nope\" not found");
        let all = EnvRef::All {
            source: Source::ConfigMap,
            object: "nope".into(),
            prefix: String::new(),
            optional: false,
        };
        assert_eq!(
            resolve(&[all], "default", &Objects).unwrap_err().to_string(),
            "configmap \"nope\" not found"
        );
        // Bounded as it is read: a hostile envFrom cannot make a node hold
        // more than MAX_ENV_BYTES of variables.
        assert!(BIG.len() > super::super::MAX_ENV_BYTES / 2);
        let big = EnvRef::All {
            source: Source::ConfigMap,
            object: "big".into(),
            prefix: String::new(),
            optional: false,
        };
        assert!(
            resolve(&[big], "default", &Objects).unwrap_err().to_string().contains("bytes: name fewer keys")
        );
    }

    #[test]
    fn field_paths_read_as_kubernetes_writes_them() {
        for path in [
            "metadata.name",
            "metadata.uid",
            "spec.nodeName",
            "status.podIP",
            "status.hostIP",
            "metadata.labels['app.kubernetes.io/name']",
        ] {
            assert_eq!(FieldPath::parse(path).unwrap().to_string(), path);
        }
        assert_eq!(FieldPath::parse("status.podIPs"), Some(FieldPath::PodIp));
        for bad in [
            "metadata.labels",
            "metadata.labels['']",
            "spec.containers",
            "status.phase",
            "metadata.labels['a']x",
        ] {
            assert_eq!(FieldPath::parse(bad), None, "{bad}");
        }
    }
}
