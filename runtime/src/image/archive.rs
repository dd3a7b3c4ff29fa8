//! Importing image archives: an OCI image layout in a tar (`skopeo copy …
//! oci-archive:FILE:NAME`) and a `docker save` tarball (`docker-archive:`).
//! The archive is indexed once (entries are seeked past, not read), then
//! each blob is streamed from its place in the file into the store and
//! verified. Hostile archives are normal input: an entry that leaves the
//! archive (absolute, `..`), sizes past the file's end, missing blobs and
//! too many entries are refused, and nothing is named until all is stored.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::digest::Digest;
use super::manifest::{self, Descriptor, ImageConfig, Parsed};
use super::platform::{self, Platform};
use super::reference::Reference;
use super::store::{ImageRecord, Store};
use super::{ImageError, ImageInfo};

/// More entries than any image needs: refused.
const MAX_ENTRIES: usize = 100_000;

/// The annotations that name an image in an OCI layout's index.json.
const NAME_ANNOTATIONS: [&str; 2] = ["io.containerd.image.name", "org.opencontainers.image.ref.name"];

/// One `docker save` manifest.json entry.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An archive's regular files: where each one's bytes start, and how many.
struct Archive {
    path: PathBuf,
    file: File,
    entries: BTreeMap<String, (u64, u64)>,
}

impl Archive {
    fn open(path: &Path) -> Result<Archive, ImageError> {
        let fail = |message: String| ImageError::Archive { path: path.to_path_buf(), message };
        let file = File::open(path).map_err(|e| fail(format!("{e}: check the path")))?;
        let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
        let mut entries = BTreeMap::new();
        let mut links = Vec::new();
        let mut archive = tar::Archive::new(&file);
        let iter = archive.entries_with_seek().map_err(|e| fail(format!("not a tar archive ({e})")))?;
        for (n, entry) in iter.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(fail(format!("it has more than {MAX_ENTRIES} entries: not an image archive")));
            }
            let entry =
                entry.map_err(|e| fail(format!("a damaged tar entry ({e}): export the image again")))?;
            let name =
                entry.path().map_err(|e| fail(format!("an entry name is not UTF-8 ({e})")))?.into_owned();
            let name = clean(&name).ok_or_else(|| {
                fail(format!(
                    "entry `{}` points outside the archive: refusing a hostile archive",
                    name.display()
                ))
            })?;
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let (start, size) = (entry.raw_file_position(), entry.size());
                if start.checked_add(size).is_none_or(|end| end > len) {
                    return Err(fail(format!(
                        "entry `{name}` claims {size} bytes past the end of the file: it is truncated or hostile"
                    )));
                }
                entries.insert(name, (start, size));
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().ok().flatten().map(|t| t.into_owned()).unwrap_or_default();
                // `docker save` links repeated layers: relative to the entry's
                // directory for symlinks, to the archive root for hard links.
                let base = if kind.is_symlink() {
                    Path::new(&name).parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.clone()
                };
                let target = resolve(&base).ok_or_else(|| {
                    fail(format!(
                        "link `{name}` -> `{}` points outside the archive: refusing a hostile archive",
                        target.display()
                    ))
                })?;
                links.push((name, target));
            }
        }
        for (name, target) in links {
            if let Some(&place) = entries.get(&target) {
                entries.insert(name, place);
            }
        }
        Ok(Archive { path: path.to_path_buf(), file, entries })
    }

    fn fail(&self, message: impl Into<String>) -> ImageError {
        ImageError::Archive { path: self.path.clone(), message: message.into() }
    }

    /// A reader over one entry's bytes, and its size.
    fn entry(&self, name: &str) -> Result<(impl Read + '_, u64), ImageError> {
        let &(start, size) = self.entries.get(name).ok_or_else(|| {
            self.fail(format!(
                "it lacks `{name}`, which its manifest names: the archive is incomplete, export it again"
            ))
        })?;
        let mut file = &self.file;
        file.seek(SeekFrom::Start(start)).map_err(|e| self.fail(e.to_string()))?;
        Ok((file.take(size), size))
    }

    /// A small entry (JSON), read whole.
    fn small(&self, name: &str, max: u64) -> Result<Vec<u8>, ImageError> {
        let (mut reader, size) = self.entry(name)?;
        if size > max {
            return Err(self.fail(format!("`{name}` is {size} bytes, over the {max} a manifest may have")));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader.read_to_end(&mut bytes).map_err(|e| self.fail(e.to_string()))?;
        Ok(bytes)
    }

    /// Streams an OCI layout blob into the store, verified.
    fn copy_blob(&self, store: &Store, descriptor: &Descriptor) -> Result<(), ImageError> {
        if store.has(&descriptor.digest) {
            return Ok(());
        }
        let (mut reader, _) = self.entry(&format!("blobs/sha256/{}", descriptor.digest.hex()))?;
        store.write(&mut reader, Some((descriptor.digest, descriptor.size)), 0, &mut |_| {})?;
        Ok(())
    }
}

