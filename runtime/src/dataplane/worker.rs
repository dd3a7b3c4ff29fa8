//! One data-plane thread: an epoll loop over its queue of every TAP (and,
//! on thread 0, the ports with a single fd: the overlay socket, the egress
//! socketpair, single-queue TAPs), its own switch instance, and a handoff
//! queue through which the other threads pass it the frames of flows it owns.
//!
//! With one thread there is no steering and no handoff: every frame is
//! decided where it was read, as before threads existed.

use std::collections::{HashMap, HashSet};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant as StdInstant;

use netstack::overlay::DECAP_HEADROOM;
use netstack::overlay::deliver::{Coalescer, Push};
use netstack::overlay::transmit::{self, Encapsulator, Fallback, Plan, SendError};
use netstack::switch::{DropReason, PortId, PortKind, PortSpec, Switch, Verdict};
use netstack::wire::{EthernetAddress, Ipv4Address, vxlan};
use netstack::{Instant, wire::vnet};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::SockaddrIn;

use super::doorbell::Doorbell;
use super::steer::{Owner, Steering};
use super::{AttachError, Captured, Command, IoStats, PortReport, UpstreamQuery, overlay};

/// Largest frame a TAP with TSO hands over: 64 KiB of IP plus Ethernet and
/// the virtio-net header.
const FRAME_CAPACITY: usize = vnet::HEADER_LEN + 14 + 65_535;
/// Frames read from one port per wakeup before the others get their turn.
const READ_BUDGET: usize = 64;
/// epoll token of the thread's eventfd (commands and handoffs).
pub(super) const WAKE_TOKEN: u64 = u64::MAX;
/// Bytes of frames one thread may have waiting in its handoff queue: as
/// much as the overlay socket or the egress socketpair buffers, whatever
/// the frames' sizes (64 KiB super-frames or MSS segments).
pub(super) const HANDOFF_BYTES: usize = 4 << 20;
/// How often idle flows are swept from the conntrack table.
const EXPIRY_INTERVAL: netstack::Duration = netstack::Duration::from_secs(1);

/// A frame read by one thread for a flow another thread owns.
pub(super) enum Handoff {
    /// From a TAP or the egress port: virtio-net header, then the frame.
    Frame(PortId, Vec<u8>),
    /// A VXLAN datagram from the overlay socket, after
    /// [`DECAP_HEADROOM`] bytes of headroom, and its sender.
    Overlay(Ipv4Address, Vec<u8>),
}

impl Handoff {
    /// Bytes it holds.
    fn len(&self) -> usize {
        match self {
            Handoff::Frame(_, frame) => frame.len(),
            Handoff::Overlay(_, datagram) => datagram.len(),
        }
    }
}

/// What the threads share: how flows are steered, each thread's way in, and
/// the counters `podnet node stats` shows per thread.
pub(super) struct Shared {
    /// Flow → thread.
    pub(super) steering: Steering,
    /// Each thread's handoff queue and wakeup.
    pub(super) lanes: Vec<Lane>,
    /// Each thread's counters.
    pub(super) counters: Vec<ThreadCounters>,
}

/// The way into one thread.
pub(super) struct Lane {
    /// Its handoff queue (bounded).
    pub(super) handoff: mpsc::SyncSender<Handoff>,
    /// Its wakeup, for handoffs and commands alike.
    pub(super) doorbell: Doorbell,
    /// Bytes of the frames in its handoff queue.
    pub(super) bytes: AtomicUsize,
}

/// One thread's counters, written by it alone.
#[derive(Default)]
pub(super) struct ThreadCounters {
    /// Frames it decided (read by it or handed to it).
    pub(super) frames: AtomicU64,
    /// Frames it read and passed to their flow's owner.
    pub(super) handed_off: AtomicU64,
    /// Frames it could not pass: the owner's handoff queue was full.
    pub(super) handoff_full: AtomicU64,
    /// Service flows whose replies could not be redirected to it: the
    /// redirect table was full.
    pub(super) redirect_full: AtomicU64,
}

