//! The egress endpoint: pods reach addresses outside the cluster through the
//! node, seen from outside with the node's address, and without iptables.
//!
//! The switch sends every off-subnet packet from a pod to this endpoint's
//! port (`PortKind::Egress`), one end of a `SOCK_SEQPACKET` socketpair the
//! data-plane thread treats like any TAP: one frame (virtio-net header
//! first) per message. The endpoint, on a thread of its own, terminates what
//! arrives and re-originates it from the node with ordinary kernel sockets:
//!
//! - TCP: a SYN for a new connection starts a non-blocking `connect` to the
//!   destination; only when it succeeds does a smoltcp socket (any-IP mode:
//!   it answers as the destination) take the SYN, so a refused or
//!   unreachable destination is a RST to the pod, as it would be without the
//!   proxy. Data then moves between the smoltcp socket's buffers and the
//!   kernel socket directly: a full buffer on one side stops reading the
//!   other (backpressure; memory per connection is bounded by the two
//!   smoltcp buffers). FIN is passed on as a half-close both ways, RST as RST.
//!   Pod kernels hand over TSO super-frames; smoltcp takes them whole as one
//!   large segment (no checksum verification on this virtual link: the
//!   virtio header's NEEDS_CSUM means the sender trusts the data).
//! - UDP: one connected kernel socket per flow (pod address and port,
//!   destination), forgotten after 30 s idle; a destination's ICMP port
//!   unreachable becomes one for the pod.
//! - ICMP echo: sent from a raw socket with an identifier of the endpoint's
//!   own, replies mapped back to the pod's identifier.
//!
//! The node's own addresses are destinations like any other (a connection
//! from the agent to the node's own IP works), so pods reach node services too.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use netstack::service::refuse;
use netstack::switch::{PortKind, PortSpec};
use netstack::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, vnet};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, Shutdown, SockFlag, SockProtocol, SockType, SockaddrIn, sockopt,
};
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    HardwareAddress, Icmpv4Message, Icmpv4Packet, IpAddress, IpCidr, IpListenEndpoint, IpProtocol,
    Ipv4Packet, TcpPacket, UdpPacket,
};

use crate::dataplane::Dataplane;
use crate::node::pod::mac_for;

/// Bytes smoltcp buffers per proxied TCP connection and direction.
pub const TCP_BUFFER: usize = 64 * 1024;
/// A UDP flow with no datagram either way for this long is forgotten.
pub const UDP_IDLE: StdDuration = StdDuration::from_secs(30);
/// An echo request's identifier mapping is kept this long after its last use.
const PING_IDLE: StdDuration = StdDuration::from_secs(10);
/// Socket buffer of each end of the socketpair: room for bursts of 64 KiB
/// super-frames (a socketpair's queue is bounded by the sender's buffer).
const PAIR_BUFFER: usize = 4 << 20;
const FRAME_CAPACITY: usize = vnet::HEADER_LEN + ETH_LEN + 65_535;
const ETH_LEN: usize = 14;
const HEADERS: usize = vnet::HEADER_LEN + ETH_LEN;
const READ_BUDGET: usize = 64;
const PAIR: u64 = 0;
const STOP: u64 = 1;
const ICMP: u64 = 2;
const FIRST_TOKEN: u64 = 16;

/// Caps of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct EgressLimits {
    /// TCP connections at once.
    pub connections: usize,
    /// UDP flows at once.
    pub flows: usize,
}

