//! The data-plane thread: one epoll loop that reads frames from every port's
//! TAP, hands them to the netstack switch, and writes them where it says.
//!
//! One thread owns the switch, so the hot path takes no lock. The control side
//! talks to it through a command queue and an eventfd that wakes the loop.
//! Level-triggered epoll plus a per-wakeup read budget gives each port a fair
//! share: a flooding pod cannot starve the others.

pub mod egress;
mod error;
pub mod overlay;
pub mod tap;

pub use error::AttachError;

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::time::Instant as StdInstant;

use netstack::overlay::DECAP_HEADROOM;
use netstack::overlay::deliver::{Coalescer, Push};
use netstack::overlay::transmit::{self, Encapsulator, Fallback, Plan, SendError};
use netstack::switch::{
    DnsClient, DropReason, PortId, PortKind, PortSpec, PortStats, Switch, SwitchConfig, Verdict,
};
use netstack::wire::{EthernetAddress, Ipv4Address};
use netstack::{Instant, wire::vnet};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::SockaddrIn;
use tokio::sync::oneshot;

/// Largest frame a TAP with TSO hands over: 64 KiB of IP plus Ethernet and
/// the virtio-net header.
const FRAME_CAPACITY: usize = vnet::HEADER_LEN + 14 + 65_535;
/// Frames read from one port per wakeup before the others get their turn.
const READ_BUDGET: usize = 64;
const WAKE_TOKEN: u64 = u64::MAX;
/// How often idle flows are swept from the conntrack table.
const EXPIRY_INTERVAL: netstack::Duration = netstack::Duration::from_secs(1);

/// Counters the switch does not see: frames it could not deliver.
#[derive(Debug, Clone, Copy, Default)]
pub struct IoStats {
    /// Writes that failed (TAP queue full, link down; on the overlay port,
    /// sends that failed or offloaded frames that could not be finished).
    pub tx_errors: u64,
}

/// A port's identity and counters, as reported to the control side.
#[derive(Debug, Clone)]
pub struct PortReport {
    /// Port index.
    pub id: PortId,
    /// Identity.
    pub spec: PortSpec,
    /// Switch counters.
    pub stats: PortStats,
    /// I/O counters.
    pub io: IoStats,
}

enum Command {
    Attach(PortSpec, OwnedFd, oneshot::Sender<Result<PortId, AttachError>>),
    AttachOverlay(OwnedFd, u16, oneshot::Sender<Result<PortId, AttachError>>),
    Detach(PortId, oneshot::Sender<()>),
    Report(oneshot::Sender<Vec<PortReport>>),
    /// Table changes (services, DNS records) made on the data-plane thread,
    /// between two frames.
    Update(Box<dyn FnOnce(&mut Switch) + Send>),
    Capture(PortId, tokio::sync::mpsc::Sender<Captured>),
    DnsAnswer(DnsClient, Vec<u8>),
    Stop,
}

/// A cluster DNS query for a name outside the zone, to relay upstream.
#[derive(Debug)]
pub struct UpstreamQuery {
    /// Who asked, for the answer's way back.
    pub client: DnsClient,
    /// The DNS message.
    pub query: Vec<u8>,
}

/// A cheap, cloneable handle for tasks that talk to the data-plane thread:
/// upstream DNS answers, zone look-ups for DNS over TCP.
#[derive(Clone)]
pub struct DataplaneHandle {
    commands: mpsc::Sender<Command>,
    wake: std::sync::Arc<EventFd>,
}

impl DataplaneHandle {
    fn send(&self, command: Command) -> io::Result<()> {
        self.commands.send(command).map_err(|_| io::Error::other("data plane stopped"))?;
        self.wake.write(1)?;
        Ok(())
    }

    /// Sends `answer` (a DNS response from upstream) to the pod that asked.
    pub fn dns_answer(&self, client: DnsClient, answer: Vec<u8>) {
        let _ = self.send(Command::DnsAnswer(client, answer));
    }

    /// Runs `change` on the switch between two frames and returns its result.
    pub async fn update<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Switch) -> T + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Update(Box::new(move |switch| {
            let _ = tx.send(change(switch));
        })))?;
        rx.await.map_err(|_| io::Error::other("data plane stopped"))
    }
}

/// A frame seen on a captured port.
#[derive(Debug)]
pub struct Captured {
    /// When, since the Unix epoch.
    pub at: std::time::Duration,
    /// The Ethernet frame, without its virtio-net header.
    pub frame: Vec<u8>,
    /// Why the switch dropped it, if it did (a frame received from the port).
    pub dropped: Option<DropReason>,
}

