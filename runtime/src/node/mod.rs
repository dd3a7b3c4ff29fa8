//! The node runtime — what the kubelet and kube-proxy are to Kubernetes: it
//! runs the pods the control plane assigns to this node (sandbox, process,
//! restarts, readiness), and programs this node's switch with the cluster's
//! services and DNS records. It owns the data plane.

mod cni;
pub mod container;
mod diff;
mod error;
mod events;
mod image_pods;
mod local;
pub mod log_follow;
pub mod pod;
mod pods;
mod ports;
pub mod probe;
mod start_backoff;
mod tables;
mod zone;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netstack::service::{ServiceConfig, Timeouts};
use netstack::switch::{PortKind, PortSpec, SwitchConfig};
use netstack::wire::EthernetAddress;
use tokio::sync::mpsc;

use crate::config::{Cidr, NodeConfig};
use crate::dataplane::Dataplane;
use crate::dataplane::tap;
use crate::node::pod::mac_for;
use crate::sys::netlink::{LinkSetup, Netlink};
use crate::sys::random;

pub use error::NodeError;
pub use image_pods::ContainerStart;
use pods::LocalPod;
pub use pods::{Exit, ProbeResult};

/// How a node runtime is set up.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Node name.
    pub name: String,
    /// Board config (cluster-wide keys must match the control plane's).
    pub config: NodeConfig,
    /// This node's pod subnet, as the control plane assigned it.
    pub subnet: Cidr,
    /// Where pod logs live.
    pub data_dir: PathBuf,
    /// Host paths pods must not see (control socket, data dir, token).
    pub hidden: Vec<PathBuf>,
}

/// The node runtime's state.
pub struct NodeRuntime {
    options: NodeOptions,
    gateway: Ipv4Addr,
    dataplane: Dataplane,
    pods: BTreeMap<String, LocalPod>,
    /// Pods that failed to start, waiting to be tried again.
    start_failures: start_backoff::StartFailures,
    /// Pod sandboxes an agent that did not stop cleanly left, found at start.
    leftovers: Vec<String>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    /// Exits of pod commands, for the event loop.
    pub exits: mpsc::UnboundedReceiver<Exit>,
    probes_tx: mpsc::UnboundedSender<ProbeResult>,
    /// Readiness probe outcomes, for the event loop.
    pub probes: mpsc::UnboundedReceiver<ProbeResult>,
    containers_tx: mpsc::UnboundedSender<ContainerStart>,
    /// Answers of container start tasks, for the event loop.
    pub containers: mpsc::UnboundedReceiver<ContainerStart>,
    /// The node's image store, which image pods are run from.
    images: crate::image::Images,
    /// The OCI runtime image pods run with, or why there is none.
    oci_runtime: Result<std::sync::Arc<container::OciRuntime>, String>,
    /// Container starts, and failed ones by reason.
    container_counts: image_pods::ContainerCounts,
    /// Whether container directories of pods gone meanwhile were swept.
    pod_dirs_swept: bool,
    /// The Services the switch's service table was programmed from (shared
    /// with the control plane), to push only what changes.
    services_pushed: Vec<diff::Served>,
    /// Whether the cluster DNS address's TCP entry is in the service table.
    dns_tcp_pushed: bool,
    /// What the switch's DNS zone holds and refused.
    zone: zone::ZoneSync,
    /// The overlay peers the switch holds.
    peers_pushed: Vec<netstack::overlay::OverlayPeer>,
    /// What the switch's NetworkPolicy table was compiled from (None: not
    /// programmed yet).
    policy_pushed: Option<crate::policy::PolicyInputs>,
    /// The peer records last seen, and the usable overlay peers made of them
    /// (the config's static ones first); None until the first sync.
    peers_usable: Option<(Vec<crate::desired::PeerNode>, Vec<netstack::overlay::OverlayPeer>)>,
    /// Node ports, LoadBalancer ports and host ports, and what they forward to.
    proxies: crate::listeners::proxy::Proxies,
    forwards: BTreeMap<crate::listeners::proxy::ListenKey, crate::listeners::proxy::Forward>,
    /// The Ingress proxy.
    ingress: crate::ingress::IngressServer,
    /// Pod egress; stopped on drop.
    egress: crate::dataplane::egress::Egress,
    /// Where the agent answers DNS over TCP (on the gateway address).
    dns_tcp_port: u16,
    /// Upstream resolvers and how long they may take.
    upstream: std::sync::Arc<[std::net::SocketAddr]>,
    dns_deadline: Duration,
}

