//! The ARP responder: every address on the subnet is known, so requests are
//! answered from the table and never flooded.

use super::{DropReason, PortKind, PortSpec, Switch, Verdict};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, vnet,
};

pub use crate::mac::SERVICE_ROUTER as SERVICE_ROUTER_MAC;

impl Switch {
    pub(super) fn answer_arp(
        &self,
        ingress: &PortSpec,
        eth: &mut EthernetFrame<&mut [u8]>,
        reply: &mut [u8],
    ) -> Verdict {
        let Ok(repr) = ArpPacket::new_checked(&*eth.payload_mut()).and_then(|p| ArpRepr::parse(&p)) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = repr
        else {
            return Verdict::Drop(DropReason::UnsupportedProtocol);
        };
        if source_hardware_addr != ingress.mac {
            return Verdict::Drop(DropReason::SpoofedMac);
        }
        // The host kernel may ARP from any of its addresses; a pod only from its own.
        if ingress.kind == PortKind::Pod && IpAddress::Ipv4(source_protocol_addr) != ingress.ip {
            return Verdict::Drop(DropReason::SpoofedIp);
        }
        if operation != ArpOperation::Request {
            return Verdict::Drop(DropReason::UnsolicitedArp);
        }
        // ClusterIPs belong to no port: the node's kernel, which routes the
        // service range on-link, is told they sit behind the switch's own
        // service-router MAC. (Pods never ask: they send via the gateway.)
        let target_mac = match self.owner(target_protocol_addr) {
            Some((_, target)) => target.mac,
            None if self.service_cidr.contains_addr(&target_protocol_addr) => SERVICE_ROUTER_MAC,
            // Pods of other nodes sit behind the overlay's VTEP.
            None => match self.overlay_arp(target_protocol_addr) {
                Some(vtep) => vtep,
                None => return Verdict::Drop(DropReason::NoSuchHost),
            },
        };

        let answer = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: target_mac,
            source_protocol_addr: target_protocol_addr,
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        let eth_repr = EthernetRepr {
            src_addr: target_mac,
            dst_addr: source_hardware_addr,
            ethertype: EthernetProtocol::Arp,
        };
        let len = vnet::HEADER_LEN + eth_repr.buffer_len() + answer.buffer_len();
        let Some(out) = reply.get_mut(..len) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        vnet::Repr::PLAIN.emit(&mut vnet::Header::new_checked(&mut out[..]).expect("sized above"));
        let mut frame = EthernetFrame::new_unchecked(&mut out[vnet::HEADER_LEN..]);
        eth_repr.emit(&mut frame);
        answer.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        Verdict::Reply { len }
    }
}
