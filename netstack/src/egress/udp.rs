//! Proxied UDP: one connected kernel socket per flow (pod address and
//! port, destination); the destination's port unreachable becomes one for
//! the pod.

use alloc::vec::Vec;

use smoltcp::wire::{Ipv4Packet, UdpPacket};

use super::frames::{HEADERS, IPV4_UDP_LEN, frame_headers, pod_mac, udp_original, udp_reply};
use super::io::{Close, Io, Transfer};
use super::stats::Reason;
use super::table::{Entry, EntryId, Kind, Tuple};
use super::{Egress, READ_BUDGET};
use crate::Instant;
use crate::service::refuse;

/// One UDP flow.
pub(super) struct Flow {
    pub(super) tuple: Tuple,
    /// The last datagram either way.
    last: Instant,
}

impl Egress {
    /// A UDP datagram from a pod: sent on its flow's socket, the flow made
    /// first if it is new.
    pub(super) fn on_udp<I: Io + ?Sized>(&mut self, now: Instant, packet: &[u8], io: &mut I) {
        let ip = Ipv4Packet::new_unchecked(packet);
        let Ok(datagram) = UdpPacket::new_checked(ip.payload()) else {
            return self.stats.add(Reason::Malformed);
        };
        let tuple = Tuple {
            pod: ip.src_addr(),
            pod_port: datagram.src_port(),
            remote: ip.dst_addr(),
            remote_port: datagram.dst_port(),
        };
        let id = match self.table.udp_id(&tuple) {
            Some(id) => id,
            None => {
                let opened = self.table.admit(Kind::Udp, tuple.pod).and_then(|()| {
                    let id = self.table.next_id().ok_or(Reason::UdpTableFull)?;
                    io.udp_open(id, tuple.remote, tuple.remote_port).map_err(|_| Reason::UdpSocketFailed)?;
                    Ok(id)
                });
                match opened {
                    Ok(id) => {
                        self.table.insert(id, Entry::Udp(Flow { tuple, last: now }));
                        self.stats.udp_opened += 1;
                        id
                    }
                    Err(reason) => return self.stats.add(reason),
                }
            }
        };
        if let Some(Entry::Udp(flow)) = self.table.get_mut(id) {
            flow.last = now;
        }
        // A full socket buffer drops the datagram, as a full link would.
        let _ = io.write(id, datagram.payload());
    }

    /// Reads the datagrams waiting on flow `id` and passes them to its pod.
    pub(super) fn udp_read<I: Io + ?Sized>(&mut self, now: Instant, id: EntryId, io: &mut I) {
        let Some(Entry::Udp(flow)) = self.table.get_mut(id) else { return };
        let tuple = flow.tuple;
        let payload_at = HEADERS + IPV4_UDP_LEN;
        for _ in 0..READ_BUDGET {
            match io.read(id, &mut self.scratch[payload_at..]) {
                Transfer::Moved(len) => {
                    if let Some(Entry::Udp(flow)) = self.table.get_mut(id) {
                        flow.last = now;
                    }
                    let frame = &mut self.scratch[..payload_at + len];
                    udp_reply(&mut frame[HEADERS..], tuple, len);
                    frame_headers(frame, self.config.mac);
                    io.to_pod(frame);
                }
                Transfer::Refused => {
                    // The destination's port unreachable, passed to the pod.
                    let mut quoted = [0u8; IPV4_UDP_LEN];
                    udp_original(&mut quoted, tuple);
                    let ip = Ipv4Packet::new_unchecked(&quoted[..]);
                    let mut reply = [0u8; refuse::MIN_REPLY_LEN];
                    if let Some(len) =
                        refuse::port_unreachable(self.config.mac, pod_mac(tuple.pod), &ip, &mut reply)
                    {
                        io.to_pod(&reply[..len]);
                    }
                }
                Transfer::WouldBlock | Transfer::Failed => return,
            }
        }
    }

    /// Forgets flow `id` and closes its socket.
    pub(super) fn remove_udp<I: Io + ?Sized>(&mut self, id: EntryId, io: &mut I) {
        if let Some(Entry::Udp(_)) = self.table.remove(id) {
            io.close(id, Close::Graceful);
        }
    }

    /// Forgets flows with no datagram either way for the UDP timeout.
    pub(super) fn expire_udp<I: Io + ?Sized>(&mut self, now: Instant, io: &mut I) {
        let idle = self.config.timeouts.udp;
        let expired: Vec<EntryId> = self
            .table
            .iter_mut()
            .filter_map(|(id, entry)| match entry {
                Entry::Udp(flow) if now >= flow.last + idle => Some(id),
                _ => None,
            })
            .collect();
        for id in expired {
            self.stats.add(Reason::UdpExpired);
            self.remove_udp(id, io);
        }
    }
}