impl NodeRuntime {
    /// Starts the data plane, plugs the node's own port into it, and starts
    /// the DNS relay and the DNS-over-TCP listener.
    pub async fn start(options: NodeOptions, images: crate::image::Images) -> Result<NodeRuntime, NodeError> {
        // The kubelet's protection from the OOM killer: under memory pressure
        // the kernel kills pods (`process::POD_OOM_SCORE_ADJ`) before the
        // agent that serves every other pod.
        if let Err(e) = pod::process::set_own_oom_score_adj(pod::process::AGENT_OOM_SCORE_ADJ) {
            tracing::warn!(
                "cannot set the agent's oom_score_adj to {}: {e} (needs CAP_SYS_RESOURCE); under memory pressure the kernel may kill the agent before pods",
                pod::process::AGENT_OOM_SCORE_ADJ
            );
        }
        let logs = options.data_dir.join("logs");
        pod::log::private_dir(&logs).map_err(|source| NodeError::LogDir { dir: logs, source })?;
        let config = &options.config;
        let net = &config.network;
        let limits = &config.limits;
        let subnet = options.subnet;
        let gateway = subnet.nth(1);
        let (upstream_tx, upstream_rx) = mpsc::channel(1024);
        let dataplane = Dataplane::start(
            SwitchConfig {
                subnet: subnet.ipv4(),
                max_ports: limits.max_pods + 1,
                service_cidr: net.service_cidr.ipv4(),
                services: ServiceConfig {
                    max_services: limits.max_services,
                    max_backends: limits.max_backends,
                    max_flows: limits.max_flows,
                    max_flows_per_pod: limits.flows_per_pod(),
                    max_affinities: limits.max_affinities,
                    timeouts: Timeouts::default(),
                    hash_seed: random::seed()?,
                },
                cluster_dns: net.cluster_dns,
                dns: zone::zone_config(config),
                overlay: netstack::overlay::OverlayConfig {
                    cluster_cidr: net.cluster_cidr.ipv4(),
                    vtep_mac: netstack::overlay::vtep_mac(subnet.ipv4()),
                    vni: config.cluster.vni,
                    udp_port: config.cluster.vxlan_port,
                    ..Default::default()
                },
            },
            upstream_tx,
            config.dataplane.threads(),
        )
        .map_err(NodeError::Dataplane)?;

        let host_fd = tap::open(&net.host_interface, dataplane.threads())
            .map_err(|source| NodeError::HostInterface { name: net.host_interface.clone(), source })?;
        let netlink = Netlink::open().map_err(NodeError::Netlink)?;
        netlink
            .configure(&LinkSetup {
                name: net.host_interface.clone(),
                mac: mac_for(gateway),
                mtu: config.pod_mtu(),
                txqueuelen: tap::QUEUE_LEN,
                address: (gateway, subnet.prefix_len()),
                gateway: None,
            })
            .await
            .map_err(|source| NodeError::Configure { name: net.host_interface.clone(), source })?;
        // ClusterIPs are reachable from the node too, as kube-proxy makes them.
        netlink
            .add_route(&net.host_interface, net.service_cidr.ipv4().address(), net.service_cidr.prefix_len())
            .await
            .map_err(|source| NodeError::Route {
                cidr: net.service_cidr,
                interface: net.host_interface.clone(),
                source,
            })?;
        let spec =
            PortSpec { kind: PortKind::Host, mac: EthernetAddress(mac_for(gateway)), ip: gateway.into() };
        dataplane.attach(spec, host_fd).await.map_err(NodeError::AttachHost)?;
        if config.overlay_enabled() {
            start_overlay(config, &dataplane, &netlink).await?;
        }

        // Names outside the cluster zone go to the node's own resolvers.
        let servers = match net.upstream_dns.is_empty() {
            true => crate::listeners::upstream::nameservers(Path::new("/etc/resolv.conf")),
            false => net.upstream_dns.clone(),
        };
        if servers.is_empty() {
            tracing::warn!(
                "no upstream DNS resolver (network.upstream_dns, /etc/resolv.conf): pods get SERVFAIL for outside names"
            );
        }
        let dns_deadline = Duration::from_millis(net.dns_timeout_ms);
        tokio::spawn(crate::listeners::upstream::relay(
            upstream_rx,
            servers.clone(),
            dns_deadline,
            dataplane.handle(),
        ));
        let dns_tcp = crate::listeners::dns_tcp::bind(gateway).await.map_err(NodeError::DnsTcp)?;
        let dns_tcp_port = dns_tcp.local_addr()?.port();
        tokio::spawn(crate::listeners::dns_tcp::serve(
            dns_tcp,
            dataplane.handle(),
            crate::listeners::upstream::addresses(&servers),
            dns_deadline,
            crate::listeners::limits::Caps::listener(limits),
        ));

        let egress_limits = crate::dataplane::egress::EgressLimits {
            connections: limits.max_proxied_connections as usize,
            connections_per_pod: limits.egress_connections_per_pod() as usize,
            flows: limits.max_proxied_udp_flows as usize,
            flows_per_pod: limits.egress_udp_flows_per_pod() as usize,
            pings: limits.max_egress_pings as usize,
        };
        let egress = crate::dataplane::egress::start(&dataplane, mac_for(gateway), egress_limits)
            .await
            .map_err(NodeError::Egress)?;
        let proxies = crate::listeners::proxy::Proxies::new(crate::listeners::proxy::Limits::new(limits));
        let ingress = crate::ingress::IngressServer::new(&config.ingress, &net.host_interface);

        let (exits_tx, exits) = mpsc::unbounded_channel();
        let (probes_tx, probes) = mpsc::unbounded_channel();
        let (containers_tx, containers) = mpsc::unbounded_channel();
        let configured = options.config.pods.runtime.clone();
        let oci_runtime =
            tokio::task::spawn_blocking(move || container::OciRuntime::detect(configured.as_deref()))
                .await?
                .map(std::sync::Arc::new)
                .map_err(|e| e.to_string());
        match &oci_runtime {
            Ok(runtime) => tracing::info!("image pods run with {}", runtime.describe()),
            Err(why) => tracing::info!("image pods cannot run: {why}"),
        }
        let leftovers = pods::leftover_sandboxes(&options.name);
        let start_failures = start_backoff::StartFailures::new(Duration::from_millis(
            options.config.pods.restart_backoff_max_ms,
        ));
        Ok(NodeRuntime {
            options,
            gateway,
            dataplane,
            pods: BTreeMap::new(),
            start_failures,
            leftovers,
            exits_tx,
            exits,
            probes_tx,
            probes,
            containers_tx,
            containers,
            images,
            oci_runtime,
            pod_dirs_swept: false,
            container_counts: Default::default(),
            services_pushed: Vec::new(),
            dns_tcp_pushed: false,
            zone: zone::ZoneSync::default(),
            peers_pushed: Vec::new(),
            policy_pushed: None,
            peers_usable: None,
            proxies,
            forwards: BTreeMap::new(),
            ingress,
            egress,
            dns_tcp_port,
            upstream: crate::listeners::upstream::addresses(&servers),
            dns_deadline,
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// Stops every pod and removes every sandbox; the data plane goes with
    /// `self` (closing the TAPs removes them).
    pub async fn shutdown(mut self) {
        let pods: Vec<LocalPod> = std::mem::take(&mut self.pods).into_values().collect();
        futures::future::join_all(pods.into_iter().map(|pod| self.teardown(pod, false))).await;
    }
}

/// The VXLAN overlay: the UDP socket on the node's underlay as the switch's
/// overlay port, and the node's route to the whole cluster CIDR through its
/// switch port (remote pods sit behind the VTEP). Peers come later, from the
/// config's static list and from the control plane.
async fn start_overlay(
    config: &NodeConfig,
    dataplane: &Dataplane,
    netlink: &Netlink,
) -> Result<(), NodeError> {
    let cluster = &config.cluster;
    let net = &config.network;
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, cluster.vxlan_port))
        .map_err(|source| NodeError::OverlayBind { port: cluster.vxlan_port, source })?;
    crate::dataplane::overlay::tune(&socket);
    dataplane.attach_overlay(socket, cluster.vxlan_port).await.map_err(NodeError::AttachOverlay)?;
    netlink
        .add_route(&net.host_interface, net.cluster_cidr.ipv4().address(), net.cluster_cidr.prefix_len())
        .await
        .map_err(|source| NodeError::Route {
            cidr: net.cluster_cidr,
            interface: net.host_interface.clone(),
            source,
        })?;
    tracing::info!(
        "overlay: VXLAN VNI {} on UDP {}, {} static peers, pod MTU {}",
        cluster.vni,
        cluster.vxlan_port,
        cluster.peers.len(),
        config.pod_mtu()
    );
    Ok(())
}
