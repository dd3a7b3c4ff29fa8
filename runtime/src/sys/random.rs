//! Identifiers and name suffixes from the kernel's random source.

use std::io::Read;

/// `n` random bytes (zeros if /dev/urandom cannot be read).
pub fn bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    bytes
}

/// A hex id of `n` random bytes.
pub fn id(n: usize) -> String {
    bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// A random u64.
pub fn u64() -> u64 {
    u64::from_le_bytes(bytes(8).try_into().unwrap_or_default())
}

/// Five characters from Kubernetes' suffix alphabet (no vowels, no look-alikes).
pub fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    bytes(5).iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}
