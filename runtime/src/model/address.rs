//! Addresses as the model holds them: `IpAddr`, so that dual-stack changes
//! no type, state file or message shape. Until the data path carries IPv6,
//! an IPv6 address is refused where it comes in (flags, manifests, board
//! configs, a member's hello), naming the field.

use std::net::{IpAddr, Ipv4Addr};

/// An IPv6 address given where only IPv4 works yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IPv6 is not supported yet: {field} = {addr}; use an IPv4 address")]
pub struct Ipv6Unsupported {
    /// The field or flag as the user knows it (`spec.clusterIP`, `--node-ip`).
    pub field: String,
    /// The address given.
    pub addr: IpAddr,
}

/// The IPv4 address `addr`, or the error naming `field` for an IPv6 one.
pub fn ipv4_only(field: &str, addr: IpAddr) -> Result<Ipv4Addr, Ipv6Unsupported> {
    match addr {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => Err(Ipv6Unsupported { field: field.to_string(), addr }),
    }
}

/// `addr` unchanged if it is IPv4 (for a field the model keeps as
/// `IpAddr`), or the error naming `field`.
pub fn refuse_ipv6(field: &str, addr: IpAddr) -> Result<IpAddr, Ipv6Unsupported> {
    ipv4_only(field, addr).map(IpAddr::V4)
}

/// `addr` as netstack's address type; None for IPv6, which netstack is not
/// built to carry yet (smoltcp without `proto-ipv6`). Inputs refuse IPv6,
/// so a None here is a hand-edited state file: the object is left out.
pub fn to_netstack(addr: IpAddr) -> Option<netstack::wire::IpAddress> {
    match addr {
        IpAddr::V4(v4) => Some(v4.into()),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_refused_naming_the_field_and_the_fix() {
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let err = refuse_ipv6("spec.clusterIP", v6).unwrap_err().to_string();
        assert_eq!(err, "IPv6 is not supported yet: spec.clusterIP = fd00::1; use an IPv4 address");
        let v4: IpAddr = "10.96.0.5".parse().unwrap();
        assert_eq!(refuse_ipv6("spec.clusterIP", v4), Ok(v4));
        assert_eq!(ipv4_only("x", v4), Ok(Ipv4Addr::new(10, 96, 0, 5)));
    }
}
