//! podnet's node agent: it owns the TAP file descriptors, the network
//! namespaces, the pod processes and the clock, and drives the sans-IO
//! netstack switch with them.

pub mod agent;
pub mod api;
pub mod cluster;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod desired;
pub mod dns_tcp;
pub mod egress;
pub mod listeners;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod node;
pub mod overlay;
pub mod pod;
pub mod probe;
pub mod proxy;
pub mod random;
pub mod server;
pub mod services;
pub mod splice;
pub mod store;
pub mod tap;
pub mod upstream;
