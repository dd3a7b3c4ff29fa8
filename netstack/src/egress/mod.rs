//! The egress table: pods reach addresses outside the cluster through the
//! node, re-originated from the node with ordinary kernel sockets. This is
//! the endpoint's state machine without the sockets; the runtime's egress
//! thread carries out what it asks through [`Io`] and feeds it frames from
//! the switch's egress port, socket readiness and `now`.
//!
//! - TCP ([`tcp`]): a SYN for a new tuple asks for a kernel connect to the
//!   destination and is held; only when it succeeds does a smoltcp socket
//!   (any-IP mode: it answers as the destination) take the SYN, so a refused
//!   or unreachable destination is a RST to the pod. Data then moves
//!   between the smoltcp socket's buffers and the kernel socket directly: a
//!   full buffer on one side stops reading the other. FIN is passed on as a
//!   half-close both ways, RST as RST.
//! - UDP ([`udp`]): one connected kernel socket per flow; the destination's
//!   port unreachable becomes one for the pod.
//! - ICMP echo ([`icmp`]): sent from a raw socket with an identifier of the
//!   endpoint's own, replies mapped back to the pod's identifier.
//!
//! Entries are capped node-wide and per pod, expire when idle (the
//! conntrack [`Timeouts`]), and go with their pod
//! ([`Egress::forget_pod`]); every refusal is a counted [`Reason`].

mod device;
mod frames;
mod icmp;
mod ids;
mod io;
mod stats;
mod table;
mod tcp;
mod udp;

#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketSet};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Packet,
};

pub use frames::{FRAME_CAPACITY, HEADERS};
pub use io::{Close, ConnectFailed, Io, SocketFailed, Transfer};
pub use stats::{EgressStats, Reason};
pub use table::{EntryId, Limit, Tuple};
pub use tcp::TcpState;

use crate::conntrack::Timeouts;
use crate::wire::{EthernetAddress, Ipv4Address, vnet};
use crate::{Duration, Instant};
use device::Pipe;
use table::{Entry, Table};

/// Reads (frames, datagrams, echo replies) handled per readiness event
/// before others get a turn.
pub const READ_BUDGET: usize = 64;

/// How the table is sized and timed.
#[derive(Debug, Clone, Copy)]
pub struct EgressConfig {
    /// The MAC frames toward the pods are sent from (the gateway's).
    pub mac: EthernetAddress,
    /// TCP connections.
    pub tcp: Limit,
    /// UDP flows.
    pub udp: Limit,
    /// Echo identifiers in use (at most 65,535; a total of 0 turns echo off).
    pub echo: Limit,
    /// Bytes smoltcp buffers per TCP connection and direction.
    pub tcp_buffer: usize,
    /// Idle timeouts, as conntrack's.
    pub timeouts: Timeouts,
    /// An echo identifier is kept this long after its last request.
    pub echo_idle: Duration,
}

/// What a kernel socket's readiness event said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// There is something to read (data, EOF or an error).
    pub readable: bool,
    /// There is room to write (or an error).
    pub writable: bool,
}

/// The egress endpoint's state.
pub struct Egress {
    config: EgressConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    /// SYNs handed to smoltcp before the frame at hand.
    kept: VecDeque<Vec<u8>>,
    /// Where smoltcp's frames are built.
    tx: Vec<u8>,
    /// Where UDP and ICMP frames toward the pods are built.
    scratch: Vec<u8>,
    table: Table,
    echo: icmp::Echoes,
    stats: EgressStats,
    next_sweep: Instant,
    /// TCP entries the last pump finished, reused between polls.
    finished: Vec<(EntryId, Close)>,
}

impl Egress {
    /// Idle entries are looked for at most this often.
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

