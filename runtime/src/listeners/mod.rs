//! What the node serves beyond the switch: node ports, LoadBalancer ports and
//! host ports (`proxy`, with `splice` moving their bytes), cluster DNS over
//! TCP (`dns_tcp`), the upstream DNS relay (`upstream`) and the Prometheus
//! endpoint (`metrics`).

pub mod dns_tcp;
pub mod metrics;
pub mod proxy;
pub mod splice;
pub mod upstream;
