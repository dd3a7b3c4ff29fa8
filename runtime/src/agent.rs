//! The node agent: owns the data plane, the pods and the desired state, and
//! answers the CLI. One event loop handles every request, process exit and
//! timer tick in turn, so state changes never race.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netstack::ipam::{IpamError, Pool};
use netstack::service::{ServiceConfig, Timeouts};
use netstack::switch::{DropReason, PortId, PortKind, PortSpec, SwitchConfig};
use netstack::wire::EthernetAddress;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::{ExecTarget, PortCounters, Request, Response};
use crate::config::NodeConfig;
use crate::dataplane::Dataplane;
use crate::model::{
    Deployment, DeploymentSpec, Endpoints, LoadBalancerStatus, NodeInfo, Phase, Pod, PodSpec, PodStatus,
    Protocol, RestartPolicy, Service, ServiceSpec, ServiceType, check_label, check_name,
};
use crate::netlink::{LinkSetup, Netlink};
use crate::pod::enter::PodEntry;
use crate::pod::sandbox::{self, SandboxSpec};
use crate::pod::{self, mac_for, process};
use crate::proxy::{self, Bound, Forward, ListenKey, Proxies};
use crate::server::{self, Call};
use crate::services::{self, PodView, SwitchEntry};
use crate::store::{DeploymentRecord, PodRecord, State, Store};
use crate::{netns, tap};

/// A pod that ran this long without exiting has its restart backoff reset
/// (as the kubelet does).
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// Most log bytes `podnet logs` returns.
const MAX_LOG: u64 = 4 << 20;

/// How `podnet node up` was asked to run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Board config.
    pub config: NodeConfig,
    /// Node name.
    pub node_name: String,
    /// Where state and logs live.
    pub data_dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
}

/// Runs the agent until SIGINT or SIGTERM, then removes every pod sandbox it
/// made. Desired state stays on disk for the next start.
pub async fn run(options: AgentOptions) -> Result<(), String> {
    check_name("node", &options.node_name, 63)?;
    let data_dir = &options.data_dir;
    std::fs::create_dir_all(data_dir.join("logs"))
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    let listener = server::bind(&options.socket).await?;
    let socket_guard = RemoveOnDrop(options.socket.clone());

    let store = Store::new(data_dir);
    let state = store.load()?.unwrap_or_default();
    if !state.node_name.is_empty() && state.node_name != options.node_name {
        return Err(format!(
            "data dir {} belongs to node `{}`, not `{}`: pass --name {} or another --data-dir",
            data_dir.display(),
            state.node_name,
            options.node_name,
            state.node_name
        ));
    }
    remove_stale_sandboxes(
        &options.node_name,
        Duration::from_millis(options.config.pods.termination_grace_ms),
    )
    .await;

    raise_fd_limit();
    let mut agent = Agent::start(options.clone(), store).await?;
    agent.restore(state).await?;
    tracing::info!(
        node = %agent.options.node_name,
        subnet = %agent.options.config.network.node_subnet,
        socket = %options.socket.display(),
        "podnet agent ready"
    );

    let (calls_tx, mut calls) = mpsc::channel::<Call>(64);
    let server = tokio::spawn(server::serve(listener, calls_tx));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    loop {
        tokio::select! {
            Some((request, reply)) = calls.recv() => {
                let _ = reply.send(agent.handle(request).await);
            }
            Some(exit) = agent.exits_rx.recv() => agent.on_exit(exit),
            Some(result) = agent.probes_rx.recv() => agent.on_probe(result),
            _ = tick.tick() => agent.tick().await,
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
        agent.sync_services().await;
        agent.sync_proxies().await;
    }
    tracing::info!("stopping: removing pod sandboxes");
    server.abort();
    agent.shutdown().await;
    drop(socket_guard);
    Ok(())
}

/// Proxied connections take two descriptors each: lift the soft limit to
/// the hard one (1024 is the usual soft default).
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn lock_data_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let path = dir.join("agent.lock");
    let file = std::fs::File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        format!(
            "data dir {} is in use by another podnet agent: stop it, or give this one its own --data-dir",
            dir.display()
        )
    })
}

/// Sandboxes left by an agent of this node that was killed: their processes
/// are stopped and their namespaces removed before the state is restored.
async fn remove_stale_sandboxes(node: &str, grace: Duration) {
    for name in netns::list(&pod::netns_prefix(node)) {
        tracing::info!(netns = %name, "removing stale pod sandbox");
        process::stop_all(&name, grace).await;
        if let Err(e) = sandbox::remove(&name) {
            tracing::warn!(netns = %name, "cannot remove stale sandbox: {e}");
        }
    }
}

/// A process exit, tagged with the run it belongs to.
struct Exit {
    uid: String,
    run: u64,
    code: Option<i32>,
}

/// The outcome of one readiness probe.
struct ProbeResult {
    uid: String,
    ok: bool,
}

/// A pod as the agent tracks it.
struct PodState {
    record: PodRecord,
    netns: String,
    port: Option<PortId>,
    /// Which start of the command is current; exits of older runs are stale.
    run: u64,
    status: PodStatus,
    run_started: Option<Instant>,
    restart_at: Option<Instant>,
    /// Whether the command runs now.
    running: bool,
    /// The last readiness probe passed (true for pods without a probe).
    probe_ok: bool,
    /// When the next readiness probe is due; None while one is running.
    next_probe: Option<Instant>,
}

impl PodState {
    fn update_ready(&mut self) {
        self.status.ready = self.running && self.probe_ok;
    }
}

type Key = (String, String);

