//! Name plumbing: the lowercased labels of a query name, the label rules
//! records are checked against, and the wire names answers point to.

use alloc::vec::Vec;

use domain::base::Name;
use domain::base::name::{ParsedName, ToLabelIter};

use crate::wire::Ipv4Address;

/// Longest domain name on the wire (RFC 1035 §2.3.4), length octets included.
pub(super) const MAX_NAME_WIRE: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub(super) const MAX_LABEL: usize = 63;
/// Longest port name (IANA_SVC_NAME in Kubernetes validation).
pub(super) const MAX_PORT_NAME: usize = 15;
/// A wire name has at most 127 non-root labels.
const MAX_LABELS: usize = 128;

/// The labels of a query name, lowercased into one stack buffer so that
/// matching is case-insensitive without allocating; the first is leftmost.
pub(super) struct Labels {
    buf: [u8; MAX_NAME_WIRE],
    spans: [(u8, u8); MAX_LABELS],
    count: usize,
}

impl Labels {
    /// Copies and lowercases the labels of `name`, root label excluded.
    /// `None` when the name breaks the wire limits (the parser should have
    /// refused it already; checked again so this never indexes out of range).
    pub(super) fn from_parsed<O: AsRef<[u8]>>(name: &ParsedName<O>) -> Option<Labels> {
        let mut labels = Labels { buf: [0; MAX_NAME_WIRE], spans: [(0, 0); MAX_LABELS], count: 0 };
        let mut used = 0usize;
        for label in name.iter_labels() {
            let bytes = label.as_slice();
            if bytes.is_empty() {
                continue; // the root label
            }
            if bytes.len() > MAX_LABEL || used + bytes.len() > MAX_NAME_WIRE || labels.count == MAX_LABELS {
                return None;
            }
            for (dst, src) in labels.buf[used..used + bytes.len()].iter_mut().zip(bytes) {
                *dst = src.to_ascii_lowercase();
            }
            labels.spans[labels.count] = (used as u8, bytes.len() as u8);
            labels.count += 1;
            used += bytes.len();
        }
        Some(labels)
    }

    /// Number of labels (the root not counted).
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Label `i`, counted from the left; empty when out of range.
    pub(super) fn get(&self, i: usize) -> &[u8] {
        if i >= self.count {
            return &[];
        }
        let (start, len) = self.spans[i];
        &self.buf[start as usize..start as usize + len as usize]
    }

    /// Whether the name ends with `suffix` (lowercase labels, leftmost first).
    pub(super) fn ends_with<S: AsRef<[u8]>>(&self, suffix: &[S]) -> bool {
        suffix.len() <= self.count
            && suffix.iter().enumerate().all(|(i, s)| self.get(self.count - suffix.len() + i) == s.as_ref())
    }
}

/// An RFC 1123 label as Kubernetes names use them: lowercase letters,
/// digits and inner hyphens, 1 to 63 bytes.
pub(super) fn is_dns_label(label: &[u8]) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && label.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && label.first() != Some(&b'-')
        && label.last() != Some(&b'-')
}

/// Whether a query label could ever match a stored one; anything else
/// (underscores aside, which SRV names use) is NXDOMAIN without a lookup.
pub(super) fn is_lookup_label(label: &[u8]) -> bool {
    label.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// The system-assigned hostname of an endpoint without one: its address
/// with dashes, `10-244-0-5`, as CoreDNS does.
pub(super) fn dashed(ip: Ipv4Address) -> ([u8; 15], usize) {
    let mut out = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().iter().enumerate() {
        if i > 0 {
            out[len] = b'-';
            len += 1;
        }
        len += write_decimal(*octet, &mut out[len..]);
    }
    (out, len)
}

fn write_decimal(mut value: u8, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 3];
    let mut n = 0;
    loop {
        digits[n] = b'0' + value % 10;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    n
}

/// Parses `a-b-c-d` (a pod name) into an address; strict decimal, so that
/// one pod has exactly one name.
pub(super) fn parse_dashed(label: &[u8]) -> Option<Ipv4Address> {
    let mut octets = [0u8; 4];
    let mut parts = label.split(|c| *c == b'-');
    for octet in octets.iter_mut() {
        *octet = parse_octet(parts.next()?)?;
    }
    match parts.next() {
        None => Some(Ipv4Address::from_octets(octets)),
        Some(_) => None,
    }
}

/// A decimal octet without leading zeros (`0`..`255`).
pub(super) fn parse_octet(text: &[u8]) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || (text.len() > 1 && text[0] == b'0') {
        return None;
    }
    let mut value = 0u16;
    for c in text {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u16::from(c - b'0');
    }
    u8::try_from(value).ok()
}

