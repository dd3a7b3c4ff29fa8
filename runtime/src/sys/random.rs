//! Random bytes from the kernel (getrandom(2), which the `getrandom` crate
//! falls back from to /dev/urandom on kernels without it): secrets and seeds
//! fail rather than come out predictable; identifiers only need to differ.

/// The kernel's random source could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read random bytes from the kernel (getrandom, /dev/urandom): {0}; check that /dev/urandom exists and the kernel's random source works"
)]
pub struct RandomError(getrandom::Error);

/// `n` random bytes for a secret or a seed: an error, never a guess.
pub fn secret(n: usize) -> Result<Vec<u8>, RandomError> {
    fill(n, getrandom::fill)
}

/// A random u64 for a hash seed (see [`secret`]).
pub fn seed() -> Result<u64, RandomError> {
    let bytes = secret(8)?;
    Ok(u64::from_le_bytes(bytes.try_into().unwrap_or_default()))
}

/// `n` bytes from `source`, or its error.
fn fill(
    n: usize,
    source: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>,
) -> Result<Vec<u8>, RandomError> {
    let mut bytes = vec![0u8; n];
    source(&mut bytes).map_err(RandomError)?;
    Ok(bytes)
}

/// `n` random bytes for identifiers and name suffixes, which must differ but
/// need not be secret. The agent checks the source with [`secret`] when it
/// starts, so this does not fail later in practice; if it did, the bytes
/// come from the clock, the PID and a counter (distinct, never all zero).
pub fn bytes(n: usize) -> Vec<u8> {
    secret(n).unwrap_or_else(|e| {
        tracing::warn!("{e}: identifiers from the clock instead");
        fallback(n)
    })
}

fn fallback(n: usize) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut state =
        (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    (0..n)
        .map(|_| {
            // splitmix64: every output differs for distinct states.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// A hex id of `n` random bytes.
pub fn id(n: usize) -> String {
    bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// Five characters from Kubernetes' suffix alphabet (no vowels, no look-alikes).
pub fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    bytes(5).iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_source_is_an_error_not_zeros() {
        let failed = fill(32, |_| Err(getrandom::Error::UNSUPPORTED));
        let message = failed.unwrap_err().to_string();
        assert!(message.contains("cannot read random bytes"), "{message}");
        let source = |b: &mut [u8]| {
            b.copy_from_slice(&[1, 2, 3, 4]);
            Ok(())
        };
        assert_eq!(fill(4, source).unwrap(), [1, 2, 3, 4]);
    }

    #[test]
    fn secrets_and_seeds_are_not_zero() {
        assert_ne!(secret(32).unwrap(), vec![0u8; 32]);
        assert_ne!(seed().unwrap(), seed().unwrap());
    }

    #[test]
    fn the_fallback_gives_distinct_nonzero_ids() {
        let (a, b) = (fallback(16), fallback(16));
        assert_ne!(a, b);
        assert_ne!(a, vec![0u8; 16]);
    }
}
