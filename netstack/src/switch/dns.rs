//! Cluster DNS in the data path: UDP datagrams to the cluster DNS address,
//! port 53, are answered by the switch itself from its [`Zone`], before the
//! Service path sees them; there is no DNS server process.
//!
//! - A name in the zone (or a query the zone rejects with an error code) gets
//!   its answer at once, built into the reply buffer: [`Verdict::Reply`].
//! - A name outside the zone is [`Verdict::Upstream`]: the runtime relays the
//!   query payload to the upstream resolver, and turns the answer into a
//!   frame for the client with [`Switch::dns_reply_frame`], which it writes to
//!   the client's port.
//! - What cannot be answered (bad IP/UDP headers or checksum, a fragment,
//!   not a DNS query) is dropped with a DNS drop reason.
//!
//! Replies come from the address and MAC the client sent to (the cluster DNS
//! address and, for a pod, the gateway's MAC), to the client's MAC, address
//! and port, with full IPv4 and UDP checksums and a plain virtio-net header.
//! TCP to the DNS address is not intercepted: it takes the Service path,
//! which resets it when no Service serves that port.

use core::ops::Range;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, Ipv4Repr, UdpPacket};

use super::{DropReason, PortId, PortKind, Switch, Verdict};
use crate::dns::{self, Outcome, Rcode, Transport};
use crate::wire::{
    ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IPV4_HEADER_LEN,
    IpProtocol, Ipv4Address, Ipv4Packet, UDP_HEADER_LEN, vnet,
};

/// The DNS port.
pub const DNS_PORT: u16 = 53;

const DNS_HEADER_LEN: usize = 12;
/// The largest DNS message an IPv4 datagram carries.
const MAX_UDP_MESSAGE: usize = u16::MAX as usize - IPV4_HEADER_LEN - UDP_HEADER_LEN;

/// Bytes a DNS reply frame takes around its DNS message: virtio-net (10),
/// Ethernet (14), IPv4 (20) and UDP (8) headers.
pub const DNS_REPLY_OVERHEAD: usize =
    vnet::HEADER_LEN + ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN;

/// Reply buffer length for DNS answers of up to 1232 bytes, the default
/// [`dns::ZoneConfig::max_udp_payload`] (1284 bytes). With another
/// `max_udp_payload`, size the buffer with [`Switch::min_reply_len`]. A
/// shorter buffer still works: answers that do not fit go out truncated (TC
/// set, so the client retries over TCP).
pub const MIN_DNS_REPLY_LEN: usize = DNS_REPLY_OVERHEAD + 1232;

/// Who asked a query the switch handed to the runtime, and everything needed
/// to answer them ([`Switch::dns_reply_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsClient {
    /// The port the query came in on, where the answer goes.
    pub port: PortId,
    /// The client's MAC (the reply's destination).
    pub mac: EthernetAddress,
    /// The client's address.
    pub ip: Ipv4Address,
    /// The client's UDP source port.
    pub udp_port: u16,
    /// The MAC the client sent the query to (the gateway's, for a pod): the
    /// reply's source.
    pub server_mac: EthernetAddress,
    /// The cluster DNS address: the reply's source.
    pub server: Ipv4Address,
    /// The ID of the client's query; the answer is sent with it, so the
    /// runtime may use IDs of its own upstream.
    pub id: u16,
    /// The largest DNS message the client accepts over UDP: 512 without
    /// EDNS0, else its EDNS0 buffer size capped by the zone's
    /// `max_udp_payload` (see [`dns::udp_limit`]).
    pub max_payload: u16,
}

/// A query for a name outside the cluster zone, for the runtime to relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsUpstream {
    /// Who to answer.
    pub client: DnsClient,
    /// Where the DNS message (the UDP payload) starts in the input frame.
    pub offset: usize,
    /// Its length.
    pub len: usize,
}

impl DnsUpstream {
    /// The DNS message's place in the input frame.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }

    /// The DNS message, from the frame given to [`Switch::process`].
    pub fn query<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        &frame[self.range()]
    }
}

/// DNS counters, by what became of each query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Answered from the zone with NOERROR (records, or none of the asked type).
    pub answered: u64,
    /// Answered from the zone with NXDOMAIN.
    pub nxdomain: u64,
    /// Refused with an error code: FORMERR, NOTIMP or BADVERS.
    pub refused: u64,
    /// Handed to the runtime for upstream ([`Verdict::Upstream`]).
    pub forwarded: u64,
    /// Not answered: malformed datagrams and messages, responses sent to us.
    pub dropped: u64,
    /// Answers sent with TC set, from the zone or relayed, because they were
    /// too large for the client (included in the counts above).
    pub truncated: u64,
    /// Upstream answers turned into frames by [`Switch::dns_reply_frame`].
    pub upstream_replies: u64,
}

