//! The agent's image service: it owns the store, runs pulls and imports on
//! blocking threads (a pull never stalls the agent's event loop), shares a
//! pull of one image among everyone who asks for it meanwhile, and keeps
//! garbage collection apart from pulls (pulls hold the gate shared, removal
//! holds it alone, so no blob is collected while a pull is placing it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{broadcast, mpsc};

use super::platform::Platform;
use super::reference::Reference;
use super::registries::Registries;
use super::store::Store;
use super::{ImageError, ImageInfo, PullEvent, archive, pull};
use crate::api::server::{Answer, Call};
use crate::api::{Request, Response};

/// Progress events a slow client may fall behind by before it skips some.
const EVENT_BACKLOG: usize = 256;

/// A handle on the image service; clones share it.
#[derive(Clone)]
pub struct Images {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registries: Registries,
    platform: Platform,
    gate: RwLock<()>,
    pulls: Mutex<HashMap<(String, String), broadcast::Sender<PullEvent>>>,
}

impl Images {
    /// Opens the store at `<data_dir>/images`.
    pub fn open(data_dir: &Path, registries: Registries) -> Result<Images, ImageError> {
        let store = Store::open(&data_dir.join("images"))?;
        Ok(Images {
            inner: Arc::new(Inner {
                store,
                registries,
                platform: Platform::node(),
                gate: RwLock::new(()),
                pulls: Mutex::new(HashMap::new()),
            }),
        })
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
            if !inner.store.remove(&name)? {
                return Err(ImageError::Unknown(name));
            }
            inner.store.collect_garbage()
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
        if let Err(e) = self.store.collect_garbage() {
            tracing::warn!(error = %e, "image garbage collection failed");
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
}