/// The running endpoint; stopped on drop.
pub struct Egress {
    stop: Arc<EventFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Egress {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the endpoint and plugs it into the switch. `gateway_mac` is the
/// MAC it sends from (pods see their off-subnet peers behind the gateway).
pub async fn start(dataplane: &Dataplane, gateway_mac: [u8; 6], limits: EgressLimits) -> io::Result<Egress> {
    let (ours, theirs) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )?;
    for fd in [&ours, &theirs] {
        // Forcing needs CAP_NET_ADMIN (the agent is root); fall back to the cap.
        if socket::setsockopt(fd, sockopt::SndBufForce, &PAIR_BUFFER).is_err() {
            let _ = socket::setsockopt(fd, sockopt::SndBuf, &PAIR_BUFFER);
        }
        if socket::setsockopt(fd, sockopt::RcvBufForce, &PAIR_BUFFER).is_err() {
            let _ = socket::setsockopt(fd, sockopt::RcvBuf, &PAIR_BUFFER);
        }
    }
    let mac = EthernetAddress(gateway_mac);
    let spec = PortSpec { kind: PortKind::Egress, mac, ip: Ipv4Addr::UNSPECIFIED };
    dataplane.attach(spec, theirs).await?;
    let stop = Arc::new(EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?);
    let mut endpoint = Endpoint::new(ours, mac, stop.clone(), limits)?;
    let thread = std::thread::Builder::new().name("egress".into()).spawn(move || endpoint.run())?;
    Ok(Egress { stop, thread: Some(thread) })
}

/// (pod address, pod port, remote address, remote port).
type Tuple = (Ipv4Addr, u16, Ipv4Addr, u16);

/// smoltcp's view of the socketpair: IP packets in, frames out.
struct Pipe {
    fd: OwnedFd,
    mac: EthernetAddress,
    /// Packets kept for later (a SYN held while its connection is made),
    /// handed over before `frame`.
    rx: VecDeque<Vec<u8>>,
    /// The frame last read from the socketpair; `current`, when set, is the
    /// IP packet in it smoltcp takes next, in place (no copy per frame).
    frame: Vec<u8>,
    current: Option<Range<usize>>,
    tx: Vec<u8>,
}

/// Fills the virtio-net and Ethernet headers in front of the IP packet at
/// `frame[HEADERS..]`.
fn frame_headers(frame: &mut [u8], mac: EthernetAddress) {
    vnet::Repr::PLAIN.emit(&mut vnet::Header::new_checked(&mut frame[..]).expect("sized"));
    let dst = Ipv4Packet::new_checked(&frame[HEADERS..]).map_or(Ipv4Addr::UNSPECIFIED, |p| p.dst_addr());
    let mut eth = EthernetFrame::new_unchecked(&mut frame[vnet::HEADER_LEN..]);
    // The switch sets the destination MAC itself; the pod's is right anyway.
    eth.set_dst_addr(EthernetAddress(mac_for(dst)));
    eth.set_src_addr(mac);
    eth.set_ethertype(EthernetProtocol::Ipv4);
}

fn write_frame(fd: &OwnedFd, frame: &[u8]) -> nix::Result<usize> {
    loop {
        match nix::unistd::write(fd, frame) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// A packet for smoltcp: one kept for later, or one in the frame buffer.
enum RxToken<'a> {
    Kept(Vec<u8>),
    InPlace(&'a [u8]),
}

struct TxToken<'a> {
    fd: &'a OwnedFd,
    mac: EthernetAddress,
    tx: &'a mut Vec<u8>,
}

impl smoltcp::phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            RxToken::Kept(packet) => f(&packet),
            RxToken::InPlace(packet) => f(packet),
        }
    }
}

impl smoltcp::phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.tx.clear();
        self.tx.resize(HEADERS + len, 0);
        let result = f(&mut self.tx[HEADERS..]);
        frame_headers(self.tx, self.mac);
        // A full socketpair drops the segment; TCP retransmits it.
        let _ = write_frame(self.fd, self.tx);
        result
    }
}

impl Device for Pipe {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let tx = TxToken { fd: &self.fd, mac: self.mac, tx: &mut self.tx };
        if let Some(packet) = self.rx.pop_front() {
            return Some((RxToken::Kept(packet), tx));
        }
        let range = self.current.take()?;
        let packet = self.frame.get(range)?;
        Some((RxToken::InPlace(packet), tx))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken { fd: &self.fd, mac: self.mac, tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        // Super-frames from pods arrive whole.
        caps.max_transmission_unit = 65_535;
        // Compute checksums on the way out; trust the virtual link on the
        // way in (partial NEEDS_CSUM sums are not verifiable anyway).
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = Checksum::Tx;
        caps.checksum.udp = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        caps
    }
}

