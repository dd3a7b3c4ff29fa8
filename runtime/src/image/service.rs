//! The agent's image service: it owns the store, runs pulls and imports on
//! blocking threads (a pull never stalls the agent's event loop), shares a
//! pull of one image among everyone who asks for it meanwhile, and keeps
//! garbage collection apart from pulls (pulls hold the gate shared, removal
//! holds it alone, so no blob is collected while a pull is placing it).
//! It unpacks images for pods ([`Images::prepare`]), refuses to remove the
//! images pods run, removes unused ones when the disk fills (least recently
//! used first, as the kubelet's image GC), and imports the archives dropped
//! into its directory when the agent starts (as k3s's agent/images).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{broadcast, mpsc};

use super::digest::Digest;
use super::layers::Bounds;
use super::manifest::RunConfig;
use super::platform::Platform;
use super::reference::Reference;
use super::registries::Registries;
use super::store::Store;
use super::unpack::{self, Layers};
use super::{ImageError, ImageInfo, PullEvent, archive, dropped, gc, pull};
use crate::api::server::{Answer, Call};
use crate::api::{Request, Response};
use crate::config::ImagesConfig;

/// Progress events a slow client may fall behind by before it skips some.
const EVENT_BACKLOG: usize = 256;

/// A handle on the image service; clones share it.
#[derive(Clone)]
pub struct Images {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    layers: Layers,
    registries: Registries,
    platform: Platform,
    config: ImagesConfig,
    gate: RwLock<()>,
    pulls: Mutex<HashMap<(String, String), broadcast::Sender<PullEvent>>>,
    in_use: Mutex<BTreeSet<String>>,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    layers_refused: AtomicU64,
    gc_removed: AtomicU64,
    archives_imported: AtomicU64,
    archives_refused: AtomicU64,
    /// The disk stayed past the low mark after a collection, and it was said:
    /// said again only after it went below (not at every pull and start).
    disk_full_said: std::sync::atomic::AtomicBool,
}

/// What the image service did since the agent started, for `node stats`
/// and the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageStats {
    /// Layers unpacked.
    pub layers_unpacked: u64,
    /// Layers refused: hostile, over a bound, damaged, not their diff ID.
    pub layers_refused: u64,
    /// Images the disk-threshold GC removed.
    pub gc_removed: u64,
    /// Dropped-in archives imported at start.
    pub archives_imported: u64,
    /// Dropped-in archives refused at start.
    pub archives_refused: u64,
}

/// An image ready to run: its layers unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The normalised reference.
    pub reference: String,
    /// What the reference resolved to (an index or a manifest).
    pub digest: Digest,
    /// The unpacked layer directories, bottom first (overlayfs lists its
    /// lowerdirs top first: reverse them).
    pub layers: Vec<PathBuf>,
    /// How a container of the image runs.
    pub config: RunConfig,
}

impl Images {
    /// Opens the store at `<data_dir>/images` with the default settings.
    pub fn open(data_dir: &Path, registries: Registries) -> Result<Images, ImageError> {
        Images::open_with(data_dir, registries, ImagesConfig::default())
    }

    /// Opens the store at `<data_dir>/images`.
    pub fn open_with(
        data_dir: &Path,
        registries: Registries,
        config: ImagesConfig,
    ) -> Result<Images, ImageError> {
        let store = Store::open(&data_dir.join("images"))?;
        let bounds = Bounds { bytes: config.max_layer_bytes, entries: config.max_layer_entries };
        let layers = Layers::open(&data_dir.join("images/layers"), bounds)?;
        Ok(Images {
            inner: Arc::new(Inner {
                store,
                layers,
                registries,
                platform: Platform::node(),
                config,
                gate: RwLock::new(()),
                pulls: Mutex::new(HashMap::new()),
                in_use: Mutex::new(BTreeSet::new()),
                counts: Counts::default(),
            }),
        })
    }

    /// Opens the store as the agent starts: imports the archives dropped
    /// into `<data_dir>/images/` (a bad one is a warning), then removes
    /// unused images if the disk is past `images.gc_high_percent`.
    pub async fn start(
        data_dir: &Path,
        registries: Registries,
        config: ImagesConfig,
    ) -> Result<Images, ImageError> {
        let images = Images::open_with(data_dir, registries, config)?;
        let inner = images.inner.clone();
        blocking(move || {
            inner.import_dropped();
            inner.collect_for_disk(&|| gc::disk_usage(inner.store.root()), gc::MIN_AGE_S);
            Ok(())
        })
        .await?;
        Ok(images)
    }