/// The control side's handle on the data-plane thread.
pub struct Dataplane {
    commands: mpsc::Sender<Command>,
    wake: std::sync::Arc<EventFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dataplane {
    /// Starts the data-plane thread with an empty switch.
    pub fn start(
        config: SwitchConfig,
        upstream: tokio::sync::mpsc::Sender<UpstreamQuery>,
    ) -> io::Result<Dataplane> {
        let switch = Switch::new(config).map_err(io::Error::other)?;
        let reply_capacity = switch.min_reply_len();
        let wake = std::sync::Arc::new(EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?);
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN))?;
        let (commands, queue) = mpsc::channel();
        let mut lp = Loop {
            switch,
            epoll,
            wake: wake.clone(),
            queue,
            fds: HashMap::new(),
            io: HashMap::new(),
            epoch: StdInstant::now(),
            next_expiry: Instant::ZERO,
            captures: HashMap::new(),
            upstream,
            reply: vec![0u8; reply_capacity],
            overlay: None,
            encap: None,
            coalescer: None,
            control: overlay::control_buffer(),
        };
        let thread = std::thread::Builder::new().name("dataplane".into()).spawn(move || lp.run())?;
        Ok(Dataplane { commands, wake, thread: Some(thread) })
    }

    fn send(&self, command: Command) -> io::Result<()> {
        self.commands.send(command).map_err(|_| io::Error::other("data plane stopped"))?;
        self.wake.write(1)?;
        Ok(())
    }

    /// Attaches a TAP fd as a switch port.
    pub async fn attach(&self, spec: PortSpec, fd: OwnedFd) -> io::Result<PortId> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Attach(spec, fd, tx))?;
        let result = rx.await.map_err(|_| io::Error::other("data plane stopped"))?;
        result.map_err(io::Error::other)
    }

    /// Attaches the overlay: `socket` is a UDP socket bound to the VXLAN
    /// port of the node's underlay, `port` the peers' VXLAN port. The
    /// switch's VTEP MAC and VNI come from its config; peers are set with
    /// [`Dataplane::update`] and `Switch::set_overlay_peers`.
    pub async fn attach_overlay(&self, socket: std::net::UdpSocket, port: u16) -> io::Result<PortId> {
        socket.set_nonblocking(true)?;
        let (tx, rx) = oneshot::channel();
        self.send(Command::AttachOverlay(socket.into(), port, tx))?;
        let result = rx.await.map_err(|_| io::Error::other("data plane stopped"))?;
        result.map_err(io::Error::other)
    }

    /// Detaches a port and closes its TAP fd (the device disappears with it).
    pub async fn detach(&self, id: PortId) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Detach(id, tx))?;
        rx.await.map_err(|_| io::Error::other("data plane stopped"))
    }

    /// A cloneable handle for tasks.
    pub fn handle(&self) -> DataplaneHandle {
        DataplaneHandle { commands: self.commands.clone(), wake: self.wake.clone() }
    }

    /// Runs `change` on the switch between two frames and returns its result.
    pub async fn update<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Switch) -> T + Send + 'static,
    ) -> io::Result<T> {
        self.handle().update(change).await
    }

    /// Copies every frame received from or sent to `port` into `sink`, until
    /// the receiver is dropped. Frames are dropped, not queued, when the
    /// receiver lags: a capture never slows the switch.
    pub fn capture(&self, port: PortId, sink: tokio::sync::mpsc::Sender<Captured>) -> io::Result<()> {
        self.send(Command::Capture(port, sink))
    }

    /// Every port with its counters.
    pub async fn report(&self) -> io::Result<Vec<PortReport>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Report(tx))?;
        rx.await.map_err(|_| io::Error::other("data plane stopped"))
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Loop {
    switch: Switch,
    epoll: Epoll,
    wake: std::sync::Arc<EventFd>,
    queue: mpsc::Receiver<Command>,
    fds: HashMap<PortId, OwnedFd>,
    io: HashMap<PortId, IoStats>,
    epoch: StdInstant,
    next_expiry: Instant,
    captures: HashMap<PortId, Vec<tokio::sync::mpsc::Sender<Captured>>>,
    upstream: tokio::sync::mpsc::Sender<UpstreamQuery>,
    /// Room for frames the switch builds itself (ARP, ICMP errors, RSTs, DNS).
    reply: Vec<u8>,
    /// The overlay port and the peers' VXLAN port.
    overlay: Option<(PortId, u16)>,
    /// Plans the VXLAN sends of encapsulated frames (allocated with the
    /// overlay; taken out while in use).
    encap: Option<Box<Encapsulator>>,
    /// Merges TCP segments from the overlay into super-frames for the pods
    /// (allocated with the overlay; taken out while in use).
    coalescer: Option<Coalescer>,
    /// Room for an overlay receive's control message.
    control: Vec<u8>,
}

