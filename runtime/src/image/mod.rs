//! OCI images: references, registries.yaml, the distribution client, the
//! content store, pulls, archive imports, unpacked layers for overlayfs,
//! and garbage collection (of what nothing names, and by disk use). The agent
//! owns the store ([`service`]); `podnet image …` asks it over the control
//! socket, so one process writes the store and pulls of one image are
//! shared.

pub mod archive;
pub mod client;
pub mod digest;
pub mod dropped;
pub mod gc;
pub mod layers;
pub mod manifest;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod service;
pub mod store;
pub mod unpack;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use digest::Digest;
pub use platform::Platform;
pub use reference::Reference;
pub use registries::Registries;
pub use service::{ImageStats, Images, Prepared};

/// One image as `podnet image ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The normalised reference (`docker.io/library/nginx:latest`).
    pub reference: String,
    /// What the reference resolved to (an index or a manifest).
    pub digest: String,
    /// The platform stored.
    pub platform: String,
    /// Config and layers, in bytes.
    pub size: u64,
}

/// What a pull or an import reports while it runs, then its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullEvent {
    /// A layer's bytes so far (cached layers report done = total at once).
    Layer {
        /// The layer's digest.
        digest: String,
        /// Bytes so far.
        done: u64,
        /// The layer's size.
        total: u64,
    },
    /// The image is stored.
    Done(ImageInfo),
    /// The pull failed; nothing of it is named in the store.
    Failed(String),
}

/// Why an image operation failed. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A reference that does not parse.
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    /// A `--platform` that does not parse.
    #[error(transparent)]
    Platform(#[from] platform::BadPlatform),
    /// registries.yaml.
    #[error(transparent)]
    Registries(#[from] registries::RegistriesError),
    /// The registry has no such repository, tag or blob.
    #[error(
        "registry {endpoint} lacks {what} that the image names: its copy of the image is incomplete, push it again"
    )]
    Missing {
        /// The endpoint.
        endpoint: String,
        /// The path asked for.
        what: String,
    },
    /// The image is not in the registry (after every endpoint was tried).
    #[error("image {image} not found in registry {endpoint}: check the name and tag")]
    NotFound {
        /// The reference.
        image: String,
        /// The endpoint that answered.
        endpoint: String,
    },
    /// No connection, or it broke or timed out.
    #[error(
        "cannot reach registry {endpoint}: {message}: check that it is up and its address (and mirrors in registries.yaml)"
    )]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// TLS failed (unknown CA, bad certificate).
    #[error(
        "TLS with registry {endpoint} failed: {message}: {}",
        if *refused {
            format!("set configs.\"{host}\".tls.cert_file and key_file in registries.yaml to a client certificate the registry accepts")
        } else {
            format!("set configs.\"{host}\".tls.ca_file in registries.yaml to the CA that signed its certificate")
        }
    )]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// Its host, the configs key.
        host: String,
        /// Why.
        message: String,
        /// Whether the registry refused the client certificate (rather
        /// than this node refusing the registry's).
        refused: bool,
    },
    /// A TLS file from registries.yaml cannot be used.
    #[error("configs.\"{host}\".tls.{what} {}: {message}: fix registries.yaml", path.display())]
    TlsFile {
        /// The configs key.
        host: String,
        /// ca_file, cert_file or key_file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// 401: no or wrong credentials.
    #[error("registry {endpoint} refused {} (401 Unauthorized): {}", if *had_credentials { "the credentials" } else { "anonymous access" }, if *had_credentials { format!("check auth.username and auth.password of configs.\"{host}\" in registries.yaml") } else { format!("add auth.username and auth.password for configs.\"{host}\" to registries.yaml") })]
    Unauthorized {
        /// The endpoint.
        endpoint: String,
        /// Its host, the configs key.
        host: String,
        /// Whether registries.yaml gave credentials.
        had_credentials: bool,
    },
    /// 403.
    #[error(
        "registry {endpoint} denies access to {repository} (403 Forbidden): check the name, and that the account may pull it"
    )]
    Denied {
        /// The endpoint.
        endpoint: String,
        /// The repository.
        repository: String,
    },
    /// Another HTTP status.
    #[error("registry {endpoint} answered {status}: {message}")]
    Registry {
        /// The endpoint.
        endpoint: String,
        /// The status.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// The connection broke mid-transfer.
    #[error("the transfer broke: {0}: pull again")]
    Transfer(String),
    /// The index has no manifest for the platform.
    #[error("image {image} has no variant for {platform} (it has {}): pull it with --platform for one of those, or use an image built for {platform}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoPlatform {
        /// The reference.
        image: String,
        /// The platform wanted.
        platform: String,
        /// What the index offers.
        available: Vec<String>,
    },
    /// Content that does not hash to its digest.
    #[error(
        "content {expected} arrived with digest {actual}: the registry or a mirror serves corrupt or tampered content; nothing was stored"
    )]
    DigestMismatch {
        /// What it should be.
        expected: Digest,
        /// What it is.
        actual: Digest,
    },
    /// Content of the wrong size.
    #[error("content {digest} is {} bytes, its descriptor says {expected}: the source serves corrupt or tampered content; nothing was stored", got.map_or("more than".to_string(), |g| g.to_string()))]
    SizeMismatch {
        /// The digest.
        digest: Digest,
        /// Size the descriptor says.
        expected: u64,
        /// Size seen (None: more than expected).
        got: Option<u64>,
    },
    /// A manifest podnet cannot use.
    #[error("image {image}: {source}")]
    Format {
        /// The reference.
        image: String,
        /// Why.
        #[source]
        source: manifest::FormatError,
    },
    /// Damaged content or state.
    #[error("{0}")]
    Corrupt(String),
    /// The disk: full, read-only, or gone.
    #[error("cannot write {}: {source}{}", path.display(), if source.raw_os_error() == Some(libc::ENOSPC) { ": free space on that file system (podnet image rm unused images)" } else { "" })]
    Disk {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `image rm` of a name the store does not have.
    #[error("no image {0} in the store: see `podnet image ls`")]
    Unknown(String),
    /// `image rm` of an image a pod of this node runs.
    #[error("image {0} is used by a pod on this node: delete the pod first")]
    InUse(String),
    /// A layer that cannot be unpacked; nothing of it is kept.
    #[error("cannot unpack layer {layer}: {source}")]
    Unpack {
        /// The layer blob's digest.
        layer: Digest,
        /// Why.
        #[source]
        source: layers::LayerError,
    },
    /// An archive that cannot be imported.
    #[error("cannot import {}: {message}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Why, and the fix.
        message: String,
    },
}

impl ImageError {
    /// A disk error about `path`.
    pub fn disk(path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Disk { path: path.to_path_buf(), source }
    }

    /// Whether an endpoint answered at all (so its answer beats a mirror that did not).
    pub fn answered(&self) -> bool {
        !matches!(self, ImageError::Unreachable { .. } | ImageError::Tls { .. } | ImageError::TlsFile { .. })
    }
}

/// Human size, as crictl shows it (decimal units).
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes}B"),
        1_000..1_000_000 => format!("{:.3}kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.3}MB", b / 1e6),
        _ => format!("{:.3}GB", b / 1e9),
    }
}
