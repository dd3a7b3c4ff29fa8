//! The VXLAN overlay's tables: which node owns which pod subnet, where its
//! VTEP is on the underlay, and the VXLAN parameters this node speaks.
//!
//! The design is flannel's `vxlan` backend, without a kernel device: each
//! node is a VTEP whose MAC is derived from its pod subnet; a frame to a pod
//! of another node leaves with its inner Ethernet header rewritten to
//! (local VTEP MAC → peer VTEP MAC) and is sent in VXLAN over UDP to the
//! peer's underlay address; a frame arriving from a peer is accepted only if
//! its inner source address lies in *that* peer's subnet, and is delivered
//! to a local pod, both pod addresses unchanged (no NAT). The switch side is
//! in `switch/overlay.rs`; the control plane programs the peer set with
//! [`crate::switch::Switch::set_overlay_peers`]. What the overlay sends is
//! planned in [`transmit`], what it delivers to pods coalesced in
//! [`deliver`]; the runtime makes the system calls.

pub mod deliver;
pub mod transmit;
#[cfg(test)]
mod transmit_tests;

use alloc::vec::Vec;
use core::fmt;

use crate::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr, ipv4_of, vxlan};

/// Another node, as the overlay sees it. Family-generic, as the flow and
/// service keys are; netstack is built for IPv4, so every peer is IPv4 today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverlayPeer {
    /// The node's pod subnet (10.244.N.0/24); inside the cluster CIDR.
    pub subnet: IpCidr,
    /// The node's address on the underlay (its LAN address), where its VXLAN
    /// socket listens and from which its VXLAN packets come.
    pub underlay: IpAddress,
    /// The node's VTEP MAC: the inner destination MAC of frames sent to it.
    /// For podnet nodes, [`vtep_mac`] of its subnet; for a Linux vxlan
    /// device, that device's MAC.
    pub vtep_mac: EthernetAddress,
}

impl OverlayPeer {
    /// A podnet node owning `subnet` at `underlay`: its VTEP MAC follows
    /// podnet's MAC scheme ([`crate::mac::vtep`]), which is IPv4's.
    pub fn podnet(subnet: Ipv4Cidr, underlay: Ipv4Address) -> OverlayPeer {
        OverlayPeer { subnet: subnet.into(), underlay: underlay.into(), vtep_mac: crate::mac::vtep(subnet) }
    }
}

/// The overlay parameters of a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlayConfig {
    /// The whole cluster's pod range. With an overlay port attached, a
    /// destination in it but outside the node subnet is another node's pod:
    /// it goes to that node's peer, or is dropped when no peer owns it.
    pub cluster_cidr: Ipv4Cidr,
    /// This node's VTEP MAC: the inner source MAC of what it sends.
    pub vtep_mac: EthernetAddress,
    /// The VXLAN network identifier (24 bits) sent and required on receipt.
    pub vni: u32,
    /// Capacity of the peer table (nodes in the cluster, minus one).
    pub max_peers: u16,
    /// The UDP port every node's VXLAN socket listens on: pods may not
    /// send to it on a peer (see [`crate::switch::DropReason::OverlayBypass`]).
    pub udp_port: u16,
}

impl Default for OverlayConfig {
    /// Kubernetes' cluster CIDR 10.244.0.0/16, the VTEP MAC of the default
    /// node subnet 10.244.0.0/24, VNI 1 and UDP port 8472 (flannel's), 255
    /// peers.
    fn default() -> Self {
        OverlayConfig {
            cluster_cidr: Ipv4Cidr::new(Ipv4Address::new(10, 244, 0, 0), 16),
            vtep_mac: vtep_mac(Ipv4Cidr::new(Ipv4Address::new(10, 244, 0, 0), 24)),
            vni: 1,
            max_peers: 255,
            udp_port: vxlan::DEFAULT_PORT,
        }
    }
}

pub use crate::mac::vtep as vtep_mac;

/// Why a peer set was refused. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayError {
    /// More peers than `max_peers`.
    TooManyPeers,
    /// A peer's subnet is not inside the cluster CIDR.
    OutsideClusterCidr(IpCidr),
    /// A peer's subnet overlaps this node's own subnet.
    OverlapsLocalSubnet(IpCidr),
    /// Two peers' subnets overlap.
    OverlappingPeers(IpCidr, IpCidr),
    /// Two peers share an underlay address.
    DuplicateUnderlay(IpAddress),
    /// An underlay address that is not a unicast address.
    BadUnderlay(IpAddress),
    /// A VTEP MAC that is not a unicast address.
    BadVtepMac(EthernetAddress),
}

