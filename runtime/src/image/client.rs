//! The OCI distribution client: manifests and blobs over HTTP(S) from one
//! endpoint, with anonymous, basic and bearer-token auth (the
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` flow Docker Hub and
//! the distribution registry use) and the endpoint's TLS settings from
//! registries.yaml. Blocking: pulls run on threads of their own.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use super::ImageError;
use super::manifest::{ACCEPT, MAX_MANIFEST};
use super::registries::{Endpoint, HostConfig};

/// The system's CA bundle on Debian and Raspberry Pi OS (ca-certificates).
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Connecting gives up after this; so does a read that gets nothing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A bearer token's answer, Docker's and OAuth's field names.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
}

/// A manifest as an endpoint sent it.
pub struct Fetched {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The Content-Type header.
    pub content_type: Option<String>,
    /// The Docker-Content-Digest header.
    pub digest: Option<String>,
}

/// One endpoint, for one repository.
pub struct Session {
    agent: ureq::Agent,
    endpoint: Endpoint,
    config: HostConfig,
    /// The Authorization header once the registry asked for one.
    authorization: Option<String>,
}

impl Session {
    /// Prepares requests to `endpoint` with `config`'s auth and TLS.
    pub fn new(endpoint: Endpoint, config: Option<&HostConfig>) -> Result<Session, ImageError> {
        let config = config.cloned().unwrap_or_default();
        let tls = tls_config(&endpoint, &config)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .max_redirects(5)
            .user_agent(concat!("podnet/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent();
        // A token given in the file is sent from the start.
        let authorization = config
            .auth
            .as_ref()
            .and_then(|a| a.token.clone().or_else(|| a.identity_token.clone()))
            .map(|t| format!("Bearer {t}"));
        Ok(Session { agent, endpoint, config, authorization })
    }

    /// The endpoint, as `scheme://host`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.endpoint.scheme, self.endpoint.host)
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Fetches a manifest by tag or digest: its bytes, Content-Type and
    /// Docker-Content-Digest header.
    pub fn manifest(&mut self, lookup: &str) -> Result<Fetched, ImageError> {
        let path = format!("manifests/{lookup}");
        let response = self.get(&path, ACCEPT)?;
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
        let (content_type, digest) = (header("content-type"), header("docker-content-digest"));
        let mut bytes = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::Transfer(e.to_string()))?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(ImageError::Corrupt(format!(
                "{} sent a manifest over {MAX_MANIFEST} bytes",
                self.url()
            )));
        }
        Ok(Fetched { bytes, content_type, digest })
    }

    /// Opens a blob for streaming.
    pub fn blob(&mut self, digest: &super::digest::Digest) -> Result<impl Read + use<>, ImageError> {
        let response = self.get(&format!("blobs/{digest}"), "*/*")?;
        Ok(response.into_body().into_reader())
    }

    /// GET `<api>/<repository>/<path>`, answering one auth challenge.
    fn get(&mut self, path: &str, accept: &str) -> Result<ureq::http::Response<ureq::Body>, ImageError> {
        let url = format!(
            "{}://{}{}/{}/{path}",
            self.endpoint.scheme, self.endpoint.host, self.endpoint.api, self.endpoint.repository
        );
        let mut challenged = false;
        loop {
            let mut request = self.agent.get(&url).header("Accept", accept);
            if let Some(auth) = &self.authorization {
                request = request.header("Authorization", auth);
            }
            let response = request.call().map_err(|e| self.transport(e))?;
            let status = response.status().as_u16();
            match status {
                200..=299 => return Ok(response),
                401 if !challenged => {
                    challenged = true;
                    let challenge = response
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    self.authorization = Some(self.answer(&challenge)?);
                }
                401 => return Err(self.unauthorized()),
                403 => {
                    return Err(ImageError::Denied {
                        endpoint: self.url(),
                        repository: self.endpoint.repository.clone(),
                    });
                }
                404 => {
                    return Err(ImageError::Missing { endpoint: self.url(), what: path.to_string() });
                }
                _ => {
                    let mut text = String::new();
                    let _ = response.into_body().into_reader().take(512).read_to_string(&mut text);
                    return Err(ImageError::Registry {
                        endpoint: self.url(),
                        status,
                        message: registry_message(&text),
                    });
                }
            }
        }
    }

    /// The Authorization header that answers a 401's challenge.
    fn answer(&mut self, challenge: &str) -> Result<String, ImageError> {
        let basic = self.basic();
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => basic.ok_or_else(|| self.unauthorized()),
            "bearer" => {
                let params = auth_params(params);
                let get =
                    |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
                let realm = get("realm").ok_or_else(|| ImageError::Registry {
                    endpoint: self.url(),
                    status: 401,
                    message: "a Bearer challenge without a realm".into(),
                })?;
                let scope = get("scope")
                    .map(String::from)
                    .unwrap_or_else(|| format!("repository:{}:pull", self.endpoint.repository));
                let mut url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    crate::url::percent_encode(&scope)
                );
                if let Some(service) = get("service") {
                    url.push_str(&format!("&service={}", crate::url::percent_encode(service)));
                }
                let mut request = self.agent.get(&url);
                if let Some(basic) = &basic {
                    request = request.header("Authorization", basic);
                }
                let response = request.call().map_err(|e| self.transport(e))?;
                match response.status().as_u16() {
                    200 => {}
                    401 | 403 => return Err(self.unauthorized()),
                    status => {
                        return Err(ImageError::Registry {
                            endpoint: realm.to_string(),
                            status,
                            message: "the token service refused".into(),
                        });
                    }
                }
                let mut body = Vec::new();
                response
                    .into_body()
                    .into_reader()
                    .take(1 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| ImageError::Transfer(e.to_string()))?;
                let answer: TokenAnswer =
                    serde_json::from_slice(&body).map_err(|e| ImageError::Registry {
                        endpoint: realm.to_string(),
                        status: 200,
                        message: format!("the token service answered no token ({e})"),
                    })?;
                let token = answer.token.or(answer.access_token).ok_or_else(|| ImageError::Registry {
                    endpoint: realm.to_string(),
                    status: 200,
                    message: "the token service answered no token".into(),
                })?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(self.unauthorized()),
        }
    }

    /// Basic credentials from the file, if any.
    fn basic(&self) -> Option<String> {
        let auth = self.config.auth.as_ref()?;
        if let Some(encoded) = &auth.auth {
            return Some(format!("Basic {encoded}"));
        }
        let user = auth.username.as_ref()?;
        let pass = auth.password.clone().unwrap_or_default();
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))))
    }

    fn unauthorized(&self) -> ImageError {
        ImageError::Unauthorized {
            endpoint: self.url(),
            host: self.endpoint.host.clone(),
            had_credentials: self.config.auth.is_some(),
        }
    }

    fn transport(&self, e: ureq::Error) -> ImageError {
        transport_error(&self.url(), &self.endpoint.host, e)
    }
}

