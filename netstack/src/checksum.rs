//! Incremental Internet checksum updates (RFC 1624), for rewriting headers
//! without touching the payload: a NAT'd 64 KiB GSO super-frame costs a few
//! word operations instead of a pass over every byte.
//!
//! Two kinds of stored value are updated:
//! - a full checksum field `HC` (the complement of the ones-complement sum),
//!   updated with RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which never
//!   produces the `-0` ambiguity of eqn. 2;
//! - a partial sum `S` as a virtio `NEEDS_CSUM` frame carries it in the L4
//!   checksum field: the pseudo-header sum, *not* complemented, which the
//!   kernel completes later. It is updated as `S' = S + ~m + m'`.
//!
//! `old` and `new` are the bytes of the changed fields in network order, of
//! equal and even length (addresses and ports are always 16-bit aligned).

/// Folds the carries of a 32-bit accumulator into a 16-bit ones-complement sum.
fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc >> 16) + (acc & 0xffff);
    }
    acc as u16
}

/// `sum + ~old + new` in ones-complement arithmetic, word by word.
pub fn sum_replace(sum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    debug_assert_eq!(old.len() % 2, 0);
    let mut acc = u32::from(sum);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u32::from(u16::from_be_bytes([n[0], n[1]]));
        // Fold as we go so a 64 KiB worth of words can never overflow.
        acc = u32::from(fold(acc));
    }
    fold(acc)
}

/// Updates a full (complemented) checksum field for `old` bytes becoming `new`.
pub fn update_checksum(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    !sum_replace(!checksum, old, new)
}

/// Updates a partial pseudo-header sum (virtio `NEEDS_CSUM`) for `old` bytes
/// becoming `new`; the result stays uncomplemented.
pub fn update_partial(sum: u16, old: &[u8], new: &[u8]) -> u16 {
    sum_replace(sum, old, new)
}

/// True when two ones-complement sums are the same number (`0x0000` and
/// `0xffff` are both zero).
pub fn sums_equal(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && (a == 0 || b == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::checksum;

    /// A deterministic byte soup (xorshift) so the tests cover many words.
    fn bytes(seed: u32, len: usize) -> alloc::vec::Vec<u8> {
        let mut x = seed.max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn full(data: &[u8]) -> u16 {
        !checksum::data(data)
    }

    #[test]
    fn full_checksum_update_matches_recomputation() {
        for seed in 1..200u32 {
            let mut data = bytes(seed, 64);
            let hc = full(&data);
            let at = (seed as usize % 28) * 2;
            let old = data[at..at + 8].to_vec();
            let new = bytes(seed * 7 + 3, 8);
            data[at..at + 8].copy_from_slice(&new);
            let updated = update_checksum(hc, &old, &new);
            assert!(sums_equal(updated, full(&data)), "seed {seed}: {updated:#06x} vs {:#06x}", full(&data));
            // Eqn. 3 only yields 0x0000 when the sum really is 0xffff.
            assert_eq!(updated, full(&data), "seed {seed}");
        }
    }

    #[test]
    fn partial_sum_update_matches_a_fresh_pseudo_header_sum() {
        use smoltcp::wire::{IpProtocol, Ipv4Address};
        let (src, dst) = (Ipv4Address::new(10, 244, 0, 2), Ipv4Address::new(10, 96, 0, 1));
        let new_dst = Ipv4Address::new(10, 244, 0, 3);
        let new_src = Ipv4Address::new(10, 96, 0, 1);
        let s = checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, 65_000);
        let mut old = [0u8; 8];
        old[..4].copy_from_slice(&src.octets());
        old[4..].copy_from_slice(&dst.octets());
        let mut new = [0u8; 8];
        new[..4].copy_from_slice(&new_src.octets());
        new[4..].copy_from_slice(&new_dst.octets());
        let expect = checksum::pseudo_header_v4(&new_src, &new_dst, IpProtocol::Tcp, 65_000);
        assert!(sums_equal(update_partial(s, &old, &new), expect));
    }

    #[test]
    fn replacing_a_word_by_itself_changes_nothing() {
        for hc in [0x0000, 0x1234, 0xfffe, 0xffff] {
            assert!(sums_equal(update_checksum(hc, &[1, 2], &[1, 2]), hc));
            assert!(sums_equal(update_partial(hc, &[1, 2], &[1, 2]), hc));
        }
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives 0x0000.
        assert_eq!(update_checksum(0xdd2f, &[0x55, 0x55], &[0x32, 0x85]), 0x0000);
    }

    #[test]
    fn negative_and_positive_zero_are_equal_sums() {
        assert!(sums_equal(0, 0xffff));
        assert!(sums_equal(0xffff, 0));
        assert!(!sums_equal(0xfffe, 0));
    }
}
