//! Requests only this node can answer: entering and reading its pods,
//! capturing on its switch ports, its counters, and resolving through its
//! switch.

use netstack::switch::{DropReason, PortId, PortKind};
use tokio::sync::mpsc;

use super::pods::pod_env;
use super::{NodeError, NodeRuntime};
use crate::api::{ContainerExec, ExecTarget, PortCounters, Request, Response, StatsReport};
use crate::dataplane::tap;
use crate::node::pod::{adopt, process, sandbox};
use crate::sys::netns;

/// Most log bytes `podnet logs` returns.
const MAX_LOG: u64 = 4 << 20;

impl NodeRuntime {
    /// Answers a local request (see [`Request::route`]).
    pub async fn handle_local(&mut self, request: Request) -> Result<Response, NodeError> {
        match request {
            Request::ExecTarget { namespace, name } => {
                let pod = self.find(&namespace, &name).ok_or_else(|| not_here(&namespace, &name))?;
                if let Some(attachment) = &pod.record.spec.attachment {
                    return Err(NodeError::CniContainer {
                        pod: format!("{namespace}/{name}"),
                        container_id: attachment.container_id.clone(),
                    });
                }
                let (pid, container) = match (&pod.image, &self.oci_runtime) {
                    (Some(state), Ok(runtime)) => (
                        state.pid,
                        state.pid.map(|_| ContainerExec {
                            runtime: runtime.program().to_path_buf(),
                            root: runtime.state_root().to_path_buf(),
                            id: super::image_pods::container_id(&pod.record.uid),
                        }),
                    ),
                    (Some(_), Err(_)) => (None, None),
                    (None, _) => (adopt::main_process(&pod.netns, &pod.record.uid), None),
                };
                Ok(Response::Exec(ExecTarget {
                    netns: netns::path(&pod.netns),
                    resolv_conf: sandbox::etc_dir(&pod.netns).join("resolv.conf"),
                    hostname: name.clone(),
                    env: pod_env(&pod.record),
                    pid,
                    security: pod.record.spec.template.security,
                    stdin: pod
                        .record
                        .spec
                        .template
                        .image
                        .as_ref()
                        .filter(|i| i.stdin != crate::model::ContainerStdin::Closed && container.is_some())
                        .map(|_| {
                            super::container::stdin::fifo(&super::image_pods::pod_dir(
                                &self.options.data_dir,
                                &pod.record.uid,
                            ))
                        }),
                    container,
                }))
            }
            Request::DescribePod { namespace, name } => Ok(Response::PodEvents(
                self.find(&namespace, &name).map(|p| p.events.list()).unwrap_or_default(),
            )),
            Request::Logs { namespace, name } => {
                let pod = self.find(&namespace, &name).ok_or_else(|| not_here(&namespace, &name))?;
                process::read_log(&self.log_path(&pod.record.spec), MAX_LOG)
                    .map(Response::Logs)
                    .map_err(|source| NodeError::Logs { pod: format!("{namespace}/{name}"), source })
            }
            Request::NodeStats => self.stats().await.map(Response::Stats),
            Request::Resolve { name, qtype, namespace } => self.resolve(&name, qtype, &namespace).await,
            _ => Err(NodeError::NotLocal),
        }
    }

    /// Starts following a pod's log (see [`Request::FollowLogs`]): until
    /// the process that runs now ends; a pod not running gets what it
    /// wrote, then the end.
    pub fn follow_logs(
        &self,
        namespace: &str,
        name: &str,
        backlog: u64,
    ) -> Result<mpsc::Receiver<Response>, NodeError> {
        let pod = self.find(namespace, name).ok_or_else(|| not_here(namespace, name))?;
        let pid = match &pod.image {
            Some(state) => state.pid,
            None => adopt::main_process(&pod.netns, &pod.record.uid),
        };
        let path = self.log_path(&pod.record.spec);
        let (chunks_tx, mut chunks) = mpsc::channel(super::log_follow::BUFFERED_CHUNKS);
        let alive = move || pid.is_some_and(super::log_follow::process_alive);
        tokio::spawn(super::log_follow::follow(path, backlog.min(MAX_LOG), alive, chunks_tx));
        let (items_tx, items) = mpsc::channel(1);
        // Relays until either side goes (a reader gone ends the follower).
        tokio::spawn(async move {
            loop {
                let chunk = tokio::select! {
                    () = items_tx.closed() => break,
                    chunk = chunks.recv() => chunk,
                };
                let Some(chunk) = chunk else { break };
                if items_tx.send(Response::Logs(chunk)).await.is_err() {
                    break;
                }
            }
        });
        Ok(items)
    }

