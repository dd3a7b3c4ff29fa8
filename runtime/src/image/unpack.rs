//! Unpacked layers, `<images>/layers/<diff-id hex>/`: each layer once,
//! decompressed by its media type (gzip, zstd, plain tar), streamed (no
//! whole-layer buffer), checked against its diff ID from the image config,
//! and written into `layers/tmp/` first, then renamed into place, so a
//! layer directory that exists is whole. Unpacks of one layer at once are
//! serialised: the second finds the first's directory.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use super::ImageError;
use super::digest::{Digest, HashingReader};
use super::layers::{self, Bounds, LayerError};
use super::manifest::{self, Descriptor, ImageConfig, Parsed};
use super::store::{ImageRecord, Store};
use crate::sys::mountinfo;

/// Largest zstd window accepted (zstd levels up to 19 use at most 8 MiB;
/// `--long` needs more): what a hostile layer can make the decoder allocate.
const ZSTD_MAX_WINDOW: u64 = 8 << 20;

/// The unpacked layers on disk.
pub struct Layers {
    root: PathBuf,
    bounds: Bounds,
    busy: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    unpacked: AtomicU64,
}

/// Removes a temporary directory unless it was renamed into place.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_dir_all(path);
        }
    }
}

impl Layers {
    /// Opens (creating) `root`, clearing the half-unpacked layers a stopped
    /// agent left in `root/tmp`.
    pub fn open(root: &Path, bounds: Bounds) -> Result<Layers, ImageError> {
        let tmp = root.join("tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| ImageError::disk(&tmp, e))?;
        Ok(Layers {
            root: root.to_path_buf(),
            bounds,
            busy: Mutex::new(HashMap::new()),
            unpacked: AtomicU64::new(0),
        })
    }

    /// Where the layer with this diff ID is (or would be) unpacked.
    pub fn dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join(diff_id.hex())
    }

    /// Layers unpacked since the store was opened.
    pub fn unpacked(&self) -> u64 {
        self.unpacked.load(Ordering::Relaxed)
    }

    /// The directory of `layer` (stored blob, its media type) unpacked,
    /// unpacking it first if needed; its content must hash to `diff_id`.
    pub fn ensure(&self, store: &Store, layer: &Descriptor, diff_id: &Digest) -> Result<PathBuf, ImageError> {
        let dir = self.dir(diff_id);
        if dir.is_dir() {
            return Ok(dir);
        }
        let lock = self.busy.lock().unwrap_or_else(|e| e.into_inner()).entry(*diff_id).or_default().clone();
        let result = {
            let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
            if dir.is_dir() { Ok(dir.clone()) } else { self.unpack(store, layer, diff_id, &dir) }
        };
        drop(lock);
        // The last one out forgets the lock; the directory tells from now on.
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if busy.get(diff_id).is_some_and(|l| Arc::strong_count(l) == 1) {
            busy.remove(diff_id);
        }
        result
    }

