//! The overlay port: pods of other nodes, reached in VXLAN (see
//! [`crate::overlay`] for the design).
//!
//! Out: after source checks and Service NAT, a destination in the cluster
//! CIDR but outside the node subnet is looked up in the peer table. The
//! inner Ethernet header becomes (local VTEP MAC → peer VTEP MAC) and the
//! verdict is [`Verdict::Encapsulate`]: the runtime completes offloads,
//! prepends the VXLAN header and sends it to the peer's underlay address.
//!
//! In: [`Switch::process_overlay`] takes a VXLAN payload with the address it
//! came from. The sender must be a peer, the VNI ours, the inner packet IPv4
//! from an address in *that* peer's subnet (a node speaks for its own pods
//! only) to an address on this node's subnet; then it takes the same path
//! as any other packet (Service un-NAT of replies, delivery with the
//! destination MAC rewritten), with the gateway's MAC as its source, as if
//! routed by the node.

use super::{DropReason, PortId, PortKind, PortSpec, Switch, Verdict};
use crate::Instant;
use crate::offload::gso;
use crate::overlay::{DECAP_HEADROOM, OverlayError, OverlayPeer};
use crate::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address, Ipv4Cidr,
    Ipv4Packet, ipv4_of, vnet, vxlan,
};

impl Switch {
    /// Replaces the overlay peer set: every other node of the cluster, with
    /// its pod subnet, underlay address and VTEP MAC. The whole set is
    /// checked first (capacity, subnets inside the cluster CIDR and apart
    /// from each other and from this node's, unicast addresses); on error
    /// nothing changes. Calling it again with the same set is harmless.
    pub fn set_overlay_peers(&mut self, peers: &[OverlayPeer]) -> Result<(), OverlayError> {
        self.peers.replace(peers, self.overlay.cluster_cidr, self.subnet)
    }

    /// The current overlay peers.
    pub fn overlay_peers(&self) -> &[OverlayPeer] {
        self.peers.peers()
    }

    /// This node's VTEP MAC.
    pub fn vtep_mac(&self) -> EthernetAddress {
        self.overlay.vtep_mac
    }

    /// The VXLAN network identifier this switch sends and accepts.
    pub fn vni(&self) -> u32 {
        self.overlay.vni
    }

    /// The cluster's pod range.
    pub fn cluster_cidr(&self) -> Ipv4Cidr {
        self.overlay.cluster_cidr
    }

    /// The overlay port, once attached.
    pub fn overlay_port(&self) -> Option<PortId> {
        self.overlay_port
    }

    /// Decides what to do with a VXLAN payload (VXLAN header, then the inner
    /// Ethernet frame) received from `from` on the underlay. `buf` holds it
    /// at offset [`DECAP_HEADROOM`]; on [`Verdict::Forward`] the first
    /// [`vnet::HEADER_LEN`] bytes of `buf` have become a virtio-net header
    /// (plain, or `NEEDS_CSUM` for an inner checksum the sender left partial) and all of `buf` is the frame to write to the egress TAP.
    /// Drops are counted on the overlay port, `UnknownPeer` for senders
    /// that are not peers.
    pub fn process_overlay(
        &mut self,
        now: Instant,
        from: Ipv4Address,
        buf: &mut [u8],
        reply: &mut [u8],
    ) -> Verdict {
        let Some(id) = self.overlay_port else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let Some(port) = self.port_mut(id) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        port.stats.rx_packets += 1;
        port.stats.rx_bytes += buf.len().saturating_sub(vnet::HEADER_LEN) as u64;
        let spec = port.spec;
        let verdict = self.decapsulate(now, id, &spec, from, buf, reply);
        self.account(id, buf.len(), verdict);
        verdict
    }

