//! The pods of this node: sandboxes built and removed to match what the
//! control plane assigns, commands started and restarted with backoff, and
//! readiness probes. Pods a killed agent left running are taken back as they
//! are (see `pod::adopt`); other leftovers are removed.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use netstack::switch::{PortId, PortKind, PortSpec};
use netstack::wire::EthernetAddress;
use tokio::time::Instant;

use super::events::Events;
use super::image_pods::{self, ImageState};
use super::{NodeError, NodeRuntime, start_backoff};
use crate::desired::{NodeReport, PodReport};
use crate::model::{Phase, PodSpec, PodStatus, RestartPolicy, unix_now};
use crate::node::pod::enter::PodEntry;
use crate::node::pod::log::{self, LogLimits, LogPaths, RotatingLog, SharedLog};
use crate::node::pod::sandbox::{self, SandboxSpec};
use crate::node::pod::{self, adopt, mac_for, process};
use crate::store::PodRecord;
use crate::sys::netns;

/// A pod that ran this long without exiting has its restart backoff reset
/// (as the kubelet does).
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// A process exit, tagged with the run it belongs to.
pub struct Exit {
    uid: String,
    run: u64,
    code: Option<i32>,
}

impl Exit {
    /// Run `run` of pod `uid` ended with `code` (None: unknown).
    pub(super) fn new(uid: String, run: u64, code: Option<i32>) -> Exit {
        Exit { uid, run, code }
    }
}

/// The outcome of one readiness probe.
pub struct ProbeResult {
    uid: String,
    ok: bool,
}

/// A pod running on this node.
pub(super) struct LocalPod {
    pub(super) record: PodRecord,
    pub(super) netns: String,
    pub(super) port: Option<PortId>,
    /// Which start of the command is current; exits of older runs are stale.
    run: u64,
    pub(super) status: PodStatus,
    run_started: Option<Instant>,
    /// Whether the command runs now.
    running: bool,
    /// The last readiness probe passed (true for pods without a probe).
    probe_ok: bool,
    /// When the next readiness probe is due; None while one is running.
    next_probe: Option<Instant>,
    /// Where its output goes, shared by the readers of its runs.
    pub(super) log: SharedLog,
    /// What happened to it, for `podnet describe pod`.
    pub(super) events: Events,
    /// An image pod's container; None for a command pod.
    pub(super) image: Option<ImageState>,
    /// When its command or container is started again.
    pub(super) restart_at: Option<Instant>,
}

impl LocalPod {
    /// A pod whose sandbox is plugged into `port`, its command not started.
    pub(super) fn new(record: PodRecord, netns: String, port: PortId, log: SharedLog) -> LocalPod {
        let status = PodStatus {
            phase: Phase::Pending,
            pod_ip: Some(record.ip),
            ready: false,
            restarts: 0,
            reason: None,
            last_exit_code: None,
            started_at: None,
            message: None,
        };
        LocalPod {
            record,
            netns,
            port: Some(port),
            run: 0,
            status,
            run_started: None,
            restart_at: None,
            running: false,
            probe_ok: false,
            next_probe: None,
            log,
            events: Events::default(),
            image: None,
        }
    }

    /// Records that the command now runs (started at `started_at`, Unix
    /// seconds) and returns the number of this run.
    pub(super) fn started(&mut self, started_at: u64) -> u64 {
        self.run += 1;
        self.run_started = Some(Instant::now());
        self.restart_at = None;
        self.status.phase = Phase::Running;
        self.running = true;
        // A restarted command is unready until its probe passes again.
        self.probe_ok = self.record.spec.template.readiness.is_none();
        self.next_probe = Some(Instant::now());
        self.update_ready();
        self.status.reason = None;
        self.status.started_at = Some(started_at);
        self.run
    }

    fn update_ready(&mut self) {
        self.status.ready = self.running && self.probe_ok;
    }
}

/// Sandboxes of this node's pods that an agent which did not stop cleanly
/// left behind; [`NodeRuntime::apply_pods`] takes back or removes them.
pub(super) fn leftover_sandboxes(node: &str) -> Vec<String> {
    netns::list(&pod::netns_prefix(node))
}

/// Stops a sandbox's processes and removes it.
async fn remove_sandbox(netns: &str, grace: Duration) {
    process::stop_all(netns, grace).await;
    remove_off_loop(netns).await;
}

