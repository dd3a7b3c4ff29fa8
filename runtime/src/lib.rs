//! podnet's node agent: it owns the TAP file descriptors, the network
//! namespaces, the pod processes and the clock, and drives the sans-IO
//! netstack switch with them.
//!
//! The floors, bottom up:
//! - `sys` — the kernel: namespaces, netlink, randomness, and the only
//!   `unsafe` code of the crate (denied everywhere else).
//! - `dataplane` — the data plane's I/O: TAPs, the data-plane thread, the
//!   overlay socket, the egress endpoint.
//! - `listeners` — what the node serves to the outside and to pods: node
//!   ports and host ports (with their byte mover), DNS over TCP, the upstream
//!   DNS relay, metrics.
//! - `model`, `store`, `desired` — the objects, their saved form, and what the
//!   control plane asks of a node.
//! - `control` — the control plane (API server, scheduler, controllers).
//! - `node` — the node runtime (kubelet, kube-proxy): pods and their sandboxes.
//! - `cluster` — the channel between a cluster's server and its members.
//! - `image` — OCI images: pulls from registries, archive imports, the
//!   content store.
//! - `api` — the control socket the CLI talks to.
//! - `kube` — the Kubernetes API kubectl talks to, in front of the same
//!   request channel.
//! - `kubernetes` — a read-only client of a real Kubernetes API, for
//!   `node up --kubernetes`.
//! - `agent` — the event loop that joins them.

// Unsafe code lives in `sys`, behind safe wrappers; the few hooks that must
// run between fork and exec say so where they are allowed.
#![deny(unsafe_code)]

pub mod agent;
pub mod api;
pub mod cluster;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod desired;
mod error;
pub mod image;
pub mod ingress;
pub mod kube;
pub mod kubernetes;
pub mod listeners;
pub mod model;
pub mod node;
pub mod policy;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
pub mod url;