impl Switch {
    /// The cluster DNS address the switch answers on.
    pub fn cluster_dns(&self) -> Ipv4Address {
        self.cluster_dns
    }

    /// The cluster zone, read-only.
    pub fn zone(&self) -> &dns::Zone {
        &self.zone
    }

    /// The cluster zone, for the runtime to feed with services and pods
    /// ([`dns::Zone::upsert_service`], [`dns::Zone::upsert_pod`] and their
    /// removals). Changes apply to the next query.
    pub fn zone_mut(&mut self) -> &mut dns::Zone {
        &mut self.zone
    }

    /// DNS counters.
    pub fn dns_stats(&self) -> DnsStats {
        self.dns_stats
    }

    /// The reply buffer length [`Switch::process`] and
    /// [`Switch::dns_reply_frame`] need for every reply to be whole: the
    /// largest of [`super::MIN_REPLY_LEN`] and a DNS reply of the zone's
    /// `max_udp_payload` (at least 512).
    pub fn min_reply_len(&self) -> usize {
        let payload = self.zone.config().max_udp_payload.max(dns::PLAIN_UDP_LIMIT);
        (DNS_REPLY_OVERHEAD + usize::from(payload)).max(super::MIN_REPLY_LEN)
    }

    /// Builds in `out` the frame that answers `client` with `answer`, a DNS
    /// response from upstream: the answer gets the client's query ID and is
    /// truncated (TC, header, question and OPT only) when larger than the
    /// client accepts or than `out` holds. The frame goes out of
    /// `client.port` and is counted there. Returns its length, or `None` when
    /// the port is gone or has changed hands, `answer` is not a DNS
    /// response, or it cannot be fitted.
    pub fn dns_reply_frame(&mut self, client: &DnsClient, answer: &[u8], out: &mut [u8]) -> Option<usize> {
        let (spec, _) = self.port(client.port)?;
        let same_client =
            spec.mac == client.mac && (spec.kind == PortKind::Host || spec.ip == IpAddress::Ipv4(client.ip));
        // Never relay a query (QR clear) back: it would invite loops.
        if !same_client || answer.len() < DNS_HEADER_LEN || answer[2] & 0x80 == 0 {
            return None;
        }
        let room = out.get_mut(DNS_REPLY_OVERHEAD..)?;
        let limit = usize::from(client.max_payload).min(MAX_UDP_MESSAGE);
        let fitted = dns::fit_udp(answer, limit, room).ok()?;
        room[..2].copy_from_slice(&client.id.to_be_bytes());
        let len = emit_headers(client, fitted.len, out);
        self.dns_stats.upstream_replies += 1;
        self.dns_stats.truncated += u64::from(fitted.truncated);
        if let Some(port) = self.port_mut(client.port) {
            port.stats.tx_packets += 1;
            port.stats.tx_bytes += (len - vnet::HEADER_LEN) as u64;
        }
        Some(len)
    }

