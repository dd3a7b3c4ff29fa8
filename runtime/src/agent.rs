//! `podnet node up`: the control plane and this node's runtime in one
//! process (a single node, or a cluster's server), or a member's runtime
//! linked to its server. One event loop handles every request, process exit,
//! probe, cluster message and timer tick in turn, and after each turn brings
//! the node in line with the desired state: state changes never race.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use crate::api::server::{self, Answer, Call};
use crate::api::{Request, Response};
use crate::cluster::member::{self, Cache, FromServer, MemberLink};
use crate::cluster::proto::{ClusterSettings, Welcome};
use crate::cluster::server::ClusterEvent;
use crate::cluster::token::{self, Token};
use crate::config::NodeConfig;
use crate::control::ControlPlane;
use crate::desired::NodeDesired;
use crate::model::check_name;
use crate::node::{NodeOptions, NodeRuntime};
use crate::store::Store;

/// This agent's part in a cluster.
#[derive(Debug, Clone)]
pub enum Role {
    /// One node on its own.
    Standalone,
    /// The cluster's server (`--cluster-init`): control plane, cluster API.
    Server {
        /// Where the cluster API listens.
        listen: SocketAddr,
        /// The address other nodes reach this one at (default: the first
        /// address of the node's own interfaces).
        address: Option<Ipv4Addr>,
    },
    /// A member (`--server ADDR --token-file F`).
    Member {
        /// The server's cluster API.
        server: SocketAddr,
        /// The cluster token file.
        token_file: PathBuf,
        /// The address other nodes reach this one at.
        address: Option<Ipv4Addr>,
    },
}

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
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Standalone, server or member.
    pub role: Role,
    /// Registry mirrors, credentials and TLS (registries.yaml).
    pub registries: crate::image::Registries,
}

/// Runs the agent until SIGINT or SIGTERM, then removes every pod sandbox it
/// made. Desired state stays on disk for the next start.
pub async fn run(options: AgentOptions) -> Result<(), String> {
    check_name("node", &options.node_name, 63)?;
    let data_dir = &options.data_dir;
    std::fs::create_dir_all(data_dir.join("logs"))
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    let metrics = match options.metrics_addr {
        Some(addr) => Some(crate::listeners::metrics::bind(addr).await?),
        None => None,
    };
    let listener = server::bind(&options.socket).await?;
    let socket_guard = RemoveOnDrop(options.socket.clone());

    raise_fd_limit();
    let (calls_tx, calls) = mpsc::channel::<Call>(64);
    // Image requests are served beside the event loop: pulls take minutes.
    let calls = crate::image::Images::open(data_dir, options.registries.clone())?.intercept(calls);
    if let Some(metrics) = metrics {
        tokio::spawn(crate::listeners::metrics::serve(
            metrics,
            calls_tx.clone(),
            crate::listeners::limits::Caps::listener(&options.config.limits),
        ));
    }
    // Nodes of a cluster reach each other's pods over the VXLAN overlay.
    let mut options = options;
    if !matches!(options.role, Role::Standalone) {
        options.config.cluster.overlay = true;
    }
    let result = match options.role.clone() {
        Role::Member { server, token_file, address } => {
            run_member(&options, listener, calls_tx, calls, server, &token_file, address).await
        }
        _ => run_control(&options, listener, calls_tx, calls).await,
    };
    drop(socket_guard);
    result
}

