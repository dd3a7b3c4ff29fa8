//! NetworkPolicy compilation: from the cluster's policies, namespaces and
//! pods (what the control plane sends every node, [`PolicyInputs`]) to the
//! switch's [`PolicyTable`] — selectors resolved to pod addresses, named
//! ports to numbers. Pure: no I/O, so it is unit-tested without root; the
//! node runtime recompiles whenever the inputs change and pushes the table
//! to its switch (`node/tables.rs`).

mod compile;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::model::policy::NetworkPolicySpec;
use crate::model::{Labels, Protocol};

pub use compile::compile;
pub use netstack::policy::PolicyTable;

/// A pod as policy sees it: where it is, what it is labelled, and the
/// numbers of its named ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPod {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: Labels,
    /// Its named container ports: name, protocol, number.
    pub ports: Vec<(String, Protocol, u16)>,
}

/// Everything a node compiles its policy table from; the same for every
/// node (each adds its own gateway). Empty when no policy exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInputs {
    /// Every NetworkPolicy (policyTypes defaulted).
    pub policies: Vec<NetworkPolicySpec>,
    /// The labels of every namespace that has pods, `kubernetes.io/metadata.name` included.
    pub namespaces: Vec<(String, Labels)>,
    /// Every pod of the cluster.
    pub pods: Vec<PolicyPod>,
}
