//! The egress endpoint's I/O: pods reach addresses outside the cluster
//! through the node, seen from outside with the node's address, and without
//! iptables.
//!
//! The switch sends every off-subnet packet from a pod to this endpoint's
//! port (`PortKind::Egress`), one end of a `SOCK_SEQPACKET` socketpair the
//! data-plane thread treats like any TAP: one frame (virtio-net header
//! first) per message. What to do with each frame is decided by netstack's
//! egress table (`netstack::egress`: TCP through smoltcp in any-IP mode, UDP
//! flows, ICMP echo identifiers, caps, idle timeouts); this thread owns the
//! epoll loop and the kernel sockets only. It turns the table's [`Io`] calls
//! into system calls and socket readiness into table inputs.
//!
//! The node's own addresses are destinations like any other (a connection
//! from the agent to the node's own IP works), so pods reach node services too.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use netstack::Instant;
use netstack::egress::{
    self as table, Close, ConnectFailed, EgressConfig, EgressStats, EntryId, Io, Limit, Readiness,
    SocketFailed, Transfer,
};
use netstack::service::Timeouts;
use netstack::switch::{PortKind, PortSpec};
use netstack::wire::EthernetAddress;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, Shutdown, SockFlag, SockProtocol, SockType, SockaddrIn, sockopt,
};

use crate::dataplane::Dataplane;

/// Bytes smoltcp buffers per proxied TCP connection and direction.
pub const TCP_BUFFER: usize = 64 * 1024;
/// An echo request's identifier mapping is kept this long after its last use.
const PING_IDLE: StdDuration = StdDuration::from_secs(10);
/// Keep-alive on the kernel side of proxied TCP connections: a destination
/// gone silent is found within about two minutes, not the 24 h idle timeout.
const KEEPALIVE_IDLE_S: u32 = 60;
const KEEPALIVE_INTERVAL_S: u32 = 15;
const KEEPALIVE_PROBES: u32 = 4;
/// Socket buffer of each end of the socketpair: room for bursts of 64 KiB
/// super-frames (a socketpair's queue is bounded by the sender's buffer).
const PAIR_BUFFER: usize = 4 << 20;
const PAIR: u64 = 0;
const STOP: u64 = 1;
const ICMP: u64 = 2;
const WAKE: u64 = 3;

/// Caps of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct EgressLimits {
    /// TCP connections at once.
    pub connections: usize,
    /// TCP connections one pod may hold.
    pub connections_per_pod: usize,
    /// UDP flows at once.
    pub flows: usize,
    /// UDP flows one pod may hold.
    pub flows_per_pod: usize,
    /// ICMP echo identifiers in use at once (a quarter per pod).
    pub pings: usize,
}

/// What the endpoint thread and the agent share.
#[derive(Default)]
struct Shared {
    /// Addresses of pods deleted since the thread last looked.
    gone: Mutex<Vec<Ipv4Addr>>,
    /// The table's counters as of the thread's last turn.
    stats: Mutex<EgressStats>,
}