/// A link target inside the archive: `a/../b` → `b`; None when it climbs
/// out of the archive or is absolute.
fn resolve(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// `a/./b` → `a/b`; None for absolute paths and `..`.
fn clean(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Imports every image the archive at `path` names; for an index, the
/// variant for `platform`.
pub fn import(store: &Store, path: &Path, platform: &Platform) -> Result<Vec<ImageInfo>, ImageError> {
    let archive = Archive::open(path)?;
    if archive.entries.contains_key("manifest.json") {
        import_docker(store, &archive)
    } else if archive.entries.contains_key("index.json") {
        import_oci(store, &archive, platform)
    } else {
        Err(archive.fail(
            "it is neither an OCI image layout (no index.json) nor a `docker save` archive (no manifest.json)",
        ))
    }
}

fn import_oci(store: &Store, archive: &Archive, platform: &Platform) -> Result<Vec<ImageInfo>, ImageError> {
    let bytes = archive.small("index.json", manifest::MAX_MANIFEST)?;
    let Parsed::Index(entries) = manifest::parse(&bytes, Some(manifest::OCI_INDEX))
        .map_err(|e| archive.fail(format!("index.json: {e}")))?
    else {
        return Err(archive.fail("index.json is not an image index"));
    };
    let mut named = Vec::new();
    for entry in &entries {
        let name = NAME_ANNOTATIONS.iter().find_map(|a| entry.annotations.get(*a)).ok_or_else(|| {
            archive.fail(
                "index.json names no image: export it with a name (skopeo copy … oci-archive:FILE:NAME:TAG)",
            )
        })?;
        let reference = Reference::parse(name)?;
        named.push((reference, entry));
    }
    if named.is_empty() {
        return Err(archive.fail("index.json lists no image"));
    }
    let mut imported = Vec::new();
    for (reference, entry) in named {
        let image = reference.to_string();
        let top = archive.small(&format!("blobs/sha256/{}", entry.digest.hex()), manifest::MAX_MANIFEST)?;
        let top_digest = Digest::of(&top);
        if top_digest != entry.digest {
            return Err(ImageError::DigestMismatch { expected: entry.digest, actual: top_digest });
        }
        let format = |source| ImageError::Format { image: image.clone(), source };
        let (manifest_bytes, manifest_digest, config, layers, chosen) =
            match manifest::parse(&top, Some(&entry.media_type)).map_err(format)? {
                Parsed::Manifest { config, layers } => (top.clone(), top_digest, config, layers, None),
                Parsed::Index(children) => {
                    let child = platform::select(&children, platform).map_err(|available| {
                        ImageError::NoPlatform {
                            image: image.clone(),
                            platform: platform.to_string(),
                            available,
                        }
                    })?;
                    let bytes = archive
                        .small(&format!("blobs/sha256/{}", child.digest.hex()), manifest::MAX_MANIFEST)?;
                    let actual = Digest::of(&bytes);
                    if actual != child.digest {
                        return Err(ImageError::DigestMismatch { expected: child.digest, actual });
                    }
                    match manifest::parse(&bytes, Some(&child.media_type)).map_err(format)? {
                        Parsed::Manifest { config, layers } => {
                            (bytes, actual, config, layers, Some(platform.to_string()))
                        }
                        Parsed::Index(_) => return Err(archive.fail("an index inside an index")),
                    }
                }
            };
        archive.copy_blob(store, &config)?;
        for layer in &layers {
            archive.copy_blob(store, layer)?;
        }
        let platform = match chosen {
            Some(p) => p,
            None => config_platform(store, &config.digest)?,
        };
        store.write_bytes(&manifest_bytes, Some(manifest_digest))?;
        store.write_bytes(&top, Some(top_digest))?;
        let size = config.size + layers.iter().map(|l| l.size).sum::<u64>();
        let record =
            ImageRecord { digest: top_digest, manifest: manifest_digest, platform: platform.clone(), size };
        store.set(&image, record)?;
        imported.push(ImageInfo { reference: image, digest: top_digest.to_string(), platform, size });
    }
    Ok(imported)
}

fn import_docker(store: &Store, archive: &Archive) -> Result<Vec<ImageInfo>, ImageError> {
    let bytes = archive.small("manifest.json", manifest::MAX_MANIFEST)?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&bytes).map_err(|e| archive.fail(format!("malformed manifest.json: {e}")))?;
    if entries.is_empty() {
        return Err(archive.fail("manifest.json lists no image"));
    }
    let mut imported = Vec::new();
    for entry in entries {
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            return Err(archive.fail(
                "manifest.json names no image (RepoTags): save it with a name (docker save NAME:TAG)",
            ));
        }
        let references = tags.iter().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
        let config_bytes = archive.small(&entry.config, manifest::MAX_CONFIG)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| archive.fail(format!("malformed image config `{}`: {e}", entry.config)))?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(archive.fail(format!(
                "its config lists {} layers and manifest.json {}: the archive is damaged",
                config.rootfs.diff_ids.len(),
                entry.layers.len()
            )));
        }
        let config_digest = store.write_bytes(&config_bytes, None)?;
        let mut layers = Vec::new();
        // A saved layer is the uncompressed tar: its digest is the diff ID.
        for (name, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let (mut reader, size) = archive.entry(name)?;
            if !store.has(diff_id) {
                store.write(&mut reader, Some((*diff_id, size)), 0, &mut |_| {})?;
            }
            layers.push(Descriptor {
                media_type: manifest::OCI_LAYER_TAR.into(),
                digest: *diff_id,
                size,
                platform: None,
                annotations: Default::default(),
            });
        }
        let config_descriptor = Descriptor {
            media_type: manifest::OCI_CONFIG.into(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        };
        let manifest_bytes = manifest::oci_manifest(&config_descriptor, &layers);
        let manifest_digest = store.write_bytes(&manifest_bytes, None)?;
        let platform = Platform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
        }
        .to_string();
        let size = config_descriptor.size + layers.iter().map(|l| l.size).sum::<u64>();
        for reference in references {
            let image = reference.to_string();
            let record = ImageRecord {
                digest: manifest_digest,
                manifest: manifest_digest,
                platform: platform.clone(),
                size,
            };
            store.set(&image, record)?;
            imported.push(ImageInfo {
                reference: image,
                digest: manifest_digest.to_string(),
                platform: platform.clone(),
                size,
            });
        }
    }
    Ok(imported)
}

