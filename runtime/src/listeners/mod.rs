//! What the node serves beyond the switch: node ports, LoadBalancer ports and
//! host ports (`proxy`, with `splice` moving their bytes), cluster DNS over
//! TCP (`dns_tcp`), the upstream DNS relay (`upstream`) and the Prometheus
//! endpoint (`metrics`). Every one of them accepts through one loop
//! (`accept`), admitted by per-client and total caps (`limits`).

pub mod accept;
pub mod dns_tcp;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod splice;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};

use proxy::ListenKey;

/// Why the node cannot listen where it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another socket holds the port.
    #[error("port {0} in use on the node")]
    InUse(ListenKey),
    /// The address is none of the node's.
    #[error("address {0} is not on the node")]
    NotOnNode(IpAddr),
    /// Any other refusal.
    #[error("cannot listen on {key}: {source}")]
    Listen {
        /// Where.
        key: ListenKey,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The metrics endpoint cannot bind.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// --metrics-addr.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