    fn unpack(
        &self,
        store: &Store,
        layer: &Descriptor,
        diff_id: &Digest,
        dir: &Path,
    ) -> Result<PathBuf, ImageError> {
        let fail = |source| ImageError::Unpack { layer: layer.digest, source };
        let blob = store.blob_path(&layer.digest);
        let file = File::open(&blob).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::Corrupt(format!(
                "layer {} is not in the store: pull the image again",
                layer.digest
            )),
            _ => ImageError::disk(&blob, e),
        })?;
        let tmp = self.temp_dir()?;
        let guard = TempDir(Some(tmp.clone()));
        let mut stream = HashingReader::new(
            decompress(&layer.media_type, BufReader::with_capacity(64 << 10, file)).map_err(fail)?,
        );
        let applied = layers::apply(&mut stream, &tmp, self.bounds).map_err(fail)?;
        let (actual, size) = stream.finish();
        if actual != *diff_id {
            return Err(fail(LayerError::DiffId { expected: *diff_id, actual }));
        }
        // Whole on disk before it is named: a crash leaves tmp/, never a half layer.
        let handle = File::open(&tmp).map_err(|e| ImageError::disk(&tmp, e))?;
        nix::unistd::syncfs(&handle).map_err(|e| ImageError::disk(&tmp, e.into()))?;
        match fs::rename(&tmp, dir) {
            Ok(()) => std::mem::forget(guard),
            // Another unpack (one that began after a failed one) was first.
            Err(_) if dir.is_dir() => {}
            Err(e) => return Err(ImageError::disk(dir, e)),
        }
        self.unpacked.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(layer = %layer.digest, %diff_id, size, entries = applied.entries, "layer unpacked");
        if applied.unsupported_xattrs > 0 {
            tracing::warn!(layer = %layer.digest, count = applied.unsupported_xattrs, "the file system refused some of the layer's xattrs; skipped");
        }
        if applied.refused_xattrs > 0 {
            tracing::warn!(layer = %layer.digest, count = applied.refused_xattrs, "layer sets overlayfs xattrs; not applied");
        }
        Ok(dir.to_path_buf())
    }

    fn temp_dir(&self) -> Result<PathBuf, ImageError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let path = self.root.join("tmp").join(format!(
                "{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::DirBuilder::new().mode(0o755).create(&path) {
                Ok(()) => return Ok(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ImageError::disk(&path, e)),
            }
        }
    }

    /// Deletes every unpacked layer not in `live` and not a lowerdir of an
    /// overlay mount (a container of an image whose tag has moved on still
    /// runs from it), and anything left in tmp/; the caller keeps unpacks
    /// out meanwhile. Returns how many layers.
    pub fn collect_garbage(&self, live: &BTreeSet<Digest>) -> Result<usize, ImageError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounted = mounted_layers(&mountinfo, &self.root);
        let mut removed = 0;
        let entries = fs::read_dir(&self.root).map_err(|e| ImageError::disk(&self.root, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(diff_id) = name.to_str().and_then(Digest::from_hex) else { continue };
            if !live.contains(&diff_id) && !mounted.contains(&diff_id) {
                fs::remove_dir_all(entry.path()).map_err(|e| ImageError::disk(&entry.path(), e))?;
                removed += 1;
            }
        }
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(|e| ImageError::disk(&tmp, e))?.flatten() {
            let _ = fs::remove_dir_all(entry.path());
        }
        Ok(removed)
    }
}

/// The layers under `root` that overlay mounts in `mountinfo` (the text of
/// /proc/self/mountinfo) use as lowerdirs.
fn mounted_layers(mountinfo: &str, root: &Path) -> BTreeSet<Digest> {
    let mut found = BTreeSet::new();
    for line in mountinfo.lines() {
        // `... - overlay overlay rw,lowerdir=A:B,upperdir=...`
        let Some((_, fs_part)) = line.split_once(" - ") else { continue };
        let mut fields = fs_part.split(' ');
        if fields.next() != Some("overlay") {
            continue;
        }
        let Some(options) = fields.nth(1) else { continue };
        for option in options.split(',') {
            let Some(dirs) = option.strip_prefix("lowerdir=") else { continue };
            for dir in dirs.split(':') {
                let dir = mountinfo::path(dir);
                if dir.parent() == Some(root)
                    && let Some(diff_id) = dir.file_name().and_then(|n| n.to_str()).and_then(Digest::from_hex)
                {
                    found.insert(diff_id);
                }
            }
        }
    }
    found
}

/// An image's layers (bottom first) and config, as stored.
pub fn read_image(
    store: &Store,
    name: &str,
    record: &ImageRecord,
) -> Result<(Vec<Descriptor>, ImageConfig), ImageError> {
    let bytes = store.read(&record.manifest, manifest::MAX_MANIFEST)?;
    let Parsed::Manifest { config, layers } = manifest::parse(&bytes, Some(manifest::OCI_MANIFEST))
        .map_err(|source| ImageError::Format { image: name.to_string(), source })?
    else {
        return Err(ImageError::Corrupt(format!(
            "image {name}: its stored manifest is an index: pull it again"
        )));
    };
    let parsed: ImageConfig = serde_json::from_slice(&store.read(&config.digest, manifest::MAX_CONFIG)?)
        .map_err(|e| ImageError::Corrupt(format!("image {name}: malformed config: {e}: pull it again")))?;
    if parsed.rootfs.diff_ids.len() != layers.len() {
        return Err(ImageError::Corrupt(format!(
            "image {name}: its manifest has {} layers and its config {} diff IDs: the image is damaged, rebuild it",
            layers.len(),
            parsed.rootfs.diff_ids.len()
        )));
    }
    Ok((layers, parsed))
}