impl Loop {
    fn run(&mut self) {
        raise_priority();
        let mut frame = vec![0u8; FRAME_CAPACITY];
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let ready = match self.epoll.wait(&mut events, EpollTimeout::from(1000u16)) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("data plane epoll failed: {e}");
                    return;
                }
            };
            let now = self.now();
            if now >= self.next_expiry {
                self.switch.expire_flows(now);
                self.next_expiry = now + EXPIRY_INTERVAL;
            }
            for event in &events[..ready] {
                if event.data() == WAKE_TOKEN {
                    let _ = self.wake.read();
                    if !self.run_commands() {
                        return;
                    }
                } else {
                    self.drain(PortId(event.data() as u16), &mut frame);
                }
            }
        }
    }

    /// Applies queued commands; false when told to stop.
    fn run_commands(&mut self) -> bool {
        while let Ok(command) = self.queue.try_recv() {
            match command {
                Command::Attach(spec, fd, reply) => {
                    let _ = reply.send(self.attach(spec, fd));
                }
                Command::AttachOverlay(fd, port, reply) => {
                    let spec = PortSpec {
                        kind: PortKind::Overlay,
                        mac: EthernetAddress([0; 6]),
                        ip: Ipv4Address::UNSPECIFIED.into(),
                    };
                    let result = self.attach(spec, fd);
                    if let Ok(id) = result {
                        self.overlay = Some((id, port));
                        self.encap = Some(Box::new(Encapsulator::new(self.switch.vni())));
                        self.coalescer = Some(Coalescer::new());
                    }
                    let _ = reply.send(result);
                }
                Command::Detach(id, reply) => {
                    if self.overlay.is_some_and(|(overlay, _)| overlay == id) {
                        self.overlay = None;
                    }
                    self.switch.detach(id);
                    self.captures.remove(&id);
                    self.io.remove(&id);
                    if let Some(fd) = self.fds.remove(&id) {
                        let _ = self.epoll.delete(&fd);
                    }
                    let _ = reply.send(());
                }
                Command::Report(reply) => {
                    let ports = self
                        .switch
                        .ports()
                        .map(|(id, spec, stats)| PortReport {
                            id,
                            spec: *spec,
                            stats: *stats,
                            io: self.io.get(&id).copied().unwrap_or_default(),
                        })
                        .collect();
                    let _ = reply.send(ports);
                }
                Command::Update(change) => change(&mut self.switch),
                Command::Capture(port, sink) => self.captures.entry(port).or_default().push(sink),
                Command::DnsAnswer(client, answer) => {
                    let mut out = std::mem::take(&mut self.reply);
                    if let Some(len) = self.switch.dns_reply_frame(&client, &answer, &mut out) {
                        self.transmit(client.port, &out[..len]);
                    }
                    self.reply = out;
                }
                Command::Stop => return false,
            }
        }
        true
    }

    fn attach(&mut self, spec: PortSpec, fd: OwnedFd) -> Result<PortId, AttachError> {
        let id = self.switch.attach(spec)?;
        if let Err(e) = self.epoll.add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, id.0 as u64)) {
            self.switch.detach(id);
            return Err(AttachError::Epoll(e));
        }
        self.fds.insert(id, fd);
        self.io.insert(id, IoStats::default());
        Ok(id)
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Reads up to [`READ_BUDGET`] frames from one port and acts on each.
    fn drain(&mut self, port: PortId, frame: &mut [u8]) {
        let mut reply = std::mem::take(&mut self.reply);
        self.drain_with(port, frame, &mut reply);
        self.reply = reply;
    }

    fn drain_with(&mut self, port: PortId, frame: &mut [u8], reply: &mut [u8]) {
        if self.overlay.is_some_and(|(overlay, _)| overlay == port) {
            return self.drain_overlay(port, frame, reply);
        }
        self.drain_tap(port, frame, reply);
        // Held-back datagrams never wait beyond the drain that cut them.
        self.flush_carry();
    }

    fn drain_tap(&mut self, port: PortId, frame: &mut [u8], reply: &mut [u8]) {
        for _ in 0..READ_BUDGET {
            let Some(fd) = self.fds.get(&port) else {
                return;
            };
            let len = match nix::unistd::read(fd, frame) {
                Ok(len) => len,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::debug!("read from port {}: {e}", port.0);
                    return;
                }
            };
            let now = self.now();
            // Captured as received (the switch may rewrite it), with the
            // switch's verdict, so a capture shows why a frame went nowhere.
            let seen = self.captures.contains_key(&port).then(|| frame[..len].to_vec());
            let verdict = self.switch.process(now, port, &mut frame[..len], reply);
            if let Some(seen) = seen {
                let dropped = match verdict {
                    Verdict::Drop(reason) => Some(reason),
                    _ => None,
                };
                self.capture_dropped(port, &seen, dropped);
            }
            match verdict {
                Verdict::Forward { egress } => self.transmit(egress, &frame[..len]),
                Verdict::Reply { len } => self.transmit(port, &reply[..len]),
                // Out-of-zone DNS goes to the upstream relay task.
                Verdict::Upstream(up) => {
                    // A full queue means a query storm: drop, the client retries.
                    let query = UpstreamQuery { client: up.client, query: up.query(&frame[..len]).to_vec() };
                    let _ = self.upstream.try_send(query);
                }
                Verdict::Encapsulate { peer } => self.encapsulate(peer, &mut frame[..len]),
                Verdict::Drop(_) => {}
            }
        }
    }

    /// Reads up to [`READ_BUDGET`] times from the overlay socket (a VXLAN
    /// datagram, or with UDP GRO a run of them), hands each datagram to the
    /// switch with its sender, and delivers what it forwards through the
    /// coalescer: consecutive TCP segments of a flow reach the pod as one
    /// super-frame, written when the socket is drained.
    fn drain_overlay(&mut self, port: PortId, buf: &mut [u8], reply: &mut [u8]) {
        for _ in 0..READ_BUDGET {
            let Some(fd) = self.fds.get(&port) else { break };
            let received =
                match overlay::recv_batch(fd.as_fd(), &mut buf[DECAP_HEADROOM..], &mut self.control) {
                    Ok(Some(received)) => received,
                    Ok(None) => continue,
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        // ICMP errors from peers surface here (ECONNREFUSED): not fatal.
                        tracing::trace!("overlay recvmsg: {e}");
                        continue;
                    }
                };
            let now = self.now();
            let from = received.from.ip();
            let mut at = 0;
            while at < received.len {
                let len = received.segment_len.min(received.len - at);
                // Datagram `at` sits at DECAP_HEADROOM + at; its headroom is
                // the tail of the datagram before, already copied or written,
                // so the switch may write the virtio-net header over it.
                let frame = &mut buf[at..DECAP_HEADROOM + at + len];
                // The switch answers nothing back into the overlay: the rest is dropped.
                if let Verdict::Forward { egress } = self.switch.process_overlay(now, from, frame, reply) {
                    self.capture(port, frame);
                    self.deliver(egress, frame);
                }
                at += len;
            }
        }
        self.flush_gro();
    }

    /// Passes `frame` (virtio-net header, then the frame) to the coalescer
    /// for `egress`, writing what it says to write.
    fn deliver(&mut self, egress: PortId, frame: &[u8]) {
        let Some(mut coalescer) = self.coalescer.take() else {
            return self.transmit(egress, frame);
        };
        loop {
            match coalescer.push(egress, frame) {
                Push::Held => break,
                Push::Flush => self.write_pending(&mut coalescer),
                Push::Alone(port) => {
                    self.transmit(port, frame);
                    break;
                }
            }
        }
        self.coalescer = Some(coalescer);
    }

    /// Writes the coalescer's pending super-frame, if any.
    fn write_pending(&mut self, coalescer: &mut Coalescer) {
        if let Some((egress, frame)) = coalescer.take() {
            self.transmit(egress, frame);
        }
    }

    fn flush_gro(&mut self) {
        if let Some(mut coalescer) = self.coalescer.take() {
            self.write_pending(&mut coalescer);
            self.coalescer = Some(coalescer);
        }
    }

    /// Sends a frame the switch encapsulated for `peer`, as netstack's
    /// encapsulation step plans it.
    fn encapsulate(&mut self, peer: Ipv4Address, frame: &mut [u8]) {
        let Some(mut encap) = self.encap.take() else { return };
        let plan = encap.encapsulate(peer, frame);
        self.send_plan(plan);
        self.encap = Some(encap);
    }

    /// Sends the held-back datagrams, if any.
    fn flush_carry(&mut self) {
        let Some(mut encap) = self.encap.take() else { return };
        if encap.held() > 0 {
            let plan = encap.flush();
            self.send_plan(plan);
        }
        self.encap = Some(encap);
    }

    /// Makes the sends `plan` describes and reports each result to it.
    fn send_plan(&mut self, mut plan: Plan<'_>) {
        let Some((port, udp_port)) = self.overlay else { return };
        while let Some(tx) = plan.next() {
            let to = SockaddrIn::from(std::net::SocketAddrV4::new(tx.to, udp_port));
            if !self.captures.is_empty() && !tx.retry {
                let gathered: Vec<u8> = plan.parts().iter().flat_map(|p| plan.bytes(p)).copied().collect();
                let size = tx.segment_len.map_or(gathered.len(), usize::from).max(1);
                for datagram in gathered.chunks(size) {
                    self.capture(port, &[&[0u8; DECAP_HEADROOM][..], datagram].concat());
                }
            }
            let Some(fd) = self.fds.get(&port) else { return };
            let mut iov = [IoSlice::new(&[]); transmit::MAX_PARTS];
            let parts = plan.parts();
            for (slot, part) in iov.iter_mut().zip(parts) {
                *slot = IoSlice::new(plan.bytes(part));
            }
            let result = overlay::send_gathered(fd.as_fd(), &iov[..parts.len()], tx.segment_len, &to);
            let result = result.map_err(|e| {
                tracing::trace!("overlay sendmsg {to}: {e}");
                send_error(e)
            });
            match plan.sent(result) {
                Fallback::None => {}
                Fallback::Retry => {
                    tracing::debug!("overlay: UDP GSO send to {to} failed; retrying datagram by datagram")
                }
                Fallback::GsoOff => {
                    tracing::info!("overlay: no UDP GSO towards {to}; sending datagram by datagram")
                }
            }
        }
        let errors = plan.errors();
        if errors > 0
            && let Some(io) = self.io.get_mut(&port)
        {
            io.tx_errors += u64::from(errors);
        }
    }

    /// Hands a copy of a frame to the port's captures, forgetting those whose
    /// reader went away.
    fn capture(&mut self, port: PortId, bytes: &[u8]) {
        self.capture_dropped(port, bytes, None);
    }

    /// [`Self::capture`] of a frame the switch dropped for `dropped`.
    fn capture_dropped(&mut self, port: PortId, bytes: &[u8], dropped: Option<DropReason>) {
        if self.captures.is_empty() {
            return;
        }
        let Some(sinks) = self.captures.get_mut(&port) else { return };
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let frame = bytes.get(vnet::HEADER_LEN..).unwrap_or_default();
        sinks.retain(|sink| {
            !matches!(
                sink.try_send(Captured { at, frame: frame.to_vec(), dropped }),
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_))
            )
        });
        if sinks.is_empty() {
            self.captures.remove(&port);
        }
    }

    fn transmit(&mut self, port: PortId, bytes: &[u8]) {
        self.capture(port, bytes);
        let Some(fd) = self.fds.get(&port) else {
            return;
        };
        if write_frame(fd.as_fd(), bytes).is_err()
            && let Some(io) = self.io.get_mut(&port)
        {
            io.tx_errors += 1;
        }
    }
}

