//! registries.yaml, in k3s's format so users' files carry over: `mirrors`
//! (per registry, endpoints tried in order, then the registry itself;
//! optional `rewrite` rules for the repository path; `"*"` for every
//! registry without its own entry) and `configs` (per endpoint host: auth
//! and TLS files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::reference::DOCKER_HUB;

/// Where `podnet node up` looks unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/podnet/registries.yaml";

/// Why registries.yaml cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    /// The file could not be read.
    #[error("cannot read registries config {}: {source}: fix the path given to --registries", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not parse or has fields of the wrong shape.
    #[error("registries config {}: {message}: fix that field (k3s registries.yaml format)", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// serde's message: the field path, what was wrong, line and column.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Per registry name (`docker.io`, `ghcr.io`, `*`): where to pull from.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Per endpoint host (`mirror.lan:5000`): credentials and TLS.
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// One registry's mirrors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Endpoint URLs, tried in order before the registry itself.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regular expression → replacement, applied to the repository path.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// Credentials and TLS settings for one endpoint host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Credentials.
    pub auth: Option<Auth>,
    /// TLS settings.
    pub tls: Option<Tls>,
}

/// Credentials, as k3s takes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// User name, for basic auth and for the token service.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// base64 of `user:password`, as in a docker config.json.
    pub auth: Option<String>,
    /// A bearer token sent as is.
    pub token: Option<String>,
    /// An identity (refresh) token; sent as a bearer token.
    pub identity_token: Option<String>,
}

/// TLS settings, as k3s takes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// CA certificates (PEM) that sign the endpoint's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to try for a registry's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// host[:port].
    pub host: String,
    /// The API root, ending in `/v2`.
    pub api: String,
    /// The repository path after the mirror's rewrite rules.
    pub repository: String,
    /// Whether this is the registry itself rather than a mirror.
    pub is_default: bool,
}

impl Registries {
    /// Loads `path`; Ok(None) when `optional` and the file does not exist.
    pub fn load(path: &Path, optional: bool) -> Result<Option<Registries>, RegistriesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RegistriesError::Read { path: path.into(), source }),
        };
        Registries::parse(&text)
            .map(Some)
            .map_err(|message| RegistriesError::Invalid { path: path.into(), message })
    }

    /// Parses and checks the YAML text; the error names the field and line.
    pub fn parse(text: &str) -> Result<Registries, String> {
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let registries: Registries = serde_yaml_ng::from_str(text).map_err(|e| locate(text, e))?;
        for (name, mirror) in &registries.mirrors {
            for endpoint in &mirror.endpoint {
                split_url(endpoint).map_err(|why| format!("mirrors.{name}.endpoint: `{endpoint}` {why}"))?;
            }
            for pattern in mirror.rewrite.keys() {
                regex_lite::Regex::new(pattern).map_err(|e| {
                    format!("mirrors.{name}.rewrite: `{pattern}` is not a regular expression: {e}")
                })?;
            }
        }
        for (host, config) in &registries.configs {
            if let Some(tls) = &config.tls
                && tls.cert_file.is_some() != tls.key_file.is_some()
            {
                return Err(format!("configs.{host}.tls: cert_file and key_file go together"));
            }
        }
        Ok(registries)
    }

    /// Where to pull `repository` of `registry` from, in order: its mirrors
    /// (or `*`'s), then the registry itself.
    pub fn endpoints(&self, registry: &str, repository: &str) -> Vec<Endpoint> {
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let mut out = Vec::new();
        if let Some(mirror) = mirror {
            let mut repo = repository.to_string();
            for (pattern, replacement) in &mirror.rewrite {
                if let Ok(re) = regex_lite::Regex::new(pattern)
                    && re.is_match(&repo)
                {
                    repo = re.replace(&repo, replacement.as_str()).into_owned();
                    break;
                }
            }
            for url in &mirror.endpoint {
                if let Ok((scheme, host, path)) = split_url(url) {
                    out.push(Endpoint {
                        scheme,
                        host,
                        api: api_root(&path),
                        repository: repo.clone(),
                        is_default: false,
                    });
                }
            }
        }
        let host = if registry == DOCKER_HUB { "registry-1.docker.io" } else { registry };
        let default = Endpoint {
            scheme: "https".into(),
            host: host.into(),
            api: "/v2".into(),
            repository: repository.into(),
            is_default: true,
        };
        if !out.iter().any(|e| e.host == default.host && e.scheme == default.scheme && e.api == default.api) {
            out.push(default);
        }
        out
    }

    /// The settings for an endpoint host (docker.io's own endpoint also
    /// answers to `docker.io`).
    pub fn config(&self, host: &str) -> Option<&HostConfig> {
        self.configs
            .get(host)
            .or_else(|| (host == "registry-1.docker.io").then(|| self.configs.get(DOCKER_HUB)).flatten())
    }
}

