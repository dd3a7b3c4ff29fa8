//! Which data-plane thread owns a frame's flow, so that every packet of a
//! connection, both ways, is decided by one switch instance and its flow
//! table stays private to that thread.
//!
//! The owner of a TCP or UDP packet is a keyed hash of its two endpoints,
//! symmetric in source and destination, modulo the thread count; other IPv4
//! packets hash their two addresses. Packets to the service CIDR hash their
//! source address alone: a client's Service connections share one thread,
//! whose affinity table then remembers each of them (ClientIP affinity
//! would otherwise hold per thread), and whose flow table counts them
//! against the client's quota. A Service connection's
//! replies come from the backend (`backend → client`), a tuple whose hash
//! has nothing to do with the `client → VIP` tuple that chose the owner.
//! When a thread opens such a flow and the reply tuple would hash to
//! another thread, it records `reply tuple → itself` in [`Redirects`] before
//! the first packet reaches the backend, so the reply is handed to it.
//! Non-IP frames (ARP) have no owner: any thread answers them from its copy
//! of the tables.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use netstack::conntrack::FlowKey;
use netstack::conntrack::nat::flow_key;
use netstack::wire::{EthernetFrame, EthernetProtocol, Ipv4Cidr, Ipv4Packet, ipv4_of};

/// Shards of the redirect table: threads looking up replies rarely wait on
/// one that records a new Service flow.
const SHARDS: usize = 16;

/// How the threads split flows between them.
pub(super) struct Steering {
    threads: usize,
    seed: u64,
    service_cidr: Ipv4Cidr,
    /// Service flows whose replies hash elsewhere.
    pub(super) redirects: Redirects,
}

/// What a frame's owner was worked out from.
pub(super) enum Owner {
    /// Not IPv4: any thread.
    Any,
    /// A TCP or UDP packet: its tuple (for redirects) and its thread.
    Flow(FlowKey, usize),
    /// Another IPv4 packet: its thread.
    Thread(usize),
}

impl Owner {
    /// The owning thread, when there is one.
    pub(super) fn thread(&self) -> Option<usize> {
        match self {
            Owner::Any => None,
            Owner::Flow(_, thread) | Owner::Thread(thread) => Some(*thread),
        }
    }
}

impl Steering {
    /// Steering over `threads` threads, with a hash keyed by `seed` (so a pod
    /// cannot pick tuples that pile every flow onto one thread), and room
    /// for `max_redirects` Service flows whose replies hash elsewhere.
    pub(super) fn new(threads: usize, seed: u64, service_cidr: Ipv4Cidr, max_redirects: usize) -> Steering {
        Steering { threads: threads.max(1), seed, service_cidr, redirects: Redirects::new(max_redirects) }
    }

    /// The owner of the Ethernet frame `frame`.
    pub(super) fn owner(&self, frame: &[u8]) -> Owner {
        let Ok(eth) = EthernetFrame::new_checked(frame) else { return Owner::Any };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return Owner::Any;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return Owner::Any };
        match flow_key(&ip) {
            Some((key, _)) => {
                let thread = self.redirects.get(&key).unwrap_or_else(|| self.natural(&key));
                Owner::Flow(key, thread)
            }
            None => {
                let (a, b) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
                Owner::Thread(self.pick(u64::from(a.min(b)) << 32 | u64::from(a.max(b)), 0))
            }
        }
    }

    /// The thread a tuple belongs to without a redirect: its client's for
    /// Service traffic, else [`Self::by_hash`].
    pub(super) fn natural(&self, key: &FlowKey) -> usize {
        if self.service_cidr.contains_addr(&ipv4_of(key.dst)) {
            return self.pick(u64::from(u32::from(ipv4_of(key.src))), 1);
        }
        self.by_hash(key)
    }

    /// The thread a tuple hashes to, the same for both directions.
    pub(super) fn by_hash(&self, key: &FlowKey) -> usize {
        let a = endpoint(key.src, key.src_port);
        let b = endpoint(key.dst, key.dst_port);
        self.pick(a.min(b), a.max(b) ^ (key.proto as u64) << 56)
    }

    fn pick(&self, x: u64, y: u64) -> usize {
        (FixedState(self.seed).hash_one((x, y)) % self.threads as u64) as usize
    }
}

/// An address and port as one word.
fn endpoint(ip: netstack::wire::IpAddress, port: u16) -> u64 {
    u64::from(u32::from(ipv4_of(ip))) << 16 | u64::from(port)
}

