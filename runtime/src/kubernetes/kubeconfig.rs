//! Reading a kubeconfig as kubectl does: the current context's cluster
//! (server, CA) and user (bearer token, token file, or client certificate).
//! File paths in it are relative to the kubeconfig's directory.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::KubernetesError;

/// How to reach and authenticate to the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The server's URL, without a trailing slash.
    pub server: String,
    /// The CA certificates (PEM) the server's certificate must chain to;
    /// None: the system's.
    pub ca: Option<Vec<u8>>,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
    /// The credential.
    pub auth: Auth,
}

/// The user's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// None (a server that allows anonymous reads).
    None,
    /// A bearer token.
    Token(String),
    /// A bearer token read from a file at each connection (rotated
    /// service-account tokens).
    TokenFile(PathBuf),
    /// A client certificate and its key (PEM).
    ClientCert {
        /// The certificate chain.
        cert: Vec<u8>,
        /// The key.
        key: Vec<u8>,
    },
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Kubeconfig {
    current_context: String,
    contexts: Vec<Named<Context>>,
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<User>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    exec: Option<serde_json::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
}

/// The most a kubeconfig may weigh (they are a few KiB).
const MAX_KUBECONFIG: u64 = 1 << 20;

/// Reads `path`.
pub fn load(path: &Path) -> Result<Access, KubernetesError> {
    let unreadable = |message: String| KubernetesError::KubeconfigUnreadable { path: path.into(), message };
    let metadata = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if metadata.len() > MAX_KUBECONFIG {
        return Err(unreadable(format!("it is over {MAX_KUBECONFIG} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|problem| KubernetesError::KubeconfigInvalid { path: path.into(), problem })
}

/// What makes a kubeconfig unusable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeconfigProblem {
    /// Not YAML of a kubeconfig's shape.
    #[error("not kubeconfig YAML: {0}")]
    NotYaml(String),
    /// No current context.
    #[error("no current-context: set one with kubectl config use-context")]
    NoCurrentContext,
    /// A context, cluster or user the config names is not in it.
    #[error("no {what} named {name:?}")]
    Missing {
        /// context, cluster or user.
        what: &'static str,
        /// The name looked for.
        name: String,
    },
    /// A named entry without its body.
    #[error("the {0} is empty")]
    Empty(&'static str),
    /// The server is not https.
    #[error("cluster server {0:?} is not an https:// URL (podnet talks to the API over TLS only)")]
    NotHttps(String),
    /// A file the config names could not be read.
    #[error("cannot read {}: {message}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// An inline `*-data` field is not base64.
    #[error("{field} is not base64: {message}")]
    NotBase64 {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// exec or auth-provider credentials.
    #[error(
        "the user authenticates with an exec or auth-provider plugin, which podnet does not run: use a token or a client certificate"
    )]
    Plugin,
    /// Half a client certificate.
    #[error("the user has a client certificate without its key, or a key without its certificate")]
    HalfCertificate,
}

fn find<T>(list: &[Named<T>], what: &'static str, name: &str) -> Result<usize, KubeconfigProblem> {
    list.iter()
        .position(|n| n.name == name)
        .ok_or_else(|| KubeconfigProblem::Missing { what, name: name.into() })
}

/// Parses a kubeconfig's text; relative file paths are taken from `dir`.
pub fn parse(text: &str, dir: &Path) -> Result<Access, KubeconfigProblem> {
    let config: Kubeconfig =
        serde_yaml_ng::from_str(text).map_err(|e| KubeconfigProblem::NotYaml(e.to_string()))?;
    if config.current_context.is_empty() {
        return Err(KubeconfigProblem::NoCurrentContext);
    }
    let context = &config.contexts[find(&config.contexts, "context", &config.current_context)?];
    let context = context.value.as_ref().ok_or(KubeconfigProblem::Empty("current context"))?;
    let cluster = config.clusters[find(&config.clusters, "cluster", &context.cluster)?]
        .value
        .as_ref()
        .ok_or(KubeconfigProblem::Empty("context's cluster"))?;
    if !cluster.server.starts_with("https://") {
        return Err(KubeconfigProblem::NotHttps(cluster.server.clone()));
    }
    let file = |path: &Path| -> Result<Vec<u8>, KubeconfigProblem> {
        let path = dir.join(path);
        std::fs::read(&path).map_err(|e| KubeconfigProblem::Unreadable { message: e.to_string(), path })
    };
    let data = |text: &str, field: &'static str| {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| KubeconfigProblem::NotBase64 { field, message: e.to_string() })
    };
    let ca = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(d), _) => Some(data(d, "certificate-authority-data")?),
        (None, Some(path)) => Some(file(path)?),
        (None, None) => None,
    };
    let auth = if context.user.is_empty() {
        Auth::None
    } else {
        let user = config.users[find(&config.users, "user", &context.user)?].value.as_ref();
        match user {
            None => Auth::None,
            Some(u) if u.exec.is_some() || u.auth_provider.is_some() => {
                return Err(KubeconfigProblem::Plugin);
            }
            Some(u) => match (&u.token, &u.token_file) {
                (Some(token), _) => Auth::Token(token.trim().to_string()),
                (None, Some(path)) => Auth::TokenFile(dir.join(path)),
                (None, None) => {
                    let cert = match (&u.client_certificate_data, &u.client_certificate) {
                        (Some(d), _) => Some(data(d, "client-certificate-data")?),
                        (None, Some(p)) => Some(file(p)?),
                        (None, None) => None,
                    };
                    let key = match (&u.client_key_data, &u.client_key) {
                        (Some(d), _) => Some(data(d, "client-key-data")?),
                        (None, Some(p)) => Some(file(p)?),
                        (None, None) => None,
                    };
                    match (cert, key) {
                        (Some(cert), Some(key)) => Auth::ClientCert { cert, key },
                        (None, None) => Auth::None,
                        _ => return Err(KubeconfigProblem::HalfCertificate),
                    }
                }
            },
        }
    };
    Ok(Access {
        server: cluster.server.trim_end_matches('/').to_string(),
        ca,
        insecure: cluster.insecure_skip_tls_verify,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://127.0.0.1:6443/
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
";

    #[test]
    fn reads_k3s_kubeconfig_with_a_client_certificate() {
        let access = parse(K3S, Path::new("/")).unwrap();
        assert_eq!(access.server, "https://127.0.0.1:6443");
        assert_eq!(access.ca.as_deref(), Some(&b"-----BEGIN"[..]));
        assert_eq!(access.auth, Auth::ClientCert { cert: b"cert".to_vec(), key: b"key".to_vec() });
    }

    #[test]
    fn reads_podnets_own_kubeconfig_with_a_token() {
        let text = crate::kube::kubeconfig::render("https://10.0.0.1:6443", "PEM", "abc\n");
        let access = parse(&text, Path::new("/")).unwrap();
        assert_eq!(access.auth, Auth::Token("abc".into()));
        assert_eq!(access.ca.as_deref(), Some(&b"PEM"[..]));
    }

    #[test]
    fn a_token_file_is_relative_to_the_kubeconfig() {
        let text = K3S.replace(
            "    client-certificate-data: Y2VydA==\n    client-key-data: a2V5\n",
            "    tokenFile: sa/token\n",
        );
        let access = parse(&text, Path::new("/etc/k")).unwrap();
        assert_eq!(access.auth, Auth::TokenFile("/etc/k/sa/token".into()));
    }

    #[test]
    fn unusable_kubeconfigs_say_why() {
        let e = |text: &str| parse(text, Path::new("/")).unwrap_err().to_string();
        assert!(e("clusters: 5\n").contains("not kubeconfig YAML"));
        assert!(e("kind: Config\n").contains("no current-context"));
        assert!(e(&K3S.replace("current-context: default", "current-context: other")).contains("no context"));
        assert!(e(&K3S.replace("https://127", "http://127")).contains("https://"));
        assert!(e(&K3S.replace("    client-key-data: a2V5\n", "")).contains("without its key"));
        assert!(
            e(&K3S.replace(
                "    client-certificate-data: Y2VydA==\n    client-key-data: a2V5\n",
                "    exec:\n      command: aws\n"
            ))
            .contains("exec")
        );
        assert!(e(&K3S.replace("LS0tLS1CRUdJTg==", "\"%%%%\"")).contains("not base64"));
    }
}
