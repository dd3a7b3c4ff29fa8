//! Image references, normalised as Docker and Kubernetes do: `nginx` is
//! `docker.io/library/nginx:latest`, `ghcr.io/a/b@sha256:…` keeps its
//! digest, a first component with a dot, a colon or `localhost` is a host.

use std::fmt;

use super::digest::Digest;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// Why a reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference `{input}` is invalid: {why}")]
pub struct ReferenceError {
    input: String,
    why: &'static str,
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path (`library/nginx`).
    pub repository: String,
    /// Tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// Digest, when pinned.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let fail = |why| ReferenceError { input: input.to_string(), why };
        if input.is_empty() || input.len() > 512 {
            return Err(fail("it must be 1 to 512 characters"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                (rest, Some(Digest::parse(digest).map_err(|_| fail("the digest must be sha256:<64 hex>"))?))
            }
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_string() } else { registry };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_host(&registry) {
            return Err(fail("the registry host may hold letters, digits, '.', '-' and a :port"));
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(fail("the repository name must be lowercase"));
        }
        if !repository.split('/').all(valid_component) {
            return Err(fail(
                "each path component must be lowercase letters and digits, joined by '.', '_', '__' or '-'",
            ));
        }
        if let Some(tag) = &tag
            && !valid_tag(tag)
        {
            return Err(fail(
                "a tag is 1 to 128 of letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest if
    /// pinned, else the tag.
    pub fn lookup(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

fn valid_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    // Separators: one '.', one or two '_', or any run of '-'.
    let mut run = String::new();
    for &b in bytes {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            if !(run.is_empty() || run == "." || run == "_" || run == "__" || run.chars().all(|c| c == '-')) {
                return false;
            }
            run.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            run.push(b as char);
        } else {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !tag.starts_with(['.', '-'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_are_docker_hub_library_images_at_latest() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(norm("library/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("index.docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("grafana/grafana:11.0.0"), "docker.io/grafana/grafana:11.0.0");
    }

    #[test]
    fn a_first_component_with_a_dot_colon_or_localhost_is_a_host() {
        let r = Reference::parse("ghcr.io/home-assistant/home-assistant:stable").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("ghcr.io", "home-assistant/home-assistant")
        );
        let r = Reference::parse("localhost:5000/busybox").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "busybox", Some("latest"))
        );
        let r = Reference::parse("192.168.77.2:5000/tools/box:v1").unwrap();
        assert_eq!(r.registry, "192.168.77.2:5000");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        // A host is never given `library/`.
        assert_eq!(norm("localhost/busybox"), "localhost/busybox:latest");
    }

    #[test]
    fn digests_pin_and_replace_the_default_tag() {
        let hex = "a".repeat(64);
        let r = Reference::parse(&format!("busybox@sha256:{hex}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.lookup(), format!("sha256:{hex}"));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@sha256:{hex}"));
        let r = Reference::parse(&format!("busybox:1.36@sha256:{hex}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert_eq!(r.lookup(), format!("sha256:{hex}"));
    }

    #[test]
    fn bad_references_are_refused_with_the_rule() {
        for bad in
            ["", "Nginx", "nginx:", "nginx:-x", "nginx@sha256:abc", "a//b", "-a/b", "host:99999/a", "a b"]
        {
            let err = Reference::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("image reference `{bad}` is invalid: ")), "{err}");
        }
        assert!(Reference::parse("a__b/c-d--e.f").is_ok());
        assert!(Reference::parse("a___b").is_err());
    }
}
