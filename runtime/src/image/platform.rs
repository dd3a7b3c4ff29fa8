//! Platforms (`linux/arm64/v8`), the node's own, and picking an index's
//! manifest for one, as containerd does: OS and architecture must match;
//! the variant must match where it matters (arm v6/v7), and arm64's only
//! variant v8 may be left out on either side.

use std::fmt;

use super::manifest::Descriptor;

/// An OS, architecture and variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`.
    pub architecture: String,
    /// `v8`, `v7`, `v6`, or none.
    pub variant: Option<String>,
}

/// A `--platform` that is not OS/ARCH[/VARIANT].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform `{0}` is not OS/ARCH[/VARIANT] (e.g. linux/arm64, linux/arm/v7, linux/amd64)")]
pub struct BadPlatform(pub String);

impl Platform {
    /// The platform this binary was built for: the node's.
    pub fn node() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            other => (other, None),
        };
        Platform { os: "linux".into(), architecture: architecture.into(), variant: variant.map(String::from) }
    }

    /// Parses OS/ARCH[/VARIANT], normalising Go's and uname's names.
    pub fn parse(text: &str) -> Result<Platform, BadPlatform> {
        let parts: Vec<&str> = text.split('/').collect();
        let bad = || BadPlatform(text.into());
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, Some(variant.to_string())),
            _ => return Err(bad()),
        };
        if os.is_empty() || arch.is_empty() || !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '/') {
            return Err(bad());
        }
        let (arch, variant) = match (arch, variant) {
            ("x86_64" | "x86-64", v) => ("amd64", v),
            ("aarch64", None) => ("arm64", Some("v8".into())),
            ("arm64", None) => ("arm64", Some("v8".into())),
            ("armhf" | "armv7", None) => ("arm", Some("v7".into())),
            ("armel" | "armv6", None) => ("arm", Some("v6".into())),
            ("arm", None) => ("arm", Some("v7".into())),
            (a, v) => (a, v),
        };
        Ok(Platform { os: os.to_lowercase(), architecture: arch.to_string(), variant })
    }

    /// Whether an image built for `other` runs here.
    pub fn matches(&self, other: &Platform) -> bool {
        let variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            ("arm", None) => Some("v7".to_string()),
            (_, v) => v.map(String::from),
        };
        self.os == other.os
            && self.architecture == other.architecture
            && (self.architecture == "amd64" || variant(self) == variant(other))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The index entry for `platform`, or the platforms the index has.
pub fn select<'a>(manifests: &'a [Descriptor], platform: &Platform) -> Result<&'a Descriptor, Vec<String>> {
    manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(&p.platform())))
        .ok_or_else(|| {
            manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                // Attestation entries (buildx) say unknown/unknown.
                .filter(|p| p.os != "unknown")
                .map(|p| p.platform().to_string())
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::PlatformField;

    fn entry(n: u8, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: crate::image::manifest::OCI_MANIFEST.into(),
            digest: crate::image::digest::Digest::of(&[n]),
            size: 1,
            platform: Some(PlatformField {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(String::from),
            }),
            annotations: Default::default(),
        }
    }

    #[test]
    fn the_node_platform_comes_from_the_build_target() {
        let node = Platform::node();
        assert_eq!(node.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(node.to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(node.to_string(), "linux/arm64/v8");
    }

    #[test]
    fn an_index_resolves_to_the_matching_variant() {
        let index = [
            entry(1, "amd64", None),
            entry(2, "arm", Some("v6")),
            entry(3, "arm", Some("v7")),
            entry(4, "arm64", None),
        ];
        let pick = |p: &str| select(&index, &Platform::parse(p).unwrap()).map(|d| d.digest);
        assert_eq!(pick("linux/amd64").unwrap(), index[0].digest);
        assert_eq!(pick("linux/arm/v7").unwrap(), index[2].digest);
        assert_eq!(pick("linux/arm").unwrap(), index[2].digest, "arm means v7");
        assert_eq!(pick("linux/arm/v6").unwrap(), index[1].digest);
        // arm64 without a variant in the index matches arm64/v8.
        assert_eq!(pick("linux/arm64/v8").unwrap(), index[3].digest);
        assert_eq!(pick("linux/aarch64").unwrap(), index[3].digest);
    }

    #[test]
    fn no_variant_lists_what_the_index_has() {
        let index = [entry(1, "amd64", None), entry(2, "arm64", Some("v8"))];
        let missing = select(&index, &Platform::parse("linux/arm/v7").unwrap()).unwrap_err();
        assert_eq!(missing, ["linux/amd64", "linux/arm64/v8"]);
    }

    #[test]
    fn bad_platforms_are_refused() {
        for bad in ["arm64", "linux/", "linux/arm64/", "linux/arm 64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
