//! `podnet node up`: the control plane and this node's runtime in one
//! process (a single node, or a cluster's server), or a member's runtime
//! linked to its server. One event loop handles every request, process exit,
//! probe, cluster message and timer tick in turn, and after each turn brings
//! the node in line with the desired state: state changes never race.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use crate::api::server::{self, Answer, Call};
use crate::api::{Request, Response, Route};
use crate::cluster::client::Caller;
use crate::cluster::member::{self, Cache, FromServer, MemberLink};
use crate::cluster::password::NodePassword;
use crate::cluster::proto::{ClusterSettings, Welcome};
use crate::cluster::server::{ClusterEvent, Hub, Trust};
use crate::cluster::token::{self, Token};
use crate::config::{Cidr, NodeConfig};
use crate::control::{ControlError, ControlPlane, Host, Now, Rng};
use crate::desired::NodeReport;
use crate::kube::SharedPort;
use crate::listeners::ListenError;
use crate::listeners::proxy::ListenKey;
use crate::model::check_name;
use crate::node::{NodeOptions, NodeRuntime};
use crate::store::{Store, StoreError};

mod error;
mod kubernetes;

pub use error::AgentError;

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
    /// A real Kubernetes cluster's network (`--kubernetes KUBECONFIG`):
    /// Services, endpoints, policies and nodes come from its API.
    Kubernetes {
        /// The kubeconfig of its API server.
        kubeconfig: PathBuf,
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
pub async fn run(mut options: AgentOptions) -> Result<(), AgentError> {
    check_name("node", &options.node_name, 63)?;
    let data_dir = options.data_dir.clone();
    let data_dir = &data_dir;
    std::fs::create_dir_all(data_dir.join("logs"))
        .map_err(|source| AgentError::DataDir { path: data_dir.clone(), source })?;
    let _lock = lock_data_dir(data_dir)?;
    let metrics = match options.metrics_addr {
        Some(addr) => Some(crate::listeners::metrics::bind(addr).await?),
        None => None,
    };
    let listener = server::bind(&options.socket).await?;
    let socket_guard = RemoveOnDrop(options.socket.clone());

    raise_fd_limit();
    let (calls_tx, calls) = mpsc::channel::<Call>(64);
    // Detached containers' inits become the agent's children, so it learns
    // their exit codes (see node::container).
    if let Err(e) = crate::sys::reaper::set_subreaper() {
        tracing::warn!("cannot become a child subreaper: {e}; image pods' exit codes will be unknown");
    }
    if let Some(metrics) = metrics {
        tokio::spawn(crate::listeners::metrics::serve(
            metrics,
            calls_tx.clone(),
            crate::listeners::limits::Caps::listener(&options.config.limits),
        ));
    }
    // Nodes of a cluster reach each other's pods over the VXLAN overlay.
    if !matches!(options.role, Role::Standalone) {
        options.config.cluster.overlay = true;
    }
    let mut hidden = vec![options.socket.clone(), data_dir.clone()];
    // The port the cluster API shares with the Kubernetes API on a server.
    let kube_port = SharedPort::default();
    // In Kubernetes mode the subnet is the Node's podCIDR, known once the
    // watchers have listed: they start before anything else.
    let watched = match &options.role {
        Role::Kubernetes { kubeconfig } => {
            let (watched, subnet) =
                kubernetes::start(kubeconfig, &options.node_name, &options.config).await?;
            options.config.network.node_subnet = subnet;
            hidden.push(kubeconfig.clone());
            Some(watched)
        }
        _ => None,
    };
    let (mut side, config, subnet) = match options.role.clone() {
        Role::Member { server, token_file, address } => {
            let (member, config) = Member::start(&options, server, &token_file, address, &calls_tx).await?;
            hidden.push(token_file);
            let subnet = member.subnet;
            (Side::Member(Box::new(member)), config, subnet)
        }
        _ => {
            let mut control = Control::start(&options, &calls_tx, &kube_port).await?;
            if let Some(watched) = watched {
                let saved = control.cp.subnet_of(&options.node_name).expect("the local node is registered");
                let given = options.config.network.node_subnet;
                if saved != given {
                    return Err(AgentError::SubnetChanged { dir: data_dir.clone(), saved, given });
                }
                control.kubernetes = Some(Box::new(watched));
            }
            control.cp.reconcile(Now::system());
            if let Err(e) = commit(&mut control.cp, &control.store).await {
                tracing::warn!("{e}");
            }
            let subnet = control.cp.subnet_of(&options.node_name).expect("the local node is registered");
            (Side::Control(Box::new(control)), options.config.clone(), subnet)
        }
    };
    // Image requests are served beside the event loop: pulls take minutes.
    // The store opens (and imports, and collects) once the role has started,
    // so a member's token or welcome error comes first, alone.
    let images =
        crate::image::Images::start(data_dir, options.registries.clone(), options.config.images.clone())
            .await?;
    let calls = images.clone().intercept(calls);
    // The Kubernetes API starts once the role has (the server's cluster
    // API): its errors come first, alone. Members leave the API to their
    // server, as k3s agents do: a node's credential may not change the
    // cluster, so the API it could serve would be a read-only echo.
    let (api_address, cluster) = match &options.role {
        Role::Server { address, listen } => (*address, Some((*listen, kube_port.clone()))),
        Role::Member { .. } | Role::Kubernetes { .. } => (None, None),
        Role::Standalone => (None, None),
    };
    if matches!(options.role, Role::Member { .. }) {
        crate::kube::forget_kubeconfig(data_dir);
        tracing::info!("the Kubernetes API is the cluster server's: use the kubeconfig from its data dir");
    } else if matches!(options.role, Role::Kubernetes { .. }) {
        // The cluster's API server is the API: this node serves none.
        crate::kube::forget_kubeconfig(data_dir);
    } else {
        let api = crate::kube::ApiOptions {
            config: &options.config.api,
            data_dir,
            node_name: &options.node_name,
            address: api_address
                .or_else(|| crate::cluster::node_address(&options.config.network.host_interface)),
            cluster,
            caps: crate::listeners::limits::Caps::listener(&options.config.limits),
            // The watch hub wakes on the control plane's revision (members
            // serve no API).
            revisions: match &side {
                Side::Control(c) => Some(c.revision.subscribe()),
                Side::Member(_) => None,
            },
            streams: match &side {
                Side::Control(c) => c.streams.clone(),
                Side::Member(_) => None,
            },
        };
        crate::kube::start(api, calls_tx.clone()).await?;
    }
    let mut node = NodeRuntime::start(
        NodeOptions { name: options.node_name.clone(), config, subnet, data_dir: data_dir.clone(), hidden },
        images,
    )
    .await?;
    side.converge(&mut node).await;
    tracing::info!(node = %options.node_name, %subnet, socket = %options.socket.display(), "podnet agent ready");
    let caps = crate::listeners::limits::Caps::listener(&options.config.limits);
    let result = event_loop(&mut side, &mut node, listener, calls_tx, calls, caps).await;
    node.shutdown().await;
    drop(socket_guard);
    result
}

/// A standalone node or a cluster's server: the control plane, its store,
/// and the cluster API's members when there are any.
struct Control {
    cp: ControlPlane,
    store: Store,
    hub: Option<Hub>,
    /// The control plane's revision after each turn (the Kubernetes API's
    /// watch hub waits on it).
    revision: watch::Sender<u64>,
    /// Streams into members' pods, on a cluster's server.
    streams: Option<crate::cluster::streams::Streams>,
    /// In Kubernetes mode, the watched cluster: the node's tables come from
    /// it, and the control plane keeps only CNI attachments.
    kubernetes: Option<Box<kubernetes::Watched>>,
}

/// A member: the link to its server and the last state it was given.
struct Member {
    server: SocketAddr,
    token: Token,
    /// This node, as it asks the server for its CLI (reads only).
    caller: Caller,
    from_server: mpsc::Receiver<FromServer>,
    reports: watch::Sender<NodeReport>,
    cache: Cache,
    data_dir: PathBuf,
    subnet: Cidr,
}

/// The part of the event loop that differs between the roles.
enum Side {
    Control(Box<Control>),
    Member(Box<Member>),
}

/// An event only one role has.
enum SideEvent {
    /// From a member's connection, on the server.
    Cluster(ClusterEvent),
    /// From the server, on a member.
    Server(Option<FromServer>),
    /// From the Kubernetes watchers.
    Kubernetes(Option<crate::kubernetes::watcher::Update>),
}

/// The one event loop of both roles: requests, process exits, probes, the
/// role's own events and timer ticks in turn; after each turn the node is
/// brought in line with the desired state, so state changes never race.
async fn event_loop(
    side: &mut Side,
    node: &mut NodeRuntime,
    listener: UnixListener,
    calls_tx: mpsc::Sender<Call>,
    mut calls: mpsc::Receiver<Call>,
    caps: crate::listeners::limits::Caps,
) -> Result<(), AgentError> {
    let socket_server = tokio::spawn(server::serve(listener, calls_tx, caps));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(AgentError::Signal)?;
    let mut stopped = Ok(());
    loop {
        tokio::select! {
            Some((request, reply)) = calls.recv() => side.answer(node, request, reply).await,
            event = side.next() => {
                if let Err(e) = side.on_event(event).await {
                    stopped = Err(e);
                    break;
                }
            }
            Some(exit) = node.exits.recv() => node.on_exit(exit),
            Some(result) = node.probes.recv() => node.on_probe(result),
            Some(start) = node.containers.recv() => node.on_container(start),
            _ = tick.tick() => {
                node.tick();
                side.tick().await;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
        side.converge(node).await;
    }
    tracing::info!("stopping: removing pod sandboxes");
    socket_server.abort();
    stopped
}

impl Side {
    /// The role's next event; never, for a standalone node.
    async fn next(&mut self) -> SideEvent {
        match self {
            Side::Control(c) if c.kubernetes.is_some() => {
                let watched = c.kubernetes.as_mut().expect("checked");
                SideEvent::Kubernetes(watched.updates.recv().await)
            }
            Side::Control(c) => match &mut c.hub {
                Some(hub) => match hub.recv().await {
                    Some(event) => SideEvent::Cluster(event),
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            },
            Side::Member(m) => SideEvent::Server(m.from_server.recv().await),
        }
    }

    async fn on_event(&mut self, event: SideEvent) -> Result<(), AgentError> {
        match (self, event) {
            (Side::Control(c), SideEvent::Cluster(event)) => {
                let Some(hub) = c.hub.as_mut() else { return Ok(()) };
                if let Some(join) = hub.on_event(&mut c.cp, Now::system(), event) {
                    let saved = commit(&mut c.cp, &c.store).await;
                    c.hub.as_mut().expect("hub above").finish_join(join, saved);
                }
                Ok(())
            }
            (Side::Member(m), SideEvent::Server(message)) => m.on_message(message).await,
            (Side::Control(c), SideEvent::Kubernetes(update)) => match c.kubernetes.as_mut() {
                Some(watched) => watched.on_update(update),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn tick(&mut self) {
        if let Side::Control(c) = self {
            let now = Now::system();
            if let Some(hub) = c.hub.as_mut() {
                hub.tick(&mut c.cp, now);
            }
            if c.cp.reconcile(now)
                && let Err(e) = commit(&mut c.cp, &c.store).await
            {
                tracing::warn!("cannot keep deployments at their replica count: {e}");
            }
        }
    }

    /// Brings the node in line: the control plane's view of it, or the last
    /// state the server sent; then tells the server (or the members) what
    /// changed.
    async fn converge(&mut self, node: &mut NodeRuntime) {
        match self {
            Side::Control(c) => {
                c.converge(node).await;
                if let Some(hub) = c.hub.as_mut() {
                    hub.push(&c.cp);
                }
                let now = c.cp.revision();
                c.revision.send_if_modified(|seen| std::mem::replace(seen, now) != now);
            }
            Side::Member(m) => {
                node.apply_pods(&m.cache.desired.pods).await;
                node.apply_tables(&m.cache.desired).await;
                let report = node.report();
                m.reports.send_if_modified(|current| {
                    let changed = *current != report;
                    *current = report;
                    changed
                });
            }
        }
    }

    /// Answers one CLI request. Who answers is [`Request::route`]'s to say:
    /// this node for its own counters and its own pods, else the control
    /// plane (here, or the server's for a member).
    async fn answer(&mut self, node: &mut NodeRuntime, request: Request, reply: Reply) {
        let once = |response| Answer::Once(Box::new(response));
        if request.is_cni() {
            let answer = match self {
                Side::Control(c) => c.cni(node, request).await.map(once).map_err(|e| e.to_string()),
                Side::Member(_) => Err(AgentError::CniOnMember.to_string()),
            };
            let _ = reply.send(answer);
            return;
        }
        let here = match request.route() {
            Route::Node => true,
            Route::Pod { namespace, name } => match self {
                Side::Control(c) => c.cp.runs_on(namespace, name, node.name()),
                Side::Member(_) => node.has_pod(namespace, name),
            },
            Route::Cluster => false,
        };
        if here {
            let answer = match request {
                Request::Capture { namespace, name } => {
                    node.capture(&namespace, &name).map(Answer::Stream).map_err(String::from)
                }
                Request::FollowLogs { namespace, name, backlog } => {
                    node.follow_logs(&namespace, &name, backlog).map(Answer::Stream).map_err(String::from)
                }
                Request::Exec { namespace, name, .. } => {
                    Err(format!("pod {namespace}/{name} runs on this node: podnet exec enters it itself"))
                }
                Request::Input(_) | Request::Resize { .. } => {
                    Err("input belongs to a podnet exec session".to_string())
                }
                request => node.handle_local(request).await.map(once).map_err(String::from),
            };
            let _ = reply.send(answer);
            return;
        }
        match self {
            Side::Control(c) => {
                // A member's pod: its node answers, over a stream it opens.
                if let (Route::Pod { namespace, name }, Some(streams)) = (request.route(), &c.streams)
                    && let Some(owner) = c.cp.locate(namespace, name)
                    && owner != node.name()
                {
                    let (streams, owner) = (streams.clone(), owner.to_string());
                    match request {
                        // The CLI cannot enter a pod of another node: it
                        // asks for an exec session instead.
                        Request::ExecTarget { .. } => {
                            let _ = reply.send(Ok(once(Response::Elsewhere(owner))));
                        }
                        Request::Exec { namespace, name, command, stdin, tty } => {
                            tokio::spawn(async move {
                                let asked = crate::kube::stream::exec::Asked {
                                    command,
                                    stdin,
                                    stdout: true,
                                    // A terminal's output is one stream.
                                    stderr: !tty,
                                    tty,
                                };
                                let session = exec_session(&streams, owner, namespace, name, asked);
                                let _ = reply.send(session.await);
                            });
                        }
                        request => {
                            tokio::spawn(async move {
                                let _ = reply.send(relay(&streams, &owner, request).await);
                            });
                        }
                    }
                    return;
                }
                // The cluster's state is the Kubernetes API's to change.
                if c.kubernetes.is_some() && !request.is_read_only() {
                    let _ = reply.send(Err(AgentError::KubernetesOwned.to_string()));
                    return;
                }
                let answer = c.answer(node, request).await.map_err(|e| e.to_string());
                let _ = reply.send(answer);
            }
            // On a task of its own, so the event loop goes on.
            Side::Member(m) => {
                let (server, token, caller) = (m.server, m.token.clone(), m.caller.clone());
                tokio::spawn(async move {
                    let answer = crate::cluster::client::call(server, &token, &caller, &request)
                        .await
                        .map(once)
                        .map_err(String::from);
                    let _ = reply.send(answer);
                });
            }
        }
    }
}

/// A request about a pod on member `node`, answered there: one answer, or
/// the stream of them (a followed log, a capture).
async fn relay(
    streams: &crate::cluster::streams::Streams,
    node: &str,
    request: Request,
) -> Result<Answer, String> {
    use crate::cluster::streams::Opened;
    let opened = streams.open(node, crate::cluster::proto::StreamRequest::Pod(Box::new(request))).await;
    match opened.map_err(|e| e.to_string())? {
        Opened::Once(response) => Ok(Answer::Once(response)),
        Opened::Stream(stream) => Ok(Answer::Stream(stream.items())),
    }
}

/// `podnet exec` from the server's CLI into a pod on member `node`: the
/// command runs there (`kube::stream::remote`), its output and exit code
/// are the session's items, the CLI's input frames its stdin (and, with a
/// terminal, its resizes the terminal's size).
async fn exec_session(
    streams: &crate::cluster::streams::Streams,
    node: String,
    namespace: String,
    name: String,
    asked: crate::kube::stream::exec::Asked,
) -> Result<Answer, String> {
    use crate::api::server::SessionInput;
    use crate::kube::stream::channel::{Ended, Size};
    use crate::kube::stream::exec::{self, Input};
    if asked.command.is_empty() {
        return Err("no command given: put it after `--`".into());
    }
    let request = crate::cluster::proto::StreamRequest::Exec { namespace, name, asked };
    let process =
        crate::kube::stream::remote::process(streams, &node, request).await.map_err(|s| s.message)?;
    let (items_tx, items) = mpsc::channel(8);
    let (input, mut input_rx) = mpsc::channel::<SessionInput>(8);
    tokio::spawn(async move {
        let (out_tx, mut out_rx) = mpsc::channel(8);
        let (in_tx, in_rx) = mpsc::channel(8);
        let feed = async move {
            while let Some(item) = input_rx.recv().await {
                let item = match item {
                    SessionInput::Bytes(bytes) if bytes.is_empty() => Input::StdinClosed,
                    SessionInput::Bytes(bytes) => Input::Stdin(bytes),
                    SessionInput::Resize(width, height) => Input::Resize(Size { width, height }),
                };
                if in_tx.send(item).await.is_err() {
                    break;
                }
            }
            // The CLI sends no more; the command runs on.
            std::future::pending::<()>().await
        };
        let forward = {
            let items_tx = items_tx.clone();
            async move {
                while let Some((stream, bytes)) = out_rx.recv().await {
                    if items_tx.send(Response::Output(stream, bytes)).await.is_err() {
                        return;
                    }
                }
            }
        };
        let run = futures::future::join(exec::run(process, out_tx, in_rx), forward);
        let ended = tokio::select! {
            (ended, ()) = run => ended,
            () = feed => return,
        };
        let code = match ended {
            Ended::Exited(code) => code,
            Ended::Failed(why) => {
                let _ = items_tx.send(Response::Output(2, format!("{why}\n").into_bytes())).await;
                126
            }
        };
        let _ = items_tx.send(Response::Exited(code)).await;
    });
    Ok(Answer::Session { output: items, input })
}

/// Where a request's answer goes.
type Reply = tokio::sync::oneshot::Sender<Result<Answer, String>>;

/// Saves what the control plane changed, on a blocking thread (fsync must
/// not stall the proxies, the DNS relay and the cluster I/O that share this
/// thread); the event loop waits for it, so nothing is acknowledged before it
/// is on disk. A failed save undoes the change.
async fn commit(cp: &mut ControlPlane, store: &Store) -> Result<(), ControlError> {
    let Some(state) = cp.to_save() else { return Ok(()) };
    let store = store.clone();
    let result = tokio::task::spawn_blocking(move || store.save(&state)).await.unwrap_or_else(|e| {
        Err(StoreError::Write { path: PathBuf::from("state.json"), source: std::io::Error::other(e) })
    });
    cp.saved(result)
}

impl Control {
    /// Starts the control plane from the saved state, and the cluster API
    /// when this node is the server.
    async fn start(
        options: &AgentOptions,
        calls_tx: &mpsc::Sender<Call>,
        kube: &SharedPort,
    ) -> Result<Control, AgentError> {
        let data_dir = &options.data_dir;
        let store = Store::new(data_dir);
        let state = store.load()?.unwrap_or_default();
        if !state.node_name.is_empty() && state.node_name != options.node_name {
            return Err(AgentError::WrongNode {
                dir: data_dir.clone(),
                saved: state.node_name,
                given: options.node_name.clone(),
            });
        }
        let rng = Rng::seeded(crate::sys::random::seed()?);
        let host = Box::new(SystemHost);
        let mut cp =
            ControlPlane::new(options.config.clone(), &options.node_name, state, Now::system(), rng, host)?;
        let mut hub = None;
        let mut streams = None;
        // A node on its own is reached at its first address too (its
        // INTERNAL-IP, and where its Ingresses are served, for the API's
        // lists and watches alike); without one it has none.
        if matches!(options.role, Role::Standalone)
            && let Some(address) = crate::cluster::node_address(&options.config.network.host_interface)
        {
            cp.set_local_address(address.into());
        }
        if let Role::Server { listen, address } = &options.role {
            let interface = &options.config.network.host_interface;
            let address =
                address.or_else(|| crate::cluster::node_address(interface)).ok_or(AgentError::NoAddress)?;
            cp.set_local_address(address.into());
            let token = token::server_token(data_dir)?;
            let api = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| AgentError::ClusterApi { listen: *listen, source })?;
            let admin = crate::kube::auth::Token::admin(data_dir)?;
            let server = SocketAddr::from((address, listen.port()));
            token::write_client_config(data_dir, server, &token, admin.as_str())?;
            let (events_tx, events_rx) = mpsc::channel(64);
            let caps = crate::listeners::limits::Caps::listener(&options.config.limits);
            let served = crate::cluster::streams::Streams::default();
            streams = Some(served.clone());
            let trust = Trust { token, admin, kube: kube.clone(), streams: served };
            tokio::spawn(crate::cluster::server::serve(api, trust, events_tx, calls_tx.clone(), caps));
            hub = Some(Hub::new(events_rx));
            tracing::info!(
                %address,
                port = listen.port(),
                token = %data_dir.join("token").display(),
                client_config = %data_dir.join("podnet.yaml").display(),
                "cluster server ready"
            );
        }
        // What restoring changed is saved now if it can be; a full disk
        // does not stop the node from serving what it has.
        if let Err(e) = commit(&mut cp, &store).await {
            tracing::warn!("{e}");
        }
        let revision = watch::channel(cp.revision()).0;
        Ok(Control { cp, store, hub, revision, streams, kubernetes: None })
    }

    /// Brings the local node in line with the control plane: its pods
    /// first, then (with their fresh status) the service table and DNS
    /// records. Returns the pods that could not be started.
    async fn converge(&mut self, node: &mut NodeRuntime) -> Vec<(String, String)> {
        let desired = self.cp.desired_for(node.name());
        let failed = node.apply_pods(&desired.pods).await;
        self.cp.start_failed(&failed);
        self.cp.report(node.name(), node.report());
        let local = self.cp.desired_for(node.name());
        match &mut self.kubernetes {
            Some(watched) => node.apply_tables(&watched.cluster.desired(node.name(), &local)).await,
            None => node.apply_tables(&local).await,
        }
        failed
    }

    /// Answers a request of the control plane's; its changes are saved and
    /// applied before the answer goes back (a deleted pod is gone when
    /// `podnet delete` returns).
    async fn answer(&mut self, node: &mut NodeRuntime, request: Request) -> Result<Answer, ControlError> {
        let once = |response| Answer::Once(Box::new(response));
        let run = matches!(request, Request::RunPod(_));
        // The Kubernetes API's watch polls these: they change nothing, so
        // there is nothing to apply (what the revision changed is saved).
        let read = matches!(request, Request::Changes { .. } | Request::Objects { .. });
        let response = self.cp.handle(Now::system(), request)?;
        commit(&mut self.cp, &self.store).await?;
        if read {
            return Ok(once(response));
        }
        let failed = self.converge(node).await;
        Ok(once(match response {
            // A pod the node could not start leaves nothing behind.
            Response::Pod(pod) if run => {
                if let Some((_, error)) = failed.iter().find(|(uid, _)| *uid == pod.uid) {
                    self.cp.forget_pod(&pod.uid);
                    if let Err(e) = commit(&mut self.cp, &self.store).await {
                        tracing::warn!("{e}");
                    }
                    self.converge(node).await;
                    return Err(ControlError::StartFailed(error.clone()));
                }
                Response::Pod(pod)
            }
            // LoadBalancer status is what this node's listeners see.
            Response::Services(list) => {
                Response::Services(list.iter().map(|s| node.reported_service(s)).collect())
            }
            Response::Service(s) => {
                // The only holder once `s` goes: unwrapped, not copied.
                let out = node.reported_service(&std::sync::Arc::new(s));
                Response::Service(std::sync::Arc::unwrap_or_clone(out))
            }
            // So is an Ingress's address.
            Response::Ingresses { items, .. } => Response::Ingresses {
                items: items.iter().map(|i| node.reported_ingress(i)).collect(),
                ports: node.ingress_ports(),
            },
            Response::Ingress(i) => Response::Ingress(node.reported_ingress(&i)),
            other => other,
        }))
    }
}

impl Control {
    /// Answers a CNI request made on this node (the control plane keeps the
    /// attachment as a pod; the node plugs it in). An ADD the node could
    /// not plug in leaves nothing behind; CHECK asks the node too.
    async fn cni(&mut self, node: &mut NodeRuntime, request: Request) -> Result<Response, AgentError> {
        let (add, check) =
            (matches!(request, Request::CniAdd(_)), matches!(request, Request::CniCheck { .. }));
        let response = self.cp.cni(Now::system(), node.name(), request)?;
        commit(&mut self.cp, &self.store).await?;
        let failed = self.converge(node).await;
        match response {
            Response::Pod(pod) if add => {
                if let Some((_, error)) = failed.iter().find(|(uid, _)| *uid == pod.uid) {
                    self.cp.forget_pod(&pod.uid);
                    if let Err(e) = commit(&mut self.cp, &self.store).await {
                        tracing::warn!("{e}");
                    }
                    self.converge(node).await;
                    return Err(ControlError::StartFailed(error.clone()).into());
                }
                let attached = node.cni_attached(&pod.uid).ok_or(AgentError::NotPlugged)?;
                Ok(Response::CniAttached(attached))
            }
            Response::Pods(pods) if check => {
                for pod in &pods {
                    node.check_attachment(&pod.uid).await?;
                }
                Ok(Response::Pods(pods))
            }
            other => Ok(other),
        }
    }
}

impl Member {
    /// Waits for the server's welcome (or, with a cached one, starts without
    /// it after a while: the server may be down, edge autonomy).
    async fn start(
        options: &AgentOptions,
        server: SocketAddr,
        token_file: &Path,
        address: Option<Ipv4Addr>,
        calls: &mpsc::Sender<Call>,
    ) -> Result<(Member, NodeConfig), AgentError> {
        let data_dir = &options.data_dir;
        let token = Token::load(token_file)?;
        let password = NodePassword::load_or_make(data_dir)?;
        let interface = &options.config.network.host_interface;
        let address =
            address.or_else(|| crate::cluster::node_address(interface)).ok_or(AgentError::NoAddress)?;
        let link = MemberLink {
            server,
            token: token.clone(),
            name: options.node_name.clone(),
            address,
            password: password.clone(),
            message_timeout: Duration::from_millis(options.config.limits.request_timeout_ms),
        };
        let mut cache = Cache::load(data_dir);
        let (to_loop, mut from_server) = mpsc::channel(16);
        let (reports, reports_rx) = watch::channel(NodeReport::default());
        // Streams into this node's pods are served by its own agent.
        let timeout = Duration::from_millis(options.config.limits.request_timeout_ms);
        let served =
            crate::cluster::serve_stream::Served::new(crate::kube::agent::Agent::new(calls.clone(), timeout));
        tokio::spawn(member::run(link, to_loop, reports_rx, served));

        let patience =
            if cache.welcome.is_some() { Duration::from_secs(5) } else { Duration::from_secs(3600) };
        let welcome = tokio::select! {
            message = from_server.recv() => match (message, cache.welcome.clone()) {
                (Some(FromServer::Welcome(welcome)), _) => welcome,
                // A node that was in the cluster keeps serving its last state.
                (Some(FromServer::Refused(reason)), Some(cached)) => {
                    tracing::warn!(server = %server, "the cluster server refused this node: {reason}; serving the last known state and asking again");
                    cached
                }
                (Some(FromServer::Refused(reason)), None) => {
                    return Err(AgentError::Refused(reason));
                }
                _ => return Err(AgentError::LinkStopped),
            },
            _ = tokio::time::sleep(patience) => {
                tracing::warn!(server = %server, "server unreachable: starting from the last known state");
                cache.welcome.clone().expect("patience is short only with a cached welcome")
            }
        };
        cache.welcome = Some(welcome.clone());
        save_cache(&cache, data_dir).await;
        let mut config = options.config.clone();
        apply_settings(&mut config, &welcome);
        let member = Member {
            server,
            token,
            caller: Caller::Node { name: options.node_name.clone(), password },
            from_server,
            reports,
            cache,
            data_dir: data_dir.clone(),
            subnet: welcome.subnet,
        };
        Ok((member, config))
    }

    /// Takes a message from the link; an error stops the agent.
    async fn on_message(&mut self, message: Option<FromServer>) -> Result<(), AgentError> {
        match message {
            Some(FromServer::Desired(desired)) => {
                self.cache.desired = desired;
                save_cache(&self.cache, &self.data_dir).await;
            }
            Some(FromServer::Welcome(w)) if w.subnet != self.subnet => {
                return Err(AgentError::Moved(w.subnet));
            }
            Some(FromServer::Welcome(_)) => {
                tracing::info!(server = %self.server, "admitted by the cluster server")
            }
            // Refused after it started (a failed save on the server, another
            // version during an upgrade): keep serving, say why, ask again.
            Some(FromServer::Refused(reason)) => tracing::warn!(
                server = %self.server,
                "the cluster server refused this node: {reason}; serving the last known state and asking again"
            ),
            None => return Err(AgentError::LinkStopped),
        }
        Ok(())
    }
}

/// Saves a member's cache off the event loop (it is fsynced).
async fn save_cache(cache: &Cache, data_dir: &Path) {
    let (cache, dir) = (cache.clone(), data_dir.to_path_buf());
    let _ = tokio::task::spawn_blocking(move || cache.save(&dir)).await;
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

/// The control plane's node, as it checks ports and commands on it.
struct SystemHost;

impl Host for SystemHost {
    fn try_bind(&mut self, key: &ListenKey) -> Result<(), ListenError> {
        crate::listeners::proxy::bind(key).map(drop)
    }

    fn has_command(&self, program: &str) -> bool {
        if program.contains('/') {
            Path::new(program).is_file()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        }
    }
}

/// Proxied connections take two descriptors each: lift the soft limit to
/// the hard one (1024 is the usual soft default).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn lock_data_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, AgentError> {
    let path = dir.join("agent.lock");
    let file = std::fs::File::create(&path).map_err(|source| AgentError::LockFile { path, source })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| AgentError::Locked { dir: dir.to_path_buf() })
}
