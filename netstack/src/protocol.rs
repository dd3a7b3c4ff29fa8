//! The transport protocol: one type for a tracked flow, a Service port, a
//! pod's container port and an SRV record name.

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

/// A transport protocol podnet carries. The discriminant is the IP protocol
/// number. With the `serde` feature it is (de)serialized as `"TCP"`/`"UDP"`
/// in text formats and as the variant index (TCP 0, UDP 1) in binary ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "TCP"))]
    Tcp = 6,
    /// UDP (IP protocol 17).
    #[cfg_attr(feature = "serde", serde(rename = "UDP"))]
    Udp = 17,
}

impl Protocol {
    /// The name as Kubernetes spells it: `TCP` or `UDP`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// The SRV label for the protocol, without its underscore.
    pub fn srv_label(self) -> &'static [u8] {
        match self {
            Protocol::Tcp => b"tcp",
            Protocol::Udp => b"udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A protocol name that is neither TCP nor UDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProtocol(pub String);

impl fmt::Display for UnknownProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol `{}` is not TCP or UDP", self.0)
    }
}

impl core::error::Error for UnknownProtocol {}

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    /// `TCP` or `UDP`, in any case.
    fn from_str(s: &str) -> Result<Protocol, UnknownProtocol> {
        if s.eq_ignore_ascii_case("TCP") {
            Ok(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("UDP") {
            Ok(Protocol::Udp)
        } else {
            Err(UnknownProtocol(String::from(s)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Protocol;
    use alloc::string::ToString;

    #[test]
    fn names_parse_back_in_any_case() {
        for p in [Protocol::Tcp, Protocol::Udp] {
            assert_eq!(p.to_string().parse::<Protocol>(), Ok(p));
            assert_eq!(p.name().to_ascii_lowercase().parse::<Protocol>(), Ok(p));
        }
        assert_eq!("sctp".parse::<Protocol>().unwrap_err().to_string(), "protocol `sctp` is not TCP or UDP");
    }

    #[test]
    fn the_discriminant_is_the_ip_protocol_number() {
        assert_eq!(Protocol::Tcp as u8, 6);
        assert_eq!(Protocol::Udp as u8, 17);
        assert!(Protocol::Tcp < Protocol::Udp, "the order state files were sorted in");
    }
}