/// A port's fd on this thread, and whether this thread reads it.
struct PortFd {
    fd: OwnedFd,
    read: bool,
}

pub(super) struct Worker {
    pub(super) index: usize,
    pub(super) shared: Arc<Shared>,
    pub(super) switch: Switch,
    pub(super) epoll: Epoll,
    pub(super) queue: mpsc::Receiver<Command>,
    pub(super) handoffs: mpsc::Receiver<Handoff>,
    fds: HashMap<PortId, PortFd>,
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

impl Worker {
    /// Thread `index` of `shared.lanes.len()`, deciding with `switch`.
    pub(super) fn new(
        index: usize,
        shared: Arc<Shared>,
        switch: Switch,
        epoll: Epoll,
        queue: mpsc::Receiver<Command>,
        handoffs: mpsc::Receiver<Handoff>,
        upstream: tokio::sync::mpsc::Sender<UpstreamQuery>,
    ) -> Worker {
        let reply = vec![0u8; switch.min_reply_len()];
        Worker {
            index,
            shared,
            switch,
            epoll,
            queue,
            handoffs,
            fds: HashMap::new(),
            io: HashMap::new(),
            epoch: StdInstant::now(),
            next_expiry: Instant::ZERO,
            captures: HashMap::new(),
            upstream,
            reply,
            overlay: None,
            encap: None,
            coalescer: None,
            control: overlay::control_buffer(),
        }
    }

    fn threads(&self) -> usize {
        self.shared.lanes.len()
    }