struct Agent {
    options: AgentOptions,
    store: Store,
    ipam: Pool,
    dataplane: Dataplane,
    pods: BTreeMap<Key, PodState>,
    deployments: BTreeMap<Key, DeploymentRecord>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits_rx: mpsc::UnboundedReceiver<Exit>,
    probes_tx: mpsc::UnboundedSender<ProbeResult>,
    probes_rx: mpsc::UnboundedReceiver<ProbeResult>,
    services: BTreeMap<Key, Service>,
    /// What the switch's service table holds, to push only changes.
    pushed: BTreeMap<
        netstack::service::ServiceKey,
        (Vec<netstack::service::Backend>, netstack::service::Affinity),
    >,
    /// Node ports, LoadBalancer ports and host ports.
    proxies: Proxies,
    /// Pod egress; stopped on drop.
    _egress: crate::egress::Egress,
    started_at: u64,
}

impl Agent {
    /// Starts the data plane and plugs the node's own port into it.
    async fn start(options: AgentOptions, store: Store) -> Result<Agent, String> {
        let net = &options.config.network;
        let subnet = net.node_subnet;
        let ipam =
            Pool::new(subnet.to_netstack()).map_err(|e| format!("network.node_subnet {subnet}: {e}"))?;
        let limits = &options.config.limits;
        let dataplane = Dataplane::start(SwitchConfig {
            subnet: subnet.to_netstack(),
            max_ports: limits.max_pods + 1,
            service_cidr: net.service_cidr.to_netstack(),
            services: ServiceConfig {
                max_services: limits.max_services,
                max_backends: limits.max_backends,
                max_flows: limits.max_flows,
                max_affinities: limits.max_affinities,
                timeouts: Timeouts::default(),
                hash_seed: u64::from_le_bytes(random_bytes(8).try_into().unwrap_or_default()),
            },
        })
        .map_err(|e| format!("cannot start the data plane: {e}"))?;

        let gateway = ipam.gateway();
        let host_fd = tap::open(&net.host_interface).map_err(|e| {
            format!(
                "cannot create interface {}: {e} (is another agent running in this network namespace? give it another network.host_interface)",
                net.host_interface
            )
        })?;
        let netlink = Netlink::open().map_err(|e| format!("cannot open netlink: {e}"))?;
        netlink
            .configure(&LinkSetup {
                name: net.host_interface.clone(),
                mac: mac_for(gateway),
                mtu: net.mtu,
                address: (gateway, subnet.prefix),
                gateway: None,
            })
            .await
            .map_err(|e| format!("cannot configure {}: {e}", net.host_interface))?;
        // ClusterIPs are reachable from the node too, as kube-proxy makes them.
        netlink
            .add_route(&net.host_interface, net.service_cidr.addr, net.service_cidr.prefix)
            .await
            .map_err(|e| format!("cannot route {} to {}: {e}", net.service_cidr, net.host_interface))?;
        let spec = PortSpec { kind: PortKind::Host, mac: EthernetAddress(mac_for(gateway)), ip: gateway };
        dataplane.attach(spec, host_fd).await.map_err(|e| format!("cannot attach the node port: {e}"))?;

        let limits = options.config.limits.clone();
        let egress_limits = crate::egress::EgressLimits {
            connections: limits.max_proxied_connections as usize,
            flows: limits.max_proxied_udp_flows as usize,
        };
        let egress = crate::egress::start(&dataplane, mac_for(gateway), egress_limits)
            .await
            .map_err(|e| format!("cannot start the egress endpoint: {e}"))?;

        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let (probes_tx, probes_rx) = mpsc::unbounded_channel();
        Ok(Agent {
            options,
            store,
            ipam,
            dataplane,
            pods: BTreeMap::new(),
            deployments: BTreeMap::new(),
            exits_tx,
            exits_rx,
            probes_tx,
            probes_rx,
            services: BTreeMap::new(),
            pushed: BTreeMap::new(),
            proxies: Proxies::new(proxy::Limits::new(
                limits.max_proxied_connections,
                limits.max_proxied_udp_flows,
            )),
            _egress: egress,
            started_at: unix_now(),
        })
    }

    /// Brings back every pod and deployment of the saved state, with the
    /// same addresses.
    async fn restore(&mut self, state: State) -> Result<(), String> {
        for service in state.services {
            self.services.insert(key(&service.spec.namespace, &service.spec.name), service);
        }
        for record in state.deployments {
            self.deployments.insert(key(&record.spec.namespace, &record.spec.name), record);
        }
        for record in state.pods {
            let name = format!("{}/{}", record.spec.namespace, record.spec.name);
            if let Err(e) = self.ipam.reserve(record.ip) {
                tracing::warn!(pod = %name, ip = %record.ip, "cannot restore pod: {e}");
                continue;
            }
            if let Err(e) = self.start_pod(record.clone()).await {
                tracing::warn!(pod = %name, "cannot restore pod: {e}");
                self.ipam.release(record.ip);
            }
        }
        self.save()
    }

    fn state(&self) -> State {
        State {
            format: 0,
            node_name: self.options.node_name.clone(),
            pods: self.pods.values().map(|p| p.record.clone()).collect(),
            deployments: self.deployments.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
        }
    }

    fn save(&self) -> Result<(), String> {
        self.store.save(&self.state()).map_err(|e| format!("cannot save state: {e}"))
    }