    /// Handles a packet to the cluster DNS address (`ip`, from its IPv4
    /// header on, at offset `ip_at` of the input frame). `None` when it is
    /// not a UDP datagram to port 53, for the Service path to handle.
    pub(super) fn dns_query(
        &mut self,
        ingress: PortId,
        offload: &vnet::Repr,
        (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
        ip: &[u8],
        ip_at: usize,
        reply: &mut [u8],
    ) -> Option<Verdict> {
        let packet = Ipv4Packet::new_unchecked(ip);
        if packet.next_header() != IpProtocol::Udp || packet.frag_offset() != 0 {
            return None;
        }
        let l4 = packet.payload();
        if l4.get(2..4) != Some(&DNS_PORT.to_be_bytes()[..]) {
            return None;
        }
        let Some(udp) = checked_udp(&packet, offload) else {
            return Some(self.dns_drop(DropReason::DnsMalformed));
        };
        let query = udp.payload();
        let mut client = DnsClient {
            port: ingress,
            mac: src_mac,
            ip: packet.src_addr(),
            udp_port: udp.src_port(),
            server_mac: dst_mac,
            server: packet.dst_addr(),
            id: query.get(..2).map_or(0, |id| u16::from_be_bytes([id[0], id[1]])),
            max_payload: dns::PLAIN_UDP_LIMIT,
        };
        match self.zone.answer(query, Transport::Udp, &mut self.dns_buf) {
            Outcome::Answered { rcode, truncated } => {
                let Some(room) = reply.get_mut(DNS_REPLY_OVERHEAD..) else {
                    return Some(self.dns_drop(DropReason::DnsUnanswerable));
                };
                // The zone sized the answer for the client; only a reply
                // buffer smaller than that cuts it further.
                let limit = room.len().min(MAX_UDP_MESSAGE);
                let Ok(fitted) = dns::fit_udp(&self.dns_buf, limit, room) else {
                    return Some(self.dns_drop(DropReason::DnsUnanswerable));
                };
                let stats = &mut self.dns_stats;
                match rcode {
                    Rcode::NoError => stats.answered += 1,
                    Rcode::NxDomain => stats.nxdomain += 1,
                    Rcode::FormErr | Rcode::NotImp | Rcode::BadVers => stats.refused += 1,
                }
                stats.truncated += u64::from(truncated || fitted.truncated);
                Some(Verdict::Reply { len: emit_headers(&client, fitted.len, reply) })
            }
            Outcome::Forward => {
                self.dns_stats.forwarded += 1;
                client.max_payload = dns::udp_limit(query, self.zone.config().max_udp_payload);
                let offset = ip_at + usize::from(packet.header_len()) + UDP_HEADER_LEN;
                Some(Verdict::Upstream(DnsUpstream { client, offset, len: query.len() }))
            }
            Outcome::Drop(reason) => Some(self.dns_drop(reason)),
        }
    }

    fn dns_drop(&mut self, reason: DropReason) -> Verdict {
        self.dns_stats.dropped += 1;
        Verdict::Drop(reason)
    }
}

/// The UDP datagram in `packet` if its headers and checksums hold, it is not
/// fragmented, and its offload flags describe one datagram. A checksum the
/// kernel left partial (NEEDS_CSUM) or already checked (DATA_VALID) is not
/// verified.
fn checked_udp<'p>(packet: &Ipv4Packet<&'p [u8]>, offload: &vnet::Repr) -> Option<UdpPacket<&'p [u8]>> {
    if packet.more_frags() || !packet.verify_checksum() {
        return None;
    }
    let udp = UdpPacket::new_checked(packet.payload()).ok()?;
    let payload_len = usize::from(udp.len()) - UDP_HEADER_LEN;
    let one_datagram = match offload.gso {
        // UFO: one datagram, to be fragmented.
        vnet::Gso::None | vnet::Gso::Udp => true,
        // USO: several, unless it is within one segment.
        vnet::Gso::Unknown(_) => payload_len <= usize::from(offload.gso_size),
        vnet::Gso::TcpV4 | vnet::Gso::TcpV6 => false,
    };
    let trusted = offload.flags & (vnet::FLAG_NEEDS_CSUM | vnet::FLAG_DATA_VALID) != 0;
    let (src, dst) = (IpAddress::Ipv4(packet.src_addr()), IpAddress::Ipv4(packet.dst_addr()));
    (one_datagram && (trusted || udp.verify_checksum(&src, &dst))).then_some(udp)
}

/// Writes the virtio-net, Ethernet, IPv4 and UDP headers of a reply to
/// `client` around the `payload_len`-byte DNS message already at
/// [`DNS_REPLY_OVERHEAD`] in `out`, checksums complete. Returns the frame length.
fn emit_headers(client: &DnsClient, payload_len: usize, out: &mut [u8]) -> usize {
    let len = DNS_REPLY_OVERHEAD + payload_len;
    vnet::Repr::PLAIN.emit(&mut vnet::Header::new_checked(&mut out[..]).expect("sized by caller"));
    let eth =
        EthernetRepr { src_addr: client.server_mac, dst_addr: client.mac, ethertype: EthernetProtocol::Ipv4 };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut out[vnet::HEADER_LEN..]));
    let ip = Ipv4Repr {
        src_addr: client.server,
        dst_addr: client.ip,
        next_header: IpProtocol::Udp,
        payload_len: UDP_HEADER_LEN + payload_len,
        hop_limit: 64,
    };
    let at = vnet::HEADER_LEN + ETHERNET_HEADER_LEN;
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[at..len]), &ChecksumCapabilities::default());
    let mut udp = UdpPacket::new_unchecked(&mut out[at + IPV4_HEADER_LEN..len]);
    udp.set_src_port(DNS_PORT);
    udp.set_dst_port(client.udp_port);
    udp.set_len((UDP_HEADER_LEN + payload_len) as u16);
    udp.fill_checksum(&IpAddress::Ipv4(client.server), &IpAddress::Ipv4(client.ip));
    len
}
