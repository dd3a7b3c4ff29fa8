//! An open-addressing index from hashes to slab entries. It has at least
//! twice as many slots as the slab has entries, which keeps linear probes
//! short; removal shifts the probe chain back instead of leaving
//! tombstones, so a long-lived table never degrades.

use alloc::vec;
use alloc::vec::Vec;

/// An empty slot. A slot holds its slab index plus one, so an empty index is
/// all zeroes: allocated zeroed, its pages stay untouched (and cost no
/// resident memory) until entries land in them.
const EMPTY: u32 = 0;

/// An open-addressing (linear probing) index from hashes to slab indices.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    slots: Vec<u32>,
    mask: usize,
}

impl Index {
    /// An index for up to `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        let size = (capacity.max(1) * 2).next_power_of_two();
        Index { slots: vec![EMPTY; size], mask: size - 1 }
    }

    /// Bytes held by the index.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * core::mem::size_of::<u32>()
    }

    /// The slab index whose entry satisfies `is`, probing from `hash`.
    pub(crate) fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut pos = hash as usize & self.mask;
        loop {
            match self.slots[pos] {
                EMPTY => return None,
                slot if is(slot - 1) => return Some(slot - 1),
                _ => pos = (pos + 1) & self.mask,
            }
        }
    }

    /// Adds `at` under `hash`. The caller keeps the index below half full.
    pub(crate) fn insert(&mut self, hash: u64, at: u32) {
        let mut pos = hash as usize & self.mask;
        while self.slots[pos] != EMPTY {
            pos = (pos + 1) & self.mask;
        }
        self.slots[pos] = at + 1;
    }

    /// Removes `at` (stored under `hash`); `hash_of` gives the hash of any
    /// other stored entry, to shift the rest of the probe chain back.
    pub(crate) fn remove(&mut self, hash: u64, at: u32, hash_of: impl Fn(u32) -> u64) {
        let mut hole = hash as usize & self.mask;
        loop {
            match self.slots[hole] {
                EMPTY => return,
                found if found == at + 1 => break,
                _ => hole = (hole + 1) & self.mask,
            }
        }
        self.slots[hole] = EMPTY;
        let mut pos = hole;
        loop {
            pos = (pos + 1) & self.mask;
            let entry = self.slots[pos];
            if entry == EMPTY {
                return;
            }
            let home = hash_of(entry - 1) as usize & self.mask;
            // The entry may move into the hole unless its home lies
            // cyclically in (hole, pos]: then the hole is before its home.
            let stays = if hole <= pos { hole < home && home <= pos } else { hole < home || home <= pos };
            if !stays {
                self.slots[hole] = entry;
                self.slots[pos] = EMPTY;
                hole = pos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Slab;

    /// A map u64 -> () built from a slab and an index, hashed badly on
    /// purpose (few buckets) so probe chains and wraparound get exercised.
    struct Set {
        slab: Slab<u64>,
        index: Index,
    }

    fn bad_hash(key: u64) -> u64 {
        key % 3 + 30 // near the end of a 32-slot index: chains wrap around
    }

    impl Set {
        fn find(&self, key: u64) -> Option<u32> {
            self.index.find(bad_hash(key), |at| self.slab.get(at) == Some(&key))
        }
        fn insert(&mut self, key: u64) {
            let at = self.slab.insert(key).unwrap();
            self.index.insert(bad_hash(key), at);
        }
        fn remove(&mut self, key: u64) {
            let at = self.find(key).unwrap();
            let slab = &self.slab;
            self.index.remove(bad_hash(key), at, |i| bad_hash(*slab.get(i).unwrap()));
            self.slab.remove(at);
        }
    }

    #[test]
    fn index_survives_interleaved_inserts_and_removals() {
        let mut set = Set { slab: Slab::new(16), index: Index::new(16) };
        let mut live = alloc::collections::BTreeSet::new();
        let mut x = 12345u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 40;
            if live.contains(&key) {
                set.remove(key);
                live.remove(&key);
            } else if !set.slab.is_full() {
                set.insert(key);
                live.insert(key);
            }
            for k in 0..40 {
                assert_eq!(set.find(k).is_some(), live.contains(&k), "key {k}");
            }
            assert_eq!(set.slab.len(), live.len());
        }
    }
}
