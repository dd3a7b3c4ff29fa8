//! The content store, `<data-dir>/images`: blobs by digest under
//! `blobs/sha256/<hex>`, and `refs.json`, the images by name. A blob is
//! written to `tmp/`, verified, synced and renamed into place, so a blob
//! file that exists is whole and matches its name; `refs.json` is replaced
//! the same way. Unreferenced blobs go at garbage collection.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::ImageError;
use super::digest::{Digest, Hashing};
use super::manifest::{self, Parsed};

/// One stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// What the name resolved to: an index, or the manifest itself.
    pub digest: Digest,
    /// The image manifest for this node's (or the asked) platform.
    pub manifest: Digest,
    /// That platform, as OS/ARCH[/VARIANT].
    pub platform: String,
    /// Config and layers, in bytes as stored.
    pub size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    images: BTreeMap<String, ImageRecord>,
    /// When each image was last pulled, imported or prepared (Unix
    /// seconds): disk-threshold GC removes the least recent first.
    #[serde(default)]
    last_used: BTreeMap<String, u64>,
    /// Archives in the store's directory imported at start, by file name.
    #[serde(default)]
    imported: BTreeMap<String, ArchiveStamp>,
}

/// What tells one dropped-in archive file from a new one of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveStamp {
    /// Its size.
    pub size: u64,
    /// Its mtime, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The store on disk.
pub struct Store {
    root: PathBuf,
    refs: Mutex<()>,
}

/// Where a blob write reports its progress: bytes so far.
pub type Progress<'a> = &'a mut dyn FnMut(u64);