/// A keyed std hasher: SipHash keyed by the agent's random seed.
struct FixedState(u64);

impl BuildHasher for FixedState {
    type Hasher = std::hash::DefaultHasher;

    fn build_hasher(&self) -> Self::Hasher {
        let mut hasher = std::hash::DefaultHasher::new();
        self.0.hash(&mut hasher);
        hasher
    }
}

/// Reply tuples of Service flows owned by a thread their hash does not
/// name. Bounded: a full table refuses (the caller counts it, and that
/// connection's replies are decided by the wrong thread, which finds no
/// flow for them).
pub(super) struct Redirects {
    shards: Box<[RwLock<HashMap<FlowKey, usize>>]>,
    len: AtomicUsize,
    capacity: usize,
}

impl Redirects {
    fn new(capacity: usize) -> Redirects {
        Redirects {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            capacity,
        }
    }

    fn shard(&self, key: &FlowKey) -> &RwLock<HashMap<FlowKey, usize>> {
        &self.shards[std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(key)
            as usize
            % SHARDS]
    }

    /// The thread that owns replies carrying `key`, if one recorded them.
    /// Free while no Service flow needs a redirect.
    pub(super) fn get(&self, key: &FlowKey) -> Option<usize> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.shard(key).read().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    /// Records that `thread` owns replies carrying `key`; false when full.
    pub(super) fn insert(&self, key: FlowKey, thread: usize) -> bool {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        let full = self.len.load(Ordering::Acquire) >= self.capacity;
        match shard.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut entry) => {
                entry.insert(thread);
                true
            }
            std::collections::hash_map::Entry::Vacant(_) if full => false,
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(thread);
                self.len.fetch_add(1, Ordering::AcqRel);
                true
            }
        }
    }

    /// Whether any redirect is recorded.
    pub(super) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Forgets the redirects of `thread` for which `live` is false (its
    /// flow expired or closed).
    pub(super) fn retain_owned(&self, thread: usize, live: impl Fn(&FlowKey) -> bool) {
        for shard in &*self.shards {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|key, owner| *owner != thread || live(key));
            self.len.fetch_sub(before - shard.len(), Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstack::Protocol;
    use netstack::wire::Ipv4Address;

    const SERVICES: Ipv4Cidr = Ipv4Cidr::new(Ipv4Address::new(10, 96, 0, 0), 12);

    fn key(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> FlowKey {
        FlowKey {
            proto: Protocol::Tcp,
            src: Ipv4Address::from(src).into(),
            src_port: sport,
            dst: Ipv4Address::from(dst).into(),
            dst_port: dport,
        }
    }

    #[test]
    fn both_directions_of_a_flow_have_one_owner_and_flows_spread() {
        let steering = Steering::new(4, 7, SERVICES, 16);
        let mut used = [0; 4];
        for port in 40_000..40_400 {
            let k = key([10, 244, 0, 2], port, [10, 244, 0, 3], 5201);
            let owner = steering.by_hash(&k);
            assert_eq!(owner, steering.by_hash(&k.reversed()), "{k:?}");
            used[owner] += 1;
        }
        // 400 flows over 4 threads: each gets a fair share, far from all.
        assert!(used.iter().all(|&n| (50..150).contains(&n)), "{used:?}");
    }

    #[test]
    fn a_clients_service_connections_share_a_thread() {
        let steering = Steering::new(4, 3, SERVICES, 16);
        let owners: std::collections::BTreeSet<usize> = (40_000..40_100)
            .map(|port| steering.natural(&key([10, 244, 0, 2], port, [10, 96, 0, 20], 80)))
            .collect();
        assert_eq!(owners.len(), 1, "{owners:?}");
    }

    #[test]
    fn a_redirect_overrides_the_hash_until_its_flow_is_gone() {
        let steering = Steering::new(2, 1, SERVICES, 1);
        let reply = key([10, 244, 0, 3], 8080, [10, 244, 0, 2], 40_000);
        let other = 1 - steering.by_hash(&reply);
        assert!(steering.redirects.insert(reply, other));
        assert_eq!(steering.redirects.get(&reply), Some(other));
        assert!(!steering.redirects.insert(reply.reversed(), other), "over capacity");
        steering.redirects.retain_owned(other, |_| false);
        assert!(steering.redirects.is_empty());
        assert_eq!(steering.redirects.get(&reply), None);
    }
}