/// Removes a sandbox on a blocking thread: unmounting a namespace waits for
/// the kernel (an RCU grace period, longer under load), which must not stall
/// the proxies, the DNS relay and the cluster link sharing the event loop.
async fn remove_off_loop(netns: &str) {
    let name = netns.to_string();
    let result = tokio::task::spawn_blocking(move || sandbox::remove(&name)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(netns = %netns, "cannot remove sandbox: {e}"),
        Err(e) => tracing::warn!(netns = %netns, "cannot remove sandbox: {e}"),
    }
}

impl NodeRuntime {
    /// Starts the pods assigned to this node that are not running yet and
    /// removes those no longer assigned. Returns the pods that failed to
    /// start now, with the reason; one that failed before is tried again
    /// only once its backoff has passed (`start_backoff.rs`), and reported
    /// Pending with the reason meanwhile.
    pub async fn apply_pods(&mut self, desired: &[PodRecord]) -> Vec<(String, String)> {
        self.adopt_leftovers(desired).await;
        let wanted: BTreeSet<&str> = desired.iter().map(|p| p.uid.as_str()).collect();
        self.start_failures.retain(|uid| wanted.contains(uid));
        let gone: Vec<String> =
            self.pods.keys().filter(|uid| !wanted.contains(uid.as_str())).cloned().collect();
        let gone: Vec<LocalPod> = gone.iter().filter_map(|uid| self.pods.remove(uid)).collect();
        futures::future::join_all(gone.into_iter().map(|pod| self.teardown(pod, true))).await;
        self.refresh_waiting(desired);
        self.refresh_volumes(desired);
        let mut failed = Vec::new();
        let now = Instant::now();
        let new: Vec<&PodRecord> = desired
            .iter()
            .filter(|p| !self.pods.contains_key(&p.uid) && self.start_failures.due(&p.uid, now))
            .collect();
        for record in new {
            match self.start_pod(record.clone()).await {
                Ok(()) => self.start_failures.started(&record.uid),
                Err(e) => {
                    let reason = start_backoff::reason(&e);
                    let wait = self.start_failures.failed(&record.uid, record.ip, reason, e.to_string(), now);
                    tracing::warn!("{e} (trying again in {} s)", wait.as_secs());
                    failed.push((record.uid.clone(), e.to_string()));
                }
            }
        }
        failed
    }

    /// What this node reports to the control plane: its pods' status and
    /// why it does not serve its Ingress ports, if it does not.
    pub fn report(&self) -> NodeReport {
        NodeReport { pods: self.statuses(), ingress_problem: self.ingress.problem() }
    }

    /// The status of every pod of this node, those waiting to be tried
    /// again included.
    fn statuses(&self) -> PodReport {
        self.pods
            .iter()
            .map(|(uid, p)| (uid.clone(), p.status.clone()))
            .chain(self.start_failures.statuses())
            .collect()
    }

    /// Takes back the leftover sandboxes whose pod is still wanted here and
    /// whose command still runs; removes the others. Only the first call
    /// finds any.
    async fn adopt_leftovers(&mut self, desired: &[PodRecord]) {
        let grace = Duration::from_millis(self.options.config.pods.termination_grace_ms);
        for netns in std::mem::take(&mut self.leftovers) {
            let node = &self.options.name;
            let record =
                desired.iter().find(|r| pod::netns_name(node, &r.spec.namespace, &r.spec.name) == netns);
            let adopted = match record {
                Some(record) => self.adopt(record.clone(), &netns).await,
                None => Err(NodeError::NotWanted),
            };
            match adopted {
                Ok(pid) => tracing::info!(netns = %netns, pid, "took back a running pod"),
                Err(why) => {
                    tracing::info!(netns = %netns, "removing stale pod sandbox: {why}");
                    remove_sandbox(&netns, grace).await;
                }
            }
        }
        if !std::mem::replace(&mut self.pod_dirs_swept, true) {
            self.sweep_containers().await;
        }
    }