/// Deletes a temporary file unless it was renamed into place.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Store {
    /// Opens (creating) the store under `root`, clearing temp files that a
    /// stopped agent left.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        for dir in [root.join("blobs/sha256"), root.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(|e| ImageError::disk(&dir, e))?;
        }
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Store { root: root.to_path_buf(), refs: Mutex::new(()) })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether a blob is stored.
    pub fn has(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a stored blob of at most `max` bytes.
    pub fn read(&self, digest: &Digest, max: u64) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| ImageError::disk(&path, e))?;
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes).map_err(|e| ImageError::disk(&path, e))?;
        if bytes.len() as u64 > max {
            return Err(ImageError::Corrupt(format!("stored blob {digest} is larger than {max} bytes")));
        }
        Ok(bytes)
    }

    /// Streams `from` into the store. With `expected`, the content must have
    /// exactly that digest and size, or nothing is stored; without, at most
    /// `max` bytes are taken and the digest is what they hash to.
    pub fn write(
        &self,
        from: &mut dyn Read,
        expected: Option<(Digest, u64)>,
        max: u64,
        progress: Progress<'_>,
    ) -> Result<(Digest, u64), ImageError> {
        let limit = expected.map_or(max, |(_, size)| size);
        let tmp_dir = self.root.join("tmp");
        let (file, path) = temp_file(&tmp_dir)?;
        let guard = TempFile(Some(path.clone()));
        let mut out = Hashing::new(BufWriter::with_capacity(64 << 10, file));
        let mut buf = vec![0u8; 64 << 10];
        // One byte past the limit tells an oversized blob from a whole one.
        let mut from = from.take(limit + 1);
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::Transfer(e.to_string())),
            };
            if out.written() + n as u64 > limit {
                return Err(match expected {
                    Some((digest, size)) => ImageError::SizeMismatch { digest, expected: size, got: None },
                    None => ImageError::Corrupt(format!("a blob is larger than {max} bytes")),
                });
            }
            out.write_all(&buf[..n]).map_err(|e| ImageError::disk(&path, e))?;
            progress(out.written());
        }
        let (digest, size, writer) = out.finish();
        if let Some((want, want_size)) = expected {
            if size != want_size {
                return Err(ImageError::SizeMismatch { digest: want, expected: want_size, got: Some(size) });
            }
            if digest != want {
                return Err(ImageError::DigestMismatch { expected: want, actual: digest });
            }
        }
        let file = writer.into_inner().map_err(|e| ImageError::disk(&path, e.into_error()))?;
        file.sync_all().map_err(|e| ImageError::disk(&path, e))?;
        drop(file);
        let target = self.blob_path(&digest);
        std::fs::rename(&path, &target).map_err(|e| ImageError::disk(&target, e))?;
        std::mem::forget(guard);
        Ok((digest, size))
    }

    /// Stores bytes already in memory (manifests, configs).
    pub fn write_bytes(&self, bytes: &[u8], expected: Option<Digest>) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        if let Some(want) = expected
            && want != digest
        {
            return Err(ImageError::DigestMismatch { expected: want, actual: digest });
        }
        if !self.has(&digest) {
            self.write(&mut &bytes[..], Some((digest, bytes.len() as u64)), bytes.len() as u64, &mut |_| {})?;
        }
        Ok(digest)
    }

    /// Every stored image by name.
    pub fn images(&self) -> Result<BTreeMap<String, ImageRecord>, ImageError> {
        let _held = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.load_refs()?.images)
    }

    /// Names `record` as `name`, replacing what the name meant before.
    pub fn set(&self, name: &str, record: ImageRecord) -> Result<(), ImageError> {
        let _held = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        let mut refs = self.load_refs()?;
        refs.images.insert(name.to_string(), record);
        refs.last_used.insert(name.to_string(), now_secs());
        self.save_refs(&refs)
    }

    /// Records that `name` was used now.
    pub fn touch(&self, name: &str) -> Result<(), ImageError> {
        let _held = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        let mut refs = self.load_refs()?;
        if refs.images.contains_key(name) {
            refs.last_used.insert(name.to_string(), now_secs());
            self.save_refs(&refs)?;
        }
        Ok(())
    }

    /// When each image was last used (0: never recorded).
    pub fn last_used(&self) -> Result<BTreeMap<String, u64>, ImageError> {
        let _held = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        let refs = self.load_refs()?;
        Ok(refs
            .images
            .keys()
            .map(|name| (name.clone(), refs.last_used.get(name).copied().unwrap_or(0)))
            .collect())
    }

    /// The stamp recorded for an archive imported at start.
    pub fn imported(&self, file: &str) -> Result<Option<ArchiveStamp>, ImageError> {
        let _held = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.load_refs()?.imported.get(file).copied())
    }

    /// Records an archive imported at start.
    pub fn set_imported(&self, file: &str, stamp: ArchiveStamp) -> Result<(), ImageError> {
        let _held = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        let mut refs = self.load_refs()?;
        refs.imported.insert(file.to_string(), stamp);
        self.save_refs(&refs)
    }

    /// Forgets `name`; false if it was not there.
    pub fn remove(&self, name: &str) -> Result<bool, ImageError> {
        let _held = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        let mut refs = self.load_refs()?;
        let removed = refs.images.remove(name).is_some();
        refs.last_used.remove(name);
        if removed {
            self.save_refs(&refs)?;
        }
        Ok(removed)
    }

    /// Deletes every blob no image uses; returns how many and their bytes.
    /// The caller keeps pulls and imports out while this runs.
    pub fn collect_garbage(&self) -> Result<(usize, u64), ImageError> {
        let mut live = BTreeSet::new();
        for record in self.images()?.values() {
            self.mark(&record.digest, &mut live, 0);
            self.mark(&record.manifest, &mut live, 0);
        }
        let dir = self.root.join("blobs/sha256");
        let (mut count, mut bytes) = (0, 0);
        for entry in std::fs::read_dir(&dir).map_err(|e| ImageError::disk(&dir, e))?.flatten() {
            let name = entry.file_name();
            let keep = name.to_str().and_then(Digest::from_hex).is_some_and(|d| live.contains(&d));
            if !keep {
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(entry.path()).map_err(|e| ImageError::disk(&entry.path(), e))?;
                count += 1;
            }
        }
        Ok((count, bytes))
    }

    /// Marks `digest` and, for an index or manifest, what it names.
    fn mark(&self, digest: &Digest, live: &mut BTreeSet<Digest>, depth: u32) {
        if depth > 4 || !live.insert(*digest) {
            return;
        }
        let Ok(bytes) = self.read(digest, manifest::MAX_MANIFEST) else { return };
        match manifest::parse(&bytes, None) {
            Ok(Parsed::Index(entries)) => {
                for entry in entries.iter().filter(|e| self.has(&e.digest)) {
                    self.mark(&entry.digest, live, depth + 1);
                }
            }
            Ok(Parsed::Manifest { config, layers }) => {
                live.insert(config.digest);
                live.extend(layers.iter().map(|l| l.digest));
            }
            // A config or a layer that happens to be small.
            Err(_) => {}
        }
    }

    fn load_refs(&self) -> Result<RefsFile, ImageError> {
        let path = self.root.join("refs.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::Corrupt(format!("{} is damaged ({e}): remove it and pull again", path.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RefsFile::default()),
            Err(e) => Err(ImageError::disk(&path, e)),
        }
    }

    fn save_refs(&self, refs: &RefsFile) -> Result<(), ImageError> {
        let path = self.root.join("refs.json");
        let bytes = serde_json::to_vec_pretty(refs).expect("refs serialise");
        let (mut file, tmp) = temp_file(&self.root.join("tmp"))?;
        let guard = TempFile(Some(tmp.clone()));
        file.write_all(&bytes).and_then(|_| file.sync_all()).map_err(|e| ImageError::disk(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ImageError::disk(&path, e))?;
        std::mem::forget(guard);
        Ok(())
    }
}

