//! Writing a response with `domain`'s message builder: header, the echoed
//! question, answers, the SOA of negative answers, the OPT record and the
//! address records SRV targets point to.

use alloc::vec::Vec;

use domain::base::iana::{Class, Opcode, OptRcode};
use domain::base::message_builder::{PushError, TreeCompressor};
use domain::base::name::ParsedName;
use domain::base::{MessageBuilder, Name, Question, Serial, Ttl};
use domain::rdata::{A, Cname, Ptr, Soa, Srv, Txt};

use super::lookup::{Apex, Data};
use super::name;
use super::zone::Zone;

/// SRV priority and weight: the spec leaves them open; CoreDNS's `0 100`
/// tells clients every target is as good as any other.
const SRV_PRIORITY: u16 = 0;
const SRV_WEIGHT: u16 = 100;

/// SOA timers (refresh, retry, expire), as CoreDNS's kubernetes plugin sets
/// them; the minimum is the zone's TTL so that negative answers age as fast
/// as positive ones.
const SOA_REFRESH: u32 = 7200;
const SOA_RETRY: u32 = 1800;
const SOA_EXPIRE: u32 = 86400;

/// The EDNS0 part of a response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Edns {
    /// The query's DO bit, which RFC 3225 says to copy.
    pub(super) dnssec_ok: bool,
}

/// Everything a response is made of.
pub(super) struct Response<'a, 'q> {
    /// ID of the query.
    pub(super) id: u16,
    /// Opcode of the query.
    pub(super) opcode: Opcode,
    /// RD of the query, copied back.
    pub(super) rd: bool,
    /// The response code, EDNS extended codes included.
    pub(super) rcode: OptRcode,
    /// Whether the zone is authoritative for the name (AA).
    pub(super) authoritative: bool,
    /// The question to echo, if the query had a usable one.
    pub(super) question: Option<&'a Question<ParsedName<&'q [u8]>>>,
    /// Answer records, owned by the question name.
    pub(super) answers: &'a [Data],
    /// For NXDOMAIN and NODATA: the apex whose SOA goes in the authority section.
    pub(super) negative: Option<Apex>,
    /// Present when the query had an OPT record.
    pub(super) edns: Option<Edns>,
    /// Set TC (and send no records).
    pub(super) truncated: bool,
    /// Largest response the client accepts, in bytes.
    pub(super) limit: usize,
}

impl Zone {
    /// Writes `response` into `buf` (its previous content is dropped).
    /// Fails when the answers or the authority do not fit in the limit;
    /// additional records that do not fit are left out instead (RFC 2181 §9).
    pub(super) fn write(&self, r: &Response<'_, '_>, buf: Vec<u8>) -> Result<Vec<u8>, PushError> {
        let Ok(mut b) = MessageBuilder::from_target(TreeCompressor::new(buf));
        // The builder refuses a push that reaches the limit; ours is inclusive.
        b.set_push_limit(r.limit.saturating_add(1));
        let header = b.header_mut();
        header.set_id(r.id);
        header.set_qr(true);
        header.set_opcode(r.opcode);
        header.set_rd(r.rd);
        // We offer recursion: names outside the zone are forwarded.
        header.set_ra(true);
        header.set_aa(r.authoritative);
        header.set_tc(r.truncated);
        header.set_rcode(r.rcode.rcode());

        let mut question = b.question();
        if let Some(q) = r.question {
            question.push(q)?;
        }
        let mut answer = question.answer();
        let ttl = Ttl::from_secs(self.config.ttl);
        if let Some(q) = r.question {
            let owner = q.qname();
            for data in r.answers {
                match data {
                    Data::A(ip) => answer.push((owner, Class::IN, ttl, A::new(*ip)))?,
                    Data::Srv { port, target, .. } => answer.push((
                        owner,
                        Class::IN,
                        ttl,
                        Srv::new(SRV_PRIORITY, SRV_WEIGHT, *port, target),
                    ))?,
                    Data::Ptr(target) => answer.push((owner, Class::IN, ttl, Ptr::new(target)))?,
                    Data::Cname(target) => answer.push((owner, Class::IN, ttl, Cname::new(target)))?,
                    Data::Txt(text) => {
                        let txt = Txt::<Vec<u8>>::build_from_slice(text).map_err(|_| PushError::ShortBuf)?;
                        answer.push((owner, Class::IN, ttl, txt))?
                    }
                    Data::Soa => answer.push((owner, Class::IN, ttl, self.soa()?))?,
                }
            }
        }

        let mut authority = answer.authority();
        if let Some(apex) = r.negative {
            let apex_name = match apex {
                Apex::Cluster => Name::from_octets(self.wire.clone()),
                Apex::Reverse => Name::from_octets(b"\x07in-addr\x04arpa\x00".to_vec()),
            }
            .map_err(|_| PushError::ShortBuf)?;
            authority.push((apex_name, Class::IN, ttl, self.soa()?))?;
        }

        let mut additional = authority.additional();
        if let Some(edns) = r.edns {
            let payload = self.config.max_udp_payload.max(512);
            additional.opt(|opt| {
                opt.set_udp_payload_size(payload);
                opt.set_rcode(r.rcode);
                opt.set_dnssec_ok(edns.dnssec_ok);
                Ok(())
            })?;
        }
        // Addresses of SRV targets, each once.
        for (i, data) in r.answers.iter().enumerate() {
            let Data::Srv { target, target_ip, .. } = data else {
                continue;
            };
            let seen = r.answers[..i].iter().any(|d| matches!(d, Data::Srv { target: t, .. } if t == target));
            if seen {
                continue;
            }
            if additional.push((target, Class::IN, ttl, A::new(*target_ip))).is_err() {
                break;
            }
        }
        Ok(additional.finish().into_target())
    }

    /// The zone's SOA record data.
    fn soa(&self) -> Result<Soa<Name<Vec<u8>>>, PushError> {
        let mname = name::join(&[b"ns", b"dns"], &self.wire).ok_or(PushError::ShortBuf)?;
        let rname = name::join(&[b"hostmaster"], &self.wire).ok_or(PushError::ShortBuf)?;
        Ok(Soa::new(
            mname,
            rname,
            Serial(self.serial),
            Ttl::from_secs(SOA_REFRESH),
            Ttl::from_secs(SOA_RETRY),
            Ttl::from_secs(SOA_EXPIRE),
            Ttl::from_secs(self.config.ttl),
        ))
    }
}
