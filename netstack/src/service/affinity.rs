//! ClientIP session affinity records: (client IP, service) → backend, with
//! the time of the client's last new connection. Bounded: when full, expired
//! records are swept (at most once a second); if none had expired the new
//! client simply goes unrecorded — its connection still works, it is only
//! not sticky — and the miss is counted.

use super::Backend;
use crate::table::{Index, Slab, addr_word, hash2};
use crate::wire::IpAddress;
use crate::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Record {
    client: IpAddress,
    service: u16,
    backend: Backend,
    last_used: Instant,
}

fn hash(seed: u64, client: IpAddress, service: u16) -> u64 {
    hash2(seed, addr_word(client), u64::from(service) | 0xaff << 16)
}

#[derive(Debug, Clone)]
pub(super) struct AffinityTable {
    records: Slab<Record>,
    index: Index,
    seed: u64,
    last_full_sweep: Option<Instant>,
    /// New clients left unrecorded because the table was full.
    pub unrecorded: u64,
}

impl AffinityTable {
    pub(super) fn new(capacity: usize, seed: u64) -> Self {
        AffinityTable {
            records: Slab::new(capacity),
            index: Index::new(capacity),
            seed,
            last_full_sweep: None,
            unrecorded: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    fn find(&self, client: IpAddress, service: u16) -> Option<u32> {
        let records = &self.records;
        self.index.find(hash(self.seed, client, service), |at| {
            records.get(at).is_some_and(|r| r.client == client && r.service == service)
        })
    }

    /// The backend `client` used last for `service`, if within `timeout`.
    pub(super) fn get(
        &mut self,
        now: Instant,
        client: IpAddress,
        service: u16,
        timeout: Duration,
    ) -> Option<Backend> {
        let at = self.find(client, service)?;
        let record = *self.records.get(at)?;
        if record.last_used + timeout <= now {
            self.remove(at);
            return None;
        }
        Some(record.backend)
    }

    /// Records (or refreshes) `client`'s backend for `service`.
    /// `timeout_of` gives each service's current timeout (None: no affinity).
    pub(super) fn set(
        &mut self,
        now: Instant,
        client: IpAddress,
        service: u16,
        backend: Backend,
        timeout_of: impl Fn(u16) -> Option<Duration>,
    ) {
        let record = Record { client, service, backend, last_used: now };
        if let Some(at) = self.find(client, service) {
            if let Some(r) = self.records.get_mut(at) {
                *r = record;
            }
            return;
        }
        if self.records.is_full() && self.last_full_sweep.is_none_or(|at| now >= at + Duration::from_secs(1))
        {
            self.last_full_sweep = Some(now);
            self.retain(|r| timeout_of(r.service).is_some_and(|t| r.last_used + t > now));
        }
        match self.records.insert(record) {
            Some(at) => self.index.insert(hash(self.seed, client, service), at),
            None => self.unrecorded += 1,
        }
    }

    /// Forgets every record of a service (removed, or affinity turned off).
    pub(super) fn forget_service(&mut self, service: u16) {
        self.retain(|r| r.service != service);
    }

    fn retain(&mut self, keep: impl Fn(&Record) -> bool) {
        for at in 0..self.records.capacity() as u32 {
            if self.records.get(at).is_some_and(|r| !keep(r)) {
                self.remove(at);
            }
        }
    }

    fn remove(&mut self, at: u32) {
        let Some(r) = self.records.get(at).copied() else {
            return;
        };
        let (seed, records) = (self.seed, &self.records);
        self.index.remove(hash(seed, r.client, r.service), at, |i| {
            records.get(i).map_or(0, |r| hash(seed, r.client, r.service))
        });
        self.records.remove(at);
    }
}