impl fmt::Display for OverlayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverlayError::TooManyPeers => f.write_str("too many overlay peers for the switch's peer table (OverlayConfig::max_peers, not a board-config key)"),
            OverlayError::OutsideClusterCidr(s) => write!(f, "peer subnet {s} is outside the cluster CIDR"),
            OverlayError::OverlapsLocalSubnet(s) => write!(f, "peer subnet {s} overlaps the node subnet"),
            OverlayError::OverlappingPeers(a, b) => write!(f, "peer subnets {a} and {b} overlap"),
            OverlayError::DuplicateUnderlay(ip) => write!(f, "two peers have the underlay address {ip}"),
            OverlayError::BadUnderlay(ip) => write!(f, "peer underlay address {ip} is not unicast"),
            OverlayError::BadVtepMac(mac) => write!(f, "peer VTEP MAC {mac} is not unicast"),
        }
    }
}

impl core::error::Error for OverlayError {}

/// Checks a peer set as [`crate::switch::Switch::set_overlay_peers`] would
/// for a node owning `local` (capacity included), without a switch.
pub fn check_peers(
    peers: &[OverlayPeer],
    config: &OverlayConfig,
    local: Ipv4Cidr,
) -> Result<(), OverlayError> {
    PeerTable::new(config.max_peers).replace(peers, config.cluster_cidr, local)
}

/// The peer set, checked as a whole when replaced.
#[derive(Debug, Clone)]
pub(crate) struct PeerTable {
    peers: Vec<OverlayPeer>,
    capacity: usize,
}

impl PeerTable {
    pub(crate) fn new(capacity: u16) -> PeerTable {
        PeerTable { peers: Vec::with_capacity(usize::from(capacity)), capacity: usize::from(capacity) }
    }

    /// Replaces every peer with `peers`, or changes nothing and says why.
    pub(crate) fn replace(
        &mut self,
        peers: &[OverlayPeer],
        cluster: Ipv4Cidr,
        local: Ipv4Cidr,
    ) -> Result<(), OverlayError> {
        if peers.len() > self.capacity {
            return Err(OverlayError::TooManyPeers);
        }
        let (cluster, local) = (IpCidr::from(cluster), IpCidr::from(local));
        for (i, peer) in peers.iter().enumerate() {
            let subnet = network(peer.subnet);
            if !cluster.contains_subnet(&subnet) {
                return Err(OverlayError::OutsideClusterCidr(peer.subnet));
            }
            if overlaps(subnet, local) {
                return Err(OverlayError::OverlapsLocalSubnet(peer.subnet));
            }
            let ip = peer.underlay;
            if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ipv4_of(ip).is_loopback() {
                return Err(OverlayError::BadUnderlay(ip));
            }
            if !peer.vtep_mac.is_unicast() {
                return Err(OverlayError::BadVtepMac(peer.vtep_mac));
            }
            for other in &peers[..i] {
                if overlaps(subnet, other.subnet) {
                    return Err(OverlayError::OverlappingPeers(other.subnet, peer.subnet));
                }
                if other.underlay == ip {
                    return Err(OverlayError::DuplicateUnderlay(ip));
                }
            }
        }
        self.peers.clear();
        self.peers.extend(peers.iter().map(|p| OverlayPeer { subnet: network(p.subnet), ..*p }));
        Ok(())
    }

    pub(crate) fn peers(&self) -> &[OverlayPeer] {
        &self.peers
    }

    /// The peer whose VXLAN packets come from `underlay`.
    pub(crate) fn by_underlay(&self, underlay: Ipv4Address) -> Option<&OverlayPeer> {
        self.peers.iter().find(|p| p.underlay == IpAddress::Ipv4(underlay))
    }

    /// The peer owning pod address `ip`.
    pub(crate) fn by_destination(&self, ip: Ipv4Address) -> Option<&OverlayPeer> {
        self.peers.iter().find(|p| p.subnet.contains_addr(&IpAddress::Ipv4(ip)))
    }
}

/// `cidr` with its host bits cleared (smoltcp's `IpCidr` has no
/// `network`). Like [`ipv4_of`], a compile error once IPv6 is built in.
fn network(cidr: IpCidr) -> IpCidr {
    match cidr {
        IpCidr::Ipv4(v4) => IpCidr::Ipv4(v4.network()),
    }
}

fn overlaps(a: IpCidr, b: IpCidr) -> bool {
    a.contains_subnet(&b) || b.contains_subnet(&a)
}