    /// Starts copying a pod port's frames into a stream of responses.
    pub fn capture(&self, namespace: &str, name: &str) -> Result<mpsc::Receiver<Response>, NodeError> {
        let pod = self.find(namespace, name).ok_or_else(|| not_here(namespace, name))?;
        let port = pod.port.ok_or_else(|| NodeError::NoPort { pod: format!("{namespace}/{name}") })?;
        let (frames_tx, mut frames) = mpsc::channel::<crate::dataplane::Captured>(4096);
        self.dataplane.capture(port, frames_tx)?;
        let (items_tx, items) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(c) = frames.recv().await {
                let item = Response::Captured {
                    micros: c.at.as_micros() as u64,
                    frame: c.frame,
                    dropped: c.dropped.map(|r| r.name().to_string()),
                };
                if items_tx.send(item).await.is_err() {
                    break;
                }
            }
        });
        Ok(items)
    }

    async fn stats(&self) -> Result<StatsReport, NodeError> {
        let ports = self.dataplane.report().await?;
        // Every thread has its own counters and flow table: summed.
        let per_thread = self
            .dataplane
            .update_all(|switch| {
                let d = switch.dns_stats();
                let dns = [
                    d.answered,
                    d.nxdomain,
                    d.refused,
                    d.forwarded,
                    d.upstream_replies,
                    d.truncated,
                    d.dropped,
                ];
                let table = switch.conntrack();
                let s = table.stats();
                let flows = [
                    table.len() as u64,
                    table.capacity() as u64,
                    s.created,
                    s.expired,
                    s.refused,
                    s.over_quota,
                ];
                (dns, flows, u64::from(table.max_flows_per_pod()))
            })
            .await?;
        let (mut d, mut f, per_pod) = ([0u64; 7], [0u64; 6], per_thread.first().map_or(0, |t| t.2));
        for (dns, flows, _) in &per_thread {
            d.iter_mut().zip(dns).for_each(|(sum, n)| *sum += n);
            f.iter_mut().zip(flows).for_each(|(sum, n)| *sum += n);
        }
        let mut dns: Vec<(String, u64)> =
            ["answered", "nxdomain", "refused", "forwarded", "upstream_replies", "truncated", "dropped"]
                .into_iter()
                .map(String::from)
                .zip(d)
                .collect();
        let mut flows: Vec<(String, u64)> = ["active", "capacity", "created", "expired", "refused"]
            .into_iter()
            .map(String::from)
            .zip(f)
            .collect();
        flows.push(("per_pod_limit".into(), per_pod));
        flows.push(("over_quota".into(), f[5]));
        // Pod records the zone's full pod table refused (see `zone.rs`).
        dns.push(("pod_records_refused".into(), self.zone.refusals()));
        let mut counters = Vec::with_capacity(ports.len());
        for report in ports {
            let drops = self.tap_drops(&report).await;
            let mut port = self.port_counters(report);
            port.drops.extend(
                [("tap_queue_full", drops.queue_full), ("tap_rx_dropped", drops.not_taken)]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(name, n)| (name.to_string(), n)),
            );
            counters.push(port);
        }
        let images = self.image_counters();
        Ok(StatsReport {
            ports: counters,
            dns,
            flows,
            listeners: crate::listeners::limits::report(),
            images,
            ingress: self.ingress_stats(),
            kubernetes: crate::kubernetes::stats::report(),
            threads: self
                .dataplane
                .thread_stats()
                .into_iter()
                .map(|t| crate::api::ThreadCounters {
                    frames: t.frames,
                    handed_off: t.handed_off,
                    handoff_full: t.handoff_full,
                    redirect_full: t.redirect_full,
                })
                .collect(),
        })
    }

    /// What the kernel side of a port's TAP dropped: frames a pod (or the
    /// node) sent while the TAP's queue was full never reach the switch, so
    /// the switch's own counters cannot show them.
    async fn tap_drops(&self, report: &crate::dataplane::PortReport) -> tap::QueueDrops {
        let read = match report.spec.kind {
            PortKind::Pod => {
                let Some(pod) = self.pod_on(report.id) else {
                    return tap::QueueDrops::default();
                };
                let path = netns::path(&pod.netns);
                tokio::task::spawn_blocking(move || {
                    netns::run_in(&path, || Ok(tap::queue_drops(sandbox::POD_INTERFACE)))
                })
                .await
            }
            PortKind::Host => {
                let name = self.options.config.network.host_interface.clone();
                tokio::task::spawn_blocking(move || Ok(tap::queue_drops(&name))).await
            }
            PortKind::Overlay | PortKind::Egress => return tap::QueueDrops::default(),
        };
        read.ok().and_then(Result::ok).flatten().unwrap_or_default()
    }

    /// The pod plugged into switch port `id`.
    fn pod_on(&self, id: PortId) -> Option<&super::LocalPod> {
        self.pods.values().find(|p| p.port == Some(id))
    }

    fn port_counters(&self, report: crate::dataplane::PortReport) -> PortCounters {
        let port = match report.spec.kind {
            PortKind::Host => "node".to_string(),
            PortKind::Overlay => "overlay".to_string(),
            PortKind::Egress => "egress".to_string(),
            PortKind::Pod => self.pod_on(report.id).map_or_else(
                || format!("port-{}", report.id.0),
                |p| format!("{}/{}", p.record.spec.namespace, p.record.spec.name),
            ),
        };
        let stats = report.stats;
        let mut drops: Vec<(String, u64)> = DropReason::ALL
            .iter()
            .filter(|r| stats.dropped(**r) > 0)
            .map(|r| (r.name().to_string(), stats.dropped(*r)))
            .collect();
        if stats.ingress_denied > 0 {
            // Frames to this pod its ingress policy refused (each also a
            // `policy_ingress` drop on the sender's port).
            drops.push(("ingress_denied".to_string(), stats.ingress_denied));
        }
        if let Some(pod) = self.pod_on(report.id).filter(|_| report.spec.kind == PortKind::Pod) {
            // Output a full disk cost the pod's log (see `pod::log`).
            let lost = pod.log.dropped();
            if lost > 0 {
                drops.push(("log_bytes_dropped".to_string(), lost));
            }
        }
        if report.spec.kind == PortKind::Egress {
            // The egress table's own refusals, beside the switch's drops.
            drops.extend(self.egress.stats().nonzero().map(|(name, n)| (name.to_string(), n)));
        }
        PortCounters {
            port,
            ip: report.spec.ip.into(),
            rx_packets: stats.rx_packets,
            rx_bytes: stats.rx_bytes,
            tx_packets: stats.tx_packets,
            tx_bytes: stats.tx_bytes,
            tx_errors: report.io.tx_errors,
            drops,
        }
    }

    /// Resolves `name` as a pod in `namespace` would: with ndots:5, a name
    /// of fewer than five dots tries the search path first.
    async fn resolve(&self, name: &str, qtype: u16, namespace: &str) -> Result<Response, NodeError> {
        let domain = &self.options.config.network.cluster_domain;
        let mut candidates = Vec::new();
        if !name.ends_with('.') && name.matches('.').count() < 5 {
            for suffix in [format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()] {
                candidates.push(format!("{name}.{suffix}"));
            }
        }
        candidates.push(name.trim_end_matches('.').to_string());
        let mut last = None;
        for candidate in candidates {
            let query = netstack::dns::build_query(&candidate, qtype, 1).map_err(NodeError::Query)?;
            let response = crate::listeners::dns_tcp::answer(
                &self.dataplane.handle(),
                &self.upstream,
                query,
                self.dns_deadline,
            )
            .await
            .ok_or_else(|| NodeError::NoAnswer(candidate.clone()))?;
            let nxdomain = response.get(3).is_some_and(|b| b & 0x0f == 3);
            last = Some(Response::Resolved { name: candidate, response });
            if !nxdomain {
                break;
            }
        }
        last.ok_or_else(|| NodeError::NoAnswer(name.to_string()))
    }
}

fn not_here(namespace: &str, name: &str) -> NodeError {
    NodeError::NotHere { pod: format!("{namespace}/{name}") }
}
