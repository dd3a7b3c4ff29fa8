//! A control plane and N fake nodes under simulated time, as quinn-proto's
//! `Pair` drives two endpoints: no root, no sockets, no timers. The server
//! side is the agent's own (the control plane and the cluster [`Hub`] with
//! its event queue); a fake node joins through the hub, takes the
//! `NodeDesired` pushed to it, "runs" those pods and reports their status
//! as a real member's link does. The state is saved to a [`FakeStore`] that
//! can be made to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{ControlError, ControlPlane, Host, Now, Persist, Rng};
use crate::api::{Request, Response};
use crate::cluster::password::PasswordDigest;
use crate::cluster::proto::Welcome;
use crate::cluster::server::{ClusterEvent, Hub};
use crate::config::{Cidr, NodeConfig};
use crate::desired::{NodeDesired, NodeReport};
use crate::listeners::ListenError;
use crate::listeners::proxy::ListenKey;
use crate::model::{
    ClusterIpRequest, DeploymentSpec, Endpoints, Phase, Pod, PodSpec, PodStatus, Protocol, RestartPolicy,
    ServicePort, ServiceSpec, ServiceType, SessionAffinity, TargetPort,
};
use crate::store::{PodRecord, State, StoreError};

/// The server's node name.
pub(super) const SERVER: &str = "server";

/// A store in memory: what was saved last, and a failure to return instead.
#[derive(Default, Clone)]
pub(super) struct FakeStore {
    /// The state as last saved.
    pub saved: Arc<Mutex<Option<State>>>,
    /// Saves made.
    pub saves: Arc<Mutex<u32>>,
    /// The errno every save fails with, while set.
    pub fail: Arc<Mutex<Option<i32>>>,
}

impl FakeStore {
    /// Every save fails with `errno` until [`FakeStore::heal`].
    pub(super) fn fail_with(&self, errno: i32) {
        *self.fail.lock().unwrap() = Some(errno);
    }

    /// Saves succeed again.
    pub(super) fn heal(&self) {
        *self.fail.lock().unwrap() = None;
    }

    /// The state as last saved.
    pub(super) fn last(&self) -> Option<State> {
        self.saved.lock().unwrap().clone()
    }
}

impl Persist for FakeStore {
    fn save(&mut self, state: &State) -> Result<(), StoreError> {
        if let Some(errno) = *self.fail.lock().unwrap() {
            // The real store's mapping of errors, on a data dir of its own.
            let store = crate::store::Store::new(std::path::Path::new("/fake/data"));
            return Err(store.failed(io::Error::from_raw_os_error(errno)));
        }
        *self.saved.lock().unwrap() = Some(state.clone());
        *self.saves.lock().unwrap() += 1;
        Ok(())
    }
}

/// The server's node as the control plane probes it: ports other
/// processes hold, and commands that exist.
#[derive(Default, Clone)]
pub(super) struct FakeHost {
    /// Ports held by other processes.
    pub taken: Arc<Mutex<BTreeSet<(Protocol, u16)>>>,
}

impl Host for FakeHost {
    fn try_bind(&mut self, key: &ListenKey) -> Result<(), ListenError> {
        if self.taken.lock().unwrap().contains(&(key.proto, key.port)) {
            return Err(ListenError::InUse(*key));
        }
        Ok(())
    }

    fn has_command(&self, program: &str) -> bool {
        program != "no-such-command"
    }
}

/// A fake member: what it was told, what it runs, its link.
pub(super) struct FakeNode {
    /// Its address between nodes.
    pub address: IpAddr,
    /// Its current connection, while connected.
    conn: Option<u64>,
    desired_rx: Option<mpsc::Receiver<NodeDesired>>,
    /// The last desired state received.
    pub desired: NodeDesired,
    /// How many desired states it received.
    pub received: usize,
    /// Whether its pods pass their readiness checks.
    pub pods_ready: bool,
    /// Why it does not serve its Ingress ports (a port another socket holds).
    pub ingress_problem: Option<String>,
}

