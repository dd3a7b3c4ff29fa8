//! IPv4 forwarding: source checks, cluster DNS, Service NAT, then one egress port chosen
//! by destination address, with the destination MAC rewritten to the egress
//! port's own (pods address off-subnet traffic to the gateway's MAC; the
//! switch is the router).
//!
//! UDP to the cluster DNS address, port 53, is answered there and then (see
//! `dns.rs`), whatever the Service table holds for that address.
//!
//! Any other TCP or UDP packet that passed the source checks goes through NAT first:
//! 1. a packet of a tracked flow, either way, is rewritten to the flow's
//!    other tuple (DNAT on the way to the backend, un-DNAT on the way back);
//! 2. an untracked packet to the service CIDR opens a flow: the service
//!    table picks a backend and the packet is DNAT'd to it — or, with no
//!    service or no ready backend at that port, refused with a TCP RST or an
//!    ICMP port unreachable from the VIP;
//! 3. an untracked packet that is not Service traffic is judged by
//!    NetworkPolicy when it touches an isolated pod (`policy.rs`), and
//!    tracked if admitted;
//! 4. the packet, rewritten or not, is routed by its destination.
//!
//! Hairpin: when a pod reaches its own Service and is chosen as the backend,
//! the DNAT'd packet would go from the pod to itself, and its kernel would
//! answer locally, never through the switch, so the client side would never
//! see a reply from the VIP. As kube-proxy masquerades such packets, podnet
//! SNATs their source to the VIP itself (OVN's default hairpin address): no
//! pod owns it, so no other flow can collide with it, the pod's reply goes
//! out its default route to the switch, and that reply is un-NAT'd back.
//! The backend sees the connection coming from the Service's address.

use super::{DropReason, PortId, PortKind, PortSpec, Switch, Verdict};
use crate::Instant;
use crate::Protocol;
use crate::conntrack::{Direction, FlowId, FlowKey, FlowState, Owner, Refused, nat, tcp_flags};
use crate::service::{Selection, ServiceKey, refuse};
use crate::wire::{
    ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame, IpAddress, Ipv4Address, Ipv4Packet, ipv4_of, vnet,
};

/// Source ports tried for a new flow's reply tuple before giving up.
const NAT_PORT_TRIES: u32 = 16;

/// The MACs of the frame being handled: (source, destination).
type Macs = (EthernetAddress, EthernetAddress);

impl Switch {
    pub(super) fn route_ipv4(
        &mut self,
        now: Instant,
        ingress_id: PortId,
        ingress: &PortSpec,
        offload: &vnet::Repr,
        eth: &mut EthernetFrame<&mut [u8]>,
        reply: &mut [u8],
    ) -> Verdict {
        if eth.dst_addr().is_broadcast() || eth.dst_addr().is_multicast() {
            return Verdict::Drop(DropReason::Broadcast);
        }
        let macs = (eth.src_addr(), eth.dst_addr());
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let source_ok = match ingress.kind {
            PortKind::Pod => IpAddress::Ipv4(src) == ingress.ip,
            // Never in a pod's name; and only from its own gateway address,
            // so what the node's kernel would forward from the LAN stays out.
            PortKind::Host if self.owner(src).is_some_and(|(_, p)| p.kind != PortKind::Host) => false,
            PortKind::Host if src != self.gateway => return Verdict::Drop(DropReason::NotFromNode),
            PortKind::Host => true,
            // The remote ends the endpoint stands for are off the subnet.
            PortKind::Egress => !self.subnet.contains_addr(&src) && !self.service_cidr.contains_addr(&src),
            // Checked against the sending peer's subnet by `process_overlay`.
            PortKind::Overlay => true,
        };
        if !source_ok {
            return Verdict::Drop(DropReason::SpoofedIp);
        }
        if dst.is_broadcast() || dst.is_multicast() || dst == self.broadcast() {
            return Verdict::Drop(DropReason::Broadcast);
        }

        let ip = ip.into_inner();
        if ingress.kind == PortKind::Pod && self.overlay_bypass(ip) {
            return Verdict::Drop(DropReason::OverlayBypass);
        }
        if ingress.kind == PortKind::Pod && (dst.is_loopback() || dst.octets()[0] == 0) {
            return Verdict::Drop(DropReason::MartianDestination);
        }
        if dst == self.cluster_dns
            && self.policed(src, dst)
            && let Err(verdict) = self.judged(src, dst, dns_port(ip))
        {
            return verdict;
        }
        if dst == self.cluster_dns
            && let Some(verdict) =
                self.dns_query(ingress_id, offload, macs, ip, vnet::HEADER_LEN + ETHERNET_HEADER_LEN, reply)
        {
            return verdict;
        }
        let translated = match self.service_nat(now, ingress_id, offload, ip, macs, reply) {
            Ok(translated) => translated,
            Err(verdict) => return verdict,
        };
        if translated.is_none()
            && let Err(verdict) = self.admit(now, ingress_id, ingress.kind, ip)
        {
            return verdict;
        }
        let dst = translated.map_or(dst, |t| ipv4_of(t.dst));
        let src = translated.map_or(src, |t| ipv4_of(t.src));
        if let Some(verdict) = self.overlay_egress(ingress.kind, src, dst, eth) {
            return verdict;
        }
        let (egress, mac) = match self.egress(ingress.kind, dst) {
            Ok(egress) => egress,
            Err(reason) => return Verdict::Drop(reason),
        };
        eth.set_dst_addr(mac);
        if let Some(t) = translated
            && self.service_cidr.contains_addr(&ipv4_of(t.src))
            && let Some((_, gateway)) = self.owner(self.gateway)
        {
            // From a VIP is from off the subnet: as routed by the gateway.
            eth.set_src_addr(gateway.mac);
        }
        Verdict::Forward { egress }
    }

