//! The data-plane threads: each an epoll loop that reads frames from its
//! queue of every port's TAP, hands them to its own netstack switch, and
//! writes them where it says (`worker.rs`).
//!
//! Each thread owns its switch, so the hot path takes no lock; a flow is
//! decided by one thread only (`steer.rs`). The control side talks to the
//! threads through a command queue and an eventfd each; what changes the
//! tables (attach, detach, services, policy, DNS records) goes to every
//! thread, in one order for all of them, so their port numbers and tables
//! agree. Level-triggered epoll plus a per-wakeup read budget gives each
//! port a fair share: a flooding pod cannot starve the others.

mod doorbell;
pub mod egress;
mod error;
pub mod overlay;
mod steer;
pub mod tap;
mod worker;

pub use error::AttachError;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use netstack::switch::{DnsClient, DropReason, PortId, PortSpec, PortStats, Switch, SwitchConfig};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::oneshot;

use doorbell::Doorbell;
use steer::Steering;
use worker::{Handoff, Lane, Shared, ThreadCounters, WAKE_TOKEN, Worker};

/// Frames one thread may have waiting in its handoff queue; past it (or
/// past [`worker::HANDOFF_BYTES`]) a handed-off frame is dropped and
/// counted (`handoff_full`), as a full TAP queue drops: TCP retransmits.
const HANDOFF_QUEUE: usize = 4096;

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

/// One data-plane thread's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadStats {
    /// Frames it decided.
    pub frames: u64,
    /// Frames it read for a flow another thread owns, and passed on.
    pub handed_off: u64,
    /// Frames it could not pass on: the owner's queue was full.
    pub handoff_full: u64,
    /// Service flows whose replies could not be steered back to it.
    pub redirect_full: u64,
}

/// A command to one thread. `bool` in the attaches: whether this thread
/// reads the fd (every thread writes to it).
enum Command {
    Attach(PortSpec, OwnedFd, bool, oneshot::Sender<Result<PortId, AttachError>>),
    AttachOverlay(OwnedFd, u16, bool, oneshot::Sender<Result<PortId, AttachError>>),
    Detach(PortId, oneshot::Sender<()>),
    Report(oneshot::Sender<Vec<PortReport>>),
    /// Table changes (services, DNS records) made on a data-plane thread,
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

/// The command queues of every thread, and the lock that puts commands
/// meant for all of them in one order.
struct Threads {
    commands: Vec<mpsc::Sender<Command>>,
    shared: Arc<Shared>,
    order: Mutex<()>,
}

/// A cheap, cloneable handle for tasks that talk to the data-plane threads:
/// upstream DNS answers, zone look-ups for DNS over TCP, table changes.
#[derive(Clone)]
pub struct DataplaneHandle {
    threads: Arc<Threads>,
}

fn stopped() -> io::Error {
    io::Error::other("data plane stopped")
}

impl DataplaneHandle {
    fn send_to(&self, thread: usize, command: Command) -> io::Result<()> {
        self.threads.commands[thread].send(command).map_err(|_| stopped())?;
        self.threads.shared.lanes[thread].doorbell.ring();
        Ok(())
    }

    /// Sends one command to every thread, built by `command(thread)`, in
    /// the same order relative to other such commands on every thread.
    fn send_all(&self, mut command: impl FnMut(usize) -> Command) -> io::Result<()> {
        let _order = self.threads.order.lock().unwrap_or_else(|e| e.into_inner());
        (0..self.threads.commands.len()).try_for_each(|thread| self.send_to(thread, command(thread)))
    }

    /// The number of data-plane threads: the queues a TAP needs.
    pub fn threads(&self) -> usize {
        self.threads.commands.len()
    }

    /// Sends `answer` (a DNS response from upstream) to the pod that asked.
    pub fn dns_answer(&self, client: DnsClient, answer: Vec<u8>) {
        let _ = self.send_to(0, Command::DnsAnswer(client, answer));
    }

    /// Runs `change` on every thread's switch between two frames and returns
    /// thread 0's result (the tables are the same on all).
    pub async fn update<T: Send + 'static>(
        &self,
        change: impl Fn(&mut Switch) -> T + Send + Sync + 'static,
    ) -> io::Result<T> {
        let mut all = self.update_all(change).await?;
        Ok(all.swap_remove(0))
    }

    /// Runs `change` on every thread's switch; the results in thread order
    /// (counters to sum, say).
    pub async fn update_all<T: Send + 'static>(
        &self,
        change: impl Fn(&mut Switch) -> T + Send + Sync + 'static,
    ) -> io::Result<Vec<T>> {
        let change = Arc::new(change);
        let mut replies = Vec::with_capacity(self.threads());
        self.send_all(|_| {
            let (tx, rx) = oneshot::channel();
            replies.push(rx);
            let change = change.clone();
            Command::Update(Box::new(move |switch| {
                let _ = tx.send(change(switch));
            }))
        })?;
        let mut results = Vec::with_capacity(replies.len());
        for rx in replies {
            results.push(rx.await.map_err(|_| stopped())?);
        }
        Ok(results)
    }

    /// Runs `look` on one thread's switch (tables are the same on all):
    /// reads that need no other thread, such as a zone look-up.
    pub async fn read<T: Send + 'static>(
        &self,
        look: impl FnOnce(&mut Switch) -> T + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send_to(
            0,
            Command::Update(Box::new(move |switch| {
                let _ = tx.send(look(switch));
            })),
        )?;
        rx.await.map_err(|_| stopped())
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

