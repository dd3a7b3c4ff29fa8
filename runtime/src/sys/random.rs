//! Random bytes from the kernel (getrandom(2), which the `getrandom` crate
//! falls back from to /dev/urandom on kernels without it): secrets and seeds
//! fail rather than come out predictable. Identifiers and name suffixes come
//! from the control plane's own generator, seeded here once.

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
}