/// One proxied TCP connection.
struct Conn {
    tuple: Tuple,
    fd: OwnedFd,
    /// The pod's SYN, held until the kernel connection is made.
    syn: Option<Vec<u8>>,
    handle: Option<SocketHandle>,
    readable: bool,
    writable: bool,
    /// The destination sent FIN; passed to the pod.
    remote_eof: bool,
    /// The pod sent FIN; passed to the destination.
    shut_wr: bool,
    /// Ends once smoltcp has sent what it must (a RST after an abort).
    dead: bool,
}

/// One UDP flow.
struct Flow {
    tuple: Tuple,
    fd: OwnedFd,
    last: StdInstant,
}

enum Slot {
    Tcp(Conn),
    Udp(Flow),
}

/// An echo request identifier the endpoint sent with, and whose it is.
struct Ping {
    pod: Ipv4Addr,
    pod_id: u16,
    remote: Ipv4Addr,
    last: StdInstant,
}

struct Endpoint {
    device: Pipe,
    epoll: Epoll,
    /// Kept open for the epoll registration; readable when told to stop.
    _stop: Arc<EventFd>,
    iface: Interface,
    sockets: SocketSet<'static>,
    slots: HashMap<u64, Slot>,
    tcp: HashMap<Tuple, u64>,
    udp: HashMap<Tuple, u64>,
    icmp: Option<OwnedFd>,
    pings: HashMap<u16, Ping>,
    ping_ids: HashMap<(Ipv4Addr, u16, Ipv4Addr), u16>,
    next_ping_id: u16,
    next_token: u64,
    limits: EgressLimits,
    connections: usize,
    epoch: StdInstant,
    next_sweep: StdInstant,
}