/// Renders a transport failure: unreachable, or TLS.
pub fn transport_error(url: &str, host: &str, e: ureq::Error) -> ImageError {
    let tls = |e: &ureq::Error| {
        let text = e.to_string().to_lowercase();
        // The registry refused this node's client certificate (or its lack).
        let refused = text.contains("alert") && text.contains("certificate");
        ImageError::Tls { endpoint: url.to_string(), host: host.to_string(), message: e.to_string(), refused }
    };
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => tls(&e),
        ureq::Error::Io(ref io)
            if io.get_ref().is_some_and(|inner| inner.to_string().to_lowercase().contains("certificate")) =>
        {
            tls(&e)
        }
        other => ImageError::Unreachable { endpoint: url.to_string(), message: other.to_string() },
    }
}

/// The TLS settings for an endpoint: the system CAs plus `ca_file`, a
/// client certificate, or no verification at all.
fn tls_config(endpoint: &Endpoint, config: &HostConfig) -> Result<TlsConfig, ImageError> {
    let tls = config.tls.clone().unwrap_or_default();
    let file = |path: &std::path::Path, what: &'static str| {
        std::fs::read(path).map_err(|e| ImageError::TlsFile {
            host: endpoint.host.clone(),
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    };
    let pem_certs = |bytes: &[u8], path: &std::path::Path, what: &'static str| {
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(bytes)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(ImageError::TlsFile {
                host: endpoint.host.clone(),
                what,
                path: path.to_path_buf(),
                message: "no PEM certificate in it".into(),
            });
        }
        Ok(certs)
    };
    let mut roots = Vec::new();
    if let Ok(bytes) = std::fs::read(SYSTEM_CAS) {
        roots.extend(ureq::tls::parse_pem(&bytes).filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        }));
    }
    if let Some(path) = &tls.ca_file {
        roots.extend(pem_certs(&file(path, "ca_file")?, path, "ca_file")?);
    }
    let mut builder = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .disable_verification(tls.insecure_skip_verify);
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let chain = pem_certs(&file(cert, "cert_file")?, cert, "cert_file")?;
        let key = PrivateKey::from_pem(&file(key, "key_file")?).map_err(|e| ImageError::TlsFile {
            host: endpoint.host.clone(),
            what: "key_file",
            path: key.clone(),
            message: e.to_string(),
        })?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

