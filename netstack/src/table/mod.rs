//! Fixed-capacity building blocks for the flow, service and affinity tables:
//! a slab of entries with a free list ([`Slab`]), open-addressing indexes
//! over it ([`Index`]), and the seeded hash that places keys in them
//! ([`hash2`]). Everything is allocated at construction; nothing allocates
//! per frame. Pages are written only as entries come, so a table sized for
//! a busy node costs an idle one no resident memory.
//!
//! An index slot is a `u32` naming a slab entry, so the key lives only once
//! (in the entry) and a flow can be reached by two keys at 4 bytes each.

mod index;
mod slab;

pub(crate) use index::Index;
pub(crate) use slab::Slab;

use crate::wire::IpAddress;

/// An address as one word for [`hash2`]: an IPv4 address is its 32 bits,
/// so keys hash as they did before they were family-generic. (An IPv6 arm
/// will fold its 128 bits here.)
pub(crate) fn addr_word(addr: IpAddress) -> u64 {
    match addr {
        IpAddress::Ipv4(v4) => u64::from(v4.to_bits()),
    }
}

/// Two addresses as one word for [`hash2`]: for IPv4, `a` in the high and
/// `b` in the low half.
pub(crate) fn addr_pair_word(a: IpAddress, b: IpAddress) -> u64 {
    addr_word(a).rotate_left(32) ^ addr_word(b)
}

/// Mixes two words with a seed (a folded 64x64->128 multiply, as in
/// wyhash/foldhash): cheap, and with a secret seed a pod cannot aim its
/// tuples at one probe chain.
pub(crate) fn hash2(seed: u64, a: u64, b: u64) -> u64 {
    let p = u128::from(a ^ seed ^ 0x243f_6a88_85a3_08d3) * u128::from(b ^ 0x1319_8a2e_0370_7344);
    (p as u64) ^ ((p >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv4Address;

    /// Family-generic keys cost nothing while only IPv4 is built: the same
    /// size, and the same words to hash, so tables place keys as before.
    #[test]
    fn ipv4_keys_fold_and_size_as_plain_ipv4_keys() {
        assert_eq!(size_of::<IpAddress>(), size_of::<Ipv4Address>());
        let (a, b) = (Ipv4Address::new(10, 244, 0, 2), Ipv4Address::new(10, 96, 0, 10));
        assert_eq!(addr_word(a.into()), u64::from(a.to_bits()));
        assert_eq!(
            addr_pair_word(a.into(), b.into()),
            (u64::from(a.to_bits()) << 32) | u64::from(b.to_bits())
        );
    }
}