    /// An empty table.
    pub fn new(config: EgressConfig, now: Instant) -> Egress {
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device::Idle, now);
        // Any-IP: smoltcp answers as whatever destination a pod dialled.
        iface.set_any_ip(true);
        let own = Ipv4Address::new(169, 254, 0, 1);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(own), 32));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(own);
        let echo_limit = Limit { total: config.echo.total.min(65_535), per_pod: config.echo.per_pod };
        Egress {
            config: EgressConfig { echo: echo_limit, ..config },
            iface,
            sockets: SocketSet::new(Vec::new()),
            kept: VecDeque::new(),
            tx: Vec::with_capacity(FRAME_CAPACITY),
            scratch: vec![0; FRAME_CAPACITY],
            table: Table::new(config.tcp, config.udp, echo_limit),
            echo: icmp::Echoes::new(),
            stats: EgressStats::default(),
            next_sweep: now + Self::SWEEP_INTERVAL,
            finished: Vec::new(),
        }
    }

    /// A frame from a pod (virtio-net header first), as the switch's egress
    /// port hands it over.
    pub fn frame<I: Io + ?Sized>(&mut self, now: Instant, frame: &[u8], io: &mut I) {
        let packet = match ipv4_packet(frame) {
            Ok(packet) => packet,
            Err(reason) => return self.stats.add(reason),
        };
        let ip = Ipv4Packet::new_unchecked(packet);
        if ip.more_frags() || ip.frag_offset() != 0 {
            self.stats.add(Reason::Fragment);
            return;
        }
        match ip.next_header() {
            IpProtocol::Tcp => {
                if self.on_tcp(now, packet, io) {
                    self.ingress(now, packet, io);
                }
            }
            IpProtocol::Udp => self.on_udp(now, packet, io),
            IpProtocol::Icmp => self.on_icmp(now, packet, io),
            _ => self.stats.add(Reason::UnsupportedProtocol),
        }
    }

    /// Hands `packet` to smoltcp now, while it is still in the caller's
    /// buffer; replies (ACKs) go out with the next [`Egress::poll`].
    fn ingress<I: Io + ?Sized>(&mut self, now: Instant, packet: &[u8], io: &mut I) {
        let mut pipe =
            Pipe { kept: &mut self.kept, current: Some(packet), tx: &mut self.tx, io, mac: self.config.mac };
        // Kept packets go first, so this may take more than one turn.
        while pipe.current.is_some() {
            let done = self.iface.poll_ingress_single(now, &mut pipe, &mut self.sockets);
            if matches!(done, PollIngressSingleResult::None) {
                break;
            }
        }
    }

    /// Lets smoltcp send what is due (ACKs, data, retransmits, FIN, RST).
    fn poll_iface<I: Io + ?Sized>(&mut self, now: Instant, io: &mut I) {
        let mut pipe =
            Pipe { kept: &mut self.kept, current: None, tx: &mut self.tx, io, mac: self.config.mac };
        self.iface.poll(now, &mut pipe, &mut self.sockets);
    }

    /// A readiness event on the kernel socket of `id`. UDP datagrams are
    /// read at once; TCP is moved by the next [`Egress::poll`].
    pub fn ready<I: Io + ?Sized>(&mut self, now: Instant, id: EntryId, ready: Readiness, io: &mut I) {
        match self.table.get_mut(id) {
            Some(Entry::Tcp(conn)) => {
                conn.ready.readable |= ready.readable;
                conn.ready.writable |= ready.writable;
            }
            Some(Entry::Udp(_)) if ready.readable => self.udp_read(now, id, io),
            _ => {}
        }
    }

    /// Moves data between every TCP connection's two sides, lets smoltcp
    /// send, and forgets idle entries when a sweep is due. Call after each
    /// batch of inputs.
    pub fn poll<I: Io + ?Sized>(&mut self, now: Instant, io: &mut I) {
        self.pump(now, io);
        self.poll_iface(now, io);
        if now >= self.next_sweep {
            self.sweep(now, io);
        }
    }

    /// How long the caller may wait for events before calling
    /// [`Egress::poll`] again.
    pub fn poll_delay(&mut self, now: Instant) -> Duration {
        let sweep = if self.next_sweep > now { self.next_sweep - now } else { Duration::ZERO };
        self.iface.poll_delay(now, &self.sockets).map_or(sweep, |d| d.min(sweep))
    }

    /// Forgets entries idle past their timeout.
    fn sweep<I: Io + ?Sized>(&mut self, now: Instant, io: &mut I) {
        self.next_sweep = now + Self::SWEEP_INTERVAL;
        let aborted = self.expire_tcp(now, io);
        self.expire_udp(now, io);
        self.echo.expire(now, self.config.echo_idle, &mut self.table);
        if aborted {
            // The RSTs of the connections given up go out now.
            self.poll_iface(now, io);
        }
    }

    /// Frees everything the pod at `pod` held: its TCP connections (reset
    /// toward their destinations, nothing sent to the gone pod), UDP flows
    /// and echo identifiers.
    pub fn forget_pod<I: Io + ?Sized>(&mut self, pod: Ipv4Address, io: &mut I) {
        let ids: Vec<(EntryId, bool)> = self
            .table
            .iter_mut()
            .filter_map(|(id, entry)| match entry {
                Entry::Tcp(conn) if conn.tuple.pod == pod => Some((id, true)),
                Entry::Udp(flow) if flow.tuple.pod == pod => Some((id, false)),
                _ => None,
            })
            .collect();
        for (id, tcp) in ids {
            self.stats.add(Reason::PodGone);
            match tcp {
                true => self.remove_tcp(id, Close::Reset, io),
                false => self.remove_udp(id, io),
            }
        }
        let gone = self.echo.forget(pod, &mut self.table);
        for _ in 0..gone {
            self.stats.add(Reason::PodGone);
        }
    }

    /// The counters.
    pub fn stats(&self) -> &EgressStats {
        &self.stats
    }

    /// Whether `id` is a TCP connection whose kernel connect is under way:
    /// its next readiness event is the connect's outcome, for
    /// [`Egress::connected`].
    pub fn awaiting_connect(&self, id: EntryId) -> bool {
        self.tcp_state(id) == Some(TcpState::Connecting)
    }

    /// Where the TCP connection `id` is.
    pub fn tcp_state(&self, id: EntryId) -> Option<TcpState> {
        match self.table.get(id) {
            Some(Entry::Tcp(conn)) => Some(conn.state),
            _ => None,
        }
    }

    /// The TCP connection of `tuple`.
    pub fn tcp_id(&self, tuple: &Tuple) -> Option<EntryId> {
        self.table.tcp_id(tuple)
    }

    /// The UDP flow of `tuple`.
    pub fn udp_id(&self, tuple: &Tuple) -> Option<EntryId> {
        self.table.udp_id(tuple)
    }

    /// TCP connections, UDP flows and echo identifiers held.
    pub fn held(&self) -> (usize, usize, usize) {
        use table::Kind;
        (self.table.count(Kind::Tcp), self.table.count(Kind::Udp), self.table.count(Kind::Echo))
    }
}

/// The IPv4 packet in a frame from the egress port, cut to its total length.
fn ipv4_packet(frame: &[u8]) -> Result<&[u8], Reason> {
    let eth = frame
        .get(vnet::HEADER_LEN..)
        .and_then(|f| EthernetFrame::new_checked(f).ok())
        .ok_or(Reason::Malformed)?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return Err(Reason::UnsupportedProtocol);
    }
    let rest = frame.get(HEADERS..).ok_or(Reason::Malformed)?;
    let ip = Ipv4Packet::new_checked(rest).map_err(|_| Reason::Malformed)?;
    rest.get(..usize::from(ip.total_len())).ok_or(Reason::Malformed)
}
