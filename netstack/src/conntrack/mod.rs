//! Connection tracking for Service NAT: one entry per TCP connection or UDP
//! flow, reachable from both directions, so every packet of a connection
//! goes to the backend its first packet was sent to, and replies are
//! translated back.
//!
//! An entry holds two keys, as Linux conntrack does: the `original` tuple as
//! the client sent it (client → VIP) and the `reply` tuple as the backend's
//! answers carry it (backend → the address the backend saw). Translating a
//! packet is then "rewrite it to the reversed other tuple".
//!
//! Capacity is fixed at construction. Entries expire by idle time per TCP
//! state (see [`Timeouts`]), lazily when looked up, in [`Conntrack::expire`]
//! (the runtime's periodic sweep), and when the table is full and a new flow
//! needs room. If nothing has expired the new flow is refused, never an
//! existing one evicted: a live connection is worth more than a new one.
//!
//! Each flow belongs to an [`Owner`], the switch port its first packet came
//! in by, and each owner may hold at most a quota of live (not yet closed)
//! flows: a pod flooding SYNs or UDP from fresh source ports fills its own
//! share, not the table the other pods share. Closed flows do not count;
//! they are given up first whenever the table needs room.

pub mod nat;

use crate::table::{Index, Slab, addr_pair_word, hash2};

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::Protocol;
use crate::wire::IpAddress;
use crate::{Duration, Instant};

pub use crate::wire::tcp_flags;

/// A transport 5-tuple, as one packet carries it. Addresses are
/// family-generic; netstack fills them from IPv4 packets today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// TCP or UDP.
    pub proto: Protocol,
    /// Source address.
    pub src: IpAddress,
    /// Source port.
    pub src_port: u16,
    /// Destination address.
    pub dst: IpAddress,
    /// Destination port.
    pub dst_port: u16,
}

impl FlowKey {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            src_port: self.dst_port,
            dst: self.src,
            dst_port: self.src_port,
        }
    }

    fn hash(&self, seed: u64) -> u64 {
        let addrs = addr_pair_word(self.src, self.dst);
        let rest = (u64::from(self.src_port) << 32) | (u64::from(self.dst_port) << 16) | self.proto as u64;
        hash2(seed, addrs, rest)
    }
}

/// Which way a packet travels relative to the flow's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to service, like the first packet.
    Original,
    /// Backend back to the client.
    Reply,
}

/// Where a flow is in its life; picks its idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// A UDP flow: one timeout whatever happens.
    Udp,
    /// The client's SYN went out; no SYN-ACK seen yet.
    SynSent,
    /// The backend answered the handshake.
    Established,
    /// One side sent FIN; the other may still send.
    Closing,
    /// Both sides sent FIN, or either sent RST.
    Closed,
}

impl FlowState {
    /// The state after a packet with TCP `flags` (0 for UDP) going `dir`.
    fn advance(self, dir: Direction, flags: u8, fin_from: &mut Option<Direction>) -> FlowState {
        use tcp_flags::*;
        match self {
            FlowState::Udp | FlowState::Closed => self,
            _ if flags & RST != 0 => FlowState::Closed,
            FlowState::SynSent if dir == Direction::Reply && flags & (SYN | ACK) == SYN | ACK => {
                FlowState::Established
            }
            FlowState::SynSent | FlowState::Established if flags & FIN != 0 => {
                *fin_from = Some(dir);
                FlowState::Closing
            }
            FlowState::Closing if flags & FIN != 0 && *fin_from != Some(dir) => FlowState::Closed,
            other => other,
        }
    }
}