impl FakeNode {
    /// What it reports: each desired pod running, and its Ingress ports.
    fn report(&self) -> NodeReport {
        NodeReport {
            pods: self.desired.pods.iter().map(|p| (p.uid.clone(), running(p.ip, self.pods_ready))).collect(),
            ingress_problem: self.ingress_problem.clone(),
        }
    }
}

/// The status of a pod its node runs.
pub(super) fn running(ip: IpAddr, ready: bool) -> PodStatus {
    PodStatus {
        phase: Phase::Running,
        pod_ip: Some(ip),
        ready,
        restarts: 0,
        reason: None,
        last_exit_code: None,
        started_at: Some(0),
        message: None,
    }
}

/// A control plane, its hub, and fake nodes.
pub(super) struct Harness {
    /// The control plane under test.
    pub cp: ControlPlane,
    /// The server's member hub.
    pub hub: Hub,
    events: mpsc::Sender<ClusterEvent>,
    /// Where state is saved.
    pub store: FakeStore,
    /// The server node's ports.
    pub host: FakeHost,
    /// Simulated time.
    pub now: Now,
    /// The members by name.
    pub nodes: BTreeMap<String, FakeNode>,
    /// Whether a pod on the server's own node passes its readiness check
    /// (all do, unless a test says otherwise).
    pub local_ready: fn(&PodRecord) -> bool,
    next_conn: u64,
}

/// The board config the harness's control plane runs with.
pub(super) fn config() -> NodeConfig {
    let mut config = NodeConfig::default();
    config.network.node_port_range = crate::config::PortRange { first: 30_000, last: 30_009 };
    config
}

impl Harness {
    /// A fresh server with seed `seed`.
    pub(super) fn new(seed: u64) -> Harness {
        Harness::restore(seed, State::default(), FakeStore::default())
    }

    /// A server started from `state`, saving to `store`.
    pub(super) fn restore(seed: u64, state: State, store: FakeStore) -> Harness {
        Harness::with_config(seed, state, store, config())
    }

    /// A server with its own config.
    pub(super) fn with_config(seed: u64, state: State, store: FakeStore, config: NodeConfig) -> Harness {
        let now = Now { at: std::time::Instant::now(), unix: 1_700_000_000 };
        let host = FakeHost::default();
        let mut cp = ControlPlane::new(config, SERVER, state, now, Rng::seeded(seed), Box::new(host.clone()))
            .expect("control plane");
        cp.set_local_address(Ipv4Addr::new(192, 168, 1, 1).into());
        let (events, events_rx) = mpsc::channel(1024);
        let mut h = Harness {
            cp,
            hub: Hub::new(events_rx),
            events,
            store,
            host,
            now,
            nodes: BTreeMap::new(),
            local_ready: |_| true,
            next_conn: 0,
        };
        let _ = h.cp.commit(&mut h.store);
        h
    }

    /// Lets simulated time pass.
    pub(super) fn advance(&mut self, d: Duration) {
        self.now = self.now.after(d);
    }

    /// A member connects (again) and asks to join with its own node
    /// password; its answer.
    pub(super) fn connect(&mut self, name: &str, address: impl Into<IpAddr>) -> Result<Welcome, String> {
        self.connect_with(name, address, &password_of(name))
    }

    /// [`Harness::connect`] with the password `password`.
    pub(super) fn connect_with(
        &mut self,
        name: &str,
        address: impl Into<IpAddr>,
        password: &PasswordDigest,
    ) -> Result<Welcome, String> {
        self.next_conn += 1;
        let conn = self.next_conn;
        let (desired, desired_rx) = mpsc::channel(8);
        let (reply, mut reply_rx) = oneshot::channel();
        let address = address.into();
        let password = password.clone();
        let join = ClusterEvent::Join { name: name.into(), address, password, conn, reply, desired };
        self.events.try_send(join).expect("event queue");
        self.pump();
        let answer = reply_rx.try_recv().expect("a join is answered in its turn");
        if answer.is_ok() {
            let node = self.nodes.entry(name.into()).or_insert_with(|| FakeNode {
                address,
                conn: None,
                desired_rx: None,
                desired: NodeDesired::default(),
                received: 0,
                pods_ready: true,
                ingress_problem: None,
            });
            node.address = address;
            node.conn = Some(conn);
            node.desired_rx = Some(desired_rx);
        }
        answer
    }

