//! The API's certificate authority and serving certificate. The CA is made
//! on first start and kept in the data dir (clients trust it through the
//! kubeconfig); the serving certificate is signed by it at every start, for
//! the addresses the node serves on now (they may have changed since).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::KubeError;
use super::files::{read_or_make, write_private};

/// The CA's subject: the one thing (with its key) a re-made issuer needs to
/// sign certificates the saved CA certificate verifies.
const CA_NAME: &str = "podnet-ca";

/// What the server needs for TLS, and the CA clients must trust.
pub struct Tls {
    /// The CA certificate, PEM (for the kubeconfig).
    pub ca_pem: String,
    /// The rustls server config with the serving certificate.
    pub config: Arc<rustls::ServerConfig>,
}

/// The crypto of the API's TLS: rustls on ring. ring is in the binary already (ureq, snow), and kubectl
/// needs no post-quantum key exchange (the reason ring's provider is
/// deprecated).
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Loads the CA from `dir` (making it on first start) and signs a serving
/// certificate for `node_name`, localhost and `addresses`.
pub fn load(dir: &Path, node_name: &str, addresses: &[IpAddr]) -> Result<Tls, KubeError> {
    let tls =
        |what: &'static str| move |e: rcgen::Error| KubeError::Certificate { what, reason: e.to_string() };
    let ca_key_path = dir.join("ca.key");
    let ca_key_pem = read_or_make(&ca_key_path, || {
        Ok(KeyPair::generate().map_err(tls("make the CA key"))?.serialize_pem())
    })?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| KubeError::Certificate {
        what: "read the CA key",
        reason: format!(
            "{e} in {}: remove it (and ca.crt) to make a new CA, then hand out the new kubeconfig",
            ca_key_path.display()
        ),
    })?;
    let issuer = ca_params().self_signed(&ca_key).map_err(tls("sign the CA certificate"))?;
    let ca_pem = read_or_make(&dir.join("ca.crt"), || Ok(issuer.pem()))?;

    let mut names = vec![SanType::DnsName("localhost".try_into().map_err(tls("name localhost"))?)];
    if let Ok(name) = node_name.try_into() {
        names.push(SanType::DnsName(name));
    }
    let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
    for ip in addresses {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    names.extend(ips.into_iter().map(SanType::IpAddress));
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "podnet-apiserver");
    params.subject_alt_names = names;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(tls("make the serving key"))?;
    let cert = params.signed_by(&key, &issuer, &ca_key).map_err(tls("sign the serving certificate"))?;
    write_private(&dir.join("server.crt"), cert.pem().as_bytes())?;
    write_private(&dir.join("server.key"), key.serialize_pem().as_bytes())?;

    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| KubeError::Certificate {
            what: "load the serving certificate",
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { ca_pem, config: Arc::new(config) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio_rustls::rustls::client::danger::ServerCertVerifier;

    #[test]
    fn the_ca_is_kept_and_the_serving_certificate_chains_to_it() {
        let dir = std::env::temp_dir().join(format!("podnet-kube-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load(&dir, "pi1", &["192.168.1.5".parse().unwrap()]).unwrap();
        let second = load(&dir, "pi1", &[]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem, "the CA survives a restart");
        // The serving certificate verifies against the kept CA.
        let ca = rustls::pki_types::CertificateDer::from(rcgen_pem_der(
            &std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        ));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let leaf =
            CertificateDer::from(rcgen_pem_der(&std::fs::read_to_string(dir.join("server.crt")).unwrap()));
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_server_cert(&leaf, &[], &name, &[], now).expect("the leaf chains to the CA");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    pub(crate) fn rcgen_pem_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }
}
