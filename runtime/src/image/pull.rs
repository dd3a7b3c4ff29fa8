//! A pull: resolve the reference on the first endpoint that has it (mirrors
//! in order, then the registry), pick the platform's manifest from an
//! index, stream the config and layers into the store verifying each
//! digest, and name the image only once every blob is in place.

use super::client::{Fetched, Session};
use super::digest::Digest;
use super::manifest::{self, ImageConfig, Parsed};
use super::platform::{self, Platform};
use super::reference::Reference;
use super::registries::Registries;
use super::store::{ImageRecord, Store};
use super::{ImageError, ImageInfo, PullEvent};

/// Progress is reported at most once per this many bytes of a layer.
const PROGRESS_STEP: u64 = 1 << 20;

/// Pulls `reference` for `platform` into `store`, reporting each layer's
/// progress to `events`.
pub fn pull(
    store: &Store,
    registries: &Registries,
    reference: &Reference,
    platform: &Platform,
    events: &mut dyn FnMut(PullEvent),
) -> Result<ImageInfo, ImageError> {
    let image = reference.to_string();
    let (mut session, Fetched { bytes, content_type, digest: header_digest }) =
        resolve(registries, reference)?;
    let format = |source| ImageError::Format { image: image.clone(), source };

    // What the name resolved to must be what was asked for (a digest), or
    // what the registry says it sent.
    let top = Digest::of(&bytes);
    let claimed = reference.digest.or_else(|| header_digest.as_deref().and_then(|h| Digest::parse(h).ok()));
    if let Some(expected) = claimed
        && expected != top
    {
        return Err(ImageError::DigestMismatch { expected, actual: top });
    }
    let (manifest_bytes, manifest_digest, config, layers) =
        match manifest::parse(&bytes, content_type.as_deref()).map_err(format)? {
            Parsed::Manifest { config, layers } => (bytes.clone(), top, config, layers),
            Parsed::Index(entries) => {
                let entry = platform::select(&entries, platform).map_err(|available| {
                    ImageError::NoPlatform { image: image.clone(), platform: platform.to_string(), available }
                })?;
                let Fetched { bytes: child, content_type: child_type, .. } =
                    session.manifest(&entry.digest.to_string())?;
                let actual = Digest::of(&child);
                if actual != entry.digest {
                    return Err(ImageError::DigestMismatch { expected: entry.digest, actual });
                }
                match manifest::parse(&child, child_type.as_deref().or(Some(&entry.media_type)))
                    .map_err(format)?
                {
                    Parsed::Manifest { config, layers } => (child, actual, config, layers),
                    Parsed::Index(_) => {
                        return Err(ImageError::Corrupt(format!("image {image}: an index inside an index")));
                    }
                }
            }
        };

    // The config: small, and it tells the platform of a single-manifest image.
    if config.size > manifest::MAX_CONFIG {
        return Err(ImageError::Corrupt(format!(
            "image {image}: its config is over {} bytes",
            manifest::MAX_CONFIG
        )));
    }
    if !store.has(&config.digest) {
        let mut blob = session.blob(&config.digest)?;
        store.write(&mut blob, Some((config.digest, config.size)), 0, &mut |_| {})?;
    }
    let parsed: ImageConfig = serde_json::from_slice(&store.read(&config.digest, manifest::MAX_CONFIG)?)
        .map_err(|e| ImageError::Corrupt(format!("image {image}: malformed config: {e}")))?;
    let image_platform = Platform {
        os: parsed.os.clone(),
        architecture: parsed.architecture.clone(),
        variant: parsed.variant.clone(),
    };
    if !platform.matches(&image_platform) {
        return Err(ImageError::NoPlatform {
            image: image.clone(),
            platform: platform.to_string(),
            available: vec![image_platform.to_string()],
        });
    }

    for layer in &layers {
        let digest = layer.digest.to_string();
        if store.has(&layer.digest) {
            events(PullEvent::Layer { digest, done: layer.size, total: layer.size });
            continue;
        }
        let mut blob = session.blob(&layer.digest)?;
        let mut reported = 0;
        let total = layer.size;
        store.write(&mut blob, Some((layer.digest, layer.size)), 0, &mut |done| {
            if done - reported >= PROGRESS_STEP || done == total {
                reported = done;
                events(PullEvent::Layer { digest: digest.clone(), done, total });
            }
        })?;
        if total == 0 {
            events(PullEvent::Layer { digest, done: 0, total: 0 });
        }
    }
    store.write_bytes(&manifest_bytes, Some(manifest_digest))?;
    store.write_bytes(&bytes, Some(top))?;
    let size = config.size + layers.iter().map(|l| l.size).sum::<u64>();
    let record = ImageRecord { digest: top, manifest: manifest_digest, platform: platform.to_string(), size };
    store.set(&image, record)?;
    Ok(ImageInfo { reference: image, digest: top.to_string(), platform: platform.to_string(), size })
}

/// The first endpoint that has the manifest: the session, the bytes, the
/// Content-Type and the Docker-Content-Digest header.
fn resolve(registries: &Registries, reference: &Reference) -> Result<(Session, Fetched), ImageError> {
    let mut failures = Vec::new();
    for endpoint in registries.endpoints(&reference.registry, &reference.repository) {
        let config = registries.config(&endpoint.host);
        let attempt = Session::new(endpoint, config).and_then(|mut session| {
            let fetched = session.manifest(&reference.lookup())?;
            Ok((session, fetched))
        });
        match attempt {
            Ok(found) => return Ok(found),
            Err(e) => {
                tracing::debug!(image = %reference, error = %e, "endpoint failed; trying the next");
                failures.push(e);
            }
        }
    }
    // An endpoint that answered says more than one that could not be reached.
    let index = failures.iter().position(ImageError::answered).unwrap_or(0);
    Err(match failures.swap_remove(index) {
        ImageError::Missing { endpoint, .. } => {
            ImageError::NotFound { image: reference.to_string(), endpoint }
        }
        other => other,
    })
}
