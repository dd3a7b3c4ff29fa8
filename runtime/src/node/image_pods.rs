//! Image pods: the node pulls a pod's image as its pull policy says, unpacks
//! it, and has the OCI runtime run it inside the pod's sandbox (all
//! networking stays podnet's: the container joins the sandbox's network
//! namespace). The slow part (pull, unpack, `runc run`) runs on a task of its
//! own and reports back to the event loop; failures show the way Kubernetes
//! shows them (ErrImagePull, ImagePullBackOff, ErrImageNeverPull,
//! CreateContainerError) and are tried again with the kubelet's backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::NodeRuntime;
use super::container::{self, ContainerSpec, EtcFiles, OciRuntime};
use super::pods::Exit;
use crate::image::manifest::RunConfig;
use crate::image::{Images, PullEvent, Reference};
use crate::model::{PullPolicy, unix_now};
use crate::node::pod::log;
use crate::node::pod::sandbox;
use crate::store::PodRecord;
use crate::sys::netns;

/// The kubelet's image pull backoff: 10 s, doubling, at most 5 min.
const PULL_BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest wait between pulls of a failing image.
const PULL_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long a failed pull shows as ErrImagePull before ImagePullBackOff.
const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(5);

/// Why a container could not be started, in kubectl's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The pull failed.
    ErrImagePull,
    /// The policy is Never and the node lacks the image.
    ErrImageNeverPull,
    /// Unpacking, the bundle or the runtime failed.
    CreateContainerError,
    /// A ConfigMap or Secret its variables name is missing (or a key of one).
    CreateContainerConfigError,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::ErrImagePull => "ErrImagePull",
            Failure::ErrImageNeverPull => "ErrImageNeverPull",
            Failure::CreateContainerError => "CreateContainerError",
            Failure::CreateContainerConfigError => "CreateContainerConfigError",
        }
    }

    /// Its counter in `node stats` and the metrics.
    fn counter(self) -> &'static str {
        match self {
            Failure::ErrImagePull => "err_image_pull",
            Failure::ErrImageNeverPull => "err_image_never_pull",
            Failure::CreateContainerError => "create_container_error",
            Failure::CreateContainerConfigError => "create_container_config_error",
        }
    }
}

/// What a start task reports to the event loop.
pub struct ContainerStart {
    uid: String,
    /// The attempt it answers; answers to older attempts are stale.
    attempt: u64,
    /// How long the pull took, when there was one.
    pulled: Option<Duration>,
    result: Result<i32, (Failure, String)>,
}

/// Container starts on this node, and failed ones by kubectl reason.
#[derive(Debug, Default)]
pub(super) struct ContainerCounts {
    started: u64,
    failed: std::collections::BTreeMap<&'static str, u64>,
}

/// An image pod's container state on this node.
#[derive(Debug, Default)]
pub(super) struct ImageState {
    /// The current start attempt; a start task is under way while `starting`.
    attempt: u64,
    starting: bool,
    /// Failed starts in a row, for the backoff.
    failures: u32,
    /// When the last start failed, and why.
    failed: Option<(Instant, Failure)>,
    /// The container runs (its init's host PID).
    pub(super) pid: Option<i32>,
    /// Bumped by each write of its volumes (a start, an update): an update
    /// that finds it moved on was overtaken and writes nothing.
    volumes_written: Arc<AtomicU64>,
    /// Taken back after an agent restart: its volumes may hold what the
    /// last agent wrote, the next refresh brings them to the desired files.
    volumes_unchecked: bool,
}

impl ImageState {
    /// A container adopted after an agent restart, running as `pid`.
    pub(super) fn adopted(pid: i32) -> ImageState {
        ImageState { pid: Some(pid), volumes_unchecked: true, ..ImageState::default() }
    }

    /// Whether the last start failed and the pod waits for its backoff
    /// (no restart is counted for it).
    pub(super) fn waiting_after_failure(&self) -> bool {
        self.failed.is_some()
    }
}