    /// The port a packet to `dst` leaves by, and the MAC to send it to: the
    /// one place a destination becomes a port (backends on other nodes will
    /// resolve to the overlay port here).
    fn egress(&self, from: PortKind, dst: Ipv4Address) -> Result<(PortId, EthernetAddress), DropReason> {
        if self.subnet.contains_addr(&dst) {
            self.owner(dst).map(|(id, spec)| (id, spec.mac)).ok_or(DropReason::NoSuchHost)
        } else if from == PortKind::Pod {
            // Off the subnet: the egress endpoint, which re-originates the
            // traffic from the node; without one, the node's kernel (owner
            // of the gateway address) is the next hop.
            if let Some((id, port)) =
                self.egress.and_then(|id| Some((id, self.ports[id.0 as usize].as_ref()?)))
            {
                return Ok((id, port.spec.mac));
            }
            self.owner(self.gateway).map(|(id, spec)| (id, spec.mac)).ok_or(DropReason::NoRoute)
        } else {
            // The node has its own routes for what is not on this subnet.
            Err(DropReason::NoRoute)
        }
    }

    /// Service NAT for one IPv4 packet (`ip`, from its header to the end of
    /// the frame). Returns the tuple the packet now carries if it was
    /// rewritten, `None` if it is not Service traffic, or the verdict to stop
    /// with (a refusal in `reply`, or a drop).
    fn service_nat(
        &mut self,
        now: Instant,
        ingress: PortId,
        offload: &vnet::Repr,
        ip: &mut [u8],
        macs: Macs,
        reply: &mut [u8],
    ) -> Result<Option<FlowKey>, Verdict> {
        let packet = Ipv4Packet::new_unchecked(&*ip);
        let to_service = self.service_cidr.contains_addr(&packet.dst_addr());
        let Some((key, flags)) = nat::flow_key(&packet) else {
            return match to_service {
                true => Err(Verdict::Drop(DropReason::ServiceUnsupported)),
                false => Ok(None),
            };
        };
        // A partial checksum must sit where this code updates it.
        let partial = offload.flags & vnet::FLAG_NEEDS_CSUM != 0;
        let offload_ok = !partial
            || (usize::from(offload.csum_start) == ETHERNET_HEADER_LEN + usize::from(packet.header_len())
                && usize::from(offload.csum_offset) == nat::l4_checksum_offset(key.proto));

        let tracked = match self.conntrack.lookup(now, &key) {
            Some((id, dir)) if self.reopens(id, dir, flags) => {
                // A new SYN on a finished connection's tuple (the client
                // reused its port): a new connection, balanced afresh.
                self.conntrack.remove(id);
                None
            }
            other => other,
        };
        let to = match tracked {
            Some((id, dir)) => {
                self.conntrack.track(now, id, dir, flags);
                match self.conntrack.get(id) {
                    Some(flow) => flow.translated(dir),
                    None => return Ok(None),
                }
            }
            None if to_service => {
                if !offload_ok {
                    return Err(Verdict::Drop(DropReason::Malformed));
                }
                self.open_flow(now, Owner(ingress.0), &key, flags, &packet, macs, reply)?
            }
            None => {
                // A direct connection whose replies would match a finished
                // Service flow's (the client reused a port it had just used
                // for the ClusterIP, towards the same pod): the old flow goes,
                // or it would rewrite this connection's replies to the VIP.
                if let Some((id, Direction::Reply)) = self.conntrack.lookup(now, &key.reversed())
                    && self.reopens(id, Direction::Original, flags)
                {
                    self.conntrack.remove(id);
                }
                return Ok(None);
            }
        };
        if !offload_ok {
            return Err(Verdict::Drop(DropReason::Malformed));
        }
        if to != key {
            // An identity flow (policy tracking, no NAT) rewrites nothing.
            nat::rewrite(ip, &key, &to, partial);
        }
        Ok(Some(to))
    }

