//! UDP size rules for responses the zone did not write itself (answers
//! relayed from the upstream resolver): how large a client accepts, and how a
//! response too large for it is cut.
//!
//! A UDP client accepts 512 bytes without EDNS0 (RFC 1035 §4.2.1), else the
//! buffer size in its OPT record (RFC 6891 §6.2.5). A larger response is cut
//! to its header, question section and OPT record with TC set (RFC 6891 §7:
//! "the minimal response MUST be the DNS header, question section, and an OPT
//! record"), and the client retries over TCP. Answers are never cut halfway:
//! a partial RRset is worse than none (RFC 2181 §9).
//!
//! Both functions work on raw bytes and never panic; the response is walked
//! just far enough to find where its question section ends and its OPT record.

use domain::base::Message;

/// Largest UDP message to a client without EDNS0 (RFC 1035 §4.2.1).
pub const PLAIN_UDP_LIMIT: u16 = 512;

const HEADER_LEN: usize = 12;
const TYPE_OPT: u16 = 41;
/// TC, in the third header byte.
const TC: u8 = 0x02;

/// The largest UDP response the client that sent `query` accepts: 512 without
/// EDNS0, else its advertised buffer size capped by `cap` (the zone's
/// [`super::ZoneConfig::max_udp_payload`], so relayed answers follow the same
/// no-fragmentation rule as the zone's own), never below 512.
pub fn udp_limit(query: &[u8], cap: u16) -> u16 {
    let advertised = Message::from_octets(query).ok().and_then(|m| m.opt()).map(|o| o.udp_payload_size());
    match advertised {
        None => PLAIN_UDP_LIMIT,
        Some(size) => size.min(cap).max(PLAIN_UDP_LIMIT),
    }
}

/// A response as written by [`fit_udp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fitted {
    /// Bytes written to `out`.
    pub len: usize,
    /// The response did not fit and was cut to header, question and OPT, with TC set.
    pub truncated: bool,
}

/// Why [`fit_udp`] could not produce a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitError {
    /// Too large, and its header or question section does not parse, so it
    /// cannot be cut.
    Malformed,
    /// Even header and question alone exceed the limit (or `out`).
    TooLarge,
}

impl core::fmt::Display for FitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FitError::Malformed => "oversized DNS response whose question section does not parse",
            FitError::TooLarge => "DNS header and question alone exceed the UDP limit",
        })
    }
}

impl core::error::Error for FitError {}

/// Copies `response` into `out` as a UDP client accepting `limit` bytes may
/// receive it: unchanged when it fits in `limit` (and in `out`), else cut to
/// the header, the question section and the OPT record if there is one, with
/// TC set and the answer, authority and additional counts adjusted. The OPT
/// record is left out when only it does not fit, or when the sections before
/// it do not parse.
pub fn fit_udp(response: &[u8], limit: usize, out: &mut [u8]) -> Result<Fitted, FitError> {
    let limit = limit.min(out.len());
    if response.len() <= limit {
        out[..response.len()].copy_from_slice(response);
        return Ok(Fitted { len: response.len(), truncated: false });
    }
    let question_end = question_end(response).ok_or(FitError::Malformed)?;
    if question_end > limit {
        return Err(FitError::TooLarge);
    }
    let opt = opt_record(response, question_end).filter(|opt| question_end + opt.len() <= limit);
    out[..question_end].copy_from_slice(&response[..question_end]);
    let mut len = question_end;
    if let Some(opt) = opt {
        out[len..len + opt.len()].copy_from_slice(opt);
        len += opt.len();
    }
    out[2] |= TC;
    out[6..10].fill(0);
    out[10..12].copy_from_slice(&u16::from(opt.is_some()).to_be_bytes());
    Ok(Fitted { len, truncated: true })
}

fn count(msg: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([msg[at], msg[at + 1]]))
}

/// Offset just past the question section.
fn question_end(msg: &[u8]) -> Option<usize> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    let mut at = HEADER_LEN;
    for _ in 0..count(msg, 4) {
        at = skip_name(msg, at)?.checked_add(4).filter(|&end| end <= msg.len())?;
    }
    Some(at)
}

/// The first OPT record of the additional section, as raw bytes, if it has
/// the root as owner (as RFC 6891 §6.1.2 requires) and every record before it
/// parses.
fn opt_record(msg: &[u8], question_end: usize) -> Option<&[u8]> {
    let (answers, authority, additional) = (count(msg, 6), count(msg, 8), count(msg, 10));
    let mut at = question_end;
    for i in 0..answers + authority + additional {
        let start = at;
        let fixed = skip_name(msg, at)?;
        let rdata = fixed.checked_add(10).filter(|&end| end <= msg.len())?;
        let rtype = u16::from_be_bytes([msg[fixed], msg[fixed + 1]]);
        let rdlen = usize::from(u16::from_be_bytes([msg[fixed + 8], msg[fixed + 9]]));
        at = rdata.checked_add(rdlen).filter(|&end| end <= msg.len())?;
        if i >= answers + authority && rtype == TYPE_OPT && msg[start] == 0 && fixed == start + 1 {
            return Some(&msg[start..at]);
        }
    }
    None
}

/// Offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += 1 + usize::from(len),
            // A compression pointer ends the name.
            0xc0 => return (at + 2 <= msg.len()).then_some(at + 2),
            // 0x40 and 0x80 are reserved label types (RFC 6891 §5).
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    /// `example.com. A?` as a response with `answers` A records, and an OPT
    /// record of `payload` bytes when given.
    fn response(answers: u16, opt: Option<u16>) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
        m.extend(answers.to_be_bytes());
        m.extend([0, 0, 0, u8::from(opt.is_some())]);
        m.extend(b"\x07example\x03com\x00\x00\x01\x00\x01");
        for i in 0..answers {
            // Owner compressed to the question name, TTL 60, 4 bytes of address.
            m.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2]);
            m.push(i as u8);
        }
        if let Some(payload) = opt {
            m.push(0);
            m.extend(TYPE_OPT.to_be_bytes());
            m.extend(payload.to_be_bytes());
            m.extend([0, 0, 0, 0, 0, 0]);
        }
        m
    }

    const QUESTION_END: usize = HEADER_LEN + 13 + 4;

    fn fit(response: &[u8], limit: usize) -> Result<(Fitted, Vec<u8>), FitError> {
        let mut out = vec![0u8; 2048];
        let fitted = fit_udp(response, limit, &mut out)?;
        out.truncate(fitted.len);
        Ok((fitted, out))
    }

    #[test]
    fn a_response_that_fits_is_copied_unchanged() {
        let r = response(3, Some(1232));
        let (fitted, out) = fit(&r, 512).unwrap();
        assert_eq!(fitted, Fitted { len: r.len(), truncated: false });
        assert_eq!(out, r);
    }

    #[test]
    fn a_large_response_without_edns_is_cut_to_header_and_question() {
        let r = response(40, None);
        assert!(r.len() > 512);
        let (fitted, out) = fit(&r, 512).unwrap();
        assert_eq!(fitted, Fitted { len: QUESTION_END, truncated: true });
        let msg = Message::from_octets(&out[..]).unwrap();
        let h = msg.header();
        assert!(h.tc() && h.qr() && h.rd() && h.ra());
        assert_eq!(h.id(), 0x1234);
        let counts = msg.header_counts();
        assert_eq!((counts.qdcount(), counts.ancount(), counts.nscount(), counts.arcount()), (1, 0, 0, 0));
        let q = msg.sole_question().unwrap();
        assert_eq!(q.qname().to_string(), "example.com");
    }

    #[test]
    fn the_opt_record_is_kept_in_a_cut_response() {
        let r = response(100, Some(4096));
        let (fitted, out) = fit(&r, 1232).unwrap();
        assert_eq!(fitted, Fitted { len: QUESTION_END + 11, truncated: true });
        let msg = Message::from_octets(&out[..]).unwrap();
        assert!(msg.header().tc());
        assert_eq!(msg.header_counts().arcount(), 1);
        assert_eq!(msg.opt().unwrap().udp_payload_size(), 4096);
        assert_eq!(msg.answer().unwrap().count(), 0);
    }

    #[test]
    fn the_limit_is_inclusive_and_out_bounds_it_too() {
        let r = response(40, None);
        assert!(!fit(&r, r.len()).unwrap().0.truncated);
        assert!(fit(&r, r.len() - 1).unwrap().0.truncated);
        let mut small = vec![0u8; 100];
        assert_eq!(fit_udp(&r, 4096, &mut small), Ok(Fitted { len: QUESTION_END, truncated: true }));
    }

    #[test]
    fn what_cannot_be_cut_is_an_error() {
        let r = response(40, None);
        // A question label that runs off the end, a reserved label type, no header.
        let mut broken = r[..HEADER_LEN].to_vec();
        broken.push(60);
        broken.extend([b'a'; 30]);
        assert_eq!(fit(&broken, 20), Err(FitError::Malformed));
        let mut reserved = r.clone();
        reserved[HEADER_LEN] = 0x47;
        assert_eq!(fit(&reserved, 512), Err(FitError::Malformed));
        assert_eq!(fit(&r[..5], 4), Err(FitError::Malformed));
        assert_eq!(fit(&r, QUESTION_END - 1), Err(FitError::TooLarge));
    }

    #[test]
    fn a_broken_record_section_only_loses_the_opt() {
        let mut r = response(40, Some(1232));
        let last_answer_rdlen = QUESTION_END + 39 * 16 + 10;
        r[last_answer_rdlen + 1] = 200; // rdlength past the end
        let (fitted, out) = fit(&r, 512).unwrap();
        assert_eq!(fitted, Fitted { len: QUESTION_END, truncated: true });
        assert_eq!(Message::from_octets(&out[..]).unwrap().header_counts().arcount(), 0);
    }

    #[test]
    fn client_limits_follow_edns() {
        let mut q = vec![0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend(b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(udp_limit(&q, 1232), 512);
        let edns = |size: u16| {
            let mut q = q.clone();
            q[11] = 1;
            q.push(0);
            q.extend(TYPE_OPT.to_be_bytes());
            q.extend(size.to_be_bytes());
            q.extend([0, 0, 0, 0, 0, 0]);
            q
        };
        assert_eq!(udp_limit(&edns(4096), 1232), 1232);
        assert_eq!(udp_limit(&edns(1000), 1232), 1000);
        assert_eq!(udp_limit(&edns(100), 1232), 512);
        assert_eq!(udp_limit(b"junk", 1232), 512);
    }
}