    async fn handle(&mut self, request: Request) -> Result<Response, String> {
        match request {
            Request::RunPod(spec) => {
                check_pod_spec(&spec)?;
                let pod = self.create_pod(spec).await?;
                Ok(Response::Pod(pod))
            }
            Request::CreateDeployment(spec) => self.create_deployment(spec).await.map(Response::Deployment),
            Request::ScaleDeployment { namespace, name, replicas } => {
                let record = self
                    .deployments
                    .get_mut(&key(&namespace, &name))
                    .ok_or_else(|| no_deployment(&namespace, &name))?;
                if replicas > 1 && !record.spec.host_ports.is_empty() {
                    return Err(one_replica_per_node(&namespace, &name));
                }
                let before = record.spec.replicas;
                record.spec.replicas = replicas;
                if let Err(e) = self.save() {
                    if let Some(record) = self.deployments.get_mut(&key(&namespace, &name)) {
                        record.spec.replicas = before;
                    }
                    return Err(e);
                }
                self.reconcile().await;
                Ok(Response::Deployment(self.deployment(&self.deployments[&key(&namespace, &name)])))
            }
            Request::GetPods { namespace } => Ok(Response::Pods(
                self.pods
                    .values()
                    .filter(|p| in_namespace(&p.record.spec.namespace, &namespace))
                    .map(|p| self.pod(p))
                    .collect(),
            )),
            Request::GetDeployments { namespace } => Ok(Response::Deployments(
                self.deployments
                    .values()
                    .filter(|d| in_namespace(&d.spec.namespace, &namespace))
                    .map(|d| self.deployment(d))
                    .collect(),
            )),
            Request::DeletePod { namespace, name } => {
                let pod = self.take_pod(&key(&namespace, &name)).ok_or_else(|| no_pod(&namespace, &name))?;
                if let Err(e) = self.save() {
                    self.put_back(pod);
                    return Err(e);
                }
                self.teardown(pod).await;
                Ok(Response::Done)
            }
            Request::DeleteDeployment { namespace, name } => {
                let k = key(&namespace, &name);
                let record = self.deployments.remove(&k).ok_or_else(|| no_deployment(&namespace, &name))?;
                let owned: Vec<Key> = self
                    .pods
                    .iter()
                    .filter(|(_, p)| {
                        p.record.spec.namespace == namespace && p.record.spec.owner.as_deref() == Some(&name)
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                let pods: Vec<PodState> = owned.iter().filter_map(|k| self.take_pod(k)).collect();
                if let Err(e) = self.save() {
                    self.deployments.insert(k, record);
                    pods.into_iter().for_each(|pod| self.put_back(pod));
                    return Err(e);
                }
                futures::future::join_all(pods.into_iter().map(|pod| self.teardown(pod))).await;
                Ok(Response::Done)
            }
            Request::ExecTarget { namespace, name } => {
                let pod = self.pods.get(&key(&namespace, &name)).ok_or_else(|| no_pod(&namespace, &name))?;
                Ok(Response::Exec(ExecTarget {
                    netns: netns::path(&pod.netns),
                    resolv_conf: sandbox::etc_dir(&pod.netns).join("resolv.conf"),
                    hostname: name.clone(),
                    env: pod_env(&pod.record),
                }))
            }
            Request::Logs { namespace, name } => {
                let pod = self.pods.get(&key(&namespace, &name)).ok_or_else(|| no_pod(&namespace, &name))?;
                process::read_log(&self.log_path(&pod.record.spec), MAX_LOG)
                    .map(Response::Logs)
                    .map_err(|e| format!("cannot read the logs of {namespace}/{name}: {e}"))
            }
            Request::NodeStats => {
                let ports = self.dataplane.report().await.map_err(|e| e.to_string())?;
                Ok(Response::Stats(ports.into_iter().map(|p| self.port_counters(p)).collect()))
            }
            Request::CreateService(spec) => self.create_service(spec).map(Response::Service),
            Request::GetServices { namespace } => Ok(Response::Services(
                self.services
                    .values()
                    .filter(|s| in_namespace(&s.spec.namespace, &namespace))
                    .map(|s| self.reported_service(s))
                    .collect(),
            )),
            Request::GetEndpoints { namespace } => Ok(Response::Endpoints(
                self.services
                    .values()
                    .filter(|s| in_namespace(&s.spec.namespace, &namespace))
                    .map(|s| self.endpoints(s))
                    .collect(),
            )),
            Request::DeleteService { namespace, name } => {
                let k = key(&namespace, &name);
                let service = self.services.remove(&k).ok_or_else(|| no_service(&namespace, &name))?;
                if let Err(e) = self.save() {
                    self.services.insert(k, service);
                    return Err(e);
                }
                Ok(Response::Done)
            }
            Request::SetSessionAffinity { namespace, name, affinity } => {
                let k = key(&namespace, &name);
                let service = self.services.get_mut(&k).ok_or_else(|| no_service(&namespace, &name))?;
                let before = std::mem::replace(&mut service.spec.session_affinity, affinity);
                if let Err(e) = self.save() {
                    if let Some(service) = self.services.get_mut(&k) {
                        service.spec.session_affinity = before;
                    }
                    return Err(e);
                }
                Ok(Response::Service(self.services[&k].clone()))
            }
            Request::GetNode => Ok(Response::Node(NodeInfo {
                name: self.options.node_name.clone(),
                pod_cidr: self.options.config.network.node_subnet.to_string(),
                version: env!("CARGO_PKG_VERSION").into(),
                started_at: self.started_at,
            })),
        }
    }

    /// Creates a pod: address, sandbox, process, then the state on disk.
    /// Any failure undoes what was done.
    async fn create_pod(&mut self, spec: PodSpec) -> Result<Pod, String> {
        let k = key(&spec.namespace, &spec.name);
        if self.pods.contains_key(&k) {
            return Err(format!(
                "pod {}/{} already exists: delete it first or choose another name",
                spec.namespace, spec.name
            ));
        }
        let ip = self.ipam.allocate().map_err(|e| match e {
            IpamError::Exhausted => format!(
                "node subnet {} has no free address: delete pods, or give the node a larger network.node_subnet",
                self.options.config.network.node_subnet
            ),
            other => other.to_string(),
        })?;
        let bound = match self.bind_host_ports(&spec) {
            Ok(bound) => bound,
            Err(e) => {
                self.ipam.release(ip);
                return Err(e);
            }
        };
        let record = PodRecord { uid: random_id(16), created_at: unix_now(), ip, spec };
        if let Err(e) = self.start_pod(record).await {
            self.ipam.release(ip);
            return Err(e);
        }
        if let Err(e) = self.save() {
            if let Some(pod) = self.take_pod(&k) {
                self.teardown(pod).await;
            }
            return Err(e);
        }
        let mut bound: BTreeMap<ListenKey, Bound> = bound.into_iter().collect();
        for (key, forward) in pod_forwards(&self.pods[&k].record) {
            if let Some(socket) = bound.remove(&key) {
                self.proxies.start(key, forward, socket);
            }
        }
        Ok(self.pod(&self.pods[&k]))
    }

    /// Builds the sandbox, plugs it into the switch and starts the command.
    async fn start_pod(&mut self, record: PodRecord) -> Result<(), String> {
        let net = &self.options.config.network;
        let spec = &record.spec;
        let netns_name = pod::netns_name(&self.options.node_name, &spec.namespace, &spec.name);
        let sandbox_spec = SandboxSpec {
            netns: netns_name.clone(),
            ip: record.ip,
            prefix: net.node_subnet.prefix,
            gateway: self.ipam.gateway(),
            mac: mac_for(record.ip),
            mtu: net.mtu,
            resolv_conf: resolv_conf(net.cluster_dns, &spec.namespace, &net.cluster_domain),
        };
        let fd = tokio::task::spawn_blocking(move || sandbox::create(&sandbox_spec))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot create the sandbox of pod {}/{}: {e}", spec.namespace, spec.name))?;
        let port_spec =
            PortSpec { kind: PortKind::Pod, mac: EthernetAddress(mac_for(record.ip)), ip: record.ip };
        let port = match self.dataplane.attach(port_spec, fd).await {
            Ok(port) => port,
            Err(e) => {
                let _ = sandbox::remove(&netns_name);
                return Err(format!("cannot attach pod {}/{} to the switch: {e}", spec.namespace, spec.name));
            }
        };
        let k = key(&spec.namespace, &spec.name);
        let status = PodStatus {
            phase: Phase::Pending,
            pod_ip: Some(record.ip),
            ready: false,
            restarts: 0,
            reason: None,
            last_exit_code: None,
            started_at: None,
        };
        let pod = PodState {
            record,
            netns: netns_name,
            port: Some(port),
            run: 0,
            status,
            run_started: None,
            restart_at: None,
            running: false,
            probe_ok: false,
            next_probe: None,
        };
        self.pods.insert(k.clone(), pod);
        if let Err(e) = self.spawn_process(&k) {
            let pod = self.pods.remove(&k).expect("inserted above");
            self.teardown(pod).await;
            return Err(e);
        }
        Ok(())
    }

    /// Starts (or restarts) the pod's command.
    fn spawn_process(&mut self, k: &Key) -> Result<(), String> {
        let log = self.log_path(&self.pods[k].record.spec);
        let pod = self.pods.get_mut(k).expect("caller checked");
        let spec = &pod.record.spec;
        let entry = PodEntry::open(
            &netns::path(&pod.netns),
            &sandbox::etc_dir(&pod.netns).join("resolv.conf"),
            &spec.name,
            true,
        )
        .map_err(|e| format!("cannot enter pod {}/{}: {e}", spec.namespace, spec.name))?;
        let mut child = process::spawn(&spec.command, &pod_env(&pod.record), entry, &log).map_err(|e| {
            format!("cannot start `{}` in pod {}/{}: {e}", spec.command.join(" "), spec.namespace, spec.name)
        })?;
        pod.run += 1;
        pod.run_started = Some(Instant::now());
        pod.restart_at = None;
        pod.status.phase = Phase::Running;
        pod.running = true;
        // A restarted command is unready until its probe passes again.
        pod.probe_ok = pod.record.spec.readiness.is_none();
        pod.next_probe = Some(Instant::now());
        pod.update_ready();
        pod.status.reason = None;
        pod.status.started_at = Some(unix_now());
        let (uid, run, exits) = (pod.record.uid.clone(), pod.run, self.exits_tx.clone());
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
    fn on_exit(&mut self, exit: Exit) {
        let config = &self.options.config.pods;
        let Some(pod) = self.pods.values_mut().find(|p| p.record.uid == exit.uid && p.run == exit.run) else {
            return;
        };
        let code = exit.code.unwrap_or(-1);
        pod.running = false;
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
    }

    /// Records a readiness probe's outcome.
    fn on_probe(&mut self, result: ProbeResult) {
        if let Some(pod) = self.pods.values_mut().find(|p| p.record.uid == result.uid) {
            pod.probe_ok = result.ok;
            pod.update_ready();
            pod.next_probe = Some(Instant::now() + crate::probe::PERIOD);
        }
    }

    /// Starts the readiness probes that are due, each on a task of its own.
    fn start_probes(&mut self, now: Instant) {
        for pod in self.pods.values_mut() {
            let Some(probe) = &pod.record.spec.readiness else { continue };
            if !pod.running || pod.next_probe.is_none_or(|t| t > now) {
                continue;
            }
            pod.next_probe = None;
            let (probe, ip, uid, results) =
                (probe.clone(), pod.record.ip, pod.record.uid.clone(), self.probes_tx.clone());
            tokio::spawn(async move {
                let ok = crate::probe::check(&probe, ip).await;
                let _ = results.send(ProbeResult { uid, ok });
            });
        }
    }

    /// Restarts pods whose backoff has passed, starts due probes, and keeps
    /// deployments at their replica counts.
    async fn tick(&mut self) {
        let now = Instant::now();
        self.start_probes(now);
        let due: Vec<Key> = self
            .pods
            .iter()
            .filter(|(_, p)| p.restart_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(pod) = self.pods.get_mut(&k) {
                pod.status.restarts += 1;
            }
            if let Err(e) = self.spawn_process(&k) {
                tracing::warn!("{e}");
                if let Some(pod) = self.pods.get_mut(&k) {
                    pod.restart_at =
                        Some(now + Duration::from_millis(self.options.config.pods.restart_backoff_max_ms));
                }
            }
        }
        self.reconcile().await;
    }

    /// Creates or deletes deployment pods until each deployment has its
    /// replica count.
    async fn reconcile(&mut self) {
        let deployments: Vec<DeploymentSpec> = self.deployments.values().map(|d| d.spec.clone()).collect();
        for spec in deployments {
            let mut owned: Vec<(u64, Key)> = self
                .pods
                .iter()
                .filter(|(_, p)| {
                    p.record.spec.namespace == spec.namespace
                        && p.record.spec.owner.as_deref() == Some(&spec.name)
                })
                .map(|(k, p)| (p.record.created_at, k.clone()))
                .collect();
            let want = spec.replicas as usize;
            while owned.len() < want {
                let pod_spec = PodSpec {
                    name: format!("{}-{}", spec.name, random_suffix()),
                    namespace: spec.namespace.clone(),
                    labels: spec.labels.clone(),
                    command: spec.command.clone(),
                    restart_policy: RestartPolicy::Always,
                    owner: Some(spec.name.clone()),
                    ports: spec.ports.clone(),
                    readiness: spec.readiness.clone(),
                    host_ports: spec.host_ports.clone(),
                };
                match self.create_pod(pod_spec).await {
                    Ok(pod) => owned.push((pod.created_at, key(&pod.spec.namespace, &pod.spec.name))),
                    Err(e) => {
                        tracing::warn!(deployment = %spec.name, "cannot create replica: {e}");
                        break;
                    }
                }
            }
            if owned.len() > want {
                // Oldest first: a scale-down removes the youngest replicas.
                owned.sort();
                let extra: Vec<PodState> =
                    owned.split_off(want).into_iter().filter_map(|(_, k)| self.take_pod(&k)).collect();
                if let Err(e) = self.save() {
                    tracing::warn!("{e}");
                }
                futures::future::join_all(extra.into_iter().map(|pod| self.teardown(pod))).await;
            }
        }
    }

    async fn create_deployment(&mut self, mut spec: DeploymentSpec) -> Result<Deployment, String> {
        check_name("deployment", &spec.name, 57)?;
        check_name("namespace", &spec.namespace, 63)?;
        check_command(&spec.command)?;
        if spec.replicas > 1 && !spec.host_ports.is_empty() {
            return Err(one_replica_per_node(&spec.namespace, &spec.name));
        }
        check_host_ports(&spec.host_ports)?;
        spec.labels.entry("app".into()).or_insert_with(|| spec.name.clone());
        for (k, v) in &spec.labels {
            check_label(k, v)?;
        }
        let k = key(&spec.namespace, &spec.name);
        if self.deployments.contains_key(&k) {
            return Err(format!(
                "deployment {}/{} already exists: scale it, or delete it first",
                spec.namespace, spec.name
            ));
        }
        self.deployments
            .insert(k.clone(), DeploymentRecord { uid: random_id(16), created_at: unix_now(), spec });
        if let Err(e) = self.save() {
            self.deployments.remove(&k);
            return Err(e);
        }
        self.reconcile().await;
        Ok(self.deployment(&self.deployments[&k]))
    }

    /// Checks and stores a new Service, with its ClusterIP and node ports.
    /// Node ports are bound before anything is stored, so a port another
    /// process holds is an error and nothing is half-made.
    fn create_service(&mut self, mut spec: ServiceSpec) -> Result<Service, String> {
        check_name("service", &spec.name, 63)?;
        check_name("namespace", &spec.namespace, 63)?;
        let k = key(&spec.namespace, &spec.name);
        if self.services.contains_key(&k) {
            return Err(format!(
                "service {}/{} already exists: delete it first or choose another --name",
                spec.namespace, spec.name
            ));
        }
        if spec.ports.is_empty() {
            return Err("a service needs at least one port: give --port".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for port in &spec.ports {
            if !seen.insert((port.port, port.protocol)) {
                return Err(format!("port {}/{} is listed twice", port.port, port.protocol));
            }
            if spec.ports.len() > 1 && port.name.is_none() {
                return Err("every port of a multi-port service needs a name: --port NAME:PORT".into());
            }
        }
        for (k, v) in &spec.selector {
            check_label(k, v)?;
        }
        let net = &self.options.config.network;
        let used = self.services.values().filter_map(|s| s.cluster_ip).collect();
        let seed = u32::from_le_bytes(random_bytes(4).try_into().unwrap_or_default());
        let cluster_ip =
            services::allocate_cluster_ip(spec.cluster_ip, net.service_cidr, net.cluster_dns, &used, seed)?;
        let bound = self.allocate_node_ports(&mut spec)?;
        let service =
            Service { uid: random_id(16), created_at: unix_now(), cluster_ip, spec, load_balancer: None };
        self.services.insert(k.clone(), service.clone());
        if let Err(e) = self.save() {
            self.services.remove(&k);
            return Err(e);
        }
        let forwards = service_forwards(&service);
        for (key, bound) in bound {
            if let Some(forward) = forwards.get(&key) {
                self.proxies.start(key, forward.clone(), bound);
            }
        }
        Ok(self.reported_service(&service))
    }

    /// Ports that services and pods already use on the node, by protocol
    /// and number, with their owner.
    fn used_node_ports(&self) -> BTreeMap<(Protocol, u16), String> {
        let mut used = BTreeMap::new();
        for s in self.services.values() {
            for port in &s.spec.ports {
                if let Some(n) = port.node_port {
                    used.insert((port.protocol, n), service_owner(&s.spec));
                }
                if s.spec.service_type == ServiceType::LoadBalancer {
                    used.entry((port.protocol, port.port)).or_insert_with(|| service_owner(&s.spec));
                }
            }
        }
        for p in self.pods.values() {
            for hp in &p.record.spec.host_ports {
                used.entry((hp.protocol, hp.host_port)).or_insert_with(|| pod_owner(&p.record.spec));
            }
        }
        used
    }

    /// Checks the type and node ports of a new Service, picks the node ports
    /// not given, and binds them all.
    fn allocate_node_ports(&self, spec: &mut ServiceSpec) -> Result<Vec<(ListenKey, Bound)>, String> {
        let range = self.options.config.network.node_port_range;
        if spec.service_type == ServiceType::ClusterIP {
            if spec.ports.iter().any(|p| p.node_port.is_some()) {
                return Err("--node-port needs --type NodePort or LoadBalancer".into());
            }
            return Ok(Vec::new());
        }
        if spec.cluster_ip == crate::model::ClusterIpRequest::None {
            return Err(format!(
                "a {} service needs a ClusterIP: leave out --cluster-ip None",
                spec.service_type
            ));
        }
        let mut used = self.used_node_ports();
        let me = service_owner(spec);
        let mut bound = Vec::new();
        let span = u32::from(range.last - range.first) + 1;
        let seed = u32::from_le_bytes(random_bytes(4).try_into().unwrap_or_default());
        for port in &mut spec.ports {
            let key = |n: u16| ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED, port: n };
            let n = match port.node_port {
                Some(n) => {
                    if !range.contains(n) {
                        return Err(format!(
                            "node port {n} is outside the node port range {range}: choose one inside it, or leave --node-port out"
                        ));
                    }
                    if let Some(owner) = used.get(&(port.protocol, n)) {
                        return Err(format!(
                            "node port {n}/{} is already used by {owner}: choose another, or leave --node-port out",
                            port.protocol
                        ));
                    }
                    let socket = proxy::bind(&key(n)).map_err(|e| {
                        format!("node port {n}/{}: {e} (another process holds it): choose another, or leave --node-port out", port.protocol)
                    })?;
                    bound.push((key(n), socket));
                    n
                }
                None => {
                    let found = (0..span)
                        .map(|i| range.first + ((seed.wrapping_add(i)) % span) as u16)
                        .filter(|n| !used.contains_key(&(port.protocol, *n)))
                        .find_map(|n| proxy::bind(&key(n)).ok().map(|socket| (n, socket)));
                    let (n, socket) = found.ok_or_else(|| {
                        format!("the node port range {range} has no free {} port: delete services, or widen network.node_port_range", port.protocol)
                    })?;
                    bound.push((key(n), socket));
                    n
                }
            };
            port.node_port = Some(n);
            used.insert((port.protocol, n), me.clone());
        }
        Ok(bound)
    }

    /// Checks a new pod's host ports against the node's other ports and
    /// binds them.
    fn bind_host_ports(&self, spec: &PodSpec) -> Result<Vec<(ListenKey, Bound)>, String> {
        check_host_ports(&spec.host_ports)?;
        for hp in &spec.host_ports {
            for p in self.pods.values() {
                if let Some(other) = p.record.spec.host_ports.iter().find(|o| o.conflicts(hp)) {
                    return Err(format!(
                        "host port {hp} conflicts with {other} of {}: choose another host port",
                        pod_owner(&p.record.spec)
                    ));
                }
            }
        }
        let services = self.used_node_ports();
        let mut bound = Vec::new();
        for hp in &spec.host_ports {
            if let Some(owner) =
                services.get(&(hp.protocol, hp.host_port)).filter(|o| o.starts_with("service"))
            {
                return Err(format!("host port {hp} is already used by {owner}: choose another host port"));
            }
            let key = host_port_key(hp);
            let socket =
                proxy::bind(&key).map_err(|e| format!("host port {hp}: {e}: choose another host port"))?;
            bound.push((key, socket));
        }
        Ok(bound)
    }

    /// Every listener the node should have; when two owners want one port,
    /// the older service wins (the other shows it as a problem).
    fn desired_forwards(&self) -> BTreeMap<ListenKey, Forward> {
        let mut out = BTreeMap::new();
        let mut services: Vec<&Service> = self.services.values().collect();
        services.sort_by_key(|s| s.created_at);
        for s in services {
            for (key, forward) in service_forwards(s) {
                out.entry(key).or_insert(forward);
            }
        }
        for p in self.pods.values() {
            for (key, forward) in pod_forwards(&p.record) {
                out.entry(key).or_insert(forward);
            }
        }
        out
    }

    async fn sync_proxies(&mut self) {
        let desired = self.desired_forwards();
        self.proxies.sync(&desired).await;
    }

    /// A Service as users see it: a LoadBalancer's addresses, or why it is
    /// not served.
    fn reported_service(&self, service: &Service) -> Service {
        let mut out = service.clone();
        if service.spec.service_type != ServiceType::LoadBalancer {
            return out;
        }
        let desired = self.desired_forwards();
        let me = service_owner(&service.spec);
        let mut problem = None;
        for port in &service.spec.ports {
            let key = ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED, port: port.port };
            let why = match desired.get(&key) {
                Some(f) if f.owner != me => Some(format!("port {key} in use by {}", f.owner)),
                _ if self.proxies.serving(&key) => None,
                _ => Some(self.proxies.problem(&key).unwrap_or("not bound yet").to_string()),
            };
            if problem.is_none() {
                problem = why;
            }
        }
        let ingress = match problem {
            None => proxy::node_addresses(&self.options.config.network.host_interface),
            Some(_) => Vec::new(),
        };
        out.load_balancer = Some(LoadBalancerStatus { ingress, problem });
        out
    }

    /// The endpoints of a Service now.
    fn endpoints(&self, service: &Service) -> Endpoints {
        let pods = self.pods.values().map(|p| PodView {
            spec: &p.record.spec,
            ip: p.record.ip,
            ready: p.status.ready,
        });
        services::endpoints(service, pods)
    }

    /// Brings the switch's service table in line with Services and pod
    /// readiness, pushing only what changed.
    async fn sync_services(&mut self) {
        let desired: BTreeMap<_, _> = self
            .services
            .values()
            .flat_map(|s| services::switch_entries(s, &self.endpoints(s)))
            .map(|(k, backends, affinity)| (k, (backends, affinity)))
            .collect();
        if desired == self.pushed {
            return;
        }
        let removed: Vec<_> = self.pushed.keys().filter(|k| !desired.contains_key(k)).copied().collect();
        let changed: Vec<SwitchEntry> = desired
            .iter()
            .filter(|(k, v)| self.pushed.get(k) != Some(v))
            .map(|(k, (b, a))| (*k, b.clone(), *a))
            .collect();
        let applied = self
            .dataplane
            .update(move |switch| {
                for key in &removed {
                    let _ = switch.remove_service(key);
                }
                changed
                    .iter()
                    .filter_map(|(key, backends, affinity)| {
                        switch
                            .upsert_service(*key, backends, *affinity)
                            .err()
                            .map(|e| format!("{}:{}: {e}", key.vip, key.port))
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        match applied {
            Ok(errors) => {
                for e in errors {
                    tracing::warn!("cannot program service {e}");
                }
            }
            Err(e) => tracing::warn!("cannot program services: {e}"),
        }
        self.pushed = desired;
    }

    /// Removes a pod from the tables and frees its address; the caller tears
    /// the sandbox down once the change is saved.
    fn take_pod(&mut self, k: &Key) -> Option<PodState> {
        let pod = self.pods.remove(k)?;
        self.ipam.release(pod.record.ip);
        Some(pod)
    }

    /// Undoes [`Agent::take_pod`] when saving the change failed.
    fn put_back(&mut self, pod: PodState) {
        let _ = self.ipam.reserve(pod.record.ip);
        self.pods.insert(key(&pod.record.spec.namespace, &pod.record.spec.name), pod);
    }

    /// Stops a pod's processes and removes its sandbox, port and logs.
    async fn teardown(&self, pod: PodState) {
        let grace = Duration::from_millis(self.options.config.pods.termination_grace_ms);
        process::stop_all(&pod.netns, grace).await;
        if let Some(port) = pod.port {
            let _ = self.dataplane.detach(port).await;
        }
        if let Err(e) = sandbox::remove(&pod.netns) {
            tracing::warn!(netns = %pod.netns, "cannot remove sandbox: {e}");
        }
        let _ = std::fs::remove_file(self.log_path(&pod.record.spec));
    }

    async fn shutdown(mut self) {
        let pods: Vec<PodState> = std::mem::take(&mut self.pods).into_values().collect();
        futures::future::join_all(pods.into_iter().map(|pod| self.teardown_keep_ip(pod))).await;
    }

    /// Teardown for shutdown: the pod stays in the saved state.
    async fn teardown_keep_ip(&self, pod: PodState) {
        let grace = Duration::from_millis(self.options.config.pods.termination_grace_ms);
        process::stop_all(&pod.netns, grace).await;
        if let Some(port) = pod.port {
            let _ = self.dataplane.detach(port).await;
        }
        let _ = sandbox::remove(&pod.netns);
    }

    fn port_counters(&self, report: crate::dataplane::PortReport) -> PortCounters {
        let port = match report.spec.kind {
            PortKind::Host => "node".to_string(),
            PortKind::Egress => "egress".to_string(),
            PortKind::Pod => self.pods.values().find(|p| p.port == Some(report.id)).map_or_else(
                || format!("port-{}", report.id.0),
                |p| format!("{}/{}", p.record.spec.namespace, p.record.spec.name),
            ),
        };
        let stats = report.stats;
        PortCounters {
            port,
            ip: report.spec.ip,
            rx_packets: stats.rx_packets,
            rx_bytes: stats.rx_bytes,
            tx_packets: stats.tx_packets,
            tx_bytes: stats.tx_bytes,
            tx_errors: report.io.tx_errors,
            drops: DropReason::ALL
                .iter()
                .filter(|r| stats.dropped(**r) > 0)
                .map(|r| (r.name().to_string(), stats.dropped(*r)))
                .collect(),
        }
    }

    fn log_path(&self, spec: &PodSpec) -> PathBuf {
        self.options.data_dir.join("logs").join(format!("{}_{}.log", spec.namespace, spec.name))
    }

    fn pod(&self, pod: &PodState) -> Pod {
        Pod {
            uid: pod.record.uid.clone(),
            created_at: pod.record.created_at,
            node_name: self.options.node_name.clone(),
            spec: pod.record.spec.clone(),
            status: pod.status.clone(),
        }
    }

    fn deployment(&self, record: &DeploymentRecord) -> Deployment {
        let owned = self.pods.values().filter(|p| {
            p.record.spec.namespace == record.spec.namespace
                && p.record.spec.owner.as_deref() == Some(&record.spec.name)
        });
        let (mut replicas, mut ready) = (0, 0);
        for pod in owned {
            replicas += 1;
            ready += pod.status.ready as u32;
        }
        Deployment {
            uid: record.uid.clone(),
            created_at: record.created_at,
            spec: record.spec.clone(),
            replicas,
            ready_replicas: ready,
        }
    }
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

fn in_namespace(ns: &str, filter: &Option<String>) -> bool {
    filter.as_deref().is_none_or(|f| f == ns)
}

fn no_pod(namespace: &str, name: &str) -> String {
    format!("pod {namespace}/{name} not found: list pods with `podnet get pods -n {namespace}`")
}

fn no_deployment(namespace: &str, name: &str) -> String {
    format!("deployment {namespace}/{name} not found: list them with `podnet get deployments -n {namespace}`")
}

fn no_service(namespace: &str, name: &str) -> String {
    format!("service {namespace}/{name} not found: list them with `podnet get svc -n {namespace}`")
}

fn one_replica_per_node(namespace: &str, name: &str) -> String {
    format!(
        "deployment {namespace}/{name} has host ports: it can run one replica per node, and this cluster has one node"
    )
}

/// Host ports of one pod must not conflict among themselves.
fn check_host_ports(ports: &[crate::model::HostPort]) -> Result<(), String> {
    for (i, a) in ports.iter().enumerate() {
        if let Some(b) = ports[i + 1..].iter().find(|b| a.conflicts(b)) {
            return Err(format!("host ports {a} and {b} conflict: give each its own port"));
        }
    }
    Ok(())
}

fn service_owner(spec: &ServiceSpec) -> String {
    format!("service {}/{}", spec.namespace, spec.name)
}

fn pod_owner(spec: &PodSpec) -> String {
    format!("pod {}/{}", spec.namespace, spec.name)
}

fn host_port_key(hp: &crate::model::HostPort) -> ListenKey {
    ListenKey { proto: hp.protocol, ip: hp.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port: hp.host_port }
}

/// The listeners a Service needs: its node ports, and for a LoadBalancer its
/// ports on every node address, all forwarding to its ClusterIP.
fn service_forwards(service: &Service) -> BTreeMap<ListenKey, Forward> {
    let mut out = BTreeMap::new();
    let Some(vip) = service.cluster_ip else { return out };
    let owner = service_owner(&service.spec);
    for port in &service.spec.ports {
        let forward = Forward { target: SocketAddrV4::new(vip, port.port), owner: owner.clone() };
        if service.spec.service_type == ServiceType::ClusterIP {
            continue;
        }
        if let Some(n) = port.node_port {
            out.insert(
                ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED, port: n },
                forward.clone(),
            );
        }
        if service.spec.service_type == ServiceType::LoadBalancer {
            out.insert(
                ListenKey { proto: port.protocol, ip: Ipv4Addr::UNSPECIFIED, port: port.port },
                forward,
            );
        }
    }
    out
}

/// The listeners of a pod's host ports, forwarding to the pod.
fn pod_forwards(record: &PodRecord) -> Vec<(ListenKey, Forward)> {
    record
        .spec
        .host_ports
        .iter()
        .map(|hp| {
            let forward =
                Forward { target: SocketAddrV4::new(record.ip, hp.port), owner: pod_owner(&record.spec) };
            (host_port_key(hp), forward)
        })
        .collect()
}

fn check_pod_spec(spec: &PodSpec) -> Result<(), String> {
    check_name("pod", &spec.name, 63)?;
    check_name("namespace", &spec.namespace, 63)?;
    for (k, v) in &spec.labels {
        check_label(k, v)?;
    }
    check_command(&spec.command)
}

/// A command must be given and must exist on the node, so a typo is an error
/// now rather than a pod in CrashLoopBackOff.
fn check_command(command: &[String]) -> Result<(), String> {
    let program = command
        .first()
        .ok_or("no command given: put it after `--`, e.g. `podnet run client -- sleep infinity`")?;
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    if found {
        Ok(())
    } else {
        Err(format!("command `{program}` not found on the node: install it, or give its full path"))
    }
}

fn pod_env(record: &PodRecord) -> Vec<(String, String)> {
    vec![
        ("POD_NAME".into(), record.spec.name.clone()),
        ("POD_NAMESPACE".into(), record.spec.namespace.clone()),
        ("POD_IP".into(), record.ip.to_string()),
    ]
}

/// A pod's resolv.conf, as the kubelet writes it for ClusterFirst pods.
fn resolv_conf(dns: Ipv4Addr, namespace: &str, domain: &str) -> String {
    format!("nameserver {dns}\nsearch {namespace}.svc.{domain} svc.{domain} {domain}\noptions ndots:5\n")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    bytes
}

fn random_id(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// Five characters from Kubernetes' suffix alphabet (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes(5).iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}