/// The wire length of `labels` followed by a name already in wire form.
pub(super) fn wire_len(labels: &[&[u8]], suffix_wire: &[u8]) -> usize {
    labels.iter().map(|l| 1 + l.len()).sum::<usize>() + suffix_wire.len()
}

/// `labels` followed by `suffix_wire` (a wire name ending in the root) as an
/// absolute name; `None` if the result breaks the wire limits.
pub(super) fn join(labels: &[&[u8]], suffix_wire: &[u8]) -> Option<Name<Vec<u8>>> {
    let mut wire = Vec::with_capacity(wire_len(labels, suffix_wire));
    for label in labels {
        if label.is_empty() || label.len() > MAX_LABEL {
            return None;
        }
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
    }
    wire.extend_from_slice(suffix_wire);
    Name::from_octets(wire).ok()
}

/// Converts a dotted name (`example.com`, a trailing dot allowed) into wire
/// form. Labels may hold letters of either case, digits, `-` and `_`.
pub(super) fn dotted_to_wire(text: &str) -> Option<Vec<u8>> {
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return None;
    }
    let mut wire = Vec::with_capacity(text.len() + 2);
    for label in text.as_bytes().split(|c| *c == b'.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_');
        if !ok {
            return None;
        }
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    (wire.len() <= MAX_NAME_WIRE).then_some(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_round_trips() {
        for ip in [
            Ipv4Address::new(10, 244, 0, 5),
            Ipv4Address::new(0, 0, 0, 0),
            Ipv4Address::new(255, 255, 255, 255),
            Ipv4Address::new(192, 168, 100, 9),
        ] {
            let (buf, len) = dashed(ip);
            assert_eq!(parse_dashed(&buf[..len]), Some(ip));
        }
        let (buf, len) = dashed(Ipv4Address::new(10, 244, 0, 5));
        assert_eq!(&buf[..len], b"10-244-0-5");
    }

    #[test]
    fn dashed_parsing_is_strict() {
        for bad in [
            &b"10-244-0"[..],
            b"10-244-0-5-1",
            b"10-244-00-5",
            b"10-244-0-256",
            b"10-244--5",
            b"a-b-c-d",
            b"",
            b"1000-1-1-1",
        ] {
            assert_eq!(parse_dashed(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn label_rules() {
        assert!(is_dns_label(b"web-svc"));
        assert!(is_dns_label(b"a"));
        assert!(is_dns_label(b"0abc"));
        assert!(!is_dns_label(b""));
        assert!(!is_dns_label(b"-web"));
        assert!(!is_dns_label(b"web-"));
        assert!(!is_dns_label(b"Web"));
        assert!(!is_dns_label(b"a.b"));
        assert!(!is_dns_label(b"a_b"));
        assert!(!is_dns_label(&[b'a'; 64]));
        assert!(is_dns_label(&[b'a'; 63]));
    }

    #[test]
    fn dotted_names_convert_to_wire() {
        assert_eq!(dotted_to_wire("Example.com.").unwrap(), b"\x07Example\x03com\x00");
        assert_eq!(dotted_to_wire("a").unwrap(), b"\x01a\x00");
        assert_eq!(dotted_to_wire(""), None);
        assert_eq!(dotted_to_wire("."), None);
        assert_eq!(dotted_to_wire("a..b"), None);
        assert_eq!(dotted_to_wire("a b.com"), None);
        let long = alloc::format!("{}.com", "a".repeat(64));
        assert_eq!(dotted_to_wire(&long), None);
        let labels = alloc::vec!["abcdefghi"; 26].join(".");
        assert!(dotted_to_wire(&labels).is_none(), "260 bytes on the wire");
    }

    #[test]
    fn join_refuses_over_long_names() {
        let label = [b'a'; 63];
        let zone = b"\x07cluster\x05local\x00";
        assert!(join(&[&label, &label, &label], zone).is_some());
        assert!(join(&[&label, &label, &label, &label], zone).is_none());
        assert!(join(&[b""], zone).is_none());
    }
}