/// `realm="…",service="…"` → pairs (values may be quoted, with commas inside).
fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            value = quoted[..end].to_string();
            rest = quoted.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((name, value));
        rest = rest.trim_start_matches([',', ' ']);
    }
    out
}

/// The first message of a registry's JSON error body, or the text.
fn registry_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        message: Option<String>,
        code: Option<String>,
    }
    match serde_json::from_str::<Errors>(body) {
        Ok(Errors { errors }) if !errors.is_empty() => {
            let e = &errors[0];
            e.message.clone().or_else(|| e.code.clone()).unwrap_or_default()
        }
        _ => body.lines().next().unwrap_or("").chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_as_docker_hub_sends_them() {
        let p = auth_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(
            p,
            [
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/nginx:pull,push".into()),
            ]
        );
        assert_eq!(
            auth_params("realm=x, service=y"),
            [("realm".into(), "x".into()), ("service".into(), "y".into())]
        );
        assert_eq!(crate::url::percent_encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }

    /// A registry on loopback that wants a bearer token from its token
    /// service, which wants basic credentials: Docker Hub's flow.
    fn token_registry() -> (u16, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    head.push(line.trim().to_string());
                }
                let auth =
                    head.iter().find_map(|h| h.strip_prefix("authorization: ")).unwrap_or("").to_string();
                let (status, extra, body) = if head[0].starts_with("GET /token?") {
                    if auth == "Basic dTpw" {
                        ("200 OK", "", r#"{"token":"T0K"}"#)
                    } else {
                        ("401 No", "", "")
                    }
                } else if auth == "Bearer T0K" {
                    ("200 OK", "Docker-Content-Digest: sha256:x\r\n", "{}")
                } else {
                    let challenge = format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"reg\",scope=\"repository:lib/x:pull\"\r\n"
                    );
                    let mut stream = &stream;
                    write!(stream, "HTTP/1.1 401 Unauthorized\r\n{challenge}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
                    seen.push(format!("{} [{auth}]", head[0]));
                    continue;
                };
                let mut stream = &stream;
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                seen.push(format!("{} [{auth}]", head[0]));
            }
            seen
        });
        (port, server)
    }

    #[test]
    fn a_bearer_challenge_is_answered_with_a_token_from_the_realm() {
        let (port, server) = token_registry();
        let endpoint = Endpoint {
            scheme: "http".into(),
            host: format!("127.0.0.1:{port}"),
            api: "/v2".into(),
            repository: "lib/x".into(),
            is_default: false,
        };
        let config = HostConfig {
            auth: Some(crate::image::registries::Auth {
                username: Some("u".into()),
                password: Some("p".into()),
                ..Default::default()
            }),
            tls: None,
        };
        let mut session = Session::new(endpoint, Some(&config)).unwrap();
        let fetched = session.manifest("v1").unwrap();
        assert_eq!(fetched.bytes, b"{}");
        assert_eq!(fetched.digest.as_deref(), Some("sha256:x"));
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            [
                "GET /v2/lib/x/manifests/v1 HTTP/1.1 []".to_string(),
                "GET /token?scope=repository%3Alib%2Fx%3Apull&service=reg HTTP/1.1 [Basic dTpw]".into(),
                "GET /v2/lib/x/manifests/v1 HTTP/1.1 [Bearer T0K]".into(),
            ]
        );
    }

    #[test]
    fn registry_errors_are_read_from_their_json() {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(registry_message(body), "manifest unknown");
        assert_eq!(registry_message("plain text\nmore"), "plain text");
    }
}