    /// True when a packet of flow `id` is a fresh SYN from the client on a
    /// connection that has closed.
    fn reopens(&self, id: FlowId, dir: Direction, flags: u8) -> bool {
        use tcp_flags::*;
        dir == Direction::Original
            && flags & (SYN | ACK | RST) == SYN
            && self
                .conntrack
                .get(id)
                .is_some_and(|f| matches!(f.state(), FlowState::Closing | FlowState::Closed))
    }

    /// Opens a flow for the first packet of a connection to a service, or
    /// refuses it. Returns the tuple the packet must be rewritten to.
    #[allow(clippy::too_many_arguments)]
    fn open_flow(
        &mut self,
        now: Instant,
        owner: Owner,
        key: &FlowKey,
        flags: u8,
        packet: &Ipv4Packet<&[u8]>,
        macs: Macs,
        reply: &mut [u8],
    ) -> Result<FlowKey, Verdict> {
        use tcp_flags::*;
        if key.proto == Protocol::Tcp && flags & (SYN | ACK | RST | FIN) != SYN {
            // Not a connection attempt, and no connection: answer as a
            // closed port does, so a client whose flow expired fails fast.
            return Err(refusal(key.proto, packet, macs, reply));
        }
        let service = ServiceKey { vip: key.dst, port: key.dst_port, proto: key.proto };
        let backend = match self.services.select(now, &service, key.src) {
            Selection::Backend(backend) => backend,
            Selection::NoService | Selection::NoBackend => {
                return Err(refusal(key.proto, packet, macs, reply));
            }
        };
        self.police(ipv4_of(key.src), ipv4_of(backend.ip), Some((key.proto, backend.port)))?;
        // Hairpin (see the module docs): the pod is its own backend.
        let source = if backend.ip == key.src { key.dst } else { key.src };
        let reply_key = (0..NAT_PORT_TRIES)
            .map(|i| FlowKey {
                proto: key.proto,
                src: backend.ip,
                src_port: backend.port,
                dst: source,
                dst_port: nat_port(key.src_port, i),
            })
            .find(|k| self.conntrack.is_free(k))
            .ok_or(Verdict::Drop(DropReason::FlowTableFull))?;
        self.conntrack.insert(now, owner, *key, reply_key).map_err(|refused| {
            Verdict::Drop(match refused {
                Refused::TableFull => DropReason::FlowTableFull,
                Refused::OverQuota => DropReason::FlowQuota,
            })
        })?;
        Ok(reply_key.reversed())
    }

    fn broadcast(&self) -> Ipv4Address {
        self.subnet.broadcast().unwrap_or(Ipv4Address::BROADCAST)
    }
}

/// The source port to try `attempt`-th for a flow from `port`: the client's
/// own first (no port translation in the common case), then scattered
/// unprivileged ports.
fn nat_port(port: u16, attempt: u32) -> u16 {
    if attempt == 0 {
        return port;
    }
    let mixed = u32::from(port).wrapping_mul(0x9e37_79b1).wrapping_add(attempt.wrapping_mul(0x85eb_ca6b));
    1024 + (mixed >> 16) as u16 % (u16::MAX - 1024)
}

/// The refusal of a connection to a service port nobody serves: a RST for
/// TCP, an ICMP port unreachable for UDP, built in `reply`.
fn refusal(proto: Protocol, packet: &Ipv4Packet<&[u8]>, macs: Macs, reply: &mut [u8]) -> Verdict {
    let (src_mac, dst_mac) = macs;
    let len = match proto {
        Protocol::Tcp => refuse::tcp_reset(dst_mac, src_mac, packet, reply),
        Protocol::Udp => refuse::port_unreachable(dst_mac, src_mac, packet, reply),
    };
    match len {
        Some(len) => Verdict::Reply { len },
        None => Verdict::Drop(DropReason::ServiceUnsupported),
    }
}

/// Protocol and destination port of a packet to the cluster DNS, as policy
/// judges it: UDP or TCP port 53 normally; none when it is neither.
fn dns_port(ip: &[u8]) -> Option<(Protocol, u16)> {
    nat::flow_key(&Ipv4Packet::new_unchecked(ip)).map(|(key, _)| (key.proto, key.dst_port))
}
