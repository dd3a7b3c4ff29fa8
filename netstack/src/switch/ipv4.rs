//! IPv4 forwarding: source checks, then one egress port chosen by destination
//! address, with the destination MAC rewritten to the egress port's own (pods
//! address off-subnet traffic to the gateway's MAC; the switch is the router).

use super::{DropReason, PortKind, PortSpec, Switch, Verdict};
use crate::wire::{EthernetFrame, Ipv4Address, Ipv4Packet};

impl Switch {
    pub(super) fn route_ipv4(
        &self,
        ingress: &PortSpec,
        eth: &mut EthernetFrame<&mut [u8]>,
    ) -> Verdict {
        if eth.dst_addr().is_broadcast() || eth.dst_addr().is_multicast() {
            return Verdict::Drop(DropReason::Broadcast);
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let source_ok = match ingress.kind {
            PortKind::Pod => src == ingress.ip,
            // The node routes for others, but never in a pod's name.
            PortKind::Host => self
                .owner(src)
                .is_none_or(|(_, p)| p.kind == PortKind::Host),
        };
        if !source_ok {
            return Verdict::Drop(DropReason::SpoofedIp);
        }
        if dst.is_broadcast() || dst.is_multicast() || dst == self.broadcast() {
            return Verdict::Drop(DropReason::Broadcast);
        }

        let egress = if self.subnet.contains_addr(&dst) {
            match self.owner(dst) {
                Some((id, spec)) => (id, spec.mac),
                None => return Verdict::Drop(DropReason::NoSuchHost),
            }
        } else if ingress.kind == PortKind::Pod {
            // Off the subnet: the node's kernel, owner of the gateway address,
            // is the next hop.
            match self.owner(self.gateway) {
                Some((id, spec)) => (id, spec.mac),
                None => return Verdict::Drop(DropReason::NoRoute),
            }
        } else {
            // The node has its own routes for what is not on this subnet.
            return Verdict::Drop(DropReason::NoRoute);
        };
        eth.set_dst_addr(egress.1);
        Verdict::Forward { egress: egress.0 }
    }

    fn broadcast(&self) -> Ipv4Address {
        self.subnet.broadcast().unwrap_or(Ipv4Address::BROADCAST)
    }
}