impl Endpoint {
    fn new(
        fd: OwnedFd,
        mac: EthernetAddress,
        stop: Arc<EventFd>,
        limits: EgressLimits,
    ) -> io::Result<Endpoint> {
        let mut device = Pipe {
            fd,
            mac,
            rx: VecDeque::new(),
            frame: vec![0; FRAME_CAPACITY],
            current: None,
            tx: Vec::with_capacity(FRAME_CAPACITY),
        };
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
        // Any-IP: smoltcp answers as whatever destination a pod dialled.
        iface.set_any_ip(true);
        let own = Ipv4Addr::new(169, 254, 0, 1);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(own), 32));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(own);
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&device.fd, EpollEvent::new(EpollFlags::EPOLLIN, PAIR))?;
        epoll.add(stop.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
        let icmp = socket::socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::Icmp,
        )
        .inspect_err(|e| tracing::warn!("no ICMP egress (raw socket: {e})"))
        .ok();
        if let Some(fd) = &icmp {
            epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, ICMP))?;
        }
        let now = StdInstant::now();
        Ok(Endpoint {
            device,
            epoll,
            _stop: stop,
            iface,
            sockets: SocketSet::new(Vec::new()),
            slots: HashMap::new(),
            tcp: HashMap::new(),
            udp: HashMap::new(),
            icmp,
            pings: HashMap::new(),
            ping_ids: HashMap::new(),
            next_ping_id: 1,
            next_token: FIRST_TOKEN,
            limits,
            connections: 0,
            epoch: now,
            next_sweep: now,
        })
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn run(&mut self) {
        let mut frame = vec![0u8; FRAME_CAPACITY];
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let delay = self
                .iface
                .poll_delay(self.now(), &self.sockets)
                .map_or(1000, |d| d.total_millis().min(1000) as u16);
            let ready = match self.epoll.wait(&mut events, EpollTimeout::from(delay)) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("egress epoll failed: {e}");
                    return;
                }
            };
            let mut completed = Vec::new();
            for event in &events[..ready] {
                match event.data() {
                    STOP => return,
                    PAIR => self.read_frames(),
                    ICMP => self.read_icmp(&mut frame),
                    token => match self.slots.get_mut(&token) {
                        Some(Slot::Tcp(conn)) if conn.syn.is_some() => completed.push(token),
                        Some(Slot::Tcp(conn)) => {
                            let flags = event.events();
                            if flags.intersects(
                                EpollFlags::EPOLLIN
                                    | EpollFlags::EPOLLRDHUP
                                    | EpollFlags::EPOLLHUP
                                    | EpollFlags::EPOLLERR,
                            ) {
                                conn.readable = true;
                            }
                            if flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR) {
                                conn.writable = true;
                            }
                        }
                        Some(Slot::Udp(_)) => self.read_udp(token, &mut frame),
                        None => {}
                    },
                }
            }
            // Frames were taken as they were read, so the sockets are up to
            // date: drain them first, and one poll then sends each ACK with
            // the window the drain reopened (not an ACK, then an update).
            for token in completed {
                self.connected(token);
            }
            self.pump();
            self.poll();
            if StdInstant::now() >= self.next_sweep {
                self.sweep();
            }
        }
    }

    fn poll(&mut self) {
        let now = self.now();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
    }

    fn read_frames(&mut self) {
        for _ in 0..READ_BUDGET {
            let len = match nix::unistd::read(&self.device.fd, &mut self.device.frame) {
                Ok(len) => len,
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            // Out of the device while `on_frame` borrows the endpoint; a
            // moved Vec, not a copy.
            let frame = std::mem::take(&mut self.device.frame);
            let for_smoltcp = self.on_frame(&frame[..len]);
            self.device.frame = frame;
            if let Some(packet) = for_smoltcp {
                // Now, while the packet is still in the buffer; replies
                // (ACKs) go out with the next full poll.
                self.device.current = Some(packet);
                let now = self.now();
                // Kept packets go first, so this may take more than one turn.
                while self.device.current.is_some() {
                    let done = self.iface.poll_ingress_single(now, &mut self.device, &mut self.sockets);
                    if matches!(done, PollIngressSingleResult::None) {
                        break;
                    }
                }
                self.device.current = None;
            }
        }
    }

    /// Handles a frame; Some(range of its IP packet) when smoltcp is to take it.
    fn on_frame(&mut self, frame: &[u8]) -> Option<Range<usize>> {
        let eth = EthernetFrame::new_checked(frame.get(vnet::HEADER_LEN..)?).ok()?;
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(&frame[HEADERS..]).ok()?;
        if ip.more_frags() || ip.frag_offset() != 0 {
            return None;
        }
        let range = HEADERS..HEADERS + usize::from(ip.total_len());
        let packet = &frame[range.clone()];
        match ip.next_header() {
            IpProtocol::Tcp => self.on_tcp(packet).then_some(range),
            IpProtocol::Udp => {
                self.on_udp(packet);
                None
            }
            IpProtocol::Icmp => {
                self.on_icmp(packet);
                None
            }
            _ => None,
        }
    }

    fn take_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// Handles a TCP packet; true when smoltcp is to take it.
    fn on_tcp(&mut self, packet: &[u8]) -> bool {
        let ip = Ipv4Packet::new_unchecked(packet);
        let Ok(segment) = TcpPacket::new_checked(ip.payload()) else { return false };
        let tuple = (ip.src_addr(), segment.src_port(), ip.dst_addr(), segment.dst_port());
        if let Some(token) = self.tcp.get(&tuple) {
            // Still connecting: a retransmitted SYN waits with the first.
            return matches!(self.slots.get(token), Some(Slot::Tcp(conn)) if conn.syn.is_none());
        }
        if !(segment.syn() && !segment.ack() && !segment.rst()) {
            // No such connection: smoltcp answers with a RST.
            return true;
        }
        if self.connections >= self.limits.connections {
            self.refuse(packet);
            return false;
        }
        let fd = match start_connect(SocketAddrV4::new(tuple.2, tuple.3)) {
            Ok(fd) => fd,
            Err(_) => {
                self.refuse(packet);
                return false;
            }
        };
        let token = self.take_token();
        let interest =
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        if self.epoll.add(&fd, EpollEvent::new(interest, token)).is_err() {
            self.refuse(packet);
            return false;
        }
        self.connections += 1;
        self.tcp.insert(tuple, token);
        let conn = Conn {
            tuple,
            fd,
            syn: Some(packet.to_vec()),
            handle: None,
            readable: false,
            writable: false,
            remote_eof: false,
            shut_wr: false,
            dead: false,
        };
        self.slots.insert(token, Slot::Tcp(conn));
        false
    }

    /// Answers a pod's SYN with a RST from the destination.
    fn refuse(&mut self, syn: &[u8]) {
        let mut reply = [0u8; refuse::MIN_REPLY_LEN];
        let ip = Ipv4Packet::new_unchecked(syn);
        let pod_mac = EthernetAddress(mac_for(ip.src_addr()));
        if let Some(len) = refuse::tcp_reset(self.device.mac, pod_mac, &ip, &mut reply) {
            let _ = write_frame(&self.device.fd, &reply[..len]);
        }
    }

    /// The kernel connection of `token` is made or failed: hand the pod's
    /// SYN to a smoltcp socket standing for the destination, or refuse it.
    fn connected(&mut self, token: u64) {
        let Some(Slot::Tcp(conn)) = self.slots.get_mut(&token) else { return };
        let error = socket::getsockopt(&conn.fd, sockopt::SocketError).unwrap_or(libc::EIO);
        let syn = conn.syn.take().unwrap_or_default();
        if error != 0 {
            tracing::debug!(to = %conn.tuple.2, port = conn.tuple.3, "egress connect: {}", Errno::from_raw(error));
            self.remove(token, false);
            self.refuse(&syn);
            return;
        }
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        let listen = IpListenEndpoint { addr: Some(IpAddress::Ipv4(conn.tuple.2)), port: conn.tuple.3 };
        if socket.listen(listen).is_err() {
            self.remove(token, false);
            self.refuse(&syn);
            return;
        }
        conn.handle = Some(self.sockets.add(socket));
        conn.writable = true;
        conn.readable = true;
        // Alone with its SYN, so no other listener on the same destination
        // can take it.
        self.device.rx.push_back(syn);
        self.poll();
    }

    /// Moves data between every connection's smoltcp socket and kernel
    /// socket, and passes on FINs and RSTs.
    fn pump(&mut self) {
        let mut finished = Vec::new();
        for (token, slot) in self.slots.iter_mut() {
            let Slot::Tcp(conn) = slot else { continue };
            let Some(handle) = conn.handle else { continue };
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            if conn.dead {
                finished.push((*token, false));
                continue;
            }
            if let Some(reset) = pump_one(conn, socket) {
                finished.push((*token, reset));
            }
        }
        for (token, reset) in finished {
            self.remove(token, reset);
        }
    }

    /// Forgets a connection or flow; `reset` closes its kernel socket with a
    /// RST.
    fn remove(&mut self, token: u64, reset: bool) {
        match self.slots.remove(&token) {
            Some(Slot::Tcp(conn)) => {
                self.connections -= 1;
                self.tcp.remove(&conn.tuple);
                if let Some(handle) = conn.handle {
                    self.sockets.remove(handle);
                }
                let _ = self.epoll.delete(&conn.fd);
                if reset {
                    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                    let _ = socket::setsockopt(&conn.fd, sockopt::Linger, &linger);
                }
            }
            Some(Slot::Udp(flow)) => {
                self.udp.remove(&flow.tuple);
                let _ = self.epoll.delete(&flow.fd);
            }
            None => {}
        }
    }

    fn on_udp(&mut self, packet: &[u8]) {
        let ip = Ipv4Packet::new_unchecked(packet);
        let Ok(datagram) = UdpPacket::new_checked(ip.payload()) else { return };
        let tuple = (ip.src_addr(), datagram.src_port(), ip.dst_addr(), datagram.dst_port());
        let token = match self.udp.get(&tuple) {
            Some(token) => *token,
            None => {
                if self.udp.len() >= self.limits.flows {
                    return;
                }
                let Ok(fd) = udp_flow_socket(SocketAddrV4::new(tuple.2, tuple.3)) else { return };
                let token = self.take_token();
                if self.epoll.add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, token)).is_err() {
                    return;
                }
                self.udp.insert(tuple, token);
                self.slots.insert(token, Slot::Udp(Flow { tuple, fd, last: StdInstant::now() }));
                token
            }
        };
        if let Some(Slot::Udp(flow)) = self.slots.get_mut(&token) {
            flow.last = StdInstant::now();
            let _ = socket::send(flow.fd.as_raw_fd(), datagram.payload(), MsgFlags::MSG_DONTWAIT);
        }
    }

    fn read_udp(&mut self, token: u64, buf: &mut [u8]) {
        let Some(Slot::Udp(flow)) = self.slots.get_mut(&token) else { return };
        let tuple = flow.tuple;
        let payload_at = HEADERS + 20 + 8;
        for _ in 0..READ_BUDGET {
            match socket::recv(flow.fd.as_raw_fd(), &mut buf[payload_at..], MsgFlags::MSG_DONTWAIT) {
                Ok(len) => {
                    flow.last = StdInstant::now();
                    let frame_len = payload_at + len;
                    udp_reply(&mut buf[HEADERS..frame_len], tuple, len);
                    frame_headers(&mut buf[..frame_len], self.device.mac);
                    let _ = write_frame(&self.device.fd, &buf[..frame_len]);
                }
                Err(Errno::ECONNREFUSED) => {
                    // The destination's port unreachable, passed to the pod.
                    let mut quoted = [0u8; 28];
                    udp_original(&mut quoted, tuple);
                    let ip = Ipv4Packet::new_unchecked(&quoted[..]);
                    let mut reply = [0u8; refuse::MIN_REPLY_LEN];
                    let pod_mac = EthernetAddress(mac_for(tuple.0));
                    if let Some(len) = refuse::port_unreachable(self.device.mac, pod_mac, &ip, &mut reply) {
                        let _ = write_frame(&self.device.fd, &reply[..len]);
                    }
                }
                Err(_) => return,
            }
        }
    }

    fn on_icmp(&mut self, packet: &[u8]) {
        let ip = Ipv4Packet::new_unchecked(packet);
        let Some(raw) = &self.icmp else { return };
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else { return };
        if icmp.msg_type() != Icmpv4Message::EchoRequest {
            return;
        }
        let key = (ip.src_addr(), icmp.echo_ident(), ip.dst_addr());
        let id = match self.ping_ids.get(&key) {
            Some(id) => *id,
            None => {
                let mut id = self.next_ping_id;
                while self.pings.contains_key(&id) || id == 0 {
                    id = id.wrapping_add(1);
                }
                self.next_ping_id = id.wrapping_add(1);
                self.ping_ids.insert(key, id);
                id
            }
        };
        self.pings.insert(id, Ping { pod: key.0, pod_id: key.1, remote: key.2, last: StdInstant::now() });
        let mut message = ip.payload().to_vec();
        let mut out = Icmpv4Packet::new_unchecked(&mut message[..]);
        out.set_echo_ident(id);
        out.fill_checksum();
        let to = SockaddrIn::from(SocketAddrV4::new(key.2, 0));
        let _ = socket::sendto(raw.as_raw_fd(), &message, &to, MsgFlags::MSG_DONTWAIT);
    }

    fn read_icmp(&mut self, buf: &mut [u8]) {
        let Some(raw) = &self.icmp else { return };
        for _ in 0..READ_BUDGET {
            // A raw socket hands over the IP header too.
            let Ok(len) = socket::recv(raw.as_raw_fd(), &mut buf[HEADERS..], MsgFlags::MSG_DONTWAIT) else {
                return;
            };
            let frame = &mut buf[..HEADERS + len];
            let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[HEADERS..]) else { continue };
            let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else { continue };
            if icmp.msg_type() != Icmpv4Message::EchoReply {
                continue;
            }
            let Some(ping) = self.pings.get(&icmp.echo_ident()) else { continue };
            if ping.remote != ip.src_addr() {
                continue;
            }
            let (pod, pod_id) = (ping.pod, ping.pod_id);
            let mut icmp = Icmpv4Packet::new_unchecked(ip.payload_mut());
            icmp.set_echo_ident(pod_id);
            icmp.fill_checksum();
            ip.set_dst_addr(pod);
            ip.set_hop_limit(64);
            ip.fill_checksum();
            frame_headers(frame, self.device.mac);
            let _ = write_frame(&self.device.fd, frame);
        }
    }

    /// Forgets idle UDP flows and echo identifiers.
    fn sweep(&mut self) {
        let now = StdInstant::now();
        self.next_sweep = now + StdDuration::from_secs(1);
        let idle: Vec<u64> = self
            .slots
            .iter()
            .filter_map(|(t, s)| match s {
                Slot::Udp(flow) if now.duration_since(flow.last) >= UDP_IDLE => Some(*t),
                _ => None,
            })
            .collect();
        for token in idle {
            self.remove(token, false);
        }
        self.pings.retain(|_, p| now.duration_since(p.last) < PING_IDLE);
        let pings = &self.pings;
        self.ping_ids.retain(|_, id| pings.contains_key(id));
    }
}

