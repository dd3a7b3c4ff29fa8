//! The entries: one per proxied TCP connection or UDP flow, found by tuple
//! or by id, in a slab of fixed capacity, with live counts per pod so one
//! pod cannot take the whole node's share.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::stats::Reason;
use super::tcp::Conn;
use super::udp::Flow;
use crate::wire::Ipv4Address;

/// A pod's end and the destination's end of a TCP connection or UDP flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    /// The pod's address.
    pub pod: Ipv4Address,
    /// The pod's port.
    pub pod_port: u16,
    /// The destination's address.
    pub remote: Ipv4Address,
    /// The destination's port.
    pub remote_port: u16,
}

/// Handle of an entry, valid until it is removed; also the runtime's key
/// for the entry's kernel socket (never below 2^32, so small numbers stay
/// free for the caller's own tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(u64);

impl EntryId {
    /// The id as a number (an epoll token).
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The id a number from [`EntryId::raw`] stands for.
    pub fn from_raw(raw: u64) -> EntryId {
        EntryId(raw)
    }

    fn new(index: u32, generation: u32) -> EntryId {
        EntryId((u64::from(generation) << 32) | u64::from(index))
    }

    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// What an entry proxies.
pub(super) enum Entry {
    Tcp(Conn),
    Udp(Flow),
}

/// The three kinds of thing counted per pod and node-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Tcp,
    Udp,
    Echo,
}

/// How many of a kind the node and one pod may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// On the whole node.
    pub total: usize,
    /// Per pod (source address).
    pub per_pod: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts([usize; 3]);

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

pub(super) struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    capacity: usize,
    tcp: BTreeMap<Tuple, EntryId>,
    udp: BTreeMap<Tuple, EntryId>,
    pods: BTreeMap<Ipv4Address, Counts>,
    totals: Counts,
    limits: [Limit; 3],
}

impl Table {
    pub(super) fn new(tcp: Limit, udp: Limit, echo: Limit) -> Table {
        let capacity = tcp.total + udp.total;
        Table {
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            capacity,
            tcp: BTreeMap::new(),
            udp: BTreeMap::new(),
            pods: BTreeMap::new(),
            totals: Counts::default(),
            limits: [tcp, udp, echo],
        }
    }

    /// Whether `pod` may add one more of `kind`; the reason if not.
    pub(super) fn admit(&self, kind: Kind, pod: Ipv4Address) -> Result<(), Reason> {
        let limit = self.limits[kind as usize];
        if self.totals.0[kind as usize] >= limit.total {
            return Err(match kind {
                Kind::Tcp => Reason::TcpTableFull,
                Kind::Udp => Reason::UdpTableFull,
                Kind::Echo => Reason::EchoTableFull,
            });
        }
        let held = self.pods.get(&pod).map_or(0, |c| c.0[kind as usize]);
        if held >= limit.per_pod {
            return Err(match kind {
                Kind::Tcp => Reason::TcpPodQuota,
                Kind::Udp => Reason::UdpPodQuota,
                Kind::Echo => Reason::EchoPodQuota,
            });
        }
        Ok(())
    }

    /// Counts one more of `kind` for `pod` (after [`Table::admit`]).
    pub(super) fn hold(&mut self, kind: Kind, pod: Ipv4Address) {
        self.totals.0[kind as usize] += 1;
        self.pods.entry(pod).or_default().0[kind as usize] += 1;
    }

    /// Counts one fewer of `kind` for `pod`.
    pub(super) fn release(&mut self, kind: Kind, pod: Ipv4Address) {
        self.totals.0[kind as usize] -= 1;
        if let Some(counts) = self.pods.get_mut(&pod) {
            counts.0[kind as usize] -= 1;
            if counts.0 == [0; 3] {
                self.pods.remove(&pod);
            }
        }
    }

    /// How many of `kind` the node holds.
    pub(super) fn count(&self, kind: Kind) -> usize {
        self.totals.0[kind as usize]
    }

    /// A free id for a new entry, admitted already; None only if the slab
    /// is full, which the limits prevent.
    pub(super) fn next_id(&self) -> Option<EntryId> {
        match self.free.last() {
            Some(index) => {
                let slot = &self.slots[*index as usize];
                Some(EntryId::new(*index, slot.generation))
            }
            None if self.slots.len() < self.capacity => Some(EntryId::new(self.slots.len() as u32, 1)),
            None => None,
        }
    }

    /// Puts `entry` at `id` (from [`Table::next_id`], nothing added since).
    pub(super) fn insert(&mut self, id: EntryId, entry: Entry) {
        let (kind, tuple) = match &entry {
            Entry::Tcp(conn) => (Kind::Tcp, conn.tuple),
            Entry::Udp(flow) => (Kind::Udp, flow.tuple),
        };
        match kind {
            Kind::Tcp => self.tcp.insert(tuple, id),
            _ => self.udp.insert(tuple, id),
        };
        self.hold(kind, tuple.pod);
        if self.free.last() == Some(&(id.index() as u32)) {
            self.free.pop();
            self.slots[id.index()].entry = Some(entry);
        } else {
            self.slots.push(Slot { generation: id.generation(), entry: Some(entry) });
        }
    }

    /// Removes the entry at `id`.
    pub(super) fn remove(&mut self, id: EntryId) -> Option<Entry> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        let entry = slot.entry.take()?;
        // A new generation, so a stale id never finds the next entry here.
        slot.generation = slot.generation.wrapping_add(1).max(1);
        self.free.push(id.index() as u32);
        let (kind, tuple) = match &entry {
            Entry::Tcp(conn) => {
                self.tcp.remove(&conn.tuple);
                (Kind::Tcp, conn.tuple)
            }
            Entry::Udp(flow) => {
                self.udp.remove(&flow.tuple);
                (Kind::Udp, flow.tuple)
            }
        };
        self.release(kind, tuple.pod);
        Some(entry)
    }

    pub(super) fn get(&self, id: EntryId) -> Option<&Entry> {
        let slot = self.slots.get(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.entry.as_ref()
    }

    pub(super) fn get_mut(&mut self, id: EntryId) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.entry.as_mut()
    }

    pub(super) fn tcp_id(&self, tuple: &Tuple) -> Option<EntryId> {
        self.tcp.get(tuple).copied()
    }

    pub(super) fn udp_id(&self, tuple: &Tuple) -> Option<EntryId> {
        self.udp.get(tuple).copied()
    }

    /// Every entry, by id.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (EntryId, &mut Entry)> {
        self.slots.iter_mut().enumerate().filter_map(|(index, slot)| {
            let id = EntryId::new(index as u32, slot.generation);
            slot.entry.as_mut().map(|entry| (id, entry))
        })
    }
}