/// A stored config's platform.
fn config_platform(store: &Store, digest: &Digest) -> Result<String, ImageError> {
    let config: ImageConfig = serde_json::from_slice(&store.read(digest, manifest::MAX_CONFIG)?)
        .map_err(|e| ImageError::Corrupt(format!("malformed image config {digest}: {e}")))?;
    Ok(Platform { os: config.os, architecture: config.architecture, variant: config.variant }.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`: write the raw name as a hostile tool would.
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn setup(tag: &str, archive: &[u8]) -> (Store, PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("podnet-archive-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("store")).unwrap();
        let file = dir.join("image.tar");
        std::fs::write(&file, archive).unwrap();
        (store, dir, file)
    }

    fn blobs(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("store/blobs/sha256")).unwrap().count()
    }

    #[test]
    fn a_docker_save_archive_is_imported_and_checked_against_its_diff_ids() {
        let layer = b"pretend this is a layer tar";
        let diff = Digest::of(layer);
        let config = format!(
            r#"{{"architecture":"arm64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
        );
        let manifest = r#"[{"Config":"c.json","RepoTags":["box:v1"],"Layers":["l/layer.tar"]}]"#;
        let bytes = tar_with(&[
            ("manifest.json", manifest.as_bytes()),
            ("c.json", config.as_bytes()),
            ("l/layer.tar", layer),
        ]);
        let (store, dir, file) = setup("docker", &bytes);
        let images = import(&store, &file, &Platform::node()).unwrap();
        assert_eq!(images[0].reference, "docker.io/library/box:v1");
        assert_eq!(images[0].platform, "linux/arm64");
        assert!(store.has(&diff));
        assert_eq!(store.images().unwrap().len(), 1);

        // A layer that is not what the config says: refused, not named.
        let tampered = tar_with(&[
            ("manifest.json", manifest.as_bytes()),
            ("c.json", config.as_bytes()),
            ("l/layer.tar", b"other"),
        ]);
        let (store, dir2, file) = setup("docker-bad", &tampered);
        let err = import(&store, &file, &Platform::node()).unwrap_err();
        assert!(matches!(err, ImageError::SizeMismatch { .. } | ImageError::DigestMismatch { .. }), "{err}");
        assert!(store.images().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(dir2);
    }

    #[test]
    fn link_targets_resolve_inside_the_archive_only() {
        assert_eq!(resolve(Path::new("id/../layer.tar")).as_deref(), Some("layer.tar"));
        assert_eq!(resolve(Path::new("id/../../etc/passwd")), None);
        assert_eq!(resolve(Path::new("/etc/passwd")), None);
        assert_eq!(clean(Path::new("./a/./b")).as_deref(), Some("a/b"));
        assert_eq!(clean(Path::new("a/../b")), None);
    }

    #[test]
    fn hostile_archives_are_refused_with_the_reason() {
        let (store, dir, file) =
            setup("traversal", &tar_with(&[("../../etc/passwd", b"x"), ("index.json", b"{}")]));
        let err = import(&store, &file, &Platform::node()).unwrap_err().to_string();
        assert!(err.contains("points outside the archive"), "{err}");

        // A blob the index names but the archive lacks.
        let missing = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":3,"annotations":{{"org.opencontainers.image.ref.name":"box:v1"}}}}]}}"#,
            manifest::OCI_MANIFEST,
            Digest::of(b"abc")
        );
        std::fs::write(&file, tar_with(&[("oci-layout", b"{}"), ("index.json", missing.as_bytes())]))
            .unwrap();
        let err = import(&store, &file, &Platform::node()).unwrap_err().to_string();
        assert!(err.contains("the archive is incomplete"), "{err}");

        // A size past the end of the file.
        let mut bytes = tar_with(&[("index.json", b"{}")]);
        bytes.truncate(512 + 1);
        std::fs::write(&file, &bytes).unwrap();
        let err = import(&store, &file, &Platform::node()).unwrap_err().to_string();
        assert!(err.starts_with("cannot import"), "{err}");

        std::fs::write(&file, b"not a tar at all, just text").unwrap();
        let err = import(&store, &file, &Platform::node()).unwrap_err().to_string();
        assert!(err.starts_with("cannot import"), "{err}");
        assert_eq!(blobs(&dir), 0);
        assert!(store.images().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