/// Moves what can move for one connection. Returns Some(reset) when it is
/// over: with a RST to the destination when the pod reset it.
fn pump_one(conn: &mut Conn, socket: &mut tcp::Socket<'_>) -> Option<bool> {
    use tcp::State;
    // Pod -> destination.
    while conn.writable && socket.can_recv() {
        let fd = &conn.fd;
        match socket.recv(|data| match nix::unistd::write(fd, data) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(_)) => {}
            Ok(Err(Errno::EAGAIN)) => conn.writable = false,
            Ok(Err(Errno::EINTR)) => {}
            Ok(Err(_)) => {
                socket.abort();
                conn.dead = true;
                return None;
            }
            Err(_) => break,
        }
    }
    let pod_fin =
        matches!(socket.state(), State::CloseWait | State::LastAck | State::Closing | State::TimeWait);
    if pod_fin && !socket.can_recv() && !conn.shut_wr {
        let _ = socket::shutdown(conn.fd.as_raw_fd(), Shutdown::Write);
        conn.shut_wr = true;
    }
    // Destination -> pod.
    while conn.readable && !conn.remote_eof && socket.can_send() {
        let fd = &conn.fd;
        match socket.send(|space| match nix::unistd::read(fd, space) {
            Ok(n) => (n, Ok(n)),
            Err(e) => (0, Err(e)),
        }) {
            Ok(Ok(0)) => {
                conn.remote_eof = true;
                socket.close();
            }
            Ok(Ok(_)) => {}
            Ok(Err(Errno::EAGAIN)) => conn.readable = false,
            Ok(Err(Errno::EINTR)) => {}
            Ok(Err(_)) => {
                // The destination reset: so does the pod's side.
                socket.abort();
                conn.dead = true;
                return None;
            }
            Err(_) => break,
        }
    }
    match socket.state() {
        // Both FINs passed on: done.
        State::Closed | State::TimeWait if conn.shut_wr && conn.remote_eof => Some(false),
        // Closed without both FINs: the pod reset (or timed out).
        State::Closed => Some(true),
        _ => None,
    }
}