    /// A member joins; panics if refused.
    pub(super) fn join(&mut self, name: &str, last_octet: u8) -> Cidr {
        self.connect(name, [192, 168, 1, last_octet]).unwrap_or_else(|e| panic!("{name} refused: {e}")).subnet
    }

    /// A member's connection ends (a partition, or its agent stopped).
    pub(super) fn disconnect(&mut self, name: &str) {
        let node = self.nodes.get_mut(name).expect("a member");
        if let Some(conn) = node.conn.take() {
            node.desired_rx = None;
            self.events.try_send(ClusterEvent::Left { name: name.into(), conn }).expect("event queue");
        }
        self.pump();
    }

    /// Queues a member's report (and heartbeat) without the server taking it yet.
    pub(super) fn queue_report(&mut self, name: &str) {
        let node = &self.nodes[name];
        let Some(conn) = node.conn else { return };
        let report = ClusterEvent::Report { name: name.into(), conn, report: node.report() };
        self.events.try_send(report).expect("event queue");
    }

    /// Handles every queued event, as the agent's loop does one per turn;
    /// a join is answered after its change is saved.
    pub(super) fn pump(&mut self) {
        while let Some(event) = self.hub.try_next() {
            if let Some(join) = self.hub.on_event(&mut self.cp, self.now, event) {
                let saved = self.cp.commit(&mut self.store);
                self.hub.finish_join(join, saved);
            }
        }
    }

    /// The agent's timer turn: queued reports, heartbeats, replicas.
    pub(super) fn tick(&mut self) {
        self.hub.tick(&mut self.cp, self.now);
        if self.cp.reconcile(self.now) {
            let _ = self.cp.commit(&mut self.store);
        }
    }

    /// The end of a turn: the server's own node runs its pods, members get
    /// what changed.
    pub(super) fn converge(&mut self) {
        let local = self.cp.desired_for(SERVER);
        let ready = self.local_ready;
        let pods = local.pods.iter().map(|p| (p.uid.clone(), running(p.ip, ready(p)))).collect();
        self.cp.report(SERVER, NodeReport { pods, ingress_problem: None });
        self.hub.push(&self.cp);
        for node in self.nodes.values_mut() {
            if let Some(rx) = node.desired_rx.as_mut() {
                while let Ok(desired) = rx.try_recv() {
                    node.desired = desired;
                    node.received += 1;
                }
            }
        }
    }