/// The running endpoint; stopped on drop.
pub struct Egress {
    stop: Arc<EventFd>,
    wake: Arc<EventFd>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Egress {
    /// Frees what the pod at `ip` held (its connections are reset toward
    /// their destinations).
    pub fn forget_pod(&self, ip: Ipv4Addr) {
        self.shared.gone.lock().unwrap_or_else(|e| e.into_inner()).push(ip);
        let _ = self.wake.write(1);
    }

    /// The table's counters (refusals by reason among them).
    pub fn stats(&self) -> EgressStats {
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    let spec = PortSpec { kind: PortKind::Egress, mac, ip: Ipv4Addr::UNSPECIFIED.into() };
    dataplane.attach(spec, vec![theirs]).await?;
    let stop = Arc::new(EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?);
    let wake = Arc::new(EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?);
    let shared = Arc::new(Shared::default());
    let mut endpoint = Endpoint::new(ours, mac, stop.clone(), wake.clone(), shared.clone(), limits)?;
    let thread = std::thread::Builder::new().name("egress".into()).spawn(move || endpoint.run())?;
    Ok(Egress { stop, wake, shared, thread: Some(thread) })
}

/// The kernel side: the socketpair toward the switch, one socket per TCP
/// connection or UDP flow (keyed, and registered with epoll, by entry id),
/// and the raw ICMP socket.
struct Kernel {
    pair: OwnedFd,
    epoll: Epoll,
    sockets: HashMap<u64, OwnedFd>,
    icmp: Option<OwnedFd>,
}

impl Kernel {
    fn add(&mut self, id: EntryId, fd: OwnedFd, interest: EpollFlags) -> Result<(), SocketFailed> {
        self.epoll.add(&fd, EpollEvent::new(interest, id.raw())).map_err(|_| SocketFailed)?;
        self.sockets.insert(id.raw(), fd);
        Ok(())
    }
}

/// A system call's result as the table sees it.
fn transfer(result: nix::Result<usize>) -> Transfer {
    match result {
        Ok(n) => Transfer::Moved(n),
        Err(Errno::EAGAIN) => Transfer::WouldBlock,
        Err(Errno::ECONNREFUSED) => Transfer::Refused,
        Err(_) => Transfer::Failed,
    }
}

fn retry(mut call: impl FnMut() -> nix::Result<usize>) -> nix::Result<usize> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

impl Io for Kernel {
    fn to_pod(&mut self, frame: &[u8]) {
        // A full socketpair drops the frame; TCP retransmits.
        let _ = retry(|| nix::unistd::write(&self.pair, frame));
    }

    fn connect(&mut self, id: EntryId, to: Ipv4Addr, port: u16) -> Result<(), SocketFailed> {
        let fd = start_connect(SocketAddrV4::new(to, port)).map_err(|_| SocketFailed)?;
        let interest =
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        self.add(id, fd, interest)
    }

    fn udp_open(&mut self, id: EntryId, to: Ipv4Addr, port: u16) -> Result<(), SocketFailed> {
        let fd = udp_flow_socket(SocketAddrV4::new(to, port)).map_err(|_| SocketFailed)?;
        self.add(id, fd, EpollFlags::EPOLLIN)
    }

    fn write(&mut self, id: EntryId, data: &[u8]) -> Transfer {
        let Some(fd) = self.sockets.get(&id.raw()) else { return Transfer::Failed };
        transfer(retry(|| nix::unistd::write(fd, data)))
    }

    fn read(&mut self, id: EntryId, buf: &mut [u8]) -> Transfer {
        let Some(fd) = self.sockets.get(&id.raw()) else { return Transfer::Failed };
        transfer(retry(|| nix::unistd::read(fd, buf)))
    }

    fn shutdown_write(&mut self, id: EntryId) {
        if let Some(fd) = self.sockets.get(&id.raw()) {
            let _ = socket::shutdown(fd.as_raw_fd(), Shutdown::Write);
        }
    }

    fn close(&mut self, id: EntryId, how: Close) {
        let Some(fd) = self.sockets.remove(&id.raw()) else { return };
        let _ = self.epoll.delete(&fd);
        if how == Close::Reset {
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            let _ = socket::setsockopt(&fd, sockopt::Linger, &linger);
        }
    }

    fn echo_send(&mut self, to: Ipv4Addr, message: &[u8]) {
        let Some(raw) = &self.icmp else { return };
        let to = SockaddrIn::from(SocketAddrV4::new(to, 0));
        let _ = socket::sendto(raw.as_raw_fd(), message, &to, MsgFlags::MSG_DONTWAIT);
    }

    fn echo_read(&mut self, buf: &mut [u8]) -> Transfer {
        let Some(raw) = &self.icmp else { return Transfer::Failed };
        transfer(retry(|| socket::recv(raw.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)))
    }
}

struct Endpoint {
    table: table::Egress,
    kernel: Kernel,
    /// Kept open for the epoll registrations; readable when told to stop,
    /// or that pods are gone.
    _stop: Arc<EventFd>,
    wake: Arc<EventFd>,
    shared: Arc<Shared>,
    frame: Vec<u8>,
    epoch: StdInstant,
}

impl Endpoint {
    fn new(
        pair: OwnedFd,
        mac: EthernetAddress,
        stop: Arc<EventFd>,
        wake: Arc<EventFd>,
        shared: Arc<Shared>,
        limits: EgressLimits,
    ) -> io::Result<Endpoint> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&pair, EpollEvent::new(EpollFlags::EPOLLIN, PAIR))?;
        epoll.add(stop.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
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
        let pings = if icmp.is_some() { limits.pings } else { 0 };
        let config = EgressConfig {
            mac,
            tcp: Limit { total: limits.connections, per_pod: limits.connections_per_pod },
            udp: Limit { total: limits.flows, per_pod: limits.flows_per_pod },
            echo: Limit { total: pings, per_pod: pings.div_ceil(4) },
            tcp_buffer: TCP_BUFFER,
            timeouts: Timeouts::default(),
            echo_idle: netstack::Duration::from_millis(PING_IDLE.as_millis() as u64),
        };
        Ok(Endpoint {
            table: table::Egress::new(config, Instant::ZERO),
            kernel: Kernel { pair, epoll, sockets: HashMap::new(), icmp },
            _stop: stop,
            wake,
            shared,
            frame: vec![0; table::FRAME_CAPACITY],
            epoch: StdInstant::now(),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn run(&mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut completed = Vec::new();
        let mut published = EgressStats::default();
        loop {
            let delay = self.table.poll_delay(self.now()).total_millis().min(1000) as u16;
            let ready = match self.kernel.epoll.wait(&mut events, EpollTimeout::from(delay)) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("egress epoll failed: {e}");
                    return;
                }
            };
            let now = self.now();
            for event in &events[..ready] {
                match event.data() {
                    STOP => return,
                    PAIR => self.read_frames(now),
                    ICMP => self.table.echo_readable(&mut self.kernel),
                    WAKE => self.forget_gone(),
                    token => {
                        let id = EntryId::from_raw(token);
                        if self.table.awaiting_connect(id) {
                            completed.push(id);
                            continue;
                        }
                        let flags = event.events();
                        let readiness = Readiness {
                            readable: flags.intersects(
                                EpollFlags::EPOLLIN
                                    | EpollFlags::EPOLLRDHUP
                                    | EpollFlags::EPOLLHUP
                                    | EpollFlags::EPOLLERR,
                            ),
                            writable: flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR),
                        };
                        self.table.ready(now, id, readiness, &mut self.kernel);
                    }
                }
            }
            // Frames were taken as they were read, so the sockets are up to
            // date: drain them first, and one poll then sends each ACK with
            // the window the drain reopened (not an ACK, then an update).
            for id in completed.drain(..) {
                let outcome = self.connect_outcome(id);
                self.table.connected(now, id, outcome, &mut self.kernel);
            }
            self.table.poll(now, &mut self.kernel);
            if *self.table.stats() != published {
                published = *self.table.stats();
                *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = published;
            }
        }
    }

    /// How the kernel connect of `id` ended.
    fn connect_outcome(&self, id: EntryId) -> Result<(), ConnectFailed> {
        let Some(fd) = self.kernel.sockets.get(&id.raw()) else { return Err(ConnectFailed) };
        match socket::getsockopt(fd, sockopt::SocketError).unwrap_or(libc::EIO) {
            0 => Ok(()),
            error => {
                tracing::debug!("egress connect: {}", Errno::from_raw(error));
                Err(ConnectFailed)
            }
        }
    }

    fn read_frames(&mut self, now: Instant) {
        for _ in 0..table::READ_BUDGET {
            let len = match nix::unistd::read(&self.kernel.pair, &mut self.frame) {
                Ok(len) => len,
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            self.table.frame(now, &self.frame[..len], &mut self.kernel);
        }
    }

    fn forget_gone(&mut self) {
        let _ = self.wake.read();
        let gone = std::mem::take(&mut *self.shared.gone.lock().unwrap_or_else(|e| e.into_inner()));
        for ip in gone {
            self.table.forget_pod(ip, &mut self.kernel);
        }
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
    let _ = socket::setsockopt(&fd, sockopt::KeepAlive, &true);
    let _ = socket::setsockopt(&fd, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE_S);
    let _ = socket::setsockopt(&fd, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL_S);
    let _ = socket::setsockopt(&fd, sockopt::TcpKeepCount, &KEEPALIVE_PROBES);
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
