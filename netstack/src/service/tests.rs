//! Service table tests: capacity, atomic replacement, spread and affinity.

use super::*;
use crate::testing::{VIP, at, ip, pod_ip};
use alloc::string::ToString;

fn key(port: u16) -> ServiceKey {
    ServiceKey { vip: VIP.into(), port, proto: Protocol::Tcp }
}

fn backend(last: u8) -> Backend {
    Backend { ip: ip(last).into(), port: 8080 }
}

fn client(last: u8) -> IpAddress {
    pod_ip(1, last).into()
}

fn small() -> ServiceTable {
    ServiceTable::new(&ServiceConfig {
        max_services: 2,
        max_backends: 3,
        max_affinities: 2,
        ..ServiceConfig::default()
    })
}

fn pick(t: &mut ServiceTable, now: Instant, k: &ServiceKey, c: IpAddress) -> Backend {
    match t.select(now, k, c) {
        Selection::Backend(b) => b,
        other => panic!("{other:?}"),
    }
}

#[test]
fn capacity_limits_are_clear_errors_and_change_nothing() {
    let mut t = small();
    let four = [backend(2), backend(3), backend(4), backend(5)];
    assert_eq!(t.upsert(key(80), &four, Affinity::None), Err(ServiceError::TooManyBackends));
    assert!(t.is_empty());
    t.upsert(key(80), &four[..3], Affinity::None).unwrap();
    t.upsert(key(81), &four[..1], Affinity::None).unwrap();
    assert_eq!(t.upsert(key(82), &four[..1], Affinity::None), Err(ServiceError::TableFull));
    assert_eq!(t.len(), 2);
    assert_eq!(t.remove(&key(82)), Err(ServiceError::NotFound));
    t.remove(&key(81)).unwrap();
    t.upsert(key(82), &four[..1], Affinity::None).unwrap();
    assert!(ServiceError::TableFull.to_string().contains("max_services"));
}

#[test]
fn upsert_replaces_the_backend_list_at_once() {
    let mut t = small();
    t.upsert(key(80), &[backend(2), backend(3)], Affinity::None).unwrap();
    t.upsert(key(80), &[backend(7)], Affinity::CLIENT_IP).unwrap();
    let info = t.get(&key(80)).unwrap();
    assert_eq!(info.backends, &[backend(7)]);
    assert_eq!(info.affinity, Affinity::CLIENT_IP);
    assert_eq!(t.len(), 1);
    for c in 0..5 {
        assert_eq!(pick(&mut t, at(0), &key(80), client(c)), backend(7));
    }
}

#[test]
fn no_service_and_no_backend_are_told_apart() {
    let mut t = small();
    assert_eq!(t.select(at(0), &key(80), client(1)), Selection::NoService);
    t.upsert(key(80), &[], Affinity::None).unwrap();
    assert_eq!(t.select(at(0), &key(80), client(1)), Selection::NoBackend);
    let udp = ServiceKey { proto: Protocol::Udp, ..key(80) };
    assert_eq!(t.select(at(0), &udp, client(1)), Selection::NoService);
}

#[test]
fn round_robin_spreads_new_connections_evenly() {
    let mut t = small();
    let backends = [backend(2), backend(3), backend(4)];
    t.upsert(key(80), &backends, Affinity::None).unwrap();
    let mut counts = [0; 3];
    for _ in 0..300 {
        let b = pick(&mut t, at(0), &key(80), client(1));
        counts[backends.iter().position(|x| *x == b).unwrap()] += 1;
    }
    assert_eq!(counts, [100, 100, 100]);
}

#[test]
fn client_ip_affinity_sticks_until_the_timeout_since_the_last_connection() {
    let mut t = small();
    let timeout = Duration::from_secs(10);
    t.upsert(key(80), &[backend(2), backend(3), backend(4)], Affinity::ClientIp { timeout }).unwrap();
    let first = pick(&mut t, at(0), &key(80), client(1));
    let other = pick(&mut t, at(0), &key(80), client(2));
    assert_ne!(first, other, "a second client is balanced on its own");
    // Each new connection within the timeout refreshes the record.
    for s in [5, 14, 23] {
        assert_eq!(pick(&mut t, at(s), &key(80), client(1)), first);
    }
    // Silent for the timeout: the next connection is balanced again.
    assert_ne!(pick(&mut t, at(33), &key(80), client(1)), first);
}

#[test]
fn affinity_to_a_removed_backend_is_dropped() {
    let mut t = small();
    t.upsert(key(80), &[backend(2), backend(3)], Affinity::CLIENT_IP).unwrap();
    let first = pick(&mut t, at(0), &key(80), client(1));
    let remaining = if first == backend(2) { backend(3) } else { backend(2) };
    t.upsert(key(80), &[remaining], Affinity::CLIENT_IP).unwrap();
    assert_eq!(pick(&mut t, at(1), &key(80), client(1)), remaining);
}

#[test]
fn switching_affinity_on_and_off_on_a_live_service() {
    let mut t = small();
    t.upsert(key(80), &[backend(2), backend(3)], Affinity::None).unwrap();
    assert_eq!(t.set_affinity(key(99), Affinity::CLIENT_IP), Err(ServiceError::NotFound));
    t.set_affinity(key(80), Affinity::CLIENT_IP).unwrap();
    let first = pick(&mut t, at(0), &key(80), client(1));
    assert_eq!(pick(&mut t, at(1), &key(80), client(1)), first);
    assert_eq!(t.affinity_len(), 1);
    t.set_affinity(key(80), Affinity::None).unwrap();
    assert_eq!(t.affinity_len(), 0);
    let next = pick(&mut t, at(2), &key(80), client(1));
    assert_ne!(pick(&mut t, at(2), &key(80), client(1)), next);
}

#[test]
fn a_full_affinity_table_still_serves_and_reclaims_expired_records() {
    let mut t = small(); // two records at most
    let timeout = Duration::from_secs(10);
    t.upsert(key(80), &[backend(2), backend(3)], Affinity::ClientIp { timeout }).unwrap();
    pick(&mut t, at(0), &key(80), client(1));
    pick(&mut t, at(0), &key(80), client(2));
    // Third client: served, but not recorded.
    pick(&mut t, at(1), &key(80), client(3));
    assert_eq!(t.affinity_len(), 2);
    assert_eq!(t.affinity_unrecorded(), 1);
    // After the others time out, a new client gets recorded again.
    pick(&mut t, at(20), &key(80), client(3));
    assert_eq!(t.affinity_len(), 1);
}

#[test]
fn removing_a_service_forgets_its_clients() {
    let mut t = small();
    t.upsert(key(80), &[backend(2)], Affinity::CLIENT_IP).unwrap();
    pick(&mut t, at(0), &key(80), client(1));
    t.remove(&key(80)).unwrap();
    assert_eq!(t.affinity_len(), 0);
    assert!(t.get(&key(80)).is_none());
}