    fn decapsulate(
        &mut self,
        now: Instant,
        id: PortId,
        spec: &PortSpec,
        from: Ipv4Address,
        buf: &mut [u8],
        reply: &mut [u8],
    ) -> Verdict {
        let Some(peer_subnet) = self.peers.by_underlay(from).map(|p| p.subnet) else {
            return Verdict::Drop(DropReason::UnknownPeer);
        };
        let Some(datagram) = buf.get(DECAP_HEADROOM..) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        match vxlan::Packet::new_checked(datagram).and_then(|p| vxlan::Repr::parse(&p)) {
            Ok(repr) if repr.vni == self.overlay.vni => {}
            Ok(_) => return Verdict::Drop(DropReason::WrongVni),
            Err(_) => return Verdict::Drop(DropReason::Malformed),
        }
        // The VXLAN header becomes the virtio-net header of the inner frame:
        // plain, unless the sender left the checksum partial (see
        // `gso::partial_checksum`), which the pod is then told to complete.
        let inner = buf.get(vnet::HEADER_LEN..).unwrap_or_default();
        let offload = gso::partial_checksum(inner).unwrap_or(vnet::Repr::PLAIN);
        offload.emit(&mut vnet::Header::new_checked(&mut buf[..]).expect("longer than the headroom"));

        let Ok(mut eth) = EthernetFrame::new_checked(&mut buf[vnet::HEADER_LEN..]) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            // Peers have static neighbours (no ARP over the overlay) and
            // podnet carries IPv4 only.
            return Verdict::Drop(DropReason::UnsupportedProtocol);
        }
        let (src, dst) = match Ipv4Packet::new_checked(&*eth.payload_mut()) {
            Ok(ip) => (ip.src_addr(), ip.dst_addr()),
            Err(_) => return Verdict::Drop(DropReason::Malformed),
        };
        // Anti-spoofing: a node speaks for its own pods only (and for itself,
        // whose gateway address is in its subnet too).
        if !peer_subnet.contains_addr(&IpAddress::Ipv4(src)) {
            return Verdict::Drop(DropReason::SpoofedIp);
        }
        // No transit: the overlay delivers to this node's subnet only (never
        // to a Service address, never on to another peer).
        if !self.subnet.contains_addr(&dst) {
            return Verdict::Drop(DropReason::NoRoute);
        }
        let verdict = self.route_ipv4(now, id, spec, &offload, &mut eth, reply);
        match verdict {
            Verdict::Forward { .. } => {
                if let Some((_, gateway)) = self.owner(self.gateway) {
                    eth.set_src_addr(gateway.mac);
                }
                verdict
            }
            Verdict::Drop(_) => verdict,
            // Replies and DNS go back where a frame came from; the overlay
            // has no such way back here.
            Verdict::Reply { .. } | Verdict::Upstream(_) | Verdict::Encapsulate { .. } => {
                Verdict::Drop(DropReason::NoRoute)
            }
        }
    }

    /// The overlay's say on a packet to `dst` from a port of kind `from`,
    /// with source `src`: `None` when it is not for another node (or no
    /// overlay port is attached), else the verdict, with the inner MACs
    /// rewritten for an encapsulation.
    pub(super) fn overlay_egress(
        &self,
        from: PortKind,
        src: Ipv4Address,
        dst: Ipv4Address,
        eth: &mut EthernetFrame<&mut [u8]>,
    ) -> Option<Verdict> {
        self.overlay_port?;
        if from == PortKind::Overlay
            || self.subnet.contains_addr(&dst)
            || !self.overlay.cluster_cidr.contains_addr(&dst)
        {
            return None;
        }
        let Some(peer) = self.peers.by_destination(dst) else {
            return Some(Verdict::Drop(DropReason::NoRoute));
        };
        // The peer accepts sources in this node's subnet only; anything else
        // would be dropped there as spoofed.
        if !self.subnet.contains_addr(&src) {
            return Some(Verdict::Drop(DropReason::NoRoute));
        }
        eth.set_src_addr(self.overlay.vtep_mac);
        eth.set_dst_addr(peer.vtep_mac);
        Some(Verdict::Encapsulate { peer: ipv4_of(peer.underlay) })
    }

    /// Whether `ip` (an IPv4 packet from a pod) is UDP to the overlay's port
    /// of a peer node, or of the node itself through loopback. The egress
    /// path would send it from this node's own address, which the peer
    /// accepts as VXLAN: the pod could put any frame, with any source, on
    /// another node's pods. A later fragment carries no port, but neither
    /// egress nor the peer reassembles one without its first.
    pub(super) fn overlay_bypass(&self, ip: &[u8]) -> bool {
        let packet = Ipv4Packet::new_unchecked(ip);
        if packet.next_header() != IpProtocol::Udp || packet.frag_offset() != 0 {
            return false;
        }
        let dst = packet.dst_addr();
        if !dst.is_loopback() && self.peers.by_underlay(dst).is_none() {
            return false;
        }
        let udp = ip.get(usize::from(packet.header_len())..).unwrap_or_default();
        udp.get(2..4).is_some_and(|port| u16::from_be_bytes([port[0], port[1]]) == self.overlay.udp_port)
    }

    /// The remote pod address `ip` sits behind the overlay: the node asks
    /// for it (it routes the cluster CIDR to its switch port on-link) and is
    /// told the local VTEP MAC.
    pub(super) fn overlay_arp(&self, ip: Ipv4Address) -> Option<EthernetAddress> {
        self.overlay_port?;
        (!self.subnet.contains_addr(&ip) && self.peers.by_destination(ip).is_some())
            .then_some(self.overlay.vtep_mac)
    }
}