    /// Whether an image is stored (for the IfNotPresent pull policy).
    pub fn has(&self, reference: &str) -> bool {
        let Ok(name) = Reference::parse(reference) else { return false };
        self.inner.store.images().is_ok_and(|images| images.contains_key(&name.to_string()))
    }

    /// Unpacks a stored image's layers that are not yet (each once, however
    /// many ask at once) and says how to run it; marks it used now.
    pub async fn prepare(&self, reference: &str) -> Result<Prepared, ImageError> {
        let name = Reference::parse(reference)?.to_string();
        let inner = self.inner.clone();
        blocking(move || inner.prepare(&name)).await
    }

    /// The images (normalised references) this node's pods run now: they
    /// are not removed, by `image rm` or by GC.
    pub fn set_in_use(&self, references: BTreeSet<String>) {
        *self.inner.in_use.lock().unwrap_or_else(|e| e.into_inner()) = references;
    }

    /// What the service did since it opened.
    pub fn stats(&self) -> ImageStats {
        let counts = &self.inner.counts;
        ImageStats {
            layers_unpacked: self.inner.layers.unpacked(),
            layers_refused: counts.layers_refused.load(Ordering::Relaxed),
            gc_removed: counts.gc_removed.load(Ordering::Relaxed),
            archives_imported: counts.archives_imported.load(Ordering::Relaxed),
            archives_refused: counts.archives_refused.load(Ordering::Relaxed),
        }
    }

