//! From query bytes to response bytes: checks the message, decides between
//! answering, forwarding and dropping, and sizes the response for its
//! transport.

use alloc::vec::Vec;
use core::mem;

use domain::base::iana::{Class, Opcode, OptRcode};
use domain::base::{Message, Rtype};

use super::build::{Edns, Response};
use super::lookup::Lookup;
use super::name::Labels;
use super::zone::Zone;
use super::{DropReason, Outcome, Rcode, Transport};

/// Largest UDP response to a client without EDNS0 (RFC 1035 §4.2.1).
const PLAIN_UDP_LIMIT: usize = 512;
/// Largest message a two-byte TCP length prefix can frame.
const TCP_LIMIT: usize = 65535;

impl Zone {
    /// Answers one DNS query. `out` is cleared, then holds the response when
    /// the outcome is [`Outcome::Answered`]. Never panics, whatever the bytes.
    pub fn answer(&self, query: &[u8], transport: Transport, out: &mut Vec<u8>) -> Outcome {
        out.clear();
        let Ok(msg) = Message::from_octets(query) else {
            return Outcome::Drop(DropReason::DnsUnanswerable);
        };
        let header = msg.header();
        if header.qr() {
            return Outcome::Drop(DropReason::DnsUnanswerable);
        }
        let mut response = Response {
            id: header.id(),
            opcode: header.opcode(),
            rd: header.rd(),
            rcode: OptRcode::FORMERR,
            authoritative: false,
            question: None,
            answers: &[],
            negative: None,
            edns: None,
            truncated: false,
            limit: match transport {
                Transport::Udp => PLAIN_UDP_LIMIT,
                Transport::Tcp => TCP_LIMIT,
            },
        };
        if header.opcode() != Opcode::QUERY {
            response.rcode = OptRcode::NOTIMP;
            return self.send(&response, out);
        }
        // Exactly one question (RFC 9619), parsed without error.
        let Ok(question) = msg.sole_question() else {
            return self.send(&response, out);
        };
        let Some(labels) = Labels::from_parsed(question.qname()) else {
            return self.send(&response, out);
        };
        let lookup = self.lookup(&labels);
        if lookup == Lookup::Forward {
            return Outcome::Forward;
        }

        // Ours from here on: echo the question.
        response.question = Some(&question);
        match edns(&msg) {
            Err(()) => return self.send(&response, out),
            Ok(None) => {}
            Ok(Some(opt)) => {
                response.edns = Some(Edns { dnssec_ok: opt.dnssec_ok });
                if transport == Transport::Udp {
                    // The client's buffer, capped by ours, never below 512
                    // (RFC 6891 §6.2.5). No `clamp`: it panics when a
                    // misconfigured cap is below 512.
                    response.limit = usize::from(opt.payload)
                        .min(usize::from(self.config.max_udp_payload))
                        .max(PLAIN_UDP_LIMIT);
                }
                if opt.version != 0 {
                    response.rcode = OptRcode::BADVERS;
                    return self.send(&response, out);
                }
            }
        }
        let qclass = question.qclass();
        let qtype = question.qtype();
        if (qclass != Class::IN && qclass != Class::ANY) || matches!(qtype, Rtype::AXFR | Rtype::IXFR) {
            // Only the Internet class, and no zone transfers.
            response.rcode = OptRcode::NOTIMP;
            return self.send(&response, out);
        }

        response.authoritative = true;
        response.rcode = OptRcode::NOERROR;
        let answers: Vec<_>;
        match lookup {
            Lookup::Forward => return Outcome::Forward,
            Lookup::NxDomain(apex) => {
                response.rcode = OptRcode::NXDOMAIN;
                response.negative = Some(apex);
            }
            Lookup::Found { records, apex } => {
                answers = records
                    .into_iter()
                    .filter(|d| qtype == Rtype::ANY || d.rtype() == qtype || d.rtype() == Rtype::CNAME)
                    .collect();
                response.answers = &answers;
                if answers.is_empty() {
                    // NODATA: the name exists, not with this type.
                    response.negative = Some(apex);
                }
            }
        }
        self.send(&response, out)
    }

    /// Writes `response`, or its truncated form when it does not fit.
    fn send(&self, response: &Response<'_, '_>, out: &mut Vec<u8>) -> Outcome {
        let rcode = rcode(response.rcode);
        match self.write(response, mem::take(out)) {
            Ok(bytes) => {
                *out = bytes;
                return Outcome::Answered { rcode, truncated: false };
            }
            Err(_) => out.clear(),
        }
        // Too big: header, question and OPT only, with TC, so that the client
        // retries over TCP (RFC 1035 §4.2.1, RFC 6891 §7).
        let truncated = Response { answers: &[], negative: None, truncated: true, ..*response };
        match self.write(&truncated, mem::take(out)) {
            Ok(bytes) => {
                *out = bytes;
                Outcome::Answered { rcode, truncated: true }
            }
            Err(_) => {
                out.clear();
                Outcome::Drop(DropReason::DnsUnanswerable)
            }
        }
    }
}

/// What the query's OPT record says.
struct QueryOpt {
    payload: u16,
    version: u8,
    dnssec_ok: bool,
}

/// The query's EDNS0 record: `Err` when a record section does not parse or
/// there is more than one OPT (RFC 6891 §6.1.1 asks for FORMERR).
fn edns(msg: &Message<&[u8]>) -> Result<Option<QueryOpt>, ()> {
    let additional = msg.additional().map_err(|_| ())?;
    let mut opts = 0;
    for record in additional {
        if record.map_err(|_| ())?.rtype() == Rtype::OPT {
            opts += 1;
        }
    }
    match opts {
        0 => Ok(None),
        1 => {
            let opt = msg.opt().ok_or(())?;
            Ok(Some(QueryOpt {
                payload: opt.udp_payload_size(),
                version: opt.version(),
                dnssec_ok: opt.dnssec_ok(),
            }))
        }
        _ => Err(()),
    }
}

fn rcode(rcode: OptRcode) -> Rcode {
    match rcode {
        OptRcode::NOERROR => Rcode::NoError,
        OptRcode::NXDOMAIN => Rcode::NxDomain,
        OptRcode::NOTIMP => Rcode::NotImp,
        OptRcode::BADVERS => Rcode::BadVers,
        _ => Rcode::FormErr,
    }
}
