//! One node's switch as tests and fuzz targets drive it: the host port at
//! `.1`, pods at `.2`, `.3` …, optionally an overlay port with peers.

use alloc::vec;
use alloc::vec::Vec;

use super::addr::{pod_ip, pod_mac, subnet};
use crate::Instant;
use crate::mac;
use crate::overlay::{OverlayConfig, OverlayPeer};
use crate::switch::{PortId, PortKind, PortSpec, Switch, SwitchConfig, Verdict};
use crate::wire::{EthernetAddress, Ipv4Address};

/// A node's switch and its ports.
pub struct Node {
    /// Which node: its subnet is 10.244.`n`.0/24.
    pub n: u8,
    /// The switch.
    pub switch: Switch,
    /// The host (gateway) port, `.1`.
    pub host: PortId,
    /// Pod `.2`.
    pub a: PortId,
    /// Pod `.3`.
    pub b: PortId,
    /// Every pod port, `.2` first.
    pub pods: Vec<PortId>,
    /// The overlay port, when attached.
    pub overlay: Option<PortId>,
}

/// The switch configuration of node `n`: its subnet and VTEP MAC, the rest
/// Kubernetes' defaults.
pub fn config(n: u8) -> SwitchConfig {
    SwitchConfig {
        subnet: subnet(n),
        overlay: OverlayConfig { vtep_mac: mac::vtep(subnet(n)), ..OverlayConfig::default() },
        ..SwitchConfig::default()
    }
}

impl Node {
    /// Node `config`'s subnet's switch with the host port and `pods` (at
    /// least two) pods attached.
    pub fn new(n: u8, pods: u8, config: SwitchConfig) -> Node {
        assert!(pods >= 2, "a node fixture has pods .2 and .3");
        let mut switch = Switch::new(config).expect("a valid test configuration");
        let mut attach = |kind, last| {
            switch
                .attach(PortSpec { kind, mac: pod_mac(n, last), ip: pod_ip(n, last).into() })
                .expect("room for the port")
        };
        let host = attach(PortKind::Host, 1);
        let pods: Vec<PortId> = (2..2 + pods).map(|last| attach(PortKind::Pod, last)).collect();
        Node { n, switch, host, a: pods[0], b: pods[1], pods, overlay: None }
    }

    /// [`Node::new`] plus an overlay port reaching `peers`.
    pub fn with_overlay(n: u8, pods: u8, config: SwitchConfig, peers: &[OverlayPeer]) -> Node {
        let mut node = Node::new(n, pods, config);
        let spec = PortSpec {
            kind: PortKind::Overlay,
            mac: EthernetAddress([0; 6]),
            ip: Ipv4Address::UNSPECIFIED.into(),
        };
        node.overlay = Some(node.switch.attach(spec).expect("room for the overlay port"));
        node.switch.set_overlay_peers(peers).expect("a valid peer set");
        node
    }

    /// The overlay port ([`Node::with_overlay`] attached it).
    pub fn overlay_port(&self) -> PortId {
        self.overlay.expect("a node with an overlay port")
    }

    /// The port of `.last` (`.1` is the host port).
    pub fn port(&self, last: u8) -> PortId {
        match last {
            1 => self.host,
            _ => self.pods[usize::from(last) - 2],
        }
    }

    /// Hands `frame` from `port` to the switch with a reply buffer of
    /// `reply_len` bytes; returns the verdict and the reply, if any.
    pub fn send(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &mut [u8],
        reply_len: usize,
    ) -> (Verdict, Vec<u8>) {
        let mut reply = vec![0u8; reply_len];
        let verdict = self.switch.process(now, port, frame, &mut reply);
        let len = match verdict {
            Verdict::Reply { len } => len,
            _ => 0,
        };
        reply.truncate(len);
        (verdict, reply)
    }
}