    /// Every connected member reports, and the server takes the reports.
    pub(super) fn reports(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            self.queue_report(&name);
        }
        self.pump();
    }

    /// Turns until the cluster is quiet: pods placed, run and reported.
    pub(super) fn settle(&mut self) {
        for _ in 0..4 {
            self.converge();
            self.reports();
            self.tick();
        }
        self.converge();
    }

    /// `seconds` of simulated time in heartbeat-sized turns: connected
    /// members report every 2 s, as their link does.
    pub(super) fn run_for(&mut self, seconds: u64) {
        for _ in 0..seconds / 2 {
            self.advance(Duration::from_secs(2));
            self.converge();
            self.reports();
            self.tick();
        }
        self.converge();
    }

    /// A CLI request, answered as the agent does: saved before it is
    /// acknowledged, then applied.
    pub(super) fn request(&mut self, request: Request) -> Result<Response, ControlError> {
        let response = self.cp.handle(self.now, request)?;
        self.cp.commit(&mut self.store)?;
        self.converge();
        Ok(response)
    }

    /// A request that must succeed.
    pub(super) fn ok(&mut self, request: Request) -> Response {
        self.request(request).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A request that must fail; its message.
    pub(super) fn err(&mut self, request: Request) -> String {
        match self.request(request) {
            Ok(response) => panic!("expected an error, got {response:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Every pod.
    pub(super) fn pods(&mut self) -> Vec<Pod> {
        match self.ok(Request::GetPods { namespace: None }) {
            Response::Pods(pods) => pods,
            other => panic!("{other:?}"),
        }
    }

    /// A pod by name.
    pub(super) fn pod(&mut self, name: &str) -> Pod {
        self.pods().into_iter().find(|p| p.spec.name == name).unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// A service's endpoints in the default namespace.
    pub(super) fn endpoints(&mut self, service: &str) -> Endpoints {
        match self.ok(Request::GetEndpoints { namespace: None }) {
            Response::Endpoints(list) => list.into_iter().find(|e| e.name == service).expect("endpoints"),
            other => panic!("{other:?}"),
        }
    }

    /// The IPs of a service's ready endpoints, sorted.
    pub(super) fn ready_ips(&mut self, service: &str) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.endpoints(service).subsets.iter().map(|(a, _)| a.ip).collect();
        ips.sort();
        ips
    }

    /// Whether node `name` is Ready, as `get nodes` shows it.
    pub(super) fn ready(&mut self, name: &str) -> bool {
        match self.ok(Request::GetNodes) {
            Response::Nodes(nodes) => nodes.iter().find(|n| n.name == name).expect("node").ready,
            other => panic!("{other:?}"),
        }
    }
}

/// The node password digest fake node `name` joins with.
pub(super) fn password_of(name: &str) -> PasswordDigest {
    PasswordDigest::of(&format!("password of {name}"))
}

/// A pod spec running `sleep`.
pub(super) fn pod(name: &str) -> PodSpec {
    PodSpec {
        name: name.into(),
        namespace: "default".into(),
        labels: [("app".to_string(), name.to_string())].into(),
        template: crate::model::PodTemplate {
            command: vec!["sleep".into(), "infinity".into()],
            ports: Vec::new(),
            readiness: None,
            host_ports: Vec::new(),
            security: Default::default(),
            image: None,
            resources: Default::default(),
            container: None,
        },
        restart_policy: RestartPolicy::Always,
        owner: None,
        node_name: None,
        annotations: Default::default(),
        attachment: None,
    }
}

/// A pod pinned to `node`.
pub(super) fn pinned(name: &str, node: &str) -> PodSpec {
    PodSpec { node_name: Some(node.into()), ..pod(name) }
}

/// A deployment of `replicas` sleeping pods, labelled app=`name`.
pub(super) fn deployment(name: &str, replicas: u32) -> DeploymentSpec {
    DeploymentSpec {
        name: name.into(),
        namespace: "default".into(),
        replicas,
        template: crate::model::PodTemplate {
            command: vec!["sleep".into(), "infinity".into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An Opaque Secret `name` holding password=hunter2.
pub(super) fn opaque_secret(name: &str) -> crate::model::secret::SecretSpec {
    crate::model::secret::SecretSpec {
        name: name.into(),
        namespace: "default".into(),
        secret_type: crate::model::secret::SecretType::Opaque,
        data: [("password".to_string(), b"hunter2".to_vec())].into(),
        labels: Default::default(),
        annotations: Default::default(),
    }
}

/// A ClusterIP service selecting app=`app` on port 80.
pub(super) fn service(name: &str, app: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        namespace: "default".into(),
        cluster_ip: ClusterIpRequest::Auto,
        ports: vec![ServicePort {
            name: None,
            port: 80,
            target_port: TargetPort::Number(8080),
            protocol: Protocol::Tcp,
            node_port: None,
        }],
        selector: [("app".to_string(), app.to_string())].into(),
        session_affinity: SessionAffinity::None,
        external_name: None,
        service_type: ServiceType::ClusterIP,
        labels: Default::default(),
        annotations: Default::default(),
    }
}

/// A NodePort service, with `node_port` or an allocated one.
pub(super) fn node_port_service(name: &str, app: &str, node_port: Option<u16>) -> ServiceSpec {
    let mut spec = service(name, app);
    spec.service_type = ServiceType::NodePort;
    spec.ports[0].node_port = node_port;
    spec
}