/// The container id of pod `uid`: the uid itself (hex, from the control
/// plane), so one pod has one container and its restarts reuse the id.
pub(super) fn container_id(uid: &str) -> String {
    format!("podnet-{uid}")
}

/// The per-pod directory of its container (rootfs, writable layer, bundle).
pub(super) fn pod_dir(data_dir: &std::path::Path, uid: &str) -> PathBuf {
    data_dir.join("pods").join(uid)
}

/// The `/etc/hosts` the kubelet writes for a pod.
fn hosts_file(ip: std::net::IpAddr, name: &str) -> String {
    format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{name}\n"
    )
}

/// Waits for a pull to end: the image's reference, or why it failed.
async fn pull(images: &Images, reference: &str) -> Result<(), String> {
    let mut events = images.pull(reference, None).map_err(|e| e.to_string())?;
    loop {
        match events.recv().await {
            Ok(PullEvent::Done(_)) => return Ok(()),
            Ok(PullEvent::Failed(reason)) => return Err(reason),
            Ok(PullEvent::Layer { .. }) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return Err("the pull stopped before it ended".into()),
        }
    }
}

/// Everything a start task needs, owned: the container to make, whose
/// layers and image config come once the image is prepared.
struct Job {
    images: Images,
    runtime: Arc<OciRuntime>,
    pull: bool,
    /// The pod's /etc/hosts, written beside its resolv.conf.
    hosts: String,
    spec: ContainerSpec,
}