/// A new file in `dir` with a name no other writer uses.
fn temp_file(dir: &Path) -> Result<(File, PathBuf), ImageError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ImageError::disk(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(tag: &str) -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("podnet-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Store::open(&dir).unwrap(), dir)
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn a_blob_is_stored_under_its_digest_only_when_it_matches() {
        let (s, dir) = store("verify");
        let data = vec![7u8; 200_000];
        let digest = Digest::of(&data);
        let mut seen = 0;
        let (d, n) = s.write(&mut &data[..], Some((digest, 200_000)), 0, &mut |b| seen = b).unwrap();
        assert_eq!((d, n, seen), (digest, 200_000, 200_000));
        assert_eq!(std::fs::read(s.blob_path(&digest)).unwrap(), data);

        // Tampered content: refused, nothing left behind, not even in tmp/.
        let mut bad = data.clone();
        bad[100] ^= 1;
        let other = Digest::of(&[1]);
        let err = s.write(&mut &bad[..], Some((other, 200_000)), 0, &mut |_| {}).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { expected, .. } if expected == other), "{err}");
        assert!(!s.has(&other) && !s.has(&Digest::of(&bad)));
        assert_eq!(files(&dir.join("tmp")), 0);

        // Longer or shorter than the descriptor says: refused too.
        for (content, size) in [(&data[..], 100u64), (&data[..10], 200_000)] {
            let err = s.write(&mut &content[..], Some((digest, size)), 0, &mut |_| {}).unwrap_err();
            assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err}");
        }
        assert_eq!(files(&dir.join("tmp")), 0);
        assert_eq!(files(&dir.join("blobs/sha256")), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_broken_stream_leaves_nothing_half_written() {
        struct Breaks(usize);
        impl Read for Breaks {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
                }
                self.0 -= 1;
                buf[0] = 1;
                Ok(1)
            }
        }
        let (s, dir) = store("broken");
        let err = s.write(&mut Breaks(1000), None, 1 << 20, &mut |_| {}).unwrap_err();
        assert!(matches!(err, ImageError::Transfer(_)), "{err}");
        assert_eq!(files(&dir.join("tmp")) + files(&dir.join("blobs/sha256")), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn garbage_collection_keeps_exactly_what_refs_reach() {
        let (s, dir) = store("gc");
        let layer = s.write_bytes(b"layer", None).unwrap();
        let shared = s.write_bytes(b"shared", None).unwrap();
        let config = s.write_bytes(b"{}", None).unwrap();
        let desc = |d: Digest, n: usize, t: &str| manifest::Descriptor {
            media_type: t.into(),
            digest: d,
            size: n as u64,
            platform: None,
            annotations: Default::default(),
        };
        let m = |layers: &[manifest::Descriptor]| {
            manifest::oci_manifest(&desc(config, 2, manifest::OCI_CONFIG), layers)
        };
        let one = s
            .write_bytes(
                &m(&[desc(layer, 5, manifest::OCI_LAYER_TAR), desc(shared, 6, manifest::OCI_LAYER_TAR)]),
                None,
            )
            .unwrap();
        let two = s.write_bytes(&m(&[desc(shared, 6, manifest::OCI_LAYER_TAR)]), None).unwrap();
        let record = |d| ImageRecord { digest: d, manifest: d, platform: "linux/amd64".into(), size: 0 };
        s.set("a", record(one)).unwrap();
        s.set("b", record(two)).unwrap();
        let stray = s.write_bytes(b"stray", None).unwrap();
        assert_eq!(s.collect_garbage().unwrap(), (1, 5));
        assert!(!s.has(&stray));

        assert!(s.remove("a").unwrap());
        assert!(!s.remove("a").unwrap());
        assert_eq!(s.collect_garbage().unwrap().0, 2, "a's manifest and its own layer");
        assert!(!s.has(&layer) && !s.has(&one));
        assert!(s.has(&shared) && s.has(&config) && s.has(&two));
        // refs.json was replaced whole: it reads back.
        assert_eq!(Store::open(&dir).unwrap().images().unwrap().keys().collect::<Vec<_>>(), ["b"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
