//! NetworkPolicy on the switch's path: the first packet of a connection
//! that touches an isolated pod is judged by the node's [`PolicyTable`];
//! an admitted one opens a flow, so its later packets and its replies pass
//! on the flow table's lookup like any tracked packet, and cost no more
//! judging.
//!
//! Where each check sits (see `ipv4.rs`):
//! - direct pod traffic, untracked: judged after Service NAT found no flow,
//!   and tracked as an identity flow (both tuples untranslated);
//! - Service traffic: judged on the chosen backend when the NAT flow
//!   opens, as Kubernetes judges ClusterIP traffic after DNAT;
//! - UDP to the cluster DNS: judged before the switch answers, and not
//!   tracked (the switch's own reply needs no flow);
//! - across the overlay: the source's node judges egress, the destination's
//!   ingress (each holds every isolated pod, so each judges both).
//!
//! The node's gateway is exempt both ways (probes, node ports and
//! LoadBalancer traffic, which the agent proxies from the node), as
//! Kubernetes exempts a pod's own node. ICMP has no flow: each packet is
//! judged as a connection without ports, which only a rule without ports
//! admits.

use super::{DropReason, PortId, PortKind, Switch, Verdict};
use crate::Instant;
use crate::Protocol;
use crate::conntrack::{Flow, FlowKey, Owner, Refused, nat, tcp_flags};
use crate::policy::{Connection, Direction, Judgement, PolicyTable};
use crate::wire::{Ipv4Address, Ipv4Packet, ipv4_of};

impl Switch {
    /// Replaces the node's NetworkPolicy. New connections are judged by it
    /// at once; tracked flows it no longer admits are closed (Kubernetes
    /// lets an implementation keep or cut them; cutting is what a user who
    /// just denied something expects). Returns how many flows went.
    pub fn set_policy(&mut self, table: PolicyTable) -> usize {
        self.policy = table;
        let policy = &self.policy;
        self.conntrack.retain(|flow| policy.judge(&connection_of(flow)) == Judgement::Allowed)
    }

    /// The node's NetworkPolicy, read-only.
    pub fn policy(&self) -> &PolicyTable {
        &self.policy
    }

    /// Judges a packet from `src` to `dst` (`port`: protocol and destination
    /// port, none for ICMP) when policy isolates either end. A denial is
    /// counted on the destination pod as well when it is on this node.
    pub(super) fn police(
        &mut self,
        src: Ipv4Address,
        dst: Ipv4Address,
        port: Option<(Protocol, u16)>,
    ) -> Result<(), Verdict> {
        match self.policed(src, dst) {
            true => self.judged(src, dst, port),
            false => Ok(()),
        }
    }

    /// [`Self::police`] once [`Self::policed`] said policy has a say.
    pub(super) fn judged(
        &mut self,
        src: Ipv4Address,
        dst: Ipv4Address,
        port: Option<(Protocol, u16)>,
    ) -> Result<(), Verdict> {
        match self.policy.judge(&Connection { src, dst, port }) {
            Judgement::Allowed => Ok(()),
            Judgement::Denied(Direction::Egress) => Err(Verdict::Drop(DropReason::PolicyEgress)),
            Judgement::Denied(Direction::Ingress) => {
                if let Some((id, _)) = self.owner(dst)
                    && let Some(port) = self.port_mut(id)
                {
                    port.stats.ingress_denied += 1;
                }
                Err(Verdict::Drop(DropReason::PolicyIngress))
            }
        }
    }

    /// Judges the untracked, untranslated IPv4 packet `ip` that came in by
    /// `ingress` and, when admitted, tracks its connection so the rest of it
    /// and its replies pass without judging.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        ingress: PortId,
        kind: PortKind,
        ip: &[u8],
    ) -> Result<(), Verdict> {
        let packet = Ipv4Packet::new_unchecked(ip);
        let (src, dst) = (packet.src_addr(), packet.dst_addr());
        if !self.policed(src, dst) {
            return Ok(());
        }
        let Some((key, flags)) = nat::flow_key(&packet) else {
            return self.judged(src, dst, None);
        };
        self.judged(src, dst, Some((key.proto, key.dst_port)))?;
        if key.proto == Protocol::Tcp && flags & tcp_flags::RST != 0 {
            // A reset opens nothing.
            return Ok(());
        }
        // The pod the connection belongs to pays for its flow: the sender
        // when it is a pod, else the local receiver (the overlay port or the
        // egress endpoint must not hold every remote peer's flows in one
        // pod-sized quota).
        let owner = match kind {
            PortKind::Pod => ingress,
            _ => self.owner(dst).map_or(ingress, |(id, _)| id),
        };
        let reply = key.reversed();
        if !self.conntrack.is_free(&reply) {
            // A live Service flow holds the reply tuple (the pod reuses the
            // source port its ClusterIP connection was translated to): no
            // free tuple, as when NAT finds none.
            return Err(Verdict::Drop(DropReason::FlowTableFull));
        }
        match self.conntrack.insert(now, Owner(owner.0), key, reply) {
            Ok(_) => Ok(()),
            Err(Refused::TableFull) => Err(Verdict::Drop(DropReason::FlowTableFull)),
            Err(Refused::OverQuota) => Err(Verdict::Drop(DropReason::FlowQuota)),
        }
    }

    /// Whether policy has a say on traffic between `src` and `dst`: some
    /// pod is isolated, one of these is, and neither is the node itself.
    pub(super) fn policed(&self, src: Ipv4Address, dst: Ipv4Address) -> bool {
        !self.policy.is_empty()
            && src != self.gateway
            && dst != self.gateway
            && (self.policy.isolates(src) || self.policy.isolates(dst))
    }
}

/// The connection a flow carries as policy sees it: from the client to the
/// backend it was sent to (for an identity flow, its own destination).
fn connection_of(flow: &Flow) -> Connection {
    let (original, reply): (&FlowKey, &FlowKey) = (flow.original(), flow.reply());
    Connection {
        src: ipv4_of(original.src),
        dst: ipv4_of(reply.src),
        port: Some((reply.proto, reply.src_port)),
    }
}
