//! The image formats: OCI and Docker v2 manifests and indexes (manifest
//! lists), their media types, and the subset of the image config podnet
//! reads. Only what podnet uses is modelled; the stored bytes stay as the
//! registry sent them, so digests hold.

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::platform::Platform;

/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// A Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// A Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// An uncompressed OCI layer (also what `docker save` holds).
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// What the manifest endpoint is asked to accept, in order of preference.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest or index podnet reads into memory (registries cap them at 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Largest image config read into memory.
pub const MAX_CONFIG: u64 = 8 << 20;

/// Layer media types podnet can unpack (the next step): tar, gzip, zstd,
/// OCI and Docker names.
pub fn layer_supported(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
    )
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// For an index entry: the platform it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformField>,
    /// Annotations (an OCI layout's index names images here).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A platform as the formats write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformField {
    /// `amd64`, `arm64`, `arm`, ...
    pub architecture: String,
    /// `linux`, ...
    pub os: String,
    /// `v7`, `v8`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl PlatformField {
    /// As podnet's platform type.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// A manifest or an index: which one is told by the media type, in the
/// document or (older registries) only in the Content-Type header.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// Always 2 for the formats podnet reads.
    #[serde(default)]
    pub schema_version: u32,
    /// The document's own media type, when it says.
    #[serde(default)]
    pub media_type: Option<String>,
    /// An index's entries.
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    /// A manifest's config.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// A manifest's layers.
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// An index: one manifest per platform.
    Index(Vec<Descriptor>),
    /// An image manifest.
    Manifest {
        /// The config blob.
        config: Descriptor,
        /// The layers, bottom first.
        layers: Vec<Descriptor>,
    },
}

/// Why a manifest is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not JSON of the expected shape.
    #[error("malformed manifest: {0}")]
    Malformed(String),
    /// A schema or media type podnet does not read.
    #[error("unsupported manifest type `{0}` (podnet reads OCI and Docker schema 2 manifests)")]
    Unsupported(String),
    /// A layer type podnet cannot unpack.
    #[error("unsupported layer type `{0}` (podnet unpacks tar, tar+gzip and tar+zstd layers)")]
    Layer(String),
}

/// Parses manifest bytes; `content_type` is the HTTP header, when known.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, FormatError> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
    let media = doc.media_type.clone().or_else(|| {
        content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()).filter(|c| !c.is_empty())
    });
    if doc.schema_version != 2 {
        return Err(FormatError::Unsupported(
            media.unwrap_or_else(|| format!("schemaVersion {}", doc.schema_version)),
        ));
    }
    match (media.as_deref(), doc.manifests, doc.config, doc.layers) {
        (Some(OCI_INDEX | DOCKER_LIST) | None, Some(manifests), None, _) => Ok(Parsed::Index(manifests)),
        (Some(OCI_MANIFEST | DOCKER_MANIFEST) | None, None, Some(config), Some(layers)) => {
            if let Some(bad) = layers.iter().find(|l| !layer_supported(&l.media_type)) {
                return Err(FormatError::Layer(bad.media_type.clone()));
            }
            if !matches!(config.media_type.as_str(), OCI_CONFIG | DOCKER_CONFIG) {
                return Err(FormatError::Unsupported(config.media_type));
            }
            Ok(Parsed::Manifest { config, layers })
        }
        (Some(other), ..) => Err(FormatError::Unsupported(other.to_string())),
        (None, ..) => Err(FormatError::Malformed("neither an index nor an image manifest".into())),
    }
}

/// The part of an image config podnet reads: the layer diff IDs (a
/// `docker save` archive is checked against them, unpacked layers too), the
/// platform, and how to run it.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    /// The platform's architecture.
    #[serde(default)]
    pub architecture: String,
    /// The platform's OS.
    #[serde(default)]
    pub os: String,
    /// The platform's variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// The uncompressed layers' digests.
    pub rootfs: RootFs,
    /// How a container of the image runs.
    #[serde(default)]
    pub config: RunConfig,
}

/// The image config's `config` section: what a container of the image runs
/// unless the pod says otherwise. Registries write `null` for empty fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `NAME=value` pairs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// `user[:group]`, by name or number; root when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: String,
    /// The process's working directory; `/` when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub working_dir: String,
    /// ENTRYPOINT.
    #[serde(default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    /// CMD.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    /// The signal that stops it (`SIGQUIT` for nginx); SIGTERM when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stop_signal: String,
}

/// Reads `null` as the type's default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The config's rootfs section.
#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    /// sha256 of each uncompressed layer, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// An OCI image manifest for `config` and `layers` (what an imported
/// `docker save` archive is stored as).
pub fn oci_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        schema_version: u32,
        media_type: &'a str,
        config: &'a Descriptor,
        layers: &'a [Descriptor],
    }
    serde_json::to_vec(&Out { schema_version: 2, media_type: OCI_MANIFEST, config, layers })
        .expect("a manifest serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn manifests_by_oci_and_docker_media_types_are_read() {
        for (media, config, layer) in [
            (OCI_MANIFEST, OCI_CONFIG, "application/vnd.oci.image.layer.v1.tar+zstd"),
            (DOCKER_MANIFEST, DOCKER_CONFIG, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        ] {
            let json = format!(
                r#"{{"schemaVersion":2,"mediaType":"{media}","config":{{"mediaType":"{config}","digest":"{}","size":10}},"layers":[{{"mediaType":"{layer}","digest":"{}","size":20}}]}}"#,
                d(1),
                d(2)
            );
            let Parsed::Manifest { config, layers } = parse(json.as_bytes(), None).unwrap() else { panic!() };
            assert_eq!(config.size, 10);
            assert_eq!(layers[0].digest.to_string(), d(2));
        }
        // No mediaType in the document: the Content-Type header tells.
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5}}]}}"#,
            d(3)
        );
        assert!(matches!(parse(json.as_bytes(), Some(OCI_INDEX)).unwrap(), Parsed::Index(m) if m.len() == 1));
    }

    #[test]
    fn unknown_schemas_and_layer_types_are_refused() {
        let v1 = r#"{"schemaVersion":1,"name":"x"}"#;
        assert!(matches!(parse(v1.as_bytes(), None), Err(FormatError::Unsupported(_))));
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":1}},"layers":[{{"mediaType":"application/x-squashfs","digest":"{}","size":1}}]}}"#,
            d(1),
            d(2)
        );
        assert_eq!(
            parse(json.as_bytes(), None).unwrap_err(),
            FormatError::Layer("application/x-squashfs".into())
        );
        assert!(matches!(parse(b"{not json", None), Err(FormatError::Malformed(_))));
        let bad_digest = r#"{"schemaVersion":2,"manifests":[{"digest":"md5:00","size":5}]}"#;
        assert!(matches!(parse(bad_digest.as_bytes(), None), Err(FormatError::Malformed(_))));
    }
}
