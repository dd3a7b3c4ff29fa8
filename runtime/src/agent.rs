//! `podnet node up`: the control plane and this node's runtime in one
//! process, answering the CLI. One event loop handles every request, process
//! exit, probe and timer tick in turn, and after each turn brings the node in
//! line with the control plane: state changes never race.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::api::{Request, Response};
use crate::config::NodeConfig;
use crate::control::ControlPlane;
use crate::model::check_name;
use crate::node::{NodeOptions, NodeRuntime};
use crate::server::{self, Answer, Call};
use crate::store::Store;

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
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
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
    let grace = Duration::from_millis(options.config.pods.termination_grace_ms);
    crate::node::remove_stale_sandboxes(&options.node_name, grace).await;

    let mut cp = ControlPlane::new(options.config.clone(), store, &options.node_name, state)?;
    let subnet = cp.subnet_of(&options.node_name).expect("the local node is registered");
    let mut node = NodeRuntime::start(NodeOptions {
        name: options.node_name.clone(),
        config: options.config.clone(),
        subnet,
        data_dir: data_dir.clone(),
    })
    .await?;
    cp.reconcile();
    converge(&mut cp, &mut node).await;
    tracing::info!(node = %options.node_name, %subnet, socket = %options.socket.display(), "podnet agent ready");

    let (calls_tx, mut calls) = mpsc::channel::<Call>(64);
    if let Some(metrics) = metrics {
        tokio::spawn(crate::metrics::serve(metrics, calls_tx.clone()));
    }
    let server = tokio::spawn(server::serve(listener, calls_tx));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    loop {
        tokio::select! {
            Some((request, reply)) = calls.recv() => {
                let _ = reply.send(answer(&mut cp, &mut node, request).await);
            }
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
    }
    tracing::info!("stopping: removing pod sandboxes");
    server.abort();
    node.shutdown().await;
    drop(socket_guard);
    Ok(())
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
            node.capture(namespace, name).map(Answer::Stream)
        }
        Request::ExecTarget { ref namespace, ref name } | Request::Logs { ref namespace, ref name }
            if local(namespace, name) =>
        {
            node.handle_local(request).await.map(once)
        }
        Request::NodeStats | Request::Resolve { .. } => node.handle_local(request).await.map(once),
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
