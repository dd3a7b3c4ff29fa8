//! The cluster DNS zone: answers queries for `<zone>` (services, endpoints,
//! pods, `dns-version`) and for cluster addresses under `in-addr.arpa`,
//! following the Kubernetes DNS specification; everything else is handed back
//! to the runtime to forward upstream.
//!
//! The runtime feeds the [`Zone`] with services and pods as they change and
//! calls [`Zone::answer`] with the payload of every DNS datagram (or TCP
//! message, without its length prefix) sent to the cluster DNS address. The
//! zone never sees a socket or a clock.
//!
//! Wire format: `domain` (NLnet Labs) with `alloc` only. It was preferred over
//! simple-dns (which does build in no_std with its `alloc` feature) because
//! simple-dns refuses to parse a query whose QTYPE or QCLASS it does not know,
//! or whose Z bit is set: a pod asking for a rare record type outside the zone
//! would get FORMERR instead of being forwarded. `domain` keeps types and
//! classes as plain numbers, parses lazily without copying, bounds compression
//! pointers, and its message builder compresses names.

mod build;
mod client;
mod config;
mod lookup;
mod name;
mod records;
mod respond;
mod udp;
mod zone;

#[cfg(test)]
mod tests;

pub use client::{Described, build_query, describe, record_type, refused, servfail};
pub use config::ZoneConfig;
pub use records::{Endpoint, Service, ServiceKind, ServicePort};
pub use udp::{FitError, Fitted, PLAIN_UDP_LIMIT, fit_udp, udp_limit};
pub use zone::{Zone, ZoneError};

use crate::DropReason;

/// Which transport a query came in on; it bounds the size of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A UDP datagram: 512 bytes without EDNS0, else the client's EDNS0
    /// buffer size capped by [`ZoneConfig::max_udp_payload`].
    Udp,
    /// A TCP (or other stream) message: up to 65535 bytes.
    Tcp,
}

/// Response codes the zone answers with (RFC 1035, RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// The query was answered (possibly with no records: NODATA).
    NoError,
    /// The query could not be interpreted.
    FormErr,
    /// The name does not exist in the zone.
    NxDomain,
    /// The opcode, class or query type is not supported.
    NotImp,
    /// The query asked for an EDNS version other than 0.
    BadVers,
}

/// What the runtime should do with a query after [`Zone::answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send the bytes left in `out` back to the client.
    Answered {
        /// The response code that was sent (for counters and logs).
        rcode: Rcode,
        /// The answer did not fit and was cut to the question with TC set.
        truncated: bool,
    },
    /// The name is outside the zone: relay the query upstream unchanged.
    Forward,
    /// Send nothing back: shorter than a DNS header (no ID to answer to), a
    /// response (answering responses invites reflection loops), or not even
    /// the truncated response could be encoded; always
    /// [`DropReason::DnsUnanswerable`], counted as such by the switch.
    Drop(DropReason),
}