/// serde's message, with the line of an unknown field when serde gives none.
fn locate(text: &str, e: serde_yaml_ng::Error) -> String {
    let message = e.to_string();
    if message.contains(" line ") {
        return message;
    }
    if let Some(at) = e.location().filter(|l| l.line() > 0) {
        return format!("{message} at line {}", at.line());
    }
    let field = message.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')).map(|(f, _)| f);
    let line = field.and_then(|f| {
        text.lines().position(|l| {
            let l = l.trim_start().trim_start_matches(['"', '\'']);
            l.starts_with(f) && l[f.len()..].trim_start_matches(['"', '\'']).starts_with(':')
        })
    });
    match line {
        Some(n) => format!("{message} at line {}", n + 1),
        None => message,
    }
}

/// `scheme://host[:port][/path]` → its parts.
fn split_url(url: &str) -> Result<(String, String, String), &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("must start with http:// or https://")?;
    if scheme != "http" && scheme != "https" {
        return Err("must start with http:// or https://");
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err("has no host[:port]");
    }
    Ok((scheme.into(), host.into(), path.trim_end_matches('/').into()))
}

/// An endpoint's path is the API root when it ends in /v2, else /v2 goes under it.
fn api_root(path: &str) -> String {
    if path.ends_with("/v2") { path.into() } else { format!("{path}/v2") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from k3s's private registry documentation.
    const K3S: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "https://registry.example.com:5000"
      - "http://10.0.0.2:5000/prefix"
    rewrite:
      "^rancher/(.*)": "mirrorproject/rancher-images/$1"
  "*":
    endpoint:
      - "https://any.example.com"
configs:
  "registry.example.com:5000":
    auth:
      username: xxxxxx
      password: yyyyyy
    tls:
      cert_file: /etc/podnet/client.crt
      key_file: /etc/podnet/client.key
      ca_file: /etc/podnet/ca.crt
  "10.0.0.2:5000":
    tls:
      insecure_skip_verify: true
  docker.io:
    auth:
      token: abc
"#;

    #[test]
    fn k3s_files_parse_and_mirrors_come_before_the_registry() {
        let r = Registries::parse(K3S).unwrap();
        let e = r.endpoints("docker.io", "rancher/klipper");
        let hosts: Vec<_> = e.iter().map(|e| format!("{}://{}{}", e.scheme, e.host, e.api)).collect();
        assert_eq!(
            hosts,
            [
                "https://registry.example.com:5000/v2",
                "http://10.0.0.2:5000/prefix/v2",
                "https://registry-1.docker.io/v2"
            ]
        );
        // The rewrite applies on mirrors only; the registry gets the real path.
        assert_eq!(e[0].repository, "mirrorproject/rancher-images/klipper");
        assert_eq!(e[2].repository, "rancher/klipper");
        assert!(e[2].is_default && !e[0].is_default);
        let auth = r.config("registry.example.com:5000").unwrap().auth.as_ref().unwrap();
        assert_eq!(auth.username.as_deref(), Some("xxxxxx"));
        assert!(r.config("10.0.0.2:5000").unwrap().tls.as_ref().unwrap().insecure_skip_verify);
        assert_eq!(
            r.config("registry-1.docker.io").unwrap().auth.as_ref().unwrap().token.as_deref(),
            Some("abc")
        );
        // "*" covers registries without an entry of their own.
        let e = r.endpoints("ghcr.io", "a/b");
        assert_eq!(e.iter().map(|e| e.host.as_str()).collect::<Vec<_>>(), ["any.example.com", "ghcr.io"]);
    }

    #[test]
    fn no_file_or_an_empty_one_means_the_registries_themselves() {
        let r = Registries::parse("").unwrap();
        let e = r.endpoints("192.168.1.5:5000", "tools/box");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].scheme.as_str(), e[0].host.as_str()), ("https", "192.168.1.5:5000"));
        assert!(Registries::load(Path::new("/nonexistent/registries.yaml"), true).unwrap().is_none());
        let err = Registries::load(Path::new("/nonexistent/registries.yaml"), false).unwrap_err();
        assert!(
            err.to_string().contains("cannot read registries config /nonexistent/registries.yaml"),
            "{err}"
        );
    }

    #[test]
    fn malformed_files_name_the_field_and_line() {
        let err = Registries::parse("mirrors:\n  docker.io:\n    endpoint: \"https://x\"\n").unwrap_err();
        assert!(err.contains("mirrors") && err.contains("line 3"), "{err}");
        let err =
            Registries::parse("configs:\n  a:\n    tls:\n      insecure_skip_verify: maybe\n").unwrap_err();
        assert!(err.contains("insecure_skip_verify") || err.contains("line 4"), "{err}");
        let err = Registries::parse("mirror:\n  docker.io: {}\n").unwrap_err();
        assert!(err.contains("unknown field `mirror`") && err.contains("line 1"), "{err}");
        let err = Registries::parse("mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n").unwrap_err();
        assert!(
            err.contains("mirrors.docker.io.endpoint: `ftp://x` must start with http:// or https://"),
            "{err}"
        );
        let err = Registries::parse("configs:\n  a:\n    tls:\n      cert_file: /c\n").unwrap_err();
        assert_eq!(err, "configs.a.tls: cert_file and key_file go together");
    }
}
