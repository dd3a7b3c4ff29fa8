//! The runtime's side of DNS messages: a SERVFAIL when upstream is silent,
//! a REFUSED for a pod over its share of upstream queries, queries for
//! `podnet resolve`, and answers rendered as zone-file text.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use domain::base::iana::{Class, Rcode as WireRcode};
use domain::base::name::ParsedName;
use domain::base::{Message, MessageBuilder, Name, Rtype};
use domain::rdata::AllRecordData;

/// Builds a SERVFAIL for `query`: same ID, RD and question, no records.
/// Returns false when `query` is not a query with one question.
pub fn servfail(query: &[u8], out: &mut Vec<u8>) -> bool {
    error_answer(query, WireRcode::SERVFAIL, out)
}

/// Builds a REFUSED for `query`, as [`servfail`] does a SERVFAIL.
pub fn refused(query: &[u8], out: &mut Vec<u8>) -> bool {
    error_answer(query, WireRcode::REFUSED, out)
}

fn error_answer(query: &[u8], rcode: WireRcode, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Ok(msg) = Message::from_octets(query) else { return false };
    if msg.header().qr() || msg.header_counts().qdcount() != 1 || msg.sole_question().is_err() {
        return false;
    }
    let Ok(builder) = MessageBuilder::from_target(Vec::new());
    let Ok(answer) = builder.start_answer(&msg, rcode) else { return false };
    let mut bytes = answer.finish();
    // Recursion is "available" in the sense that we tried it.
    bytes[3] |= 0x80;
    *out = bytes;
    true
}

/// A record type by name (A, AAAA, SRV, PTR, TXT, CNAME, SOA, ANY), case-insensitive.
pub fn record_type(name: &str) -> Option<u16> {
    Some(match name.to_ascii_uppercase().as_str() {
        "A" => 1,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "ANY" => 255,
        _ => return None,
    })
}

/// A recursive query for `name` (absolute or not; it is taken as absolute).
pub fn build_query(name: &str, qtype: u16, id: u16) -> Result<Vec<u8>, String> {
    let fqdn = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    let owner: Name<Vec<u8>> = fqdn.parse().map_err(|_| format!("`{name}` is not a valid DNS name"))?;
    let mut builder = MessageBuilder::from_target(Vec::new()).map_err(|_| String::from("out of memory"))?;
    builder.header_mut().set_id(id);
    builder.header_mut().set_rd(true);
    let mut question = builder.question();
    question
        .push((&owner, Rtype::from_int(qtype), Class::IN))
        .map_err(|_| format!("`{name}` is too long"))?;
    Ok(question.finish())
}

/// A response as people read it: the response code and each answer,
/// authority and additional record in zone-file form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// NOERROR, NXDOMAIN, SERVFAIL...
    pub rcode: String,
    /// Whether TC was set.
    pub truncated: bool,
    /// Answer records.
    pub answers: Vec<String>,
    /// Authority records.
    pub authority: Vec<String>,
    /// Additional records (OPT left out).
    pub additional: Vec<String>,
}

/// Renders a response; None when the bytes are not a DNS response.
pub fn describe(response: &[u8]) -> Option<Described> {
    let msg = Message::from_octets(response).ok()?;
    if !msg.header().qr() {
        return None;
    }
    let render = |section: domain::base::message::RecordSection<'_, &[u8]>| -> Option<Vec<String>> {
        let mut out = Vec::new();
        for record in section {
            let record = record.ok()?;
            if record.rtype() == Rtype::OPT {
                continue;
            }
            let record = record.to_any_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>().ok()?;
            out.push(record.to_string());
        }
        Some(out)
    };
    let answer = msg.answer().ok()?;
    let authority = answer.next_section().ok()??;
    let additional = authority.next_section().ok()??;
    Some(Described {
        rcode: msg.header().rcode().to_string(),
        truncated: msg.header().tc(),
        answers: render(msg.answer().ok()?)?,
        authority: render(authority)?,
        additional: render(additional)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servfail_keeps_id_and_question() {
        let query = build_query("example.org", 1, 0x1234).unwrap();
        let mut out = Vec::new();
        assert!(servfail(&query, &mut out));
        let msg = Message::from_octets(&out[..]).unwrap();
        assert_eq!(msg.header().id(), 0x1234);
        assert!(msg.header().qr() && msg.header().rd() && msg.header().ra());
        assert_eq!(msg.header().rcode(), WireRcode::SERVFAIL);
        assert_eq!(msg.sole_question().unwrap().qname().to_string(), "example.org");
        assert!(describe(&out).unwrap().answers.is_empty());
    }

    #[test]
    fn refused_is_servfail_with_another_code() {
        let query = build_query("example.org", 1, 0x4321).unwrap();
        let mut out = Vec::new();
        assert!(refused(&query, &mut out));
        let msg = Message::from_octets(&out[..]).unwrap();
        assert_eq!((msg.header().id(), msg.header().rcode()), (0x4321, WireRcode::REFUSED));
        assert_eq!(describe(&out).unwrap().rcode, "REFUSED");
    }

    #[test]
    fn servfail_refuses_responses_and_garbage() {
        let mut out = Vec::new();
        assert!(!servfail(&[1, 2, 3], &mut out));
        let mut response = build_query("a.b", 1, 1).unwrap();
        response[2] |= 0x80;
        assert!(!servfail(&response, &mut out));
        assert!(describe(&build_query("a.b", 1, 1).unwrap()).is_none(), "a query is not a response");
    }

    #[test]
    fn names_and_types_are_checked() {
        assert_eq!(record_type("srv"), Some(33));
        assert_eq!(record_type("MX"), None);
        assert!(build_query(&"a".repeat(70), 1, 1).is_err());
    }
}