    pub(super) fn run(&mut self) {
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
                self.forget_redirects();
                self.next_expiry = now + EXPIRY_INTERVAL;
            }
            for event in &events[..ready] {
                if event.data() == WAKE_TOKEN {
                    // Before draining: the commands now, the handoffs below.
                    self.shared.lanes[self.index].doorbell.answer();
                    if !self.run_commands() {
                        return;
                    }
                } else {
                    // Frames handed over earlier go first: a flow's packets
                    // keep their order as far as this thread can tell.
                    self.take_handoffs();
                    self.drain(PortId(event.data() as u16), &mut frame);
                }
            }
            self.take_handoffs();
        }
    }

    /// Applies queued commands; false when told to stop.
    fn run_commands(&mut self) -> bool {
        while let Ok(command) = self.queue.try_recv() {
            match command {
                Command::Attach(spec, fd, read, reply) => {
                    let _ = reply.send(self.attach(spec, fd, read));
                }
                Command::AttachOverlay(fd, port, read, reply) => {
                    let spec = PortSpec {
                        kind: PortKind::Overlay,
                        mac: EthernetAddress([0; 6]),
                        ip: Ipv4Address::UNSPECIFIED.into(),
                    };
                    let result = self.attach(spec, fd, read);
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
                    if let Some(port) = self.fds.remove(&id)
                        && port.read
                    {
                        let _ = self.epoll.delete(&port.fd);
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

    fn attach(&mut self, spec: PortSpec, fd: OwnedFd, read: bool) -> Result<PortId, AttachError> {
        let id = self.switch.attach(spec)?;
        if read && let Err(e) = self.epoll.add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, id.0 as u64)) {
            self.switch.detach(id);
            return Err(AttachError::Epoll(e));
        }
        self.fds.insert(id, PortFd { fd, read });
        self.io.insert(id, IoStats::default());
        Ok(id)
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Forgets the redirects of this thread's Service flows that are gone.
    fn forget_redirects(&mut self) {
        let redirects = &self.shared.steering.redirects;
        if redirects.is_empty() {
            return;
        }
        let live: HashSet<_> = self.switch.conntrack().iter().map(|flow| *flow.reply()).collect();
        redirects.retain_owned(self.index, |key| live.contains(key));
    }

    /// Decides the frames other threads handed over.
    fn take_handoffs(&mut self) {
        if self.threads() == 1 {
            return;
        }
        let mut reply = std::mem::take(&mut self.reply);
        let mut overlay = false;
        while let Ok(handoff) = self.handoffs.try_recv() {
            self.shared.lanes[self.index].bytes.fetch_sub(handoff.len(), Ordering::AcqRel);
            match handoff {
                Handoff::Frame(port, mut frame) => self.decide(port, &mut frame, &mut reply),
                Handoff::Overlay(from, mut buf) => {
                    overlay = true;
                    self.decide_overlay(from, &mut buf, &mut reply);
                }
            }
        }
        self.reply = reply;
        if overlay {
            self.flush_gro();
        }
        self.flush_carry();
    }

    /// Passes `handoff` to thread `owner`; false (and counted) when its
    /// queue is full.
    fn hand_off(&self, owner: usize, handoff: Handoff) {
        let counters = &self.shared.counters[self.index];
        let lane = &self.shared.lanes[owner];
        let len = handoff.len();
        if lane.bytes.fetch_add(len, Ordering::AcqRel) + len > HANDOFF_BYTES {
            lane.bytes.fetch_sub(len, Ordering::AcqRel);
            counters.handoff_full.fetch_add(1, Ordering::Relaxed);
            return lane.doorbell.ring();
        }
        match lane.handoff.try_send(handoff) {
            Ok(()) => counters.handed_off.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                lane.bytes.fetch_sub(len, Ordering::AcqRel);
                counters.handoff_full.fetch_add(1, Ordering::Relaxed)
            }
        };
        lane.doorbell.ring();
    }

    /// The thread that decides `frame` (Ethernet, no virtio-net header):
    /// this one when it owns the flow or the frame has no owner.
    fn owner_of(&self, frame: &[u8]) -> usize {
        if self.threads() == 1 {
            return self.index;
        }
        self.shared.steering.owner(frame).thread().unwrap_or(self.index)
    }

    /// Reads up to [`READ_BUDGET`] frames from one port and acts on each.
    fn drain(&mut self, port: PortId, frame: &mut [u8]) {
        let mut reply = std::mem::take(&mut self.reply);
        if self.overlay.is_some_and(|(overlay, _)| overlay == port) {
            self.drain_overlay(port, frame, &mut reply);
        } else {
            self.drain_tap(port, frame, &mut reply);
            // Held-back datagrams never wait beyond the drain that cut them.
            self.flush_carry();
        }
        self.reply = reply;
    }

    fn drain_tap(&mut self, port: PortId, frame: &mut [u8], reply: &mut [u8]) {
        for _ in 0..READ_BUDGET {
            let Some(fd) = self.fds.get(&port) else {
                return;
            };
            let len = match nix::unistd::read(&fd.fd, frame) {
                Ok(len) => len,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::debug!("read from port {}: {e}", port.0);
                    return;
                }
            };
            let owner = self.owner_of(frame[..len].get(vnet::HEADER_LEN..).unwrap_or_default());
            if owner != self.index {
                self.hand_off(owner, Handoff::Frame(port, frame[..len].to_vec()));
                continue;
            }
            self.decide(port, &mut frame[..len], reply);
        }
    }

    /// Decides one frame (virtio-net header first) received on `port`.
    fn decide(&mut self, port: PortId, frame: &mut [u8], reply: &mut [u8]) {
        self.shared.counters[self.index].frames.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        // Captured as received (the switch may rewrite it), with the
        // switch's verdict, so a capture shows why a frame went nowhere.
        let seen = self.captures.contains_key(&port).then(|| frame.to_vec());
        let created = self.switch.conntrack().stats().created;
        let verdict = self.switch.process(now, port, frame, reply);
        if let Some(seen) = seen {
            let dropped = match verdict {
                Verdict::Drop(reason) => Some(reason),
                _ => None,
            };
            self.capture_dropped(port, &seen, dropped);
        }
        if self.switch.conntrack().stats().created != created {
            self.redirect_replies(frame);
        }
        match verdict {
            Verdict::Forward { egress } => self.transmit(egress, frame),
            Verdict::Reply { len } => self.transmit(port, &reply[..len]),
            // Out-of-zone DNS goes to the upstream relay task.
            Verdict::Upstream(up) => {
                // A full queue means a query storm: drop, the client retries.
                let query = UpstreamQuery { client: up.client, query: up.query(frame).to_vec() };
                let _ = self.upstream.try_send(query);
            }
            Verdict::Encapsulate { peer } => self.encapsulate(peer, frame),
            Verdict::Drop(_) => {}
        }
    }

    /// After the switch opened a flow for `frame` (as it leaves, rewritten):
    /// when its replies hash to another thread (a Service flow, translated),
    /// records that they are this thread's, before the frame goes out.
    fn redirect_replies(&self, frame: &[u8]) {
        if self.threads() == 1 {
            return;
        }
        let steering = &self.shared.steering;
        let Owner::Flow(key, _) = steering.owner(frame.get(vnet::HEADER_LEN..).unwrap_or_default()) else {
            return;
        };
        let reply = key.reversed();
        if steering.natural(&reply) != self.index && !steering.redirects.insert(reply, self.index) {
            self.shared.counters[self.index].redirect_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads up to [`READ_BUDGET`] times from the overlay socket (a VXLAN
    /// datagram, or with UDP GRO a run of them), hands each datagram to the
    /// switch with its sender (or to the thread owning its flow), and
    /// delivers what it forwards through the coalescer: consecutive TCP
    /// segments of a flow reach the pod as one super-frame, written when the
    /// socket is drained.
    fn drain_overlay(&mut self, port: PortId, buf: &mut [u8], reply: &mut [u8]) {
        for _ in 0..READ_BUDGET {
            let Some(fd) = self.fds.get(&port) else { break };
            let received =
                match overlay::recv_batch(fd.fd.as_fd(), &mut buf[DECAP_HEADROOM..], &mut self.control) {
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
            let from = received.from.ip();
            let mut at = 0;
            while at < received.len {
                let len = received.segment_len.min(received.len - at);
                // Datagram `at` sits at DECAP_HEADROOM + at; its headroom is
                // the tail of the datagram before, already copied or written,
                // so the switch may write the virtio-net header over it.
                let frame = &mut buf[at..DECAP_HEADROOM + at + len];
                let inner = frame.get(DECAP_HEADROOM + vxlan::HEADER_LEN..).unwrap_or_default();
                let owner = self.owner_of(inner);
                if owner == self.index {
                    self.decide_overlay(from, frame, reply);
                } else {
                    let mut copy = vec![0u8; frame.len()];
                    copy[DECAP_HEADROOM..].copy_from_slice(&frame[DECAP_HEADROOM..]);
                    self.hand_off(owner, Handoff::Overlay(from, copy));
                }
                at += len;
            }
        }
        self.flush_gro();
    }

    /// Decides one overlay datagram (after its headroom) from `from`.
    fn decide_overlay(&mut self, from: Ipv4Address, frame: &mut [u8], reply: &mut [u8]) {
        self.shared.counters[self.index].frames.fetch_add(1, Ordering::Relaxed);
        let Some((port, _)) = self.overlay else { return };
        let now = self.now();
        // The switch answers nothing back into the overlay: the rest is dropped.
        if let Verdict::Forward { egress } = self.switch.process_overlay(now, from, frame, reply) {
            self.capture(port, frame);
            self.deliver(egress, frame);
        }
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
            let result = overlay::send_gathered(fd.fd.as_fd(), &iov[..parts.len()], tx.segment_len, &to);
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
        if write_frame(fd.fd.as_fd(), bytes).is_err()
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

/// Nice value of the data-plane threads.
const DATAPLANE_NICE: libc::c_int = -10;

/// Gives a data-plane thread a larger CPU share than pods' processes.
/// Every packet between pods waits for a data-plane thread to be scheduled;
/// the kernel's own forwarding runs in softirq context, ahead of any
/// process. On a busy node a TCP stream through the overlay otherwise waits
/// behind pod workloads at each hop (bench/overlay, nice 0 and -10
/// alternating in one run: 1-stream podnet/kernel medians 0.50 and 0.67). A
/// flood takes at most `dataplane.threads` cores. Best effort: without
/// CAP_SYS_NICE the thread keeps the default.
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
