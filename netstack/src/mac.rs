//! podnet's MAC scheme, the one place it is coded (the runtime uses it for
//! the TAPs): every MAC podnet hands out is `0a:58` (locally administered,
//! unicast) followed by an IPv4 address, as Kubernetes' CNI plugins do, so
//! an address tells its MAC at a glance and no table is needed to find it.

use crate::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

/// The MAC of the interface at `ip`: a pod's, or a gateway's.
pub const fn of_ip(ip: Ipv4Address) -> EthernetAddress {
    let [a, b, c, d] = ip.octets();
    EthernetAddress([0x0a, 0x58, a, b, c, d])
}

/// The MAC the switch answers ARP with for ClusterIPs: `0a:58` like every
/// podnet MAC, and outside the `0a:58:0a:f4` pod range.
pub const SERVICE_ROUTER: EthernetAddress = EthernetAddress([0x0a, 0x58, 0xff, 0xff, 0xff, 0xfe]);

/// The VTEP MAC of the node owning `subnet`: the MAC of the subnet's
/// network address. No pod has it, since no pod has the network address.
pub fn vtep(subnet: Ipv4Cidr) -> EthernetAddress {
    of_ip(subnet.network().address())
}