    /// Deletes the containers and container directories (`<data-dir>/pods`)
    /// of pods this node no longer runs: left by an agent that did not stop
    /// cleanly, or by a reboot (the mounts went, the directories stayed).
    async fn sweep_containers(&self) {
        let Ok(entries) = std::fs::read_dir(self.options.data_dir.join("pods")) else { return };
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if self.pods.contains_key(&uid) || !uid.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            tracing::info!(uid = %uid, "removing a stale container");
            self.delete_container_by_uid(&uid).await;
        }
    }

    /// Plugs a leftover sandbox into the switch again and watches its running
    /// command. Returns the command's PID.
    async fn adopt(&mut self, record: PodRecord, netns_name: &str) -> Result<i32, NodeError> {
        let pid = match (&record.spec.template.image, &self.oci_runtime) {
            (None, _) => adopt::main_process(netns_name, &record.uid),
            (Some(_), Ok(runtime)) => {
                let (runtime, id) = (runtime.clone(), image_pods::container_id(&record.uid));
                tokio::task::spawn_blocking(move || runtime.state(&id)).await?
            }
            (Some(_), Err(_)) => None,
        }
        .ok_or(NodeError::NotRunning)?;
        let name = netns_name.to_string();
        let queues = self.dataplane.threads();
        let fd = tokio::task::spawn_blocking(move || sandbox::reopen(&name, queues))
            .await?
            .map_err(NodeError::Reopen)?;
        let ip = record.ipv4()?;
        let port_spec = PortSpec { kind: PortKind::Pod, mac: EthernetAddress(mac_for(ip)), ip: ip.into() };
        let port = self.dataplane.attach(port_spec, fd).await?;
        let uid = record.uid.clone();
        let paths = self.log_paths(&record.spec);
        let log = RotatingLog::shared(paths.clone(), self.log_limits());
        let pod_name = format!("{}/{}", record.spec.namespace, record.spec.name);
        match log::reattach(&paths, log.clone(), &pod_name) {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(pod = %pod_name, "no log pipe (started by an older agent): its output goes on to its log file unrotated")
            }
            Err(e) => tracing::warn!(pod = %pod_name, "cannot read the pod's output again: {e}"),
        }
        let is_image = record.spec.template.image.is_some();
        let mut pod = LocalPod::new(record, netns_name.to_string(), port, log);
        if is_image {
            pod.image = Some(ImageState::adopted(pid));
        }
        let run = pod.started(adopt::started_at(pid).unwrap_or_else(unix_now));
        self.pods.insert(uid.clone(), pod);
        self.update_images_in_use();
        let exits = self.exits_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = adopt::wait_exit(pid).await {
                tracing::debug!(pid, "cannot watch a taken-back pod command: {e}");
            }
            // Not the parent: the exit code is unknown.
            let _ = exits.send(Exit { uid, run, code: None });
        });
        Ok(pid)
    }

    /// Builds the sandbox, plugs it into the switch and starts the command.
    async fn start_pod(&mut self, record: PodRecord) -> Result<(), NodeError> {
        if record.spec.attachment.is_some() {
            return self.start_attachment(record).await;
        }
        let net = &self.options.config.network;
        let spec = &record.spec;
        let netns_name = pod::netns_name(&self.options.name, &spec.namespace, &spec.name);
        let ip = record.ipv4()?;
        let sandbox_spec = SandboxSpec {
            netns: netns_name.clone(),
            ip,
            prefix: self.options.subnet.prefix_len(),
            gateway: self.gateway,
            mac: mac_for(ip),
            mtu: self.options.config.pod_mtu(),
            resolv_conf: resolv_conf(net.cluster_dns, &spec.namespace, &net.cluster_domain),
            queues: self.dataplane.threads(),
        };
        let pod_name = || format!("{}/{}", spec.namespace, spec.name);
        let fd = tokio::task::spawn_blocking(move || sandbox::create(&sandbox_spec))
            .await?
            .map_err(|source| NodeError::Sandbox { pod: pod_name(), source })?;
        let port_spec = PortSpec { kind: PortKind::Pod, mac: EthernetAddress(mac_for(ip)), ip: ip.into() };
        let port = match self.dataplane.attach(port_spec, fd).await {
            Ok(port) => port,
            Err(e) => {
                remove_off_loop(&netns_name).await;
                return Err(NodeError::AttachPod { pod: pod_name(), source: e });
            }
        };
        let uid = record.uid.clone();
        let log = RotatingLog::shared(self.log_paths(&record.spec), self.log_limits());
        self.pods.insert(uid.clone(), LocalPod::new(record, netns_name, port, log));
        if let Err(e) = self.start_workload(&uid) {
            let pod = self.pods.remove(&uid).expect("inserted above");
            self.teardown(pod, true).await;
            return Err(e);
        }
        Ok(())
    }

    /// Starts (or restarts) the pod's command or container.
    fn start_workload(&mut self, uid: &str) -> Result<(), NodeError> {
        match self.pods.get(uid).map(|p| p.record.spec.template.image.is_some()) {
            Some(true) => self.start_container(uid),
            Some(false) => self.spawn_process(uid),
            None => Ok(()),
        }
    }

    /// Starts (or restarts) the pod's command.
    fn spawn_process(&mut self, uid: &str) -> Result<(), NodeError> {
        let paths = self.log_paths(&self.pods[uid].record.spec);
        let pod = self.pods.get_mut(uid).expect("caller checked");
        let spec = &pod.record.spec;
        let pod_name = format!("{}/{}", spec.namespace, spec.name);
        let log_error = |source| NodeError::LogPipe { pod: pod_name.clone(), source };
        // The reader runs before the command: the agent's copy of the pod's
        // end keeps it from seeing the end before the command starts.
        let (output, reader) = log::pipe(&paths).map_err(log_error)?;
        reader.start(pod.log.clone(), &pod_name).map_err(log_error)?;
        let entry = PodEntry::new_pod(
            &netns::path(&pod.netns),
            &sandbox::etc_dir(&pod.netns).join("resolv.conf"),
            &spec.name,
            &self.options.hidden,
            self.options.config.limits.pod_tmpfs_bytes,
            &spec.template.security,
        )
        .map_err(|source| NodeError::Enter { pod: format!("{}/{}", spec.namespace, spec.name), source })?;
        let mut child = process::spawn(&spec.template.command, &pod_env(&pod.record), entry, output)
            .map_err(|source| NodeError::Spawn {
                command: spec.template.command.join(" "),
                pod: format!("{}/{}", spec.namespace, spec.name),
                source,
            })?;
        let started = format!("Started command `{}`", spec.template.command.join(" "));
        let run = pod.started(unix_now());
        pod.events.normal(unix_now(), "Started", started);
        let (uid, exits) = (pod.record.uid.clone(), self.exits_tx.clone());
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|status| {
                use std::os::unix::process::ExitStatusExt;
                status.code().or(status.signal().map(|s| 128 + s))
            });
            let _ = exits.send(Exit { uid, run, code });
        });
        Ok(())
    }

    /// Applies the restart policy to a process that exited.
    pub fn on_exit(&mut self, exit: Exit) {
        let config = &self.options.config.pods;
        let Some(pod) = self.pods.get_mut(&exit.uid).filter(|p| p.run == exit.run) else { return };
        let code = exit.code.unwrap_or(-1);
        pod.running = false;
        if let Some(state) = pod.image.as_mut() {
            state.pid = None;
        }
        pod.update_ready();
        pod.status.last_exit_code = Some(code);
        let restart = match pod.record.spec.restart_policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        };
        tracing::info!(pod = %pod.record.spec.name, namespace = %pod.record.spec.namespace, code, restart, "pod command exited");
        if !restart {
            pod.status.phase = if code == 0 { Phase::Succeeded } else { Phase::Failed };
            pod.status.reason = Some(if code == 0 { "Completed" } else { "Error" }.into());
            return;
        }
        if pod.run_started.is_some_and(|t| t.elapsed() >= BACKOFF_RESET) {
            pod.status.restarts = 0;
        }
        let doublings = pod.status.restarts.min(16);
        let delay = config
            .restart_backoff_initial_ms
            .saturating_mul(1 << doublings)
            .min(config.restart_backoff_max_ms);
        pod.restart_at = Some(Instant::now() + Duration::from_millis(delay));
        pod.status.reason = Some("CrashLoopBackOff".into());
        pod.events.warning(
            unix_now(),
            "BackOff",
            format!("Back-off restarting failed container (exit code {code})"),
        );
    }

    /// Records a readiness probe's outcome.
    pub fn on_probe(&mut self, result: ProbeResult) {
        if let Some(pod) = self.pods.get_mut(&result.uid) {
            pod.probe_ok = result.ok;
            pod.update_ready();
            pod.next_probe = Some(Instant::now() + crate::node::probe::PERIOD);
        }
    }

    /// Restarts pods whose backoff has passed and starts due probes.
    pub fn tick(&mut self) {
        let now = Instant::now();
        self.start_probes(now);
        self.show_backoffs(now);
        let due: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.restart_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for uid in due {
            if let Some(pod) = self.pods.get_mut(&uid) {
                pod.restart_at = None;
                // A start that failed is tried again, not restarted.
                if !pod.image.as_ref().is_some_and(ImageState::waiting_after_failure) {
                    pod.status.restarts += 1;
                }
            }
            if let Err(e) = self.start_workload(&uid) {
                tracing::warn!("{e}");
                let backoff = Duration::from_millis(self.options.config.pods.restart_backoff_max_ms);
                if let Some(pod) = self.pods.get_mut(&uid) {
                    pod.restart_at = Some(now + backoff);
                }
            }
        }
    }

    /// Starts the readiness probes that are due, each on a task of its own.
    fn start_probes(&mut self, now: Instant) {
        for pod in self.pods.values_mut() {
            let Some(probe) = &pod.record.spec.template.readiness else { continue };
            if !pod.running || pod.next_probe.is_none_or(|t| t > now) {
                continue;
            }
            pod.next_probe = None;
            let (probe, ip, uid, results) =
                (probe.clone(), pod.record.ip, pod.record.uid.clone(), self.probes_tx.clone());
            tokio::spawn(async move {
                let ok = crate::node::probe::check(&probe, ip).await;
                let _ = results.send(ProbeResult { uid, ok });
            });
        }
    }

    /// Stops a pod's processes and removes its sandbox and port; its logs
    /// too when the pod is gone for good (not at shutdown).
    pub(super) async fn teardown(&self, pod: LocalPod, forget: bool) {
        if pod.record.spec.attachment.is_some() {
            return self.teardown_attachment(pod, forget).await;
        }
        let grace = Duration::from_millis(self.options.config.pods.termination_grace_ms);
        process::stop_all(&pod.netns, grace).await;
        if pod.image.is_some() {
            self.delete_container(&pod.record).await;
        }
        if let Some(port) = pod.port {
            let _ = self.dataplane.detach(port).await;
        }
        // Its egress connections, flows and echo identifiers go with it.
        if let Ok(ip) = pod.record.ipv4() {
            self.egress.forget_pod(ip);
        }
        remove_off_loop(&pod.netns).await;
        if forget {
            pod.log.lock().unwrap_or_else(|e| e.into_inner()).close();
            self.log_paths(&pod.record.spec).remove();
        }
    }

    /// The file `podnet logs` shows for a pod.
    pub(super) fn log_path(&self, spec: &PodSpec) -> PathBuf {
        self.options.data_dir.join("logs").join(format!("{}_{}.log", spec.namespace, spec.name))
    }

    pub(super) fn log_paths(&self, spec: &PodSpec) -> LogPaths {
        LogPaths::new(self.log_path(spec))
    }

    pub(super) fn log_limits(&self) -> LogLimits {
        let limits = &self.options.config.limits;
        LogLimits { max_bytes: limits.pod_log_max_bytes, max_files: limits.pod_log_max_files }
    }

    /// Whether namespace/name runs on this node.
    pub fn has_pod(&self, namespace: &str, name: &str) -> bool {
        self.find(namespace, name).is_some()
    }

    /// The local pod called namespace/name.
    pub(super) fn find(&self, namespace: &str, name: &str) -> Option<&LocalPod> {
        self.pods.values().find(|p| p.record.spec.namespace == namespace && p.record.spec.name == name)
    }
}

/// A command pod's whole environment: PATH, HOME and the downward-API
/// variables.
pub(super) fn pod_env(record: &PodRecord) -> Vec<(String, String)> {
    let mut env = process::base_env(&record.spec.template.security);
    env.extend(downward_env(record));
    env
}

/// The downward-API variables (an image pod's container gets these over
/// its image's environment).
pub(super) fn downward_env(record: &PodRecord) -> Vec<(String, String)> {
    vec![
        ("POD_NAME".into(), record.spec.name.clone()),
        ("POD_NAMESPACE".into(), record.spec.namespace.clone()),
        ("POD_IP".into(), record.ip.to_string()),
        ("POD_UID".into(), record.uid.clone()),
    ]
}

/// A pod's resolv.conf, as the kubelet writes it for ClusterFirst pods.
fn resolv_conf(dns: Ipv4Addr, namespace: &str, domain: &str) -> String {
    format!("nameserver {dns}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n")
}