    /// Starts (or joins) a pull; events end with Done or Failed.
    pub fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
    ) -> Result<broadcast::Receiver<PullEvent>, ImageError> {
        let reference = Reference::parse(reference)?;
        let platform = match platform {
            Some(text) => Platform::parse(text)?,
            None => self.inner.platform.clone(),
        };
        let key = (reference.to_string(), platform.to_string());
        let mut pulls = self.inner.pulls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = pulls.get(&key) {
            return Ok(running.subscribe());
        }
        let (events, receiver) = broadcast::channel(EVENT_BACKLOG);
        pulls.insert(key.clone(), events.clone());
        drop(pulls);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let result = {
                let _shared = inner.gate.read().unwrap_or_else(|e| e.into_inner());
                pull::pull(&inner.store, &inner.registries, &reference, &platform, &mut |event| {
                    let _ = events.send(event);
                })
            };
            if result.is_err() {
                inner.collect_garbage();
            } else {
                inner.collect_for_disk(&|| gc::disk_usage(inner.store.root()), gc::MIN_AGE_S);
            }
            // Leave the table before the last event: a later ask starts afresh.
            inner.pulls.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            let _ = events.send(match result {
                Ok(info) => {
                    tracing::info!(image = %info.reference, digest = %info.digest, "image pulled");
                    PullEvent::Done(info)
                }
                Err(e) => {
                    tracing::warn!(image = %reference, error = %e, "image pull failed");
                    PullEvent::Failed(e.to_string())
                }
            });
        });
        Ok(receiver)
    }

    /// Imports an archive; every image it names.
    pub async fn import(&self, path: PathBuf) -> Result<Vec<ImageInfo>, ImageError> {
        let inner = self.inner.clone();
        blocking(move || {
            let result = {
                let _shared = inner.gate.read().unwrap_or_else(|e| e.into_inner());
                archive::import(&inner.store, &path, &inner.platform)
            };
            if result.is_err() {
                inner.collect_garbage();
            }
            result
        })
        .await
    }

    /// Every stored image.
    pub async fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let inner = self.inner.clone();
        blocking(move || {
            Ok(inner
                .store
                .images()?
                .into_iter()
                .map(|(reference, r)| ImageInfo {
                    reference,
                    digest: r.digest.to_string(),
                    platform: r.platform,
                    size: r.size,
                })
                .collect())
        })
        .await
    }

    /// Forgets an image and deletes the blobs no other image uses:
    /// how many, and their bytes.
    pub async fn remove(&self, reference: &str) -> Result<(usize, u64), ImageError> {
        let name = Reference::parse(reference)?.to_string();
        let inner = self.inner.clone();
        blocking(move || {
            let _alone = inner.gate.write().unwrap_or_else(|e| e.into_inner());
            if inner.in_use.lock().unwrap_or_else(|e| e.into_inner()).contains(&name) {
                return Err(ImageError::InUse(name));
            }
            if !inner.store.remove(&name)? {
                return Err(ImageError::Unknown(name));
            }
            inner.collect_unused()
        })
        .await
    }

    /// Takes image requests off the agent's request channel and answers
    /// them here; everything else goes on to the agent's event loop.
    pub fn intercept(self, mut calls: mpsc::Receiver<Call>) -> mpsc::Receiver<Call> {
        let (rest, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Some((request, reply)) = calls.recv().await {
                match request {
                    Request::ImagePull { .. }
                    | Request::ImageList
                    | Request::ImageRemove { .. }
                    | Request::ImageImport { .. } => {
                        let images = self.clone();
                        tokio::spawn(async move {
                            let _ = reply.send(images.answer(request).await.map_err(|e| e.to_string()));
                        });
                    }
                    other => {
                        if rest.send((other, reply)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        receiver
    }

    async fn answer(&self, request: Request) -> Result<Answer, ImageError> {
        let once = |response| Ok(Answer::Once(Box::new(response)));
        match request {
            Request::ImagePull { reference, platform } => {
                let mut events = self.pull(&reference, platform.as_deref())?;
                let (tx, rx) = mpsc::channel(16);
                tokio::spawn(async move {
                    loop {
                        let event = match events.recv().await {
                            Ok(event) => event,
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => break,
                        };
                        let last = matches!(event, PullEvent::Done(_) | PullEvent::Failed(_));
                        // A client that went away stops only its own copy.
                        if tx.send(Response::ImagePull(event)).await.is_err() || last {
                            break;
                        }
                    }
                });
                Ok(Answer::Stream(rx))
            }
            Request::ImageList => once(Response::Images(self.list().await?)),
            Request::ImageRemove { reference } => {
                let (blobs, bytes) = self.remove(&reference).await?;
                once(Response::ImageRemoved { blobs: blobs as u64, bytes })
            }
            Request::ImageImport { path } => once(Response::Images(self.import(path).await?)),
            _ => unreachable!("intercept passes only image requests"),
        }
    }
}

impl Inner {
    /// Drops what a failed pull or import left unnamed, once no other
    /// pull is placing blobs.
    fn collect_garbage(&self) {
        let _alone = self.gate.write().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.collect_unused() {
            tracing::warn!(error = %e, "image garbage collection failed");
        }
    }

    /// Deletes the blobs and unpacked layers no stored image uses: how
    /// many blobs, and their bytes. The caller holds the gate alone.
    fn collect_unused(&self) -> Result<(usize, u64), ImageError> {
        let blobs = self.store.collect_garbage()?;
        let mut live = BTreeSet::new();
        for (name, record) in self.store.images()? {
            match unpack::read_image(&self.store, &name, &record) {
                Ok((_, config)) => live.extend(config.rootfs.diff_ids),
                Err(e) => {
                    // Unsure what it uses: keep every layer (a pod may run it).
                    tracing::warn!(image = %name, error = %e, "unpacked layers not collected");
                    return Ok(blobs);
                }
            }
        }
        let layers = self.layers.collect_garbage(&live)?;
        if layers > 0 {
            tracing::info!(layers, "unpacked layers no image uses removed");
        }
        Ok(blobs)
    }

    fn prepare(&self, name: &str) -> Result<Prepared, ImageError> {
        let _shared = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let record =
            self.store.images()?.remove(name).ok_or_else(|| ImageError::Unknown(name.to_string()))?;
        let (layers, config) = unpack::read_image(&self.store, name, &record)?;
        let dirs = layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(layer, diff_id)| self.layers.ensure(&self.store, layer, diff_id))
            .collect::<Result<Vec<_>, _>>()
            .inspect_err(|e| {
                if matches!(e, ImageError::Unpack { .. }) {
                    self.counts.layers_refused.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        self.store.touch(name)?;
        Ok(Prepared {
            reference: name.to_string(),
            digest: record.digest,
            layers: dirs,
            config: config.config,
        })
    }

    /// The kubelet's image GC: past `gc_high_percent` of the disk, removes
    /// images no pod uses, least recently used first, until below
    /// `gc_low_percent`; images used in the last `min_age` seconds stay.
    /// `usage` gives the file system's (capacity, free).
    fn collect_for_disk(&self, usage: &dyn Fn() -> std::io::Result<(u64, u64)>, min_age: u64) {
        let (high, low) = (u64::from(self.config.gc_high_percent), u64::from(self.config.gc_low_percent));
        let Some(mut now) = gc::percent(usage()).filter(|p| *p > high) else { return };
        let before = now;
        let _alone = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let last_used = match self.store.last_used() {
            Ok(last_used) => last_used,
            Err(e) => {
                tracing::warn!(error = %e, "image GC cannot read the store");
                return;
            }
        };
        let in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let clock =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (mut images, mut blobs, mut bytes) = (0, 0, 0);
        for name in gc::candidates(last_used, &in_use, clock, min_age) {
            if now < low {
                break;
            }
            match self.store.remove(&name).and_then(|_| self.collect_unused()) {
                Ok((b, n)) => {
                    images += 1;
                    blobs += b;
                    bytes += n;
                    self.counts.gc_removed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(image = %name, "image GC removed an unused image");
                }
                Err(e) => {
                    tracing::warn!(image = %name, error = %e, "image GC failed");
                    break;
                }
            }
            now = gc::percent(usage()).unwrap_or(0);
        }
        if images > 0 {
            tracing::info!(
                images,
                blobs,
                bytes,
                before_percent = before,
                after_percent = now,
                high_percent = high,
                low_percent = low,
                "image GC: disk use was past images.gc_high_percent"
            );
        }
        let said = &self.counts.disk_full_said;
        if now < low {
            said.store(false, Ordering::Relaxed);
        } else if !said.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                percent = now,
                "disk use is past images.gc_low_percent and no unused image is left to remove (the rest are in use or recent, or the space is not images'): free space on the data dir's file system"
            );
        }
    }

    /// Imports the archives dropped into the store's directory that are
    /// new or changed; a bad one is a warning naming it.
    fn import_dropped(&self) {
        for (path, name, stamp) in dropped::pending(&self.store, self.store.root()) {
            let result = {
                let _shared = self.gate.read().unwrap_or_else(|e| e.into_inner());
                archive::import(&self.store, &path, &self.platform)
            };
            match result {
                Ok(images) => {
                    self.counts.archives_imported.fetch_add(1, Ordering::Relaxed);
                    for image in &images {
                        tracing::info!(file = %path.display(), image = %image.reference, "image imported from a dropped-in archive");
                    }
                    if let Err(e) = self.store.set_imported(&name, stamp) {
                        tracing::warn!(file = %path.display(), error = %e, "cannot record the import; it repeats at the next start");
                    }
                }
                Err(e) => {
                    self.counts.archives_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("skipping image archive {}: {e}", path.display());
                    self.collect_garbage();
                }
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(ImageError::Corrupt(format!("the image task failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;
    use crate::image::manifest::{self, Descriptor};
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A registry on loopback serving one image, which holds its first
    /// answer until `release` is sent; it counts manifest requests.
    fn registry(release: std::sync::mpsc::Receiver<()>) -> (u16, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let platform = Platform::node();
        let config = format!(
            r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#,
            platform.architecture
        );
        let layer = b"not really a tar".to_vec();
        let desc = |bytes: &[u8], media: &str| Descriptor {
            media_type: media.into(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        };
        let image = manifest::oci_manifest(
            &desc(config.as_bytes(), manifest::OCI_CONFIG),
            &[desc(&layer, manifest::OCI_LAYER_TAR)],
        );
        let manifests = Arc::new(AtomicUsize::new(0));
        let counter = manifests.clone();
        std::thread::spawn(move || {
            let mut release = Some(release);
            for stream in listener.incoming() {
                let stream = stream.unwrap();
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut line).unwrap();
                while reader.read_line(&mut String::new()).unwrap() > 2 {}
                if let Some(gate) = release.take() {
                    let _ = gate.recv();
                }
                let (media, body) = if line.contains("/manifests/") {
                    counter.fetch_add(1, Ordering::SeqCst);
                    (manifest::OCI_MANIFEST, image.clone())
                } else if line.contains(&Digest::of(config.as_bytes()).to_string()) {
                    ("application/octet-stream", config.clone().into_bytes())
                } else {
                    ("application/octet-stream", layer.clone())
                };
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: {media}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        (port, manifests)
    }

    #[tokio::test]
    async fn two_pulls_of_one_image_share_one_download() {
        let (release, gate) = std::sync::mpsc::channel();
        let (port, manifests) = registry(gate);
        let host = format!("127.0.0.1:{port}");
        let registries =
            Registries::parse(&format!("mirrors:\n  \"{host}\":\n    endpoint: [\"http://{host}\"]\n"))
                .unwrap();
        let dir = std::env::temp_dir().join(format!("podnet-images-share-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let images = Images::open(&dir, registries).unwrap();
        let reference = format!("{host}/test/box:v1");
        let first = images.pull(&reference, None).unwrap();
        let second = images.pull(&reference, None).unwrap();
        release.send(()).unwrap();
        let last = |mut events: broadcast::Receiver<PullEvent>| async move {
            loop {
                match events.recv().await.unwrap() {
                    PullEvent::Done(info) => return Ok(info),
                    PullEvent::Failed(e) => return Err(e),
                    PullEvent::Layer { .. } => {}
                }
            }
        };
        let a = last(first).await.unwrap();
        let b = last(second).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(manifests.load(Ordering::SeqCst), 1, "one download for both");
        assert_eq!(images.list().await.unwrap().len(), 1);
        // Once done, a new ask pulls again (a tag may have moved).
        let third = images.pull(&reference, None).unwrap();
        last(third).await.unwrap();
        assert_eq!(manifests.load(Ordering::SeqCst), 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Stores an image of `layers` (plain tars) named `name`, as a pull would.
    fn store_image(images: &Images, name: &str, layers: &[Vec<u8>]) {
        let store = &images.inner.store;
        let desc = |bytes: &[u8], media: &str| Descriptor {
            media_type: media.into(),
            digest: store.write_bytes(bytes, None).unwrap(),
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        };
        let diff_ids: Vec<String> = layers.iter().map(|l| format!("\"{}\"", Digest::of(l))).collect();
        let config = format!(
            r#"{{"architecture":"arm64","os":"linux","config":{{"Cmd":["/bin/sh"],"Env":["A=1"],"User":null}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        );
        let layers: Vec<Descriptor> = layers.iter().map(|l| desc(l, manifest::OCI_LAYER_TAR)).collect();
        let manifest_bytes = manifest::oci_manifest(&desc(config.as_bytes(), manifest::OCI_CONFIG), &layers);
        let digest = store.write_bytes(&manifest_bytes, None).unwrap();
        let record = crate::image::store::ImageRecord {
            digest,
            manifest: digest,
            platform: "linux/arm64".into(),
            size: 1,
        };
        store.set(name, record).unwrap();
    }

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podnet-images-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prepare_unpacks_each_layer_once_and_an_image_in_use_is_not_removed() {
        use crate::image::layers::tests::{T, tar};
        let dir = temp("prepare");
        let images = Images::open(&dir, Registries::default()).unwrap();
        let base = tar(&[T::File("etc/os-release", b"podnet"), T::File("bin/sh", b"elf")]);
        let top = tar(&[T::File("etc/.wh.os-release", b""), T::File("app", b"run me")]);
        store_image(&images, "docker.io/library/box:latest", &[base.clone(), top.clone()]);
        assert!(images.has("box") && images.has("docker.io/library/box"));
        assert!(!images.has("other") && !images.has("Not A Reference"));

        let (a, b) = tokio::join!(images.prepare("box"), images.prepare("docker.io/library/box:latest"));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        assert_eq!(images.inner.layers.unpacked(), 2, "each layer once for both");
        assert_eq!(a.reference, "docker.io/library/box:latest");
        assert_eq!(
            a.layers,
            [Digest::of(&base), Digest::of(&top)].map(|d| dir.join("images/layers").join(d.hex()))
        );
        assert_eq!(std::fs::read(a.layers[1].join("app")).unwrap(), b"run me");
        assert_eq!(a.config.cmd, ["/bin/sh"]);
        assert_eq!(a.config.env, ["A=1"]);

        // A hostile layer: refused with the reason, counted, nothing kept.
        let evil = tar(&[T::File("../../etc/cron.d/evil", b"* * * * * root sh")]);
        store_image(&images, "docker.io/library/evil:latest", &[base.clone(), evil.clone()]);
        let err = images.prepare("evil").await.unwrap_err().to_string();
        assert!(err.contains("climbs out of the layer with `..`: refusing a hostile layer"), "{err}");
        assert!(!dir.join("images/layers").join(Digest::of(&evil).hex()).exists());
        assert_eq!(images.stats().layers_refused, 1);
        assert_eq!(images.stats().layers_unpacked, 2);
        images.inner.store.remove("docker.io/library/evil:latest").unwrap();

        let err = images.prepare("other").await.unwrap_err();
        assert!(matches!(err, ImageError::Unknown(ref n) if n == "docker.io/library/other:latest"), "{err}");

        images.set_in_use(BTreeSet::from(["docker.io/library/box:latest".to_string()]));
        let err = images.remove("box").await.unwrap_err().to_string();
        assert_eq!(
            err,
            "image docker.io/library/box:latest is used by a pod on this node: delete the pod first"
        );
        assert!(a.layers[0].is_dir());
        images.set_in_use(BTreeSet::new());
        images.remove("box").await.unwrap();
        assert!(!a.layers[0].exists() && !a.layers[1].exists(), "GC removes unpacked layers no image uses");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn disk_gc_removes_unused_images_least_recently_used_first_until_below_low() {
        let dir = temp("diskgc");
        let images = Images::open(&dir, Registries::default()).unwrap();
        for (name, n) in [("a", 1u8), ("b", 2), ("c", 3), ("d", 4)] {
            store_image(&images, name, &[vec![n; 1024]]);
        }
        // Last use: a oldest, then d, b, c. a runs in a pod.
        let refs = dir.join("images/refs.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&refs).unwrap()).unwrap();
        json["last_used"] = serde_json::json!({"a": 100, "d": 200, "b": 300, "c": 400});
        std::fs::write(&refs, serde_json::to_vec(&json).unwrap()).unwrap();
        images.set_in_use(BTreeSet::from(["a".to_string()]));
        // A disk of 100 units, each stored image using 22 of them: 88%.
        let usage = || {
            let stored = images.inner.store.images().unwrap().len() as u64;
            Ok((100, 100 - stored * 22))
        };
        images.inner.collect_for_disk(&usage, 0);
        // 88% > 85: d goes (66%, below 80); a is in use, b and c are newer.
        let left: Vec<String> = images.inner.store.images().unwrap().into_keys().collect();
        assert_eq!(left, ["a", "b", "c"]);
        // Below the high mark: nothing goes.
        images.inner.collect_for_disk(&|| Ok((100, 20)), 0);
        assert_eq!(images.inner.store.images().unwrap().len(), 3);
        // Recently used images stay, whatever the disk.
        images.inner.store.touch("b").unwrap();
        images.inner.store.touch("c").unwrap();
        images.inner.collect_for_disk(&|| Ok((100, 0)), gc::MIN_AGE_S);
        assert_eq!(images.inner.store.images().unwrap().len(), 3);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn archives_dropped_into_the_store_are_imported_once_at_start() {
        let dir = temp("airgap");
        std::fs::create_dir_all(dir.join("images")).unwrap();
        let layer = b"pretend layer".to_vec();
        let config = format!(
            r#"{{"architecture":"arm64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            Digest::of(&layer)
        );
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("manifest.json", &br#"[{"Config":"c.json","RepoTags":["box:v1"],"Layers":["l.tar"]}]"#[..]),
            ("c.json", config.as_bytes()),
            ("l.tar", &layer[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            builder.append_data(&mut h, name, data).unwrap();
        }
        let archive = dir.join("images/box.tar");
        std::fs::write(&archive, builder.into_inner().unwrap()).unwrap();
        std::fs::write(dir.join("images/broken.tar"), b"not a tar").unwrap();
        std::fs::write(dir.join("images/notes.txt"), b"not an archive").unwrap();

        let images = Images::start(&dir, Registries::default(), ImagesConfig::default()).await.unwrap();
        let names = |images: &Images| images.inner.store.images().unwrap().into_keys().collect::<Vec<_>>();
        assert_eq!(names(&images), ["docker.io/library/box:v1"]);
        assert_eq!((images.stats().archives_imported, images.stats().archives_refused), (1, 1));
        images.inner.store.remove("docker.io/library/box:v1").unwrap();
        drop(images);

        // The same file again: not imported again.
        let images = Images::start(&dir, Registries::default(), ImagesConfig::default()).await.unwrap();
        assert!(names(&images).is_empty());
        drop(images);

        // A new file under the name: imported.
        let file = std::fs::File::options().write(true).open(&archive).unwrap();
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
        drop(file);
        let images = Images::start(&dir, Registries::default(), ImagesConfig::default()).await.unwrap();
        assert_eq!(names(&images), ["docker.io/library/box:v1"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
