//! The control plane driven by [`super::harness`]: a server and fake
//! members under simulated time.

mod cni;
mod configmaps;
mod endpoints;
mod ingresses;
mod members;
mod persistence;
mod policies;
mod ports;
mod replicas;
mod revisions;
mod scheduling;
mod sharing;
mod updates;