/// What netstack's encapsulation step needs to know of a failed send.
fn send_error(e: Errno) -> SendError {
    match e {
        Errno::EAGAIN | Errno::ENOBUFS => SendError::Full,
        // EIO: the route's device cannot checksum for GSO; ENOPROTOOPT and
        // EOPNOTSUPP: a kernel without UDP GSO.
        Errno::EIO | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP => SendError::GsoRefused,
        _ => SendError::Other,
    }
}

/// Nice value of the data-plane thread.
const DATAPLANE_NICE: libc::c_int = -10;

/// Gives the data-plane thread a larger CPU share than pods' processes.
/// Every packet between pods waits for this thread to be scheduled; the
/// kernel's own forwarding runs in softirq context, ahead of any process.
/// On a busy node a TCP stream through the overlay otherwise waits behind
/// pod workloads at each hop (bench/overlay, nice 0 and -10 alternating in
/// one run: 1-stream podnet/kernel medians 0.50 and 0.67). Still one thread,
/// so a flood takes at most one core. Best effort: without CAP_SYS_NICE the
/// thread keeps the default.
fn raise_priority() {
    if let Err(e) = crate::sys::process::set_thread_nice(nix::unistd::gettid(), DATAPLANE_NICE) {
        tracing::debug!("data plane: nice {DATAPLANE_NICE} refused: {e}");
    }
}

fn write_frame(fd: BorrowedFd<'_>, bytes: &[u8]) -> nix::Result<()> {
    loop {
        match nix::unistd::write(fd, bytes) {
            Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::trace!("write to tap fd {}: {e}", fd.as_raw_fd());
                return Err(e);
            }
        }
    }
}