/// Idle timeouts per flow state. A flow's deadline moves to `now + timeout`
/// on every packet it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// SYN sent, no answer yet. Short: a refused or black-holed connection
    /// should not hold an entry long; SYN retransmits refresh it.
    pub tcp_syn: Duration,
    /// Handshake done. kube-proxy sets the kernel's to 24 h
    /// (`conntrack.tcpEstablishedTimeout`); idle connections without
    /// keepalives survive that long.
    pub tcp_established: Duration,
    /// One FIN seen: a half-closed connection may still carry data.
    pub tcp_closing: Duration,
    /// Both FINs or a RST seen: only the last ACKs and retransmits remain.
    pub tcp_closed: Duration,
    /// UDP, from the last packet either way (Linux `nf_conntrack_udp_timeout`).
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: Duration::from_secs(30),
            tcp_established: Duration::from_secs(24 * 3600),
            tcp_closing: Duration::from_secs(120),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    fn of(&self, state: FlowState) -> Duration {
        match state {
            FlowState::Udp => self.udp,
            FlowState::SynSent => self.tcp_syn,
            FlowState::Established => self.tcp_established,
            FlowState::Closing => self.tcp_closing,
            FlowState::Closed => self.tcp_closed,
        }
    }
}

/// Who opened a flow: the index of the switch port its first packet came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(pub u16);

/// One tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    original: FlowKey,
    reply: FlowKey,
    state: FlowState,
    fin_from: Option<Direction>,
    owner: Owner,
    deadline: Instant,
}

impl Flow {
    /// The tuple as the client sent it (client → VIP).
    pub fn original(&self) -> &FlowKey {
        &self.original
    }
    /// The tuple as the backend's replies carry it (backend → client or hairpin address).
    pub fn reply(&self) -> &FlowKey {
        &self.reply
    }
    /// Where the connection is in its life.
    pub fn state(&self) -> FlowState {
        self.state
    }
    /// The port that opened the flow.
    pub fn owner(&self) -> Owner {
        self.owner
    }
    /// When the flow expires unless another packet comes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
    /// The tuple a packet going `dir` must be rewritten to.
    pub fn translated(&self, dir: Direction) -> FlowKey {
        match dir {
            Direction::Original => self.reply.reversed(),
            Direction::Reply => self.original.reversed(),
        }
    }
}

/// Handle of a flow in the table, valid until the flow is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowId(u32);

/// Counters of the flow table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackStats {
    /// Flows created.
    pub created: u64,
    /// Flows removed because they idled past their timeout.
    pub expired: u64,
    /// New flows refused because the table was full of live flows.
    pub refused: u64,
    /// New flows refused because their owner held its quota of live flows.
    pub over_quota: u64,
}

/// Why a new flow was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The table is full of live flows.
    TableFull,
    /// The owner already holds its quota of live flows.
    OverQuota,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::TableFull => "flow table full (raise limits.max_flows in the board config)",
            Refused::OverQuota => {
                "the pod holds its quota of flows (raise limits.max_flows_per_pod in the board config)"
            }
        })
    }
}

impl core::error::Error for Refused {}

/// How many flows the table holds, in all and per owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Flows in the table.
    pub flows: usize,
    /// Owners the table counts flows for (owner indices below this).
    pub owners: usize,
    /// Live flows one owner (a pod's switch port) may hold.
    pub max_flows_per_pod: usize,
}

/// The flow table.
#[derive(Debug, Clone)]
pub struct Conntrack {
    flows: Slab<Flow>,
    by_original: Index,
    by_reply: Index,
    timeouts: Timeouts,
    seed: u64,
    stats: ConntrackStats,
    last_full_sweep: Option<Instant>,
    /// Flows that reached `Closed`, oldest first: what a full table gives up
    /// before it refuses a new connection. Entries may be stale (the flow
    /// went or its slot holds another); they are checked when used.
    closed: VecDeque<u32>,
    /// Live (not closed) flows per owner, and how many each may hold.
    live: Vec<u32>,
    max_flows_per_pod: u32,
}

impl Conntrack {
    /// Bytes one flow costs: the entry, its free-list slot, two index slots
    /// in each of the two indexes (the indexes are kept half empty; a
    /// capacity that is not a power of two rounds them up further, see
    /// [`Conntrack::memory_bytes`]), and its place in the closed-flow queue.
    pub const BYTES_PER_FLOW: usize = core::mem::size_of::<Option<Flow>>()
        + core::mem::size_of::<u32>()
        + 2 * 2 * core::mem::size_of::<u32>()
        + core::mem::size_of::<u32>();

