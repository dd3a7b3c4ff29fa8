//! `<data-dir>/kubeconfig.yaml`: what kubectl needs to reach this node's API
//! as the admin (the CA, the server URL, the token), as k3s's k3s.yaml.

use std::path::Path;

use base64::Engine;

use super::KubeError;
use super::files::write_private;

/// The kubeconfig's file name in the data dir.
pub const FILE: &str = "kubeconfig.yaml";

/// The kubeconfig text for `server` (https://HOST:PORT).
pub fn render(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: podnet\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: podnet-admin\n  user:\n    token: {token}\ncontexts:\n- name: podnet\n  context:\n    cluster: podnet\n    user: podnet-admin\n    namespace: default\ncurrent-context: podnet\npreferences: {{}}\n"
    )
}

/// Writes the kubeconfig into `data_dir` (0600: it holds the admin token).
pub fn write(data_dir: &Path, server: &str, ca_pem: &str, token: &str) -> Result<(), KubeError> {
    write_private(&data_dir.join(FILE), render(server, ca_pem, token).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_is_yaml_kubectl_reads() {
        let text = render("https://127.0.0.1:6443", "-----BEGIN CERTIFICATE-----\n", "abc");
        let doc: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(doc["users"][0]["user"]["token"], "abc");
        assert_eq!(doc["current-context"], "podnet");
        let ca = doc["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(ca).unwrap(),
            b"-----BEGIN CERTIFICATE-----\n"
        );
    }
}
