//! The test cluster's addresses: node `n` owns pod subnet 10.244.n.0/24,
//! its gateway (host port) is .1, its pods .2 and up, and its underlay
//! address is 192.168.250.(10 + n). MACs follow podnet's scheme
//! ([`crate::mac`]).

use alloc::vec::Vec;

use crate::Instant;
use crate::mac;
use crate::overlay::OverlayPeer;
use crate::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

/// The time tests start at.
pub const NOW: Instant = Instant::ZERO;

/// An address and a port.
pub type Endpoint = (Ipv4Address, u16);

/// A ClusterIP in the default service CIDR.
pub const VIP: Ipv4Address = Ipv4Address::new(10, 96, 0, 10);

/// Pod `.last` of node `node`.
pub const fn pod_ip(node: u8, last: u8) -> Ipv4Address {
    Ipv4Address::new(10, 244, node, last)
}

/// The MAC of pod `.last` of node `node`.
pub const fn pod_mac(node: u8, last: u8) -> EthernetAddress {
    mac::of_ip(pod_ip(node, last))
}

/// Pod `.last` of node 0.
pub const fn ip(last: u8) -> Ipv4Address {
    pod_ip(0, last)
}

/// The MAC of pod `.last` of node 0 (`.1` is the gateway).
pub const fn mac(last: u8) -> EthernetAddress {
    pod_mac(0, last)
}

/// Node `node`'s pod subnet.
pub fn subnet(node: u8) -> Ipv4Cidr {
    Ipv4Cidr::new(pod_ip(node, 0), 24)
}

/// Node `node`'s underlay (LAN) address.
pub const fn underlay(node: u8) -> Ipv4Address {
    Ipv4Address::new(192, 168, 250, 10 + node)
}

/// Node `node` as another node's overlay sees it.
pub fn peer(node: u8) -> OverlayPeer {
    OverlayPeer::podnet(subnet(node), underlay(node))
}

/// Time `secs` seconds after [`NOW`].
pub fn at(secs: u64) -> Instant {
    Instant::from_secs(secs as i64)
}

/// `len` bytes of payload that repeat no short pattern, so a misplaced
/// segment shows.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect()
}