/// Pulls when asked, unpacks, and runs the container; the container's PID.
async fn run(job: Job, pulled: &mut Option<Duration>) -> Result<i32, (Failure, String)> {
    let create = |e: String| (Failure::CreateContainerError, e);
    let Job { images, runtime, pull: wanted, hosts, mut spec } = job;
    let reference = Reference::parse(&spec.image.image).map_err(|e| create(e.to_string()))?.to_string();
    if wanted {
        let began = Instant::now();
        pull(&images, &reference).await.map_err(|e| (Failure::ErrImagePull, e))?;
        *pulled = Some(began.elapsed());
    }
    let prepared = images.prepare(&reference).await.map_err(|e| create(e.to_string()))?;
    (spec.layers, spec.config) = (prepared.layers, prepared.config);
    tokio::task::spawn_blocking(move || -> Result<i32, String> {
        let write = |path: &PathBuf, text: &str| {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(&spec.etc.hosts, &hosts)?;
        write(&spec.etc.hostname, &format!("{}\n", spec.hostname))?;
        // A restart reuses the id: the last run's container goes first.
        let _ = runtime.delete(&spec.id, &spec.pod_dir);
        runtime.create(&spec).map(|c| c.pid).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| create(e.to_string()))?
    .map_err(create)
}

impl NodeRuntime {
    /// Starts (or restarts) an image pod's container: pulls as the policy
    /// says, then creates it, on a task whose answer comes back through
    /// [`NodeRuntime::on_container`].
    pub(super) fn start_container(&mut self, uid: &str) -> Result<(), super::NodeError> {
        let data_dir = self.options.data_dir.clone();
        let paths = self.log_paths(&self.pods[uid].record.spec);
        let Some(pod) = self.pods.get_mut(uid) else { return Ok(()) };
        let Some(image) = pod.record.spec.template.image.clone() else { return Ok(()) };
        let state = pod.image.get_or_insert_with(ImageState::default);
        if state.starting {
            return Ok(());
        }
        let spec = &pod.record.spec;
        let pod_name = format!("{}/{}", spec.namespace, spec.name);
        let now = unix_now();
        if let Some(why) = image.env_error.clone() {
            self.container_failed(uid, Failure::CreateContainerConfigError, format!("Error: {why}"));
            return Ok(());
        }
        let runtime = match &self.oci_runtime {
            Ok(runtime) => runtime.clone(),
            Err(why) => {
                let why = why.clone();
                self.container_failed(uid, Failure::CreateContainerError, why);
                return Ok(());
            }
        };
        let normalised = Reference::parse(&image.image).map(|r| r.to_string()).unwrap_or_default();
        let present = self.images.has(&normalised);
        let pull = match image.pull_policy {
            PullPolicy::Always => true,
            PullPolicy::IfNotPresent => !present,
            PullPolicy::Never if present => false,
            PullPolicy::Never => {
                let why = format!(
                    "image {} is not on the node and the pull policy is Never: `podnet image import` it, or use --image-pull-policy IfNotPresent",
                    image.image
                );
                self.container_failed(uid, Failure::ErrImageNeverPull, why);
                return Ok(());
            }
        };
        let pod = self.pods.get_mut(uid).expect("checked above");
        if pull {
            pod.events.normal(now, "Pulling", format!("Pulling image \"{}\"", image.image));
        } else {
            pod.events.normal(
                now,
                "Pulled",
                format!("Container image \"{}\" already present on machine", image.image),
            );
        }
        pod.status.reason = Some("ContainerCreating".into());
        pod.status.message = None;
        let log_error = |source| super::NodeError::LogPipe { pod: pod_name.clone(), source };
        let (output, reader) = log::pipe(&paths).map_err(log_error)?;
        reader.start(pod.log.clone(), &pod_name).map_err(log_error)?;
        let record = &pod.record;
        let etc_dir = sandbox::etc_dir(&pod.netns);
        let spec = ContainerSpec {
            id: container_id(&record.uid),
            pod_dir: pod_dir(&data_dir, &record.uid),
            layers: Vec::new(),
            image,
            config: RunConfig::default(),
            env: super::pods::downward_env(record)
                .into_iter()
                .chain(record.spec.template.image.iter().flat_map(|i| i.env.iter().cloned()))
                .collect(),
            hostname: record.spec.name.clone(),
            netns: netns::path(&pod.netns),
            etc: EtcFiles {
                resolv_conf: etc_dir.join("resolv.conf"),
                hosts: etc_dir.join("hosts"),
                hostname: etc_dir.join("hostname"),
            },
            security: record.spec.template.security,
            resources: record.spec.template.resources,
            pids_limit: container::DEFAULT_PIDS_LIMIT,
            log: output,
        };
        let hosts = hosts_file(record.ip, &record.spec.name);
        let job = Job { images: self.images.clone(), runtime, pull, hosts, spec };
        let state = pod.image.as_mut().expect("inserted above");
        state.attempt += 1;
        state.starting = true;
        // The start writes the volumes: updates still queued are older.
        state.volumes_written.fetch_add(1, Ordering::SeqCst);
        let attempt = state.attempt;
        let (uid, answers) = (uid.to_string(), self.containers_tx.clone());
        tokio::spawn(async move {
            let mut pulled = None;
            let result = run(job, &mut pulled).await;
            let _ = answers.send(ContainerStart { uid, attempt, pulled, result });
        });
        self.update_images_in_use();
        Ok(())
    }

    /// Takes a start task's answer: the container runs, or the pod waits
    /// for its backoff with the reason shown.
    pub fn on_container(&mut self, start: ContainerStart) {
        let current = self
            .pods
            .get(&start.uid)
            .and_then(|p| p.image.as_ref())
            .is_some_and(|s| s.starting && s.attempt == start.attempt);
        if !current {
            // The pod went (or was restarted) while its container started.
            if start.result.is_ok() {
                self.delete_container_later(&start.uid);
            }
            return;
        }
        let pod = self.pods.get_mut(&start.uid).expect("checked above");
        let state = pod.image.as_mut().expect("checked above");
        state.starting = false;
        let image = pod.record.spec.template.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        let now = unix_now();
        if let Some(took) = start.pulled {
            pod.events.normal(
                now,
                "Pulled",
                format!("Successfully pulled image \"{image}\" in {:.3}s", took.as_secs_f64()),
            );
        }
        match start.result {
            Ok(pid) => {
                self.container_counts.started += 1;
                state.failures = 0;
                state.failed = None;
                state.pid = Some(pid);
                pod.events.normal(now, "Created", "Created container".into());
                pod.events.normal(now, "Started", "Started container".into());
                pod.status.message = None;
                let run = pod.started(now);
                let (uid, exits) = (start.uid.clone(), self.exits_tx.clone());
                tokio::spawn(async move {
                    let code = container::wait_exit(pid).await;
                    let _ = exits.send(Exit::new(uid, run, code));
                });
            }
            Err((failure, why)) => {
                tracing::warn!(pod = %pod.record.spec.name, namespace = %pod.record.spec.namespace, reason = failure.reason(), "{why}");
                self.container_failed(&start.uid, failure, why);
            }
        }
    }

    /// Records a failed start and when to try again.
    fn container_failed(&mut self, uid: &str, failure: Failure, why: String) {
        *self.container_counts.failed.entry(failure.counter()).or_default() += 1;
        let Some(pod) = self.pods.get_mut(uid) else { return };
        let state = pod.image.get_or_insert_with(ImageState::default);
        state.starting = false;
        state.failures = state.failures.saturating_add(1);
        state.failed = Some((Instant::now(), failure));
        let doublings = state.failures.saturating_sub(1).min(16);
        let wait = PULL_BACKOFF_INITIAL.saturating_mul(1 << doublings).min(PULL_BACKOFF_MAX);
        let now = unix_now();
        let event = match failure {
            Failure::ErrImagePull => format!("Failed to pull image: {why}"),
            _ => why.clone(),
        };
        pod.events.warning(now, "Failed", event);
        pod.status.reason = Some(failure.reason().into());
        pod.status.message = Some(why);
        pod.restart_at = Some(Instant::now() + wait);
    }

    /// Takes the desired image of each pod whose container waits after a
    /// failed start (its ConfigMaps and Secrets resolved again by the
    /// control plane); a changed one is tried at once, as the kubelet's
    /// next sync would. A running container keeps what it started with.
    pub(super) fn refresh_waiting(&mut self, desired: &[PodRecord]) {
        for record in desired {
            let Some(pod) = self.pods.get_mut(&record.uid) else { continue };
            let waiting =
                pod.image.as_ref().is_some_and(|s| s.failed.is_some() && !s.starting && s.pid.is_none());
            if waiting && pod.record.spec.template.image != record.spec.template.image {
                pod.record.spec.template.image = record.spec.template.image.clone();
                pod.restart_at = Some(Instant::now());
            }
        }
    }

    /// Brings each running container's ConfigMap and Secret volumes to the
    /// files its desired pod carries (the control plane resolves them again
    /// whenever the objects change), each volume swapped whole off the
    /// event loop, as the kubelet's sync does; a container that is not
    /// running gets them at its next start. Files that did not resolve
    /// (the object went) stay as they were, as with the kubelet.
    pub(super) fn refresh_volumes(&mut self, desired: &[PodRecord]) {
        for record in desired {
            let Some(pod) = self.pods.get_mut(&record.uid) else { continue };
            let (Some(state), Some(have), Some(want)) = (
                pod.image.as_mut(),
                pod.record.spec.template.image.as_mut(),
                record.spec.template.image.as_ref(),
            ) else {
                continue;
            };
            let unchecked = std::mem::take(&mut state.volumes_unchecked);
            if state.starting || want.env_error.is_some() || (have.files == want.files && !unchecked) {
                continue;
            }
            have.files = want.files.clone();
            if state.pid.is_none() || have.mounts.is_empty() {
                continue;
            }
            let generation = state.volumes_written.fetch_add(1, Ordering::SeqCst) + 1;
            let written = state.volumes_written.clone();
            let (image, dir) = (have.clone(), pod_dir(&self.options.data_dir, &record.uid));
            let name = format!("{}/{}", record.spec.namespace, record.spec.name);
            tokio::task::spawn_blocking(move || {
                let current = || written.load(Ordering::SeqCst) == generation;
                match container::volumes::update(&dir, &image, &current) {
                    Ok(changed) if !changed.is_empty() => {
                        tracing::info!(pod = %name, "volumes updated: {}", changed.join(", "))
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(pod = %name, "cannot update the volumes: {e}"),
                }
            });
        }
    }

    /// Shows ImagePullBackOff for a pod whose failed pull has been shown
    /// as ErrImagePull for a while (as the kubelet's next sync does).
    pub(super) fn show_backoffs(&mut self, now: Instant) {
        for pod in self.pods.values_mut() {
            let Some(state) = &pod.image else { continue };
            if let Some((at, Failure::ErrImagePull)) = state.failed
                && now.duration_since(at) >= ERR_IMAGE_PULL_SHOWN
                && pod.status.reason.as_deref() == Some("ErrImagePull")
            {
                let image =
                    pod.record.spec.template.image.as_ref().map(|i| i.image.as_str()).unwrap_or_default();
                pod.status.reason = Some("ImagePullBackOff".into());
                pod.events.normal(unix_now(), "BackOff", format!("Back-off pulling image \"{image}\""));
            }
        }
    }

    /// Deletes a container whose pod is gone, off the event loop.
    fn delete_container_later(&self, uid: &str) {
        let Ok(runtime) = self.oci_runtime.clone() else { return };
        let (id, dir) = (container_id(uid), pod_dir(&self.options.data_dir, uid));
        tokio::task::spawn_blocking(move || {
            if let Err(e) = runtime.delete(&id, &dir) {
                tracing::warn!(container = %id, "cannot delete container: {e}");
            }
        });
    }

    /// Deletes a pod's container (stopped already), waiting for it.
    pub(super) async fn delete_container(&self, record: &PodRecord) {
        self.delete_container_by_uid(&record.uid).await;
    }

    /// Deletes pod `uid`'s container and its directory, waiting for it.
    pub(super) async fn delete_container_by_uid(&self, uid: &str) {
        let Ok(runtime) = self.oci_runtime.clone() else { return };
        let (id, dir) = (container_id(uid), pod_dir(&self.options.data_dir, uid));
        let deleted = tokio::task::spawn_blocking(move || runtime.delete(&id, &dir)).await;
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(container = %container_id(uid), "cannot delete container: {e}"),
            Err(e) => tracing::warn!(container = %container_id(uid), "cannot delete container: {e}"),
        }
    }

    /// The image service's counters and this node's container starts.
    pub(super) fn image_counters(&self) -> Vec<(String, u64)> {
        let s = self.images.stats();
        let mut counters = vec![
            ("layers_unpacked".to_string(), s.layers_unpacked),
            ("layers_refused".into(), s.layers_refused),
            ("gc_removed".into(), s.gc_removed),
            ("archives_imported".into(), s.archives_imported),
            ("archives_refused".into(), s.archives_refused),
            ("containers_started".into(), self.container_counts.started),
        ];
        counters.extend(self.container_counts.failed.iter().map(|(reason, n)| (reason.to_string(), *n)));
        counters
    }

    /// Tells the image service which images this node's pods run, so
    /// neither `image rm` nor garbage collection takes them.
    pub(super) fn update_images_in_use(&self) {
        let used = self
            .pods
            .values()
            .filter_map(|p| p.record.spec.template.image.as_ref())
            .filter_map(|i| Reference::parse(&i.image).ok())
            .map(|r| r.to_string())
            .collect();
        self.images.set_in_use(used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_file_names_the_pod_as_the_kubelet_does() {
        let hosts = hosts_file([10, 244, 0, 7].into(), "web-abcde");
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("10.244.0.7\tweb-abcde\n"));
    }

    #[test]
    fn failures_have_kubectl_reasons() {
        assert_eq!(Failure::ErrImagePull.reason(), "ErrImagePull");
        assert_eq!(Failure::ErrImageNeverPull.reason(), "ErrImageNeverPull");
        assert_eq!(Failure::CreateContainerError.reason(), "CreateContainerError");
    }
}
