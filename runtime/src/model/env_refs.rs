//! A container's variables from ConfigMaps and Secrets: `env[].valueFrom`
//! (`configMapKeyRef`, `secretKeyRef`) and `envFrom` (`configMapRef`,
//! `secretRef`, with a prefix). They are resolved for the node a pod runs
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
}

/// Most references one container may make.
pub const MAX_ENV_REFS: usize = 64;

/// The object lookup resolution needs: each key of object `name` of
/// `source` in the pod's namespace with its text, or None if there is no
/// such object. Borrowed: a large ConfigMap is not copied to be read.
pub trait Lookup {
    /// The keys and values of the object, if it exists.
    fn values<'a>(&'a self, source: Source, name: &str) -> Option<Values<'a>>;
}

/// An object's keys and values as [`Lookup`] gives them.
pub type Values<'a> = Box<dyn Iterator<Item = (&'a str, std::borrow::Cow<'a, str>)> + 'a>;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Objects;
    impl Lookup for Objects {
        fn values<'a>(&'a self, source: Source, name: &str) -> Option<Values<'a>> {
            let pairs: &'static [(&'static str, &'static str)] = match (source, name) {
                (Source::ConfigMap, "app") => &[("mode", "fast"), ("bad name", "x")],
                (Source::ConfigMap, "big") => &[("a", BIG), ("b", BIG)],
                (Source::Secret, "db") => &[("password", "hunter2")],
                _ => return None,
            };
            Some(Box::new(pairs.iter().map(|(k, v)| (*k, std::borrow::Cow::Borrowed(*v)))))
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
}
