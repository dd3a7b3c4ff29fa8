//! Pods on this node: their sandboxes (namespace, TAP, addresses) and their
//! processes.

pub mod adopt;
pub mod confine;
pub mod enter;
pub mod log;
pub mod mounts;
pub mod process;
pub mod sandbox;
pub mod seccomp;

use std::net::Ipv4Addr;

/// The MAC a pod (or gateway) with address `ip` gets, as bytes for
/// netlink: podnet's MAC scheme, [`netstack::mac::of_ip`].
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    netstack::mac::of_ip(ip).0
}

/// Name of the pod's named network namespace: `pn.<node>.<ns>.<pod>`. Dots
/// cannot appear in the RFC 1123 labels, so names never collide.
pub fn netns_name(node: &str, namespace: &str, pod: &str) -> String {
    format!("{}{namespace}.{pod}", netns_prefix(node))
}

/// The prefix every pod namespace of `node` starts with.
pub fn netns_prefix(node: &str) -> String {
    format!("pn.{node}.")
}
