//! Secrets (v1): `kubernetes.io/tls` (`tls.crt`, `tls.key`, checked to be a
//! PEM chain and the key of its first certificate) or `Opaque`, with their
//! bounds. Their bytes are never printed: `Debug` shows keys and sizes, and
//! listings carry [`SecretInfo`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::{Annotations, Labels, check_annotations, check_label, check_name};

/// Kubernetes' bound on a Secret's data, every key and value together.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// The key of a TLS Secret's certificate chain (PEM).
pub const TLS_CERT: &str = "tls.crt";
/// The key of a TLS Secret's private key (PEM).
pub const TLS_KEY: &str = "tls.key";

/// A Secret's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecretType {
    /// `Opaque`: any keys.
    Opaque,
    /// `kubernetes.io/tls`: `tls.crt` and `tls.key`, checked.
    Tls,
    /// Another type, stored as given (podnet reads only TLS Secrets).
    Other(String),
}

impl SecretType {
    /// Its name in the API.
    pub fn as_str(&self) -> &str {
        match self {
            SecretType::Opaque => "Opaque",
            SecretType::Tls => "kubernetes.io/tls",
            SecretType::Other(t) => t,
        }
    }

    /// The type of an API string (empty: Opaque, as the API defaults it).
    pub fn parse(s: &str) -> SecretType {
        match s {
            "" | "Opaque" => SecretType::Opaque,
            "kubernetes.io/tls" => SecretType::Tls,
            other => SecretType::Other(other.to_string()),
        }
    }
}

/// What a user asks for when making a Secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Its type.
    pub secret_type: SecretType,
    /// Keys and their bytes.
    pub data: BTreeMap<String, Vec<u8>>,
    /// Labels of the object.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Annotations,
}

impl std::fmt::Debug for SecretSpec {
    /// Never the bytes: keys and sizes only (logs and panics must not leak keys).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<&str, usize> = self.data.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        f.debug_struct("SecretSpec")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("secret_type", &self.secret_type)
            .field("data_sizes", &sizes)
            .finish()
    }
}

/// A Secret as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Desired state.
    pub spec: SecretSpec,
}

/// A Secret as listed: its keys and their sizes, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Its type.
    pub secret_type: SecretType,
    /// Each key and the size of its value.
    pub keys: Vec<(String, u64)>,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Annotations,
    /// A digest of the data, to tell a changed Secret from the same one.
    pub digest: String,
}

impl Secret {
    /// What listing shows of it.
    pub fn info(&self) -> SecretInfo {
        use sha2::Digest;
        let mut sha = sha2::Sha256::new();
        for (k, v) in &self.spec.data {
            sha.update((k.len() as u64).to_be_bytes());
            sha.update(k.as_bytes());
            sha.update((v.len() as u64).to_be_bytes());
            sha.update(v);
        }
        let digest: String = sha.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        SecretInfo {
            uid: self.uid.clone(),
            created_at: self.created_at,
            name: self.spec.name.clone(),
            namespace: self.spec.namespace.clone(),
            secret_type: self.spec.secret_type.clone(),
            keys: self.spec.data.iter().map(|(k, v)| (k.clone(), v.len() as u64)).collect(),
            labels: self.spec.labels.clone(),
            annotations: self.spec.annotations.clone(),
            digest,
        }
    }
}

/// Why a Secret is refused; each message names the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// A Secret's data past the Kubernetes bound.
    #[error("secret data is {0} bytes: at most 1048576 (1 MiB) are allowed")]
    SecretTooLarge(usize),
    /// A Secret's key name.
    #[error("invalid secret key `{0}`: use letters, digits, '-', '_' or '.'")]
    SecretKey(String),
    /// A TLS Secret without one of its keys.
    #[error("a kubernetes.io/tls secret needs `{0}`: give --cert and --key (PEM files)")]
    TlsKeyMissing(&'static str),
    /// A TLS Secret's certificate or key that does not parse or match.
    #[error("tls secret {name}: {problem}")]
    Tls {
        /// The Secret.
        name: String,
        /// What is wrong and the fix.
        problem: String,
    },
}

/// The crypto provider a certificate and key are checked with: ring, the
/// one the TLS listeners serve with.
#[allow(deprecated)]
fn provider() -> CryptoProvider {
    tokio_rustls::rustls::crypto::ring::default_provider()
}