    /// A full table sweeps for expired flows at most this often, so a flood
    /// of new flows against a full table costs no O(n) scan per packet.
    pub const FULL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

    /// An empty table of `capacity`. `seed` keys the hash; the runtime
    /// passes a random one so tuples cannot be aimed at one chain.
    pub fn new(capacity: Capacity, timeouts: Timeouts, seed: u64) -> Conntrack {
        let flows = capacity.flows;
        Conntrack {
            flows: Slab::new(flows),
            by_original: Index::new(flows),
            by_reply: Index::new(flows),
            timeouts,
            seed,
            stats: ConntrackStats::default(),
            last_full_sweep: None,
            closed: VecDeque::with_capacity(flows),
            live: vec![0; capacity.owners],
            max_flows_per_pod: u32::try_from(capacity.max_flows_per_pod).unwrap_or(u32::MAX),
        }
    }

    /// Bytes held by the table, all allocated at construction.
    pub fn memory_bytes(&self) -> usize {
        self.flows.bytes()
            + self.by_original.bytes()
            + self.by_reply.bytes()
            + self.closed.capacity() * core::mem::size_of::<u32>()
            + self.live.len() * core::mem::size_of::<u32>()
    }

    /// Flows in the table (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True when no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.len() == 0
    }

    /// The most flows the table holds.
    pub fn capacity(&self) -> usize {
        self.flows.capacity()
    }

    /// Counters.
    pub fn stats(&self) -> &ConntrackStats {
        &self.stats
    }

    /// Live (not closed) flows `owner` holds.
    pub fn live(&self, owner: Owner) -> u32 {
        self.live.get(usize::from(owner.0)).copied().unwrap_or(0)
    }

    /// Live flows one owner (a pod's switch port) may hold.
    pub fn max_flows_per_pod(&self) -> u32 {
        self.max_flows_per_pod
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Every tracked flow.
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.flows.iter().map(|(_, f)| f)
    }

    /// A flow by handle.
    pub fn get(&self, id: FlowId) -> Option<&Flow> {
        self.flows.get(id.0)
    }

    /// The live flow `key` belongs to, and which way the packet goes. A flow
    /// found past its deadline is removed and not returned.
    pub fn lookup(&mut self, now: Instant, key: &FlowKey) -> Option<(FlowId, Direction)> {
        let hash = key.hash(self.seed);
        let flows = &self.flows;
        let (at, dir) = if let Some(at) =
            self.by_original.find(hash, |at| flows.get(at).is_some_and(|f| f.original == *key))
        {
            (at, Direction::Original)
        } else {
            let at = self.by_reply.find(hash, |at| flows.get(at).is_some_and(|f| f.reply == *key))?;
            (at, Direction::Reply)
        };
        if self.flows.get(at)?.deadline <= now {
            self.remove(FlowId(at));
            self.stats.expired += 1;
            return None;
        }
        Some((FlowId(at), dir))
    }

    /// True when no flow uses `key` in either direction, so a new flow may
    /// take it as its reply tuple.
    pub fn is_free(&self, key: &FlowKey) -> bool {
        let hash = key.hash(self.seed);
        let flows = &self.flows;
        self.by_original.find(hash, |at| flows.get(at).is_some_and(|f| f.original == *key)).is_none()
            && self.by_reply.find(hash, |at| flows.get(at).is_some_and(|f| f.reply == *key)).is_none()
    }

    /// Accounts a packet of flow `id` going `dir` with TCP `flags` (0 for
    /// UDP): advances the TCP state and pushes the deadline out.
    pub fn track(&mut self, now: Instant, id: FlowId, dir: Direction, flags: u8) {
        let timeouts = self.timeouts;
        if let Some(flow) = self.flows.get_mut(id.0) {
            let was = flow.state;
            flow.state = flow.state.advance(dir, flags, &mut flow.fin_from);
            flow.deadline = now + timeouts.of(flow.state);
            if flow.state == FlowState::Closed && was != FlowState::Closed {
                let owner = flow.owner;
                self.release(owner);
                if self.closed.len() == self.closed.capacity() {
                    self.closed.pop_front();
                }
                self.closed.push_back(id.0);
            }
        }
    }

    /// Adds a flow whose first packet (a TCP SYN or any UDP datagram) came
    /// in from `owner` at `now`. `reply` must be free (see
    /// [`Conntrack::is_free`]). An owner at its quota of live flows is
    /// refused. When the table is full, expired flows are swept first (at
    /// most every [`Conntrack::FULL_SWEEP_INTERVAL`]), then the oldest closed
    /// flow is given up; if there is none the new flow is refused. Refusals
    /// are counted.
    pub fn insert(
        &mut self,
        now: Instant,
        owner: Owner,
        original: FlowKey,
        reply: FlowKey,
    ) -> Result<FlowId, Refused> {
        if self.live(owner) >= self.max_flows_per_pod {
            self.stats.over_quota += 1;
            return Err(Refused::OverQuota);
        }
        if self.flows.is_full() {
            let due = self.last_full_sweep.is_none_or(|at| now >= at + Self::FULL_SWEEP_INTERVAL);
            if due {
                self.last_full_sweep = Some(now);
                self.expire(now);
            }
            // A closed connection only waits out stray packets: give the
            // oldest one up rather than refuse a new connection. Without this
            // the table caps new connections at capacity / tcp_closed per
            // second (16384 / 10 s by default).
            if self.flows.is_full() && !self.evict_closed() {
                self.stats.refused += 1;
                return Err(Refused::TableFull);
            }
        }
        let state = match original.proto {
            Protocol::Tcp => FlowState::SynSent,
            Protocol::Udp => FlowState::Udp,
        };
        let deadline = now + self.timeouts.of(state);
        let flow = Flow { original, reply, state, fin_from: None, owner, deadline };
        let at = self.flows.insert(flow).ok_or(Refused::TableFull)?;
        self.by_original.insert(original.hash(self.seed), at);
        self.by_reply.insert(reply.hash(self.seed), at);
        if let Some(live) = self.live.get_mut(usize::from(owner.0)) {
            *live += 1;
        }
        self.stats.created += 1;
        Ok(FlowId(at))
    }

    /// One live flow of `owner` closed or went.
    fn release(&mut self, owner: Owner) {
        if let Some(live) = self.live.get_mut(usize::from(owner.0)) {
            *live = live.saturating_sub(1);
        }
    }

    /// Removes the oldest flow still in the `Closed` state; false if none.
    fn evict_closed(&mut self) -> bool {
        while let Some(at) = self.closed.pop_front() {
            if self.flows.get(at).is_some_and(|f| f.state == FlowState::Closed) {
                self.remove(FlowId(at));
                self.stats.expired += 1;
                return true;
            }
        }
        false
    }

    /// Removes a flow.
    pub fn remove(&mut self, id: FlowId) -> Option<Flow> {
        let flow = *self.flows.get(id.0)?;
        let (seed, flows) = (self.seed, &self.flows);
        self.by_original
            .remove(flow.original.hash(seed), id.0, |at| flows.get(at).map_or(0, |f| f.original.hash(seed)));
        self.by_reply
            .remove(flow.reply.hash(seed), id.0, |at| flows.get(at).map_or(0, |f| f.reply.hash(seed)));
        if flow.state != FlowState::Closed {
            self.release(flow.owner);
        }
        self.flows.remove(id.0)
    }

    /// Removes every flow for which `keep` is false; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&Flow) -> bool) -> usize {
        let mut removed = 0;
        for at in 0..self.flows.capacity() as u32 {
            if self.flows.get(at).is_some_and(|f| !keep(f)) {
                self.remove(FlowId(at));
                removed += 1;
            }
        }
        removed
    }

    /// Removes every flow idle past its deadline at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let expired = self.retain(|f| f.deadline > now);
        self.stats.expired += expired as u64;
        expired
    }
}

#[cfg(test)]
mod tests;
