//! What the control plane asks of a node, and what a node reports back. The
//! same types travel in-process (one node) and over the cluster channel.

use std::net::IpAddr;
use std::sync::Arc;

use netstack::overlay::{OverlayConfig, OverlayPeer};
use serde::{Deserialize, Serialize};

use crate::config::Cidr;
use crate::model::ingress::Ingress;
use crate::model::secret::Secret;
use crate::model::{Endpoints, PodStatus, Service};
use crate::store::PodRecord;

/// Another node of the cluster, as the other nodes learn of it: its name,
/// pod subnet and address. A node turns each into an [`OverlayPeer`], the
/// switch's entry for it ([`overlay_peers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// Node name.
    pub node: String,
    /// Its pod subnet.
    pub subnet: Cidr,
    /// Its address on the network between nodes.
    pub address: IpAddr,
}

/// Everything one node must run and program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDesired {
    /// The pods this node runs.
    pub pods: Vec<PodRecord>,
    /// Every Service with its endpoints now: every node's switch and DNS
    /// serve all of them (shared with the control plane's versions: the
    /// server keeps one copy, not one per member).
    pub services: Vec<(Arc<Service>, Arc<Endpoints>)>,
    /// Every pod's address and namespace, for pod DNS records.
    pub pod_ips: Vec<(IpAddr, String)>,
    /// The other nodes.
    pub peers: Vec<PeerNode>,
    /// What the node compiles its NetworkPolicy table from (default: a
    /// member's cache from before policies reads as none).
    #[serde(default)]
    pub policy: crate::policy::PolicyInputs,
    /// Every Ingress: every node serves all of them.
    #[serde(default)]
    pub ingresses: Vec<Ingress>,
    /// The TLS Secrets podnet's Ingresses name (only those: a node gets no
    /// other Secret).
    #[serde(default)]
    pub secrets: Vec<Secret>,
}

/// The observed status of each of a node's pods, by uid.
pub type PodReport = Vec<(String, PodStatus)>;

/// What a node reports to the control plane: its pods' status and, when it
/// cannot serve podnet's Ingresses, why (a port another socket holds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Its pods' status.
    pub pods: PodReport,
    /// Why its Ingress ports are not served, if they are not.
    pub ingress_problem: Option<String>,
}

/// The overlay peer set of a node owning `local`: its static peers
/// (`fixed`), then each of the cluster's nodes in turn, skipped with a
/// warning when the overlay would refuse the set with it (a bad or
/// duplicate address, an overlapping subnet). One bad node record then
/// costs one peer, not the whole peer set.
pub fn overlay_peers(
    nodes: &[PeerNode],
    fixed: &[OverlayPeer],
    cluster_cidr: Cidr,
    local: Cidr,
) -> Vec<OverlayPeer> {
    let config =
        OverlayConfig { cluster_cidr: cluster_cidr.ipv4(), max_peers: u16::MAX, ..Default::default() };
    let mut set = fixed.to_vec();
    for peer in nodes {
        // The overlay's underlay is IPv4 (a member's IPv6 hello is refused).
        let IpAddr::V4(address) = peer.address else {
            tracing::warn!(node = %peer.node, address = %peer.address, "skipping an overlay peer with an IPv6 address");
            continue;
        };
        set.push(OverlayPeer::podnet(peer.subnet.ipv4(), address));
        match netstack::overlay::check_peers(&set, &config, local.ipv4()) {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(node = %peer.node, address = %peer.address, "skipping an unusable overlay peer: {e}");
                set.pop();
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(node: &str, subnet: [u8; 4], address: [u8; 4]) -> PeerNode {
        PeerNode { node: node.into(), subnet: Cidr::new(subnet.into(), 24), address: address.into() }
    }

    #[test]
    fn a_bad_peer_record_is_skipped_and_the_rest_kept() {
        let cluster = Cidr::new([10, 244, 0, 0].into(), 16);
        let local = Cidr::new([10, 244, 0, 0].into(), 24);
        let peers = vec![
            peer("a", [10, 244, 1, 0], [192, 168, 1, 2]),
            peer("zero", [10, 244, 2, 0], [0, 0, 0, 0]),
            peer("lo", [10, 244, 3, 0], [127, 0, 0, 1]),
            peer("mcast", [10, 244, 4, 0], [224, 0, 0, 1]),
            peer("bcast", [10, 244, 5, 0], [255, 255, 255, 255]),
            peer("twin", [10, 244, 6, 0], [192, 168, 1, 2]),
            peer("mine", [10, 244, 0, 0], [192, 168, 1, 9]),
            peer("b", [10, 244, 7, 0], [192, 168, 1, 3]),
        ];
        let fixed =
            [OverlayPeer::podnet(Cidr::new([10, 244, 9, 0].into(), 24).ipv4(), [192, 168, 1, 99].into())];
        let underlays: Vec<IpAddr> =
            overlay_peers(&peers, &fixed, cluster, local).into_iter().map(|p| p.underlay.into()).collect();
        let at = |a: [u8; 4]| IpAddr::from(a);
        assert_eq!(
            underlays,
            [at([192, 168, 1, 99]), at([192, 168, 1, 2]), at([192, 168, 1, 3])],
            "fixed, then a and b"
        );
    }
}
