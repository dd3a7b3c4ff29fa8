//! What the control plane is given instead of reaching for it: the time,
//! a seeded random source, a way to try ports and commands on its own node,
//! and a place to save its state. The agent passes the real ones; tests pass
//! simulated time, a fixed seed, fake ports and a store that can fail.

use std::time::{Duration, Instant};

use crate::listeners::ListenError;
use crate::listeners::proxy::ListenKey;
use crate::store::{State, StoreError};

/// The time of an input: a monotonic instant for heartbeats, and the wall
/// clock's Unix seconds for creation times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub at: Instant,
    /// Seconds since the Unix epoch.
    pub unix: u64,
}

impl Now {
    /// The system's clocks now.
    pub fn system() -> Now {
        Now { at: Instant::now(), unix: crate::model::unix_now() }
    }

    /// `d` later.
    pub fn after(self, d: Duration) -> Now {
        Now { at: self.at + d, unix: self.unix + d.as_secs() }
    }
}

/// The control plane's random source: splitmix64, seeded once (from the
/// kernel by the agent, fixed by tests), so its choices replay.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A hex id of `n` random bytes (a uid).
    pub fn id(&mut self, n: usize) -> String {
        (0..n).map(|_| format!("{:02x}", self.next_u64() as u8)).collect()
    }

    /// Five characters from Kubernetes' suffix alphabet (no vowels, no
    /// look-alikes), for replica names.
    pub fn suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5).map(|_| ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize] as char).collect()
    }
}

/// The node the control plane runs on, as far as it checks it: a port
/// another process holds and a missing command are errors when asked for,
/// not silent failures later.
pub trait Host: Send {
    /// Whether `key` can be bound on this node now (bound and let go).
    fn try_bind(&mut self, key: &ListenKey) -> Result<(), ListenError>;
    /// Whether `program` (a path, or a name on PATH) exists on this node.
    fn has_command(&self, program: &str) -> bool;
}

/// Where the control plane's state is saved.
pub trait Persist: Send {
    /// Replaces the saved state, durably; an error means it was not saved.
    fn save(&mut self, state: &State) -> Result<(), StoreError>;
}

impl Persist for crate::store::Store {
    fn save(&mut self, state: &State) -> Result<(), StoreError> {
        crate::store::Store::save(self, state)
    }
}
