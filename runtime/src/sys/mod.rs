//! The kernel interfaces the agent needs beyond sockets: named network
//! namespaces, rtnetlink, and the kernel's random source.

pub mod netlink;
pub mod netns;
pub mod random;