/// The uncompressed tar stream of a layer blob, by its media type.
fn decompress<'a, R: BufRead + 'a>(media_type: &str, blob: R) -> Result<Box<dyn Read + 'a>, LayerError> {
    if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(blob)))
    } else if media_type.ends_with("+zstd") || media_type.ends_with(".tar.zstd") {
        Ok(Box::new(Zstd { source: blob, decoder: FrameDecoder::new(), in_frame: false }))
    } else if media_type.ends_with(".tar") {
        Ok(Box::new(blob))
    } else {
        Err(LayerError::MediaType(media_type.to_string()))
    }
}

/// A zstd stream of one or more frames (skippable frames skipped).
struct Zstd<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.in_frame {
                if self.decoder.can_collect() > 0 {
                    return self.decoder.read(buf);
                }
                if self.decoder.is_finished() {
                    self.in_frame = false;
                    continue;
                }
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(io::Error::other)?;
                continue;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.decoder.set_max_window_size(ZSTD_MAX_WINDOW);
            match self.decoder.init(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped < u64::from(length) {
                        return Err(io::Error::other("a zstd skippable frame is truncated"));
                    }
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layers::tests::{T, tar};
    use std::io::Write;

    const BOUNDS: Bounds = Bounds { bytes: 1 << 30, entries: 100_000 };

    fn setup(tag: &str) -> (Store, Layers, PathBuf) {
        let dir = std::env::temp_dir().join(format!("podnet-unpack-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let layers = Layers::open(&dir.join("layers"), BOUNDS).unwrap();
        (store, layers, dir)
    }

    fn stored(store: &Store, bytes: &[u8], media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: store.write_bytes(bytes, None).unwrap(),
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn gzip_zstd_and_plain_layers_unpack_to_their_diff_id_directory() {
        let (store, layers, dir) = setup("types");
        let plain = tar(&[T::File("etc/hostname", b"pi"), T::File("bin/sh", &[9u8; 70_000])]);
        let diff_id = Digest::of(&plain);
        // Two zstd frames with a skippable frame between (zstd:chunked writes such).
        let (head, tail) = plain.split_at(4096);
        let mut frames = zstd(head);
        frames.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        frames.extend(zstd(tail));
        let mut gz_members = gzip(head);
        gz_members.extend(gzip(tail));
        for (bytes, media) in [
            (plain.clone(), manifest::OCI_LAYER_TAR),
            (gzip(&plain), "application/vnd.oci.image.layer.v1.tar+gzip"),
            (gz_members, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
            (zstd(&plain), "application/vnd.oci.image.layer.v1.tar+zstd"),
            (frames, "application/vnd.docker.image.rootfs.diff.tar.zstd"),
        ] {
            let _ = layers.collect_garbage(&BTreeSet::new());
            let layer = stored(&store, &bytes, media);
            let path = layers.ensure(&store, &layer, &diff_id).unwrap();
            assert_eq!(path, dir.join("layers").join(diff_id.hex()), "{media}");
            assert_eq!(fs::read(path.join("etc/hostname")).unwrap(), b"pi", "{media}");
            assert_eq!(fs::read(path.join("bin/sh")).unwrap().len(), 70_000, "{media}");
        }
        assert_eq!(layers.unpacked(), 5);
        // Present: not unpacked again.
        layers.ensure(&store, &stored(&store, &plain, manifest::OCI_LAYER_TAR), &diff_id).unwrap();
        assert_eq!(layers.unpacked(), 5);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_layer_that_is_not_its_diff_id_or_not_a_tar_leaves_nothing() {
        let (store, layers, dir) = setup("mismatch");
        let plain = tar(&[T::File("f", b"content")]);
        let wrong = Digest::of(b"something else");
        let err =
            layers.ensure(&store, &stored(&store, &plain, manifest::OCI_LAYER_TAR), &wrong).unwrap_err();
        assert!(matches!(&err, ImageError::Unpack { source: LayerError::DiffId { .. }, .. }), "{err}");
        assert!(err.to_string().contains("damaged or tampered"), "{err}");
        let garbage = stored(&store, b"not gzip at all", "application/vnd.oci.image.layer.v1.tar+gzip");
        assert!(layers.ensure(&store, &garbage, &wrong).is_err());
        let garbage = stored(&store, b"not zstd either", "application/vnd.oci.image.layer.v1.tar+zstd");
        assert!(layers.ensure(&store, &garbage, &wrong).is_err());
        assert!(!layers.dir(&wrong).exists());
        assert_eq!(fs::read_dir(dir.join("layers/tmp")).unwrap().count(), 0, "no half layer kept");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn layers_an_overlay_mount_uses_are_found_in_mountinfo() {
        let root = Path::new("/var/lib/podnet data/images/layers");
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let info = format!(
            "36 35 98:0 / /mnt rw - ext4 /dev/vda rw,lowerdir=/var/lib/podnet\\040data/images/layers/{a}\n\
             40 30 0:50 / /run/podnet/c1 rw,relatime - overlay overlay rw,lowerdir=/var/lib/podnet\\040data/images/layers/{}:/var/lib/podnet\\040data/images/layers/{},upperdir=/u,workdir=/w\n\
             41 30 0:51 / /elsewhere rw - overlay overlay rw,lowerdir=/other/{}\n",
            b.hex(),
            a.hex(),
            Digest::of(b"c").hex()
        );
        assert_eq!(mounted_layers(&info, root), BTreeSet::from([a, b]));
    }

    #[test]
    fn a_layer_an_overlay_mount_still_uses_is_not_collected() {
        let (store, layers, dir) = setup("mounted");
        let plain = tar(&[T::File("bin/app", b"v1")]);
        let lower = layers
            .ensure(&store, &stored(&store, &plain, manifest::OCI_LAYER_TAR), &Digest::of(&plain))
            .unwrap();
        let top = tar(&[T::File("etc/conf", b"c")]);
        let upper =
            layers.ensure(&store, &stored(&store, &top, manifest::OCI_LAYER_TAR), &Digest::of(&top)).unwrap();
        let target = dir.join("rootfs");
        fs::create_dir_all(&target).unwrap();
        // A read-only overlay of the two layers, as a container's rootfs.
        let options = format!("lowerdir={}:{}", upper.display(), lower.display());
        nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(options.as_str()),
        )
        .unwrap();
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let mounted = Unmount(target.clone());
        assert_eq!(fs::read(target.join("bin/app")).unwrap(), b"v1");
        assert_eq!(layers.collect_garbage(&BTreeSet::new()).unwrap(), 0, "in use by the mount");
        assert!(lower.is_dir() && upper.is_dir());
        drop(mounted);
        assert_eq!(layers.collect_garbage(&BTreeSet::new()).unwrap(), 2);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn two_unpacks_of_one_layer_at_once_unpack_it_once() {
        let (store, layers, dir) = setup("once");
        let names: Vec<String> = (0..3000).map(|i| format!("d{}/f{i}", i % 50)).collect();
        let plain = tar(&names.iter().map(|n| T::File(n, b"x")).collect::<Vec<_>>());
        let diff_id = Digest::of(&plain);
        let layer = stored(&store, &gzip(&plain), "application/vnd.oci.image.layer.v1.tar+gzip");
        let start = std::sync::Barrier::new(2);
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let one = || {
                start.wait();
                layers.ensure(&store, &layer, &diff_id).unwrap()
            };
            let a = s.spawn(one);
            let b = s.spawn(one);
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        assert_eq!(dirs[0], dirs[1]);
        assert_eq!(layers.unpacked(), 1);
        assert!(layers.busy.lock().unwrap().is_empty(), "the lock is forgotten after");
        // Collected once no image needs it.
        assert_eq!(layers.collect_garbage(&BTreeSet::from([diff_id])).unwrap(), 0);
        assert_eq!(layers.collect_garbage(&BTreeSet::new()).unwrap(), 1);
        assert!(!dirs[0].exists());
        let _ = fs::remove_dir_all(dir);
    }
}
