//! Fixed-capacity building blocks for the flow, service and affinity tables:
//! a slab of entries with a free list ([`Slab`]), open-addressing indexes
//! over it ([`Index`]), and the seeded hash that places keys in them
//! ([`hash2`]). Everything is allocated at construction; nothing allocates
//! per frame.
//!
//! An index slot is a `u32` naming a slab entry, so the key lives only once
//! (in the entry) and a flow can be reached by two keys at 4 bytes each.

mod index;
mod slab;

pub(crate) use index::Index;
pub(crate) use slab::Slab;

/// Mixes two words with a seed (a folded 64x64->128 multiply, as in
/// wyhash/foldhash): cheap, and with a secret seed a pod cannot aim its
/// tuples at one probe chain.
pub(crate) fn hash2(seed: u64, a: u64, b: u64) -> u64 {
    let p = u128::from(a ^ seed ^ 0x243f_6a88_85a3_08d3) * u128::from(b ^ 0x1319_8a2e_0370_7344);
    (p as u64) ^ ((p >> 64) as u64)
}