/// Room the runtime leaves before a received VXLAN payload so that, once the
/// 8-byte VXLAN header is replaced by a 10-byte virtio-net header, the inner
/// frame is where a TAP write wants it: receive the UDP payload at
/// `buf[DECAP_HEADROOM..]` and hand `buf` to
/// [`crate::switch::Switch::process_overlay`].
pub const DECAP_HEADROOM: usize = crate::wire::vnet::HEADER_LEN - vxlan::HEADER_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(c: u8, prefix: u8) -> Ipv4Cidr {
        Ipv4Cidr::new(Ipv4Address::new(10, 244, c, 0), prefix)
    }

    fn peer(c: u8, last: u8) -> OverlayPeer {
        OverlayPeer {
            subnet: cidr(c, 24).into(),
            underlay: Ipv4Address::new(192, 168, 250, last).into(),
            vtep_mac: vtep_mac(cidr(c, 24)),
        }
    }

    fn replace(table: &mut PeerTable, peers: &[OverlayPeer]) -> Result<(), OverlayError> {
        table.replace(peers, cidr(0, 16), cidr(0, 24))
    }

    #[test]
    fn vtep_macs_follow_the_subnet() {
        assert_eq!(vtep_mac(cidr(1, 24)), EthernetAddress([0x0a, 0x58, 10, 244, 1, 0]));
        assert_eq!(vtep_mac(Ipv4Cidr::new(Ipv4Address::new(10, 244, 3, 77), 24)), vtep_mac(cidr(3, 24)));
        assert!(vtep_mac(cidr(1, 24)).is_unicast() && vtep_mac(cidr(1, 24)).is_local());
    }

    #[test]
    fn lookups_by_underlay_and_destination() {
        let mut table = PeerTable::new(4);
        replace(&mut table, &[peer(1, 3), peer(2, 4)]).unwrap();
        assert_eq!(table.by_underlay(Ipv4Address::new(192, 168, 250, 4)), Some(&peer(2, 4)));
        assert_eq!(table.by_underlay(Ipv4Address::new(192, 168, 250, 5)), None);
        assert_eq!(table.by_destination(Ipv4Address::new(10, 244, 1, 9)), Some(&peer(1, 3)));
        assert_eq!(table.by_destination(Ipv4Address::new(10, 244, 3, 9)), None);
        replace(&mut table, &[peer(2, 4)]).unwrap();
        assert_eq!(table.peers(), &[peer(2, 4)], "replaced as a whole");
    }

    #[test]
    fn bad_peer_sets_change_nothing() {
        let mut table = PeerTable::new(2);
        replace(&mut table, &[peer(1, 3)]).unwrap();
        let cases: [(&[OverlayPeer], OverlayError); 7] = [
            (&[peer(1, 3), peer(2, 4), peer(3, 5)], OverlayError::TooManyPeers),
            (
                &[OverlayPeer {
                    subnet: Ipv4Cidr::new(Ipv4Address::new(10, 1, 0, 0), 24).into(),
                    ..peer(1, 3)
                }],
                { OverlayError::OutsideClusterCidr(Ipv4Cidr::new(Ipv4Address::new(10, 1, 0, 0), 24).into()) },
            ),
            (&[peer(0, 3)], OverlayError::OverlapsLocalSubnet(cidr(0, 24).into())),
            (&[peer(1, 3), OverlayPeer { subnet: cidr(0, 23).into(), ..peer(1, 4) }], {
                OverlayError::OverlapsLocalSubnet(cidr(0, 23).into())
            }),
            (
                &[peer(1, 3), peer(1, 4)],
                OverlayError::OverlappingPeers(cidr(1, 24).into(), cidr(1, 24).into()),
            ),
            (
                &[peer(1, 3), peer(2, 3)],
                OverlayError::DuplicateUnderlay(Ipv4Address::new(192, 168, 250, 3).into()),
            ),
            (&[OverlayPeer { underlay: Ipv4Address::BROADCAST.into(), ..peer(1, 3) }], {
                OverlayError::BadUnderlay(Ipv4Address::BROADCAST.into())
            }),
        ];
        for (peers, err) in cases {
            assert_eq!(replace(&mut table, peers), Err(err));
            assert_eq!(table.peers(), &[peer(1, 3)]);
        }
        let multicast = OverlayPeer { vtep_mac: EthernetAddress::BROADCAST, ..peer(1, 3) };
        assert_eq!(
            replace(&mut table, &[multicast]),
            Err(OverlayError::BadVtepMac(EthernetAddress::BROADCAST))
        );
    }
}
