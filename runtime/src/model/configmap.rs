//! ConfigMaps (v1): keys to text (`data`) or bytes (`binaryData`), with
//! Kubernetes' key rule and size bound. Unlike a Secret's, their values are
//! shown whole by every listing, as the apiserver shows them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Annotations, Labels, check_annotations, check_label, check_name};

/// Kubernetes' bound on a ConfigMap's data, every key and value together.
pub const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;

/// What a user asks for when making a ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMapSpec {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Keys and their UTF-8 values.
    pub data: BTreeMap<String, String>,
    /// Keys and their bytes (not UTF-8, or not meant as text).
    pub binary_data: BTreeMap<String, Vec<u8>>,
    /// Labels of the object.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Annotations,
}

impl ConfigMapSpec {
    /// Its keys and values, text and binary together, in bytes.
    pub fn size(&self) -> usize {
        let text: usize = self.data.iter().map(|(k, v)| k.len() + v.len()).sum();
        let binary: usize = self.binary_data.iter().map(|(k, v)| k.len() + v.len()).sum();
        text + binary
    }
}

/// A ConfigMap as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMap {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Desired state.
    pub spec: ConfigMapSpec,
}

/// Why a ConfigMap is refused; each message names the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigMapError {
    /// Data past the Kubernetes bound.
    #[error(
        "configmap data is {0} bytes: at most 1048576 (1 MiB) are allowed; split it or mount a file instead"
    )]
    TooLarge(usize),
    /// A key's name.
    #[error(
        "data[{0}]: Invalid value: \"{0}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
    )]
    Key(String),
    /// The same key in `data` and `binaryData`.
    #[error("data[{0}]: Invalid value: \"{0}\": duplicate of key {0} in binaryData: give it once")]
    Duplicate(String),
}

/// Kubernetes' rule for a ConfigMap's or Secret's key (`IsConfigMapKey`):
/// at most 253 of letters, digits, '-', '_' and '.', not `.` and not
/// starting with `..` (a volume's `..data` is the node's).
pub fn is_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && !key.starts_with("..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Checks a ConfigMap: its name, labels, keys and size.
pub fn check_configmap(spec: &ConfigMapSpec) -> Result<(), super::ModelError> {
    check_name("configmap", &spec.name, 253)?;
    check_name("namespace", &spec.namespace, 63)?;
    for (k, v) in &spec.labels {
        check_label(k, v)?;
    }
    check_annotations(&spec.annotations)?;
    for key in spec.data.keys().chain(spec.binary_data.keys()) {
        if !is_data_key(key) {
            return Err(ConfigMapError::Key(key.clone()).into());
        }
    }
    if let Some(key) = spec.data.keys().find(|k| spec.binary_data.contains_key(*k)) {
        return Err(ConfigMapError::Duplicate(key.clone()).into());
    }
    let size = spec.size();
    if size > MAX_CONFIGMAP_BYTES {
        return Err(ConfigMapError::TooLarge(size).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(data: &[(&str, &str)]) -> ConfigMapSpec {
        ConfigMapSpec {
            name: "app".into(),
            namespace: "default".into(),
            data: data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            binary_data: BTreeMap::new(),
            labels: Labels::new(),
            annotations: Annotations::new(),
        }
    }

    #[test]
    fn keys_follow_kubernetes_rule_and_data_is_bounded() {
        assert!(check_configmap(&spec(&[("a", "b"), ("app.properties", "x=1"), ("A_b-c", "")])).is_ok());
        for bad in ["", ".", "..", "..data", "a/b", "a b", "ключ"] {
            let e = check_configmap(&spec(&[(bad, "v")])).unwrap_err().to_string();
            assert!(e.contains("a valid config key"), "{bad}: {e}");
        }
        let big = "x".repeat(MAX_CONFIGMAP_BYTES);
        let e = check_configmap(&spec(&[("k", &big)])).unwrap_err().to_string();
        assert!(e.contains("at most 1048576"), "{e}");
        let mut both = spec(&[("k", "v")]);
        both.binary_data.insert("k".into(), vec![0xff]);
        assert!(check_configmap(&both).unwrap_err().to_string().contains("duplicate"));
    }
}
