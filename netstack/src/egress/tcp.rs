//! Proxied TCP: a pod's SYN waits for the kernel connect to the
//! destination; then a smoltcp socket standing for the destination takes
//! it, and bytes, FINs and RSTs move between that socket and the kernel's.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpListenEndpoint, Ipv4Packet, TcpPacket};

use super::frames::pod_mac;
use super::io::{Close, ConnectFailed, Io, Transfer};
use super::stats::Reason;
use super::table::{Entry, EntryId, Kind, Tuple};
use super::{Egress, Readiness};
use crate::service::refuse;
use crate::{Duration, Instant};

/// Where a proxied TCP connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// The kernel connect is under way; the pod's SYN is held.
    Connecting,
    /// Connected; both directions open.
    Open,
    /// The pod sent FIN, passed on as a half-close of the kernel socket;
    /// the destination may still send.
    PodFinPassed,
    /// The destination's EOF was passed to the pod as FIN; the pod may
    /// still send.
    RemoteFinPassed,
    /// Both FINs passed on; smoltcp finishes the pod's side.
    BothFinsPassed,
    /// Given up: smoltcp sends its RST to the pod, then the entry goes.
    Aborting,
}

impl TcpState {
    fn pod_fin_passed(self) -> bool {
        matches!(self, TcpState::PodFinPassed | TcpState::BothFinsPassed)
    }

    fn remote_fin_passed(self) -> bool {
        matches!(self, TcpState::RemoteFinPassed | TcpState::BothFinsPassed)
    }

    /// How long the connection may stay idle in this state (conntrack's
    /// timeouts for the same stages).
    fn timeout(self, timeouts: &crate::conntrack::Timeouts) -> Duration {
        match self {
            TcpState::Connecting => timeouts.tcp_syn,
            TcpState::Open => timeouts.tcp_established,
            TcpState::PodFinPassed | TcpState::RemoteFinPassed => timeouts.tcp_closing,
            TcpState::BothFinsPassed | TcpState::Aborting => timeouts.tcp_closed,
        }
    }
}

/// One proxied TCP connection.
pub(super) struct Conn {
    pub(super) tuple: Tuple,
    pub(super) state: TcpState,
    /// The pod's SYN while connecting; empty after.
    syn: Vec<u8>,
    handle: Option<SocketHandle>,
    /// Edge-triggered readiness of the kernel socket, cleared on WouldBlock.
    pub(super) ready: Readiness,
    /// The last frame from the pod or byte moved either way.
    last: Instant,
    /// How the kernel socket is closed once an abort is done.
    abort_close: Close,
}

impl Egress {
    /// Handles a TCP packet from a pod; true when smoltcp is to take it.
    pub(super) fn on_tcp<I: Io + ?Sized>(&mut self, now: Instant, packet: &[u8], io: &mut I) -> bool {
        let ip = Ipv4Packet::new_unchecked(packet);
        let Ok(segment) = TcpPacket::new_checked(ip.payload()) else {
            self.stats.add(Reason::Malformed);
            return false;
        };
        let tuple = Tuple {
            pod: ip.src_addr(),
            pod_port: segment.src_port(),
            remote: ip.dst_addr(),
            remote_port: segment.dst_port(),
        };
        if let Some(id) = self.table.tcp_id(&tuple) {
            let Some(Entry::Tcp(conn)) = self.table.get_mut(id) else { return false };
            conn.last = now;
            // Still connecting: a retransmitted SYN waits with the first.
            return conn.state != TcpState::Connecting;
        }
        if !(segment.syn() && !segment.ack() && !segment.rst()) {
            // No such connection: smoltcp answers with a RST.
            return true;
        }
        let admitted = self.table.admit(Kind::Tcp, tuple.pod).and_then(|()| {
            let id = self.table.next_id().ok_or(Reason::TcpTableFull)?;
            io.connect(id, tuple.remote, tuple.remote_port).map_err(|_| Reason::TcpSocketFailed)?;
            Ok(id)
        });
        match admitted {
            Ok(id) => {
                let conn = Conn {
                    tuple,
                    state: TcpState::Connecting,
                    syn: packet.to_vec(),
                    handle: None,
                    ready: Readiness::default(),
                    last: now,
                    abort_close: Close::Graceful,
                };
                self.table.insert(id, Entry::Tcp(conn));
            }
            Err(reason) => {
                self.stats.add(reason);
                self.refuse(packet, io);
            }
        }
        false
    }

    /// Answers a pod's SYN with a RST from the destination.
    fn refuse<I: Io + ?Sized>(&mut self, syn: &[u8], io: &mut I) {
        let mut reply = [0u8; refuse::MIN_REPLY_LEN];
        let ip = Ipv4Packet::new_unchecked(syn);
        if let Some(len) = refuse::tcp_reset(self.config.mac, pod_mac(ip.src_addr()), &ip, &mut reply) {
            io.to_pod(&reply[..len]);
        }
    }