fn start_connect(to: SocketAddrV4) -> nix::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
    match socket::connect(fd.as_raw_fd(), &SockaddrIn::from(to)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

fn udp_flow_socket(to: SocketAddrV4) -> nix::Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
    Ok(fd)
}

/// Writes the IPv4 and UDP headers of a datagram from the destination of
/// `tuple` to its pod, in front of the `len` payload bytes already at
/// `packet[28..]`.
fn udp_reply(packet: &mut [u8], tuple: Tuple, len: usize) {
    let (pod, pod_port, remote, remote_port) = tuple;
    write_ipv4_udp(packet, remote, remote_port, pod, pod_port, len);
    let mut udp = UdpPacket::new_unchecked(&mut packet[20..]);
    udp.fill_checksum(&IpAddress::Ipv4(remote), &IpAddress::Ipv4(pod));
}

/// The headers of the pod's own datagram, for an ICMP error to quote.
fn udp_original(packet: &mut [u8; 28], tuple: Tuple) {
    let (pod, pod_port, remote, remote_port) = tuple;
    write_ipv4_udp(packet, pod, pod_port, remote, remote_port, 0);
}

fn write_ipv4_udp(packet: &mut [u8], src: Ipv4Addr, src_port: u16, dst: Ipv4Addr, dst_port: u16, len: usize) {
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_dscp(0);
    ip.set_ecn(0);
    ip.set_total_len((20 + 8 + len) as u16);
    ip.set_ident(0);
    ip.clear_flags();
    ip.set_dont_frag(true);
    ip.set_frag_offset(0);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::Udp);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    let mut udp = UdpPacket::new_unchecked(&mut packet[20..]);
    udp.set_src_port(src_port);
    udp.set_dst_port(dst_port);
    udp.set_len((8 + len) as u16);
    udp.set_checksum(0);
}
