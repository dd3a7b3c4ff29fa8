//! What the switch decided about one frame.

use super::PortId;
use super::dns::DnsUpstream;
pub use crate::drop::DropReason;
use crate::wire::Ipv4Address;

/// The outcome of [`super::Switch::process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly rewritten) input frame out of `egress`.
    Forward {
        /// The port to send the frame to.
        egress: PortId,
    },
    /// Send the first `len` bytes of the reply buffer back out of the ingress port.
    Reply {
        /// Length of the reply, virtio-net header included.
        len: usize,
    },
    /// A cluster DNS query for a name outside the zone: relay the DNS
    /// message ([`DnsUpstream::query`], inside the input frame) to the
    /// upstream resolver, then answer the client with the frame
    /// [`super::Switch::dns_reply_frame`] builds from the response.
    /// Nothing has been sent; the input frame goes nowhere else.
    Upstream(DnsUpstream),
    /// Send the (rewritten) input frame to another node: complete its
    /// offloads, prepend a VXLAN header and send it to `peer`, the node's
    /// underlay address. Counted as sent on the overlay port.
    Encapsulate {
        /// The peer node's underlay address.
        peer: Ipv4Address,
    },
    /// Drop the frame; the reason has been counted on the ingress port.
    Drop(DropReason),
}