    /// The kernel connect of `id` is done: hand the pod's SYN to a smoltcp
    /// socket standing for the destination, or refuse it with a RST.
    pub fn connected<I: Io + ?Sized>(
        &mut self,
        now: Instant,
        id: EntryId,
        outcome: Result<(), ConnectFailed>,
        io: &mut I,
    ) {
        let Some(Entry::Tcp(conn)) = self.table.get_mut(id) else { return };
        if conn.state != TcpState::Connecting {
            return;
        }
        let syn = core::mem::take(&mut conn.syn);
        let listen =
            IpListenEndpoint { addr: Some(IpAddress::Ipv4(conn.tuple.remote)), port: conn.tuple.remote_port };
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; self.config.tcp_buffer]),
            tcp::SocketBuffer::new(vec![0; self.config.tcp_buffer]),
        );
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        if outcome.is_err() || socket.listen(listen).is_err() {
            self.stats.add(Reason::TcpConnectFailed);
            self.remove_tcp(id, Close::Graceful, io);
            self.refuse(&syn, io);
            return;
        }
        conn.handle = Some(self.sockets.add(socket));
        conn.state = TcpState::Open;
        conn.ready = Readiness { readable: true, writable: true };
        conn.last = now;
        self.stats.tcp_opened += 1;
        // Alone with its SYN, so no other listener on the same destination
        // can take it.
        self.kept.push_back(syn);
        self.poll_iface(now, io);
    }

    /// Moves data between every connection's smoltcp socket and kernel
    /// socket, passes on FINs and RSTs, and removes finished connections.
    pub(super) fn pump<I: Io + ?Sized>(&mut self, now: Instant, io: &mut I) {
        let mut finished = core::mem::take(&mut self.finished);
        for (id, entry) in self.table.iter_mut() {
            let Entry::Tcp(conn) = entry else { continue };
            let Some(handle) = conn.handle else { continue };
            if conn.state == TcpState::Aborting {
                // Its RST went out with the last poll.
                finished.push((id, conn.abort_close));
                continue;
            }
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            if let Some(how) = pump_one(now, id, conn, socket, io) {
                finished.push((id, how));
            }
        }
        for (id, how) in finished.drain(..) {
            self.remove_tcp(id, how, io);
        }
        self.finished = finished;
    }

    /// Forgets connection `id` and closes its kernel socket `how`.
    pub(super) fn remove_tcp<I: Io + ?Sized>(&mut self, id: EntryId, how: Close, io: &mut I) {
        if let Some(Entry::Tcp(conn)) = self.table.remove(id) {
            if let Some(handle) = conn.handle {
                self.sockets.remove(handle);
            }
            io.close(id, how);
        }
    }

    /// Gives up connections idle past their state's timeout: a RST both
    /// ways (the pod's goes out with the sweep's poll). True if any did.
    pub(super) fn expire_tcp<I: Io + ?Sized>(&mut self, now: Instant, io: &mut I) -> bool {
        let timeouts = self.config.timeouts;
        let mut connecting = Vec::new();
        let mut aborted = false;
        for (id, entry) in self.table.iter_mut() {
            let Entry::Tcp(conn) = entry else { continue };
            if now < conn.last + conn.state.timeout(&timeouts) || conn.state == TcpState::Aborting {
                continue;
            }
            self.stats.add(Reason::TcpExpired);
            match conn.handle {
                None => connecting.push((id, core::mem::take(&mut conn.syn))),
                Some(handle) => {
                    self.sockets.get_mut::<tcp::Socket>(handle).abort();
                    conn.state = TcpState::Aborting;
                    conn.abort_close = Close::Reset;
                    aborted = true;
                }
            }
        }
        for (id, syn) in connecting {
            self.remove_tcp(id, Close::Graceful, io);
            self.refuse(&syn, io);
        }
        aborted
    }
}

/// Moves what can move for one connection. Returns how to close it when it
/// is over: with a RST to the destination when the pod reset it.
fn pump_one<I: Io + ?Sized>(
    now: Instant,
    id: EntryId,
    conn: &mut Conn,
    socket: &mut tcp::Socket<'_>,
    io: &mut I,
) -> Option<Close> {
    use tcp::State;
    // Pod -> destination.
    while conn.ready.writable && socket.can_recv() {
        match socket.recv(|data| match io.write(id, data) {
            Transfer::Moved(n) => (n, Transfer::Moved(n)),
            other => (0, other),
        }) {
            Ok(Transfer::Moved(0) | Transfer::WouldBlock) => conn.ready.writable = false,
            Ok(Transfer::Moved(_)) => conn.last = now,
            Ok(Transfer::Refused | Transfer::Failed) => {
                // The destination reset: so does the pod's side.
                socket.abort();
                conn.state = TcpState::Aborting;
                return None;
            }
            Err(_) => break,
        }
    }
    let pod_fin =
        matches!(socket.state(), State::CloseWait | State::LastAck | State::Closing | State::TimeWait);
    if pod_fin && !socket.can_recv() && !conn.state.pod_fin_passed() {
        io.shutdown_write(id);
        conn.last = now;
        conn.state = match conn.state {
            TcpState::RemoteFinPassed => TcpState::BothFinsPassed,
            _ => TcpState::PodFinPassed,
        };
    }
    // Destination -> pod.
    while conn.ready.readable && !conn.state.remote_fin_passed() && socket.can_send() {
        match socket.send(|space| match io.read(id, space) {
            Transfer::Moved(n) => (n, Transfer::Moved(n)),
            other => (0, other),
        }) {
            Ok(Transfer::Moved(0)) => {
                socket.close();
                conn.last = now;
                conn.state = match conn.state {
                    TcpState::PodFinPassed => TcpState::BothFinsPassed,
                    _ => TcpState::RemoteFinPassed,
                };
            }
            Ok(Transfer::Moved(_)) => conn.last = now,
            Ok(Transfer::WouldBlock) => conn.ready.readable = false,
            Ok(Transfer::Refused | Transfer::Failed) => {
                socket.abort();
                conn.state = TcpState::Aborting;
                return None;
            }
            Err(_) => break,
        }
    }
    match socket.state() {
        // Both FINs passed on: done.
        State::Closed | State::TimeWait if conn.state == TcpState::BothFinsPassed => Some(Close::Graceful),
        // Closed without both FINs: the pod reset (or timed out).
        State::Closed => Some(Close::Reset),
        _ => None,
    }
}