/// The control side's handle on the data-plane threads.
pub struct Dataplane {
    handle: DataplaneHandle,
    joins: Vec<std::thread::JoinHandle<()>>,
}

impl Dataplane {
    /// Starts `threads` data-plane threads (at least one), each with an
    /// empty switch built from `config`.
    pub fn start(
        config: SwitchConfig,
        upstream: tokio::sync::mpsc::Sender<UpstreamQuery>,
        threads: usize,
    ) -> io::Result<Dataplane> {
        let threads = threads.max(1);
        let mut lanes = Vec::with_capacity(threads);
        let mut receivers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
            let (handoff, handoffs) = mpsc::sync_channel::<Handoff>(HANDOFF_QUEUE);
            lanes.push(Lane { handoff, doorbell: Doorbell::new(wake), bytes: AtomicUsize::new(0) });
            receivers.push(handoffs);
        }
        // Every thread's flow table may hold `max_flows` flows; a redirect
        // exists only for a flow.
        let max_redirects = config.services.max_flows as usize * threads;
        let seed = config.services.hash_seed;
        let shared = Arc::new(Shared {
            steering: Steering::new(threads, seed, config.service_cidr, max_redirects),
            lanes,
            counters: (0..threads).map(|_| ThreadCounters::default()).collect(),
        });
        let mut commands = Vec::with_capacity(threads);
        let mut joins = Vec::with_capacity(threads);
        for (index, handoffs) in receivers.into_iter().enumerate() {
            let switch = Switch::new(config.clone()).map_err(io::Error::other)?;
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            epoll.add(
                shared.lanes[index].doorbell.bell().as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN),
            )?;
            let (tx, queue) = mpsc::channel();
            commands.push(tx);
            let mut worker =
                Worker::new(index, shared.clone(), switch, epoll, queue, handoffs, upstream.clone());
            let name = if threads == 1 { "dataplane".to_string() } else { format!("dataplane-{index}") };
            joins.push(std::thread::Builder::new().name(name).spawn(move || worker.run())?);
        }
        let handle =
            DataplaneHandle { threads: Arc::new(Threads { commands, shared, order: Mutex::new(()) }) };
        Ok(Dataplane { handle, joins })
    }

    /// The number of data-plane threads: open TAPs with this many queues.
    pub fn threads(&self) -> usize {
        self.handle.threads()
    }

    /// Attaches a port: a TAP's queues (one per thread, or a single one),
    /// or another port's one fd. With fewer fds than threads, thread 0
    /// reads the first and the others only write to it.
    pub async fn attach(&self, spec: PortSpec, fds: Vec<OwnedFd>) -> io::Result<PortId> {
        self.attach_each(fds, |fd, read, tx| Command::Attach(spec, fd, read, tx)).await
    }

    /// Sends every thread its fd of a port in the command `attach` makes,
    /// and waits for them to agree on the port.
    async fn attach_each(
        &self,
        fds: Vec<OwnedFd>,
        mut attach: impl FnMut(OwnedFd, bool, oneshot::Sender<Result<PortId, AttachError>>) -> Command,
    ) -> io::Result<PortId> {
        let fds = self.per_thread(fds)?;
        let mut replies = Vec::with_capacity(fds.len());
        let mut fds = fds.into_iter();
        self.handle.send_all(|_| {
            let (tx, rx) = oneshot::channel();
            replies.push(rx);
            let (fd, read) = fds.next().expect("one per thread");
            attach(fd, read, tx)
        })?;
        self.agree(replies).await
    }

    /// Gives every thread a fd: the queue of its own, or a duplicate of the
    /// single fd (read by thread 0 only).
    fn per_thread(&self, fds: Vec<OwnedFd>) -> io::Result<Vec<(OwnedFd, bool)>> {
        let threads = self.threads();
        if fds.len() == threads {
            return Ok(fds.into_iter().map(|fd| (fd, true)).collect());
        }
        let first = fds.into_iter().next().ok_or_else(|| io::Error::other("a port needs a fd"))?;
        let mut out = Vec::with_capacity(threads);
        for _ in 1..threads {
            out.push((first.try_clone()?, false));
        }
        out.insert(0, (first, true));
        Ok(out)
    }

    /// Waits for every thread's attach; they must agree on the port, else
    /// the ones that attached detach again.
    async fn agree(
        &self,
        replies: Vec<oneshot::Receiver<Result<PortId, AttachError>>>,
    ) -> io::Result<PortId> {
        let mut results = Vec::with_capacity(replies.len());
        for rx in replies {
            results.push(rx.await.map_err(|_| stopped())?);
        }
        let first = match &results[0] {
            Ok(id) => Some(*id),
            Err(_) => None,
        };
        if let Some(id) = first
            && results.iter().all(|r| matches!(r, Ok(other) if *other == id))
        {
            return Ok(id);
        }
        // A thread refused (or numbered the port differently, which the one
        // command order rules out): undo on those that attached.
        for (thread, result) in results.iter().enumerate() {
            if let Ok(id) = result {
                let (tx, _rx) = oneshot::channel();
                let _ = self.handle.send_to(thread, Command::Detach(*id, tx));
            }
        }
        match results.into_iter().find_map(Result::err) {
            Some(e) => Err(io::Error::other(e)),
            None => Err(io::Error::other("data-plane threads numbered a port differently")),
        }
    }

    /// Attaches the overlay: `socket` is a UDP socket bound to the VXLAN
    /// port of the node's underlay, `port` the peers' VXLAN port. The
    /// switch's VTEP MAC and VNI come from its config; peers are set with
    /// [`Dataplane::update`] and `Switch::set_overlay_peers`. Thread 0 reads
    /// the socket and passes each datagram to the thread owning its flow;
    /// every thread sends on it.
    pub async fn attach_overlay(&self, socket: std::net::UdpSocket, port: u16) -> io::Result<PortId> {
        socket.set_nonblocking(true)?;
        self.attach_each(vec![socket.into()], |fd, read, tx| Command::AttachOverlay(fd, port, read, tx)).await
    }

    /// Detaches a port and closes its fds (a TAP disappears with them
    /// unless persistent).
    pub async fn detach(&self, id: PortId) -> io::Result<()> {
        let mut replies = Vec::new();
        self.handle.send_all(|_| {
            let (tx, rx) = oneshot::channel();
            replies.push(rx);
            Command::Detach(id, tx)
        })?;
        for rx in replies {
            rx.await.map_err(|_| stopped())?;
        }
        Ok(())
    }

    /// A cloneable handle for tasks.
    pub fn handle(&self) -> DataplaneHandle {
        self.handle.clone()
    }

    /// Runs `change` on every thread's switch between two frames and
    /// returns thread 0's result.
    pub async fn update<T: Send + 'static>(
        &self,
        change: impl Fn(&mut Switch) -> T + Send + Sync + 'static,
    ) -> io::Result<T> {
        self.handle.update(change).await
    }

    /// Runs `change` on every thread's switch; the results in thread order.
    pub async fn update_all<T: Send + 'static>(
        &self,
        change: impl Fn(&mut Switch) -> T + Send + Sync + 'static,
    ) -> io::Result<Vec<T>> {
        self.handle.update_all(change).await
    }

    /// Copies every frame received from or sent to `port` into `sink`, until
    /// the receiver is dropped. Frames are dropped, not queued, when the
    /// receiver lags: a capture never slows the switch.
    pub fn capture(&self, port: PortId, sink: tokio::sync::mpsc::Sender<Captured>) -> io::Result<()> {
        self.handle.send_all(|_| Command::Capture(port, sink.clone()))
    }

    /// Every port with its counters, summed over the threads.
    pub async fn report(&self) -> io::Result<Vec<PortReport>> {
        let mut replies = Vec::new();
        self.handle.send_all(|_| {
            let (tx, rx) = oneshot::channel();
            replies.push(rx);
            Command::Report(tx)
        })?;
        let mut ports: BTreeMap<PortId, PortReport> = BTreeMap::new();
        for rx in replies {
            for report in rx.await.map_err(|_| stopped())? {
                match ports.get_mut(&report.id) {
                    Some(sum) => add_report(sum, &report),
                    None => {
                        ports.insert(report.id, report);
                    }
                }
            }
        }
        Ok(ports.into_values().collect())
    }

    /// Each thread's counters, in thread order.
    pub fn thread_stats(&self) -> Vec<ThreadStats> {
        let read = |c: &ThreadCounters| ThreadStats {
            frames: c.frames.load(Ordering::Relaxed),
            handed_off: c.handed_off.load(Ordering::Relaxed),
            handoff_full: c.handoff_full.load(Ordering::Relaxed),
            redirect_full: c.redirect_full.load(Ordering::Relaxed),
        };
        self.handle.threads.shared.counters.iter().map(read).collect()
    }
}

/// Adds one thread's counters of a port to the sum of the others'.
fn add_report(sum: &mut PortReport, more: &PortReport) {
    let (s, m) = (&mut sum.stats, &more.stats);
    s.rx_packets += m.rx_packets;
    s.rx_bytes += m.rx_bytes;
    s.tx_packets += m.tx_packets;
    s.tx_bytes += m.tx_bytes;
    s.ingress_denied += m.ingress_denied;
    for (total, n) in s.drops.iter_mut().zip(m.drops) {
        *total += n;
    }
    sum.io.tx_errors += more.io.tx_errors;
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let _ = self.handle.send_all(|_| Command::Stop);
        for thread in self.joins.drain(..) {
            let _ = thread.join();
        }
    }
}