/// A standalone node or a cluster's server: control plane and node runtime
/// in one event loop.
async fn run_control(
    options: &AgentOptions,
    listener: UnixListener,
    calls_tx: mpsc::Sender<Call>,
    mut calls: mpsc::Receiver<Call>,
) -> Result<(), String> {
    let data_dir = &options.data_dir;
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
    let mut cp = ControlPlane::new(options.config.clone(), store, &options.node_name, state)?;

    // The cluster API, when this node is the server.
    let mut cluster_events = None;
    if let Role::Server { listen, address } = &options.role {
        let interface = &options.config.network.host_interface;
        let address = address
            .or_else(|| crate::cluster::node_address(interface))
            .ok_or("cannot tell this node's address for other nodes: pass --node-ip")?;
        cp.set_local_address(address)?;
        let token = token::server_token(data_dir)?;
        let api = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen for the cluster API on {listen}: {e}"))?;
        token::write_client_config(data_dir, SocketAddr::from((address, listen.port())), &token)?;
        let (events_tx, events_rx) = mpsc::channel(64);
        let caps = crate::listeners::limits::Caps::listener(&options.config.limits);
        tokio::spawn(crate::cluster::server::serve(api, token, events_tx, calls_tx.clone(), caps));
        cluster_events = Some(events_rx);
        tracing::info!(
            %address,
            port = listen.port(),
            token = %data_dir.join("token").display(),
            client_config = %data_dir.join("podnet.yaml").display(),
            "cluster server ready"
        );
    }
    let mut members: BTreeMap<String, Member> = BTreeMap::new();

    let subnet = cp.subnet_of(&options.node_name).expect("the local node is registered");
    let mut node = NodeRuntime::start(NodeOptions {
        name: options.node_name.clone(),
        config: options.config.clone(),
        subnet,
        data_dir: data_dir.clone(),
        hidden: vec![options.socket.clone(), data_dir.clone()],
    })
    .await?;
    cp.reconcile();
    converge(&mut cp, &mut node).await;
    tracing::info!(node = %options.node_name, %subnet, socket = %options.socket.display(), "podnet agent ready");

    let server = tokio::spawn(server::serve(
        listener,
        calls_tx,
        crate::listeners::limits::Caps::listener(&options.config.limits),
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    loop {
        let next_event = async {
            match &mut cluster_events {
                Some(events) => events.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((request, reply)) = calls.recv() => {
                let _ = reply.send(answer(&mut cp, &mut node, request).await);
            }
            Some(event) = next_event => on_cluster_event(&mut cp, &mut members, event),
            Some(exit) = node.exits.recv() => node.on_exit(exit),
            Some(result) = node.probes.recv() => node.on_probe(result),
            _ = tick.tick() => {
                node.tick();
                cp.check_heartbeats();
                cp.reconcile();
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
        converge(&mut cp, &mut node).await;
        push_to_members(&cp, &mut members);
    }
    tracing::info!("stopping: removing pod sandboxes");
    server.abort();
    node.shutdown().await;
    Ok(())
}

/// A connected member, and what it was last sent.
struct Member {
    conn: u64,
    desired: mpsc::Sender<NodeDesired>,
    sent: Option<NodeDesired>,
}

fn on_cluster_event(cp: &mut ControlPlane, members: &mut BTreeMap<String, Member>, event: ClusterEvent) {
    match event {
        ClusterEvent::Join { name, address, conn, reply, desired } => {
            let welcome =
                cp.register(&name, address).map(|subnet| Welcome { subnet, settings: cp.settings() });
            if welcome.is_ok() {
                members.insert(name, Member { conn, desired, sent: None });
            }
            let _ = reply.send(welcome);
        }
        ClusterEvent::Report { name, report } => {
            cp.heartbeat(&name);
            cp.report(&name, report);
        }
        ClusterEvent::Left { name, conn } => {
            if members.get(&name).is_some_and(|m| m.conn == conn) {
                members.remove(&name);
            }
        }
    }
}

/// Sends each member its desired state when it changed.
fn push_to_members(cp: &ControlPlane, members: &mut BTreeMap<String, Member>) {
    for (name, member) in members.iter_mut() {
        let desired = cp.desired_for(name);
        if member.sent.as_ref() != Some(&desired) && member.desired.try_send(desired.clone()).is_ok() {
            member.sent = Some(desired);
        }
    }
}

/// A member: its node runtime, linked to the server. It keeps serving with
/// the last state it was given while the server is away.
async fn run_member(
    options: &AgentOptions,
    listener: UnixListener,
    calls_tx: mpsc::Sender<Call>,
    mut calls: mpsc::Receiver<Call>,
    server_addr: SocketAddr,
    token_file: &Path,
    address: Option<Ipv4Addr>,
) -> Result<(), String> {
    let data_dir = &options.data_dir;
    let token = Token::load(token_file)?;
    let interface = &options.config.network.host_interface;
    let address = address
        .or_else(|| crate::cluster::node_address(interface))
        .ok_or("cannot tell this node's address for other nodes: pass --node-ip")?;
    let link =
        MemberLink { server: server_addr, token: token.clone(), name: options.node_name.clone(), address };
    let mut cache = Cache::load(data_dir);
    let (to_loop, mut from_server) = mpsc::channel(16);
    let (reports_tx, reports_rx) = watch::channel(Vec::new());
    tokio::spawn(member::run(link, to_loop, reports_rx));

    // Wait for the server's welcome; with a cached one, start without it
    // after a while (the server may be down: edge autonomy).
    let patience = if cache.welcome.is_some() { Duration::from_secs(5) } else { Duration::from_secs(3600) };
    let welcome = tokio::select! {
        message = from_server.recv() => match message {
            Some(FromServer::Welcome(welcome)) => welcome,
            Some(FromServer::Refused(reason)) => return Err(format!("the cluster server refused this node: {reason}")),
            _ => return Err("the cluster link stopped".into()),
        },
        _ = tokio::time::sleep(patience) => {
            tracing::warn!(server = %server_addr, "server unreachable: starting from the last known state");
            cache.welcome.clone().expect("patience is short only with a cached welcome")
        }
    };
    cache.welcome = Some(welcome.clone());
    cache.save(data_dir);
    let mut config = options.config.clone();
    apply_settings(&mut config, &welcome);
    let mut node = NodeRuntime::start(NodeOptions {
        name: options.node_name.clone(),
        config,
        subnet: welcome.subnet,
        data_dir: data_dir.clone(),
        hidden: vec![options.socket.clone(), data_dir.clone(), token_file.to_path_buf()],
    })
    .await?;
    let mut desired = cache.desired.clone();
    tracing::info!(node = %options.node_name, subnet = %welcome.subnet, server = %server_addr, "podnet member ready");

    let socket_server = tokio::spawn(server::serve(
        listener,
        calls_tx,
        crate::listeners::limits::Caps::listener(&options.config.limits),
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut stopped = Ok(());
    loop {
        node.apply_pods(&desired.pods).await;
        node.apply_tables(&desired).await;
        let report = node.statuses();
        reports_tx.send_if_modified(|current| {
            let changed = *current != report;
            *current = report;
            changed
        });
        tokio::select! {
            Some((request, reply)) = calls.recv() => {
                member_answer(&mut node, server_addr, &token, request, reply).await;
            }
            Some(message) = from_server.recv() => match message {
                FromServer::Desired(d) => {
                    desired = d;
                    cache.desired = desired.clone();
                    cache.save(data_dir);
                }
                FromServer::Welcome(w) if w.subnet != welcome.subnet => {
                    stopped = Err(format!("the server moved this node to subnet {}: restart the agent", w.subnet));
                    break;
                }
                FromServer::Welcome(_) => {}
                FromServer::Refused(reason) => {
                    stopped = Err(format!("the cluster server refused this node: {reason}"));
                    break;
                }
            },
            Some(exit) = node.exits.recv() => node.on_exit(exit),
            Some(result) = node.probes.recv() => node.on_probe(result),
            _ = tick.tick() => node.tick(),
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("stopping: removing pod sandboxes");
    socket_server.abort();
    node.shutdown().await;
    stopped
}

/// A member answers node-local requests itself and forwards the rest to the
/// server, on a task of its own so the event loop goes on.
async fn member_answer(
    node: &mut NodeRuntime,
    server: SocketAddr,
    token: &Token,
    request: Request,
    reply: tokio::sync::oneshot::Sender<Result<Answer, String>>,
) {
    let once = |response| Answer::Once(Box::new(response));
    let answer = match request {
        Request::Capture { ref namespace, ref name } if node.has_pod(namespace, name) => {
            node.capture(namespace, name).map(Answer::Stream).map_err(String::from)
        }
        Request::ExecTarget { ref namespace, ref name } | Request::Logs { ref namespace, ref name }
            if node.has_pod(namespace, name) =>
        {
            node.handle_local(request).await.map(once).map_err(String::from)
        }
        Request::NodeStats | Request::Resolve { .. } => {
            node.handle_local(request).await.map(once).map_err(String::from)
        }
        other => {
            let token = token.clone();
            tokio::spawn(async move {
                let answer = crate::cluster::client::call(server, &token, &other)
                    .await
                    .map(once)
                    .map_err(String::from);
                let _ = reply.send(answer);
            });
            return;
        }
    };
    let _ = reply.send(answer);
}

/// A member takes the cluster-wide settings from its server.
fn apply_settings(config: &mut NodeConfig, welcome: &Welcome) {
    let ClusterSettings { cluster_cidr, service_cidr, cluster_dns, cluster_domain } =
        welcome.settings.clone();
    let net = &mut config.network;
    net.cluster_cidr = cluster_cidr;
    net.service_cidr = service_cidr;
    net.cluster_dns = cluster_dns;
    net.cluster_domain = cluster_domain;
    net.node_subnet = welcome.subnet;
}

/// Brings the local node in line with the control plane: its pods first,
/// then (with their fresh status) the service table and DNS records.
/// Returns the pods that could not be started.
async fn converge(cp: &mut ControlPlane, node: &mut NodeRuntime) -> Vec<(String, String)> {
    let desired = cp.desired_for(node.name());
    let failed = node.apply_pods(&desired.pods).await;
    cp.start_failed(&failed);
    cp.report(node.name(), node.statuses());
    node.apply_tables(&cp.desired_for(node.name())).await;
    failed
}

/// Answers one CLI request: node-local ones from the node, the rest from the
/// control plane, whose changes are applied before the answer goes back (a
/// deleted pod is gone when `podnet delete` returns).
async fn answer(cp: &mut ControlPlane, node: &mut NodeRuntime, request: Request) -> Result<Answer, String> {
    let once = |response| Answer::Once(Box::new(response));
    let local = |ns: &str, name: &str| cp.locate(ns, name) == Some(node.name());
    match request {
        Request::Capture { ref namespace, ref name } if local(namespace, name) => {
            node.capture(namespace, name).map(Answer::Stream).map_err(String::from)
        }
        Request::ExecTarget { ref namespace, ref name } | Request::Logs { ref namespace, ref name }
            if local(namespace, name) =>
        {
            node.handle_local(request).await.map(once).map_err(String::from)
        }
        Request::NodeStats | Request::Resolve { .. } => {
            node.handle_local(request).await.map(once).map_err(String::from)
        }
        Request::GetServices { .. } | Request::CreateService(_) => {
            let response = cp.handle(request)?;
            converge(cp, node).await;
            // LoadBalancer status is what this node's listeners see.
            Ok(once(match response {
                Response::Services(list) => {
                    Response::Services(list.iter().map(|s| node.reported_service(s)).collect())
                }
                Response::Service(s) => Response::Service(node.reported_service(&s)),
                other => other,
            }))
        }
        Request::RunPod(_) => {
            let Response::Pod(pod) = cp.handle(request)? else { unreachable!("RunPod answers a Pod") };
            let failed = converge(cp, node).await;
            if let Some((_, error)) = failed.iter().find(|(uid, _)| *uid == pod.uid) {
                cp.forget_pod(&pod.uid);
                converge(cp, node).await;
                return Err(error.clone());
            }
            Ok(once(Response::Pod(pod)))
        }
        other => {
            let response = cp.handle(other)?;
            converge(cp, node).await;
            Ok(once(response))
        }
    }
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
