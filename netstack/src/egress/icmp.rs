//! ICMP echo: a pod's echo request leaves from the node's raw socket with
//! an identifier of the endpoint's own (pods pick theirs independently, so
//! two could clash); replies are mapped back to the pod and its identifier.
//! smoltcp never sees ICMP, or it would answer pings for any address itself.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, Ipv4Packet};

use super::frames::{HEADERS, frame_headers};
use super::ids::IdAllocator;
use super::io::{Io, Transfer};
use super::stats::Reason;
use super::table::{Kind, Table};
use super::{Egress, READ_BUDGET};
use crate::wire::Ipv4Address;
use crate::{Duration, Instant};

/// Whose an identifier is: the pod, its own identifier, the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    pod: Ipv4Address,
    pod_id: u16,
    remote: Ipv4Address,
}

struct Ping {
    key: Key,
    last: Instant,
}

/// The identifiers in use, both ways.
pub(super) struct Echoes {
    by_id: BTreeMap<u16, Ping>,
    by_key: BTreeMap<Key, u16>,
    ids: IdAllocator,
}

impl Echoes {
    pub(super) fn new() -> Echoes {
        Echoes { by_id: BTreeMap::new(), by_key: BTreeMap::new(), ids: IdAllocator::new() }
    }

    fn remove(&mut self, id: u16, table: &mut Table) {
        if let Some(ping) = self.by_id.remove(&id) {
            self.by_key.remove(&ping.key);
            table.release(Kind::Echo, ping.key.pod);
        }
    }

    /// Forgets identifiers unused for `idle`.
    pub(super) fn expire(&mut self, now: Instant, idle: Duration, table: &mut Table) {
        let old: Vec<u16> =
            self.by_id.iter().filter(|(_, p)| now >= p.last + idle).map(|(id, _)| *id).collect();
        for id in old {
            self.remove(id, table);
        }
    }

    /// Forgets the identifiers of `pod`; returns how many.
    pub(super) fn forget(&mut self, pod: Ipv4Address, table: &mut Table) -> usize {
        let ids: Vec<u16> = self.by_id.iter().filter(|(_, p)| p.key.pod == pod).map(|(id, _)| *id).collect();
        for id in &ids {
            self.remove(*id, table);
        }
        ids.len()
    }
}

impl Egress {
    /// An ICMP message from a pod: echo requests go out from the raw socket.
    pub(super) fn on_icmp<I: Io + ?Sized>(&mut self, now: Instant, packet: &[u8], io: &mut I) {
        let ip = Ipv4Packet::new_unchecked(packet);
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            return self.stats.add(Reason::Malformed);
        };
        if icmp.msg_type() != Icmpv4Message::EchoRequest {
            return self.stats.add(Reason::NotEchoRequest);
        }
        if self.config.echo.total == 0 {
            return self.stats.add(Reason::EchoDisabled);
        }
        let key = Key { pod: ip.src_addr(), pod_id: icmp.echo_ident(), remote: ip.dst_addr() };
        let id = match self.echo.by_key.get(&key) {
            Some(id) => *id,
            None => {
                if let Err(reason) = self.table.admit(Kind::Echo, key.pod) {
                    return self.stats.add(reason);
                }
                // Fewer than 65,535 are held (the cap), so held + 1
                // candidates always include a free one.
                let tries = self.echo.by_id.len() + 1;
                let by_id = &self.echo.by_id;
                let Some(id) = self.echo.ids.allocate(tries, |id| by_id.contains_key(&id)) else {
                    return self.stats.add(Reason::EchoIdsExhausted);
                };
                self.echo.by_key.insert(key, id);
                self.echo.by_id.insert(id, Ping { key, last: now });
                self.table.hold(Kind::Echo, key.pod);
                id
            }
        };
        if let Some(ping) = self.echo.by_id.get_mut(&id) {
            ping.last = now;
        }
        let message = &mut self.scratch[..ip.payload().len()];
        message.copy_from_slice(ip.payload());
        let mut out = Icmpv4Packet::new_unchecked(&mut message[..]);
        out.set_echo_ident(id);
        out.fill_checksum();
        io.echo_send(key.remote, message);
    }

    /// The raw socket is readable: echo replies for identifiers in use go
    /// to their pods with the pods' own identifiers.
    pub fn echo_readable<I: Io + ?Sized>(&mut self, io: &mut I) {
        for _ in 0..READ_BUDGET {
            // A raw socket hands over the IP header too.
            let Transfer::Moved(len) = io.echo_read(&mut self.scratch[HEADERS..]) else { return };
            let frame = &mut self.scratch[..HEADERS + len];
            let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[HEADERS..]) else { continue };
            let remote = ip.src_addr();
            let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else { continue };
            if icmp.msg_type() != Icmpv4Message::EchoReply {
                continue;
            }
            let Some(ping) = self.echo.by_id.get(&icmp.echo_ident()) else { continue };
            if ping.key.remote != remote {
                continue;
            }
            icmp.set_echo_ident(ping.key.pod_id);
            icmp.fill_checksum();
            ip.set_dst_addr(ping.key.pod);
            ip.set_hop_limit(64);
            ip.fill_checksum();
            frame_headers(frame, self.config.mac);
            io.to_pod(frame);
        }
    }
}