/// Checks a Secret: its name, keys and size, and for a TLS Secret that its
/// certificate chain and key parse and belong together.
pub fn check_secret(spec: &SecretSpec) -> Result<(), super::ModelError> {
    check_name("secret", &spec.name, 253)?;
    check_name("namespace", &spec.namespace, 63)?;
    for (k, v) in &spec.labels {
        check_label(k, v)?;
    }
    check_annotations(&spec.annotations)?;
    let mut total = 0;
    for (key, value) in &spec.data {
        if !super::configmap::is_data_key(key) {
            return Err(SecretError::SecretKey(key.clone()).into());
        }
        total += key.len() + value.len();
    }
    if total > MAX_SECRET_BYTES {
        return Err(SecretError::SecretTooLarge(total).into());
    }
    if spec.secret_type == SecretType::Tls {
        certified_key(spec)?;
    }
    Ok(())
}

/// The certificate and key of a TLS Secret, ready to serve: the chain must
/// hold at least one certificate, the key must parse, and the key must be
/// the first certificate's.
pub fn certified_key(spec: &SecretSpec) -> Result<CertifiedKey, SecretError> {
    let tls = |problem: String| SecretError::Tls { name: spec.name.clone(), problem };
    let cert = spec.data.get(TLS_CERT).ok_or(SecretError::TlsKeyMissing(TLS_CERT))?;
    let key = spec.data.get(TLS_KEY).ok_or(SecretError::TlsKeyMissing(TLS_KEY))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| tls(format!("tls.crt is not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(tls("tls.crt holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|_| tls("tls.key is not a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)".into()))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        tls(match e {
            tokio_rustls::rustls::Error::InconsistentKeys(_) => {
                "tls.key is not the key of tls.crt's first certificate: give the matching key".to_string()
            }
            e => format!("the certificate or key cannot be used ({e})"),
        })
    })
}

#[cfg(test)]
impl SecretSpec {
    /// A TLS Secret `name` in `default` with a fresh self-signed
    /// certificate for `host` (tests).
    pub(crate) fn self_signed(name: &str, host: &str) -> SecretSpec {
        let made =
            rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("rcgen makes a certificate");
        SecretSpec {
            name: name.into(),
            namespace: "default".into(),
            secret_type: SecretType::Tls,
            data: [
                (TLS_CERT.to_string(), made.cert.pem().into_bytes()),
                (TLS_KEY.to_string(), made.key_pair.serialize_pem().into_bytes()),
            ]
            .into(),
            labels: Default::default(),
            annotations: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_spec(cert: &str, key: &str) -> SecretSpec {
        SecretSpec {
            name: "shop-tls".into(),
            namespace: "default".into(),
            secret_type: SecretType::Tls,
            data: [
                (TLS_CERT.to_string(), cert.as_bytes().to_vec()),
                (TLS_KEY.to_string(), key.as_bytes().to_vec()),
            ]
            .into(),
            labels: Labels::new(),
            annotations: Annotations::new(),
        }
    }

    #[test]
    fn a_tls_secret_needs_a_chain_and_its_own_key() {
        let a = rcgen::generate_simple_self_signed(vec!["shop.example".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["other.example".to_string()]).unwrap();
        let spec = tls_spec(&a.cert.pem(), &a.key_pair.serialize_pem());
        assert!(check_secret(&spec).is_ok());
        let mismatched = tls_spec(&a.cert.pem(), &b.key_pair.serialize_pem());
        let e = check_secret(&mismatched).unwrap_err().to_string();
        assert!(e.contains("not the key of tls.crt"), "{e}");
        let e = check_secret(&tls_spec("junk", &a.key_pair.serialize_pem())).unwrap_err().to_string();
        assert!(e.contains("tls.crt holds no PEM certificate"), "{e}");
        let e = check_secret(&tls_spec(&a.cert.pem(), "junk")).unwrap_err().to_string();
        assert!(e.contains("tls.key is not a PEM private key"), "{e}");
        let mut missing = spec.clone();
        missing.data.remove(TLS_KEY);
        assert!(check_secret(&missing).unwrap_err().to_string().contains("needs `tls.key`"));
        // Never the key's bytes in a debug print.
        assert!(!format!("{spec:?}").contains("PRIVATE KEY"));
    }
}
