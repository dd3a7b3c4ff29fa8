//! Flow table tests with simulated time.

use super::tcp_flags::*;
use super::*;
use crate::testing::{VIP, at, ip};

fn key(proto: Protocol, client: u8, port: u16) -> FlowKey {
    FlowKey { proto, src: ip(client).into(), src_port: port, dst: VIP.into(), dst_port: 80 }
}

fn reply_of(original: &FlowKey) -> FlowKey {
    FlowKey { src: ip(200).into(), src_port: 8080, ..original.reversed() }
}

/// A table of `flows` for four owners, without a quota.
fn room(flows: usize) -> Capacity {
    Capacity { flows, owners: 4, max_flows_per_pod: usize::MAX }
}

fn add(ct: &mut Conntrack, now: Instant, k: FlowKey) -> Result<FlowId, Refused> {
    ct.insert(now, Owner(0), k, reply_of(&k))
}

#[test]
fn both_directions_find_the_flow_and_translate_to_the_other_tuple() {
    let mut ct = Conntrack::new(room(8), Timeouts::default(), 7);
    let k = key(Protocol::Tcp, 2, 40000);
    let id = add(&mut ct, at(0), k).unwrap();
    assert_eq!(ct.lookup(at(1), &k), Some((id, Direction::Original)));
    let r = reply_of(&k);
    assert_eq!(ct.lookup(at(1), &r), Some((id, Direction::Reply)));
    let flow = ct.get(id).unwrap();
    assert_eq!(flow.translated(Direction::Original), r.reversed());
    assert_eq!(flow.translated(Direction::Reply), k.reversed());
    assert!(!ct.is_free(&r));
    assert!(ct.is_free(&key(Protocol::Udp, 2, 40000)), "protocol is part of the key");
}

#[test]
fn tcp_timeouts_follow_the_connection_state() {
    let t = Timeouts::default();
    let mut ct = Conntrack::new(room(8), t, 1);
    let k = key(Protocol::Tcp, 2, 40000);
    let id = add(&mut ct, at(0), k).unwrap();
    ct.track(at(0), id, Direction::Original, SYN);
    assert_eq!(ct.get(id).unwrap().state(), FlowState::SynSent);
    assert_eq!(ct.get(id).unwrap().deadline(), at(0) + t.tcp_syn);

    ct.track(at(1), id, Direction::Reply, SYN | ACK);
    assert_eq!(ct.get(id).unwrap().state(), FlowState::Established);
    assert_eq!(ct.get(id).unwrap().deadline(), at(1) + t.tcp_established);

    ct.track(at(2), id, Direction::Original, FIN | ACK);
    assert_eq!(ct.get(id).unwrap().state(), FlowState::Closing);
    ct.track(at(3), id, Direction::Original, FIN | ACK); // retransmitted FIN
    assert_eq!(ct.get(id).unwrap().state(), FlowState::Closing);
    ct.track(at(4), id, Direction::Reply, FIN | ACK);
    assert_eq!(ct.get(id).unwrap().state(), FlowState::Closed);
    assert_eq!(ct.get(id).unwrap().deadline(), at(4) + t.tcp_closed);

    // Idle past the closed timeout: gone on the next lookup.
    assert!(ct.lookup(at(13), &k).is_some());
    ct.track(at(13), id, Direction::Original, ACK);
    assert!(ct.lookup(at(23), &k).is_none());
    assert_eq!(ct.stats().expired, 1);
    assert!(ct.is_empty());
}

#[test]
fn unanswered_syn_expires_after_the_syn_timeout() {
    let mut ct = Conntrack::new(room(8), Timeouts::default(), 1);
    let k = key(Protocol::Tcp, 2, 40000);
    add(&mut ct, at(0), k).unwrap();
    assert!(ct.lookup(at(29), &k).is_some());
    assert!(ct.lookup(at(30), &k).is_none());
}

#[test]
fn rst_closes_at_once_and_established_outlives_an_hour() {
    let t = Timeouts::default();
    let mut ct = Conntrack::new(room(8), t, 1);
    let k = key(Protocol::Tcp, 2, 40000);
    let id = add(&mut ct, at(0), k).unwrap();
    ct.track(at(0), id, Direction::Reply, SYN | ACK);
    assert!(ct.lookup(at(7200), &k).is_some(), "idle 2 h, still established");
    ct.track(at(7200), id, Direction::Reply, RST);
    assert_eq!(ct.get(id).unwrap().state(), FlowState::Closed);
    assert!(ct.lookup(at(7200) + t.tcp_closed, &k).is_none());
}

#[test]
fn udp_idles_out_after_thirty_seconds_from_the_last_packet() {
    let mut ct = Conntrack::new(room(8), Timeouts::default(), 1);
    let k = key(Protocol::Udp, 2, 5353);
    let id = add(&mut ct, at(0), k).unwrap();
    ct.track(at(20), id, Direction::Reply, 0);
    assert!(ct.lookup(at(49), &k).is_some());
    assert!(ct.lookup(at(50), &k).is_none());
}

#[test]
fn a_full_table_refuses_new_flows_and_keeps_the_old_ones() {
    let mut ct = Conntrack::new(room(4), Timeouts::default(), 3);
    let keys: alloc::vec::Vec<_> = (0..4).map(|i| key(Protocol::Udp, 2, 1000 + i)).collect();
    for k in &keys {
        add(&mut ct, at(0), *k).unwrap();
    }
    assert_eq!(add(&mut ct, at(1), key(Protocol::Udp, 3, 1)), Err(Refused::TableFull));
    assert_eq!(ct.stats().refused, 1);
    for k in &keys {
        assert!(ct.lookup(at(1), k).is_some());
    }
    // Once they idle out, room is made on demand.
    assert!(add(&mut ct, at(31), key(Protocol::Udp, 3, 1)).is_ok());
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.stats().expired, 4);
}

#[test]
fn a_full_table_sweeps_at_most_once_a_second() {
    let mut ct = Conntrack::new(room(1), Timeouts::default(), 3);
    let k = key(Protocol::Udp, 2, 1);
    add(&mut ct, at(0), k).unwrap();
    assert!(add(&mut ct, Instant::from_millis(29_500), key(Protocol::Udp, 3, 1)).is_err());
    // Expired at 30 s, but the last sweep was only 0.6 s ago.
    assert!(add(&mut ct, Instant::from_millis(30_100), key(Protocol::Udp, 3, 1)).is_err());
    assert!(add(&mut ct, Instant::from_millis(30_600), key(Protocol::Udp, 3, 1)).is_ok());
}

#[test]
fn expire_and_retain_keep_both_indexes_consistent() {
    let mut ct = Conntrack::new(room(64), Timeouts::default(), 99);
    for i in 0..64u16 {
        let k = key(if i % 2 == 0 { Protocol::Tcp } else { Protocol::Udp }, 2, i);
        let id = add(&mut ct, at(0), k).unwrap();
        if i % 4 == 0 {
            ct.track(at(0), id, Direction::Reply, SYN | ACK);
        }
    }
    // UDP and unanswered SYNs expire at 30 s; established ones stay.
    assert_eq!(ct.expire(at(40)), 48);
    for i in 0..64u16 {
        let k = key(if i % 2 == 0 { Protocol::Tcp } else { Protocol::Udp }, 2, i);
        assert_eq!(ct.lookup(at(40), &k).is_some(), i % 4 == 0, "{i}");
        assert_eq!(ct.lookup(at(40), &reply_of(&k)).is_some(), i % 4 == 0, "{i}");
    }
    assert_eq!(ct.retain(|f| f.original().src_port != 0), 1);
    assert_eq!(ct.len(), 15);
}

#[test]
fn bytes_per_flow_is_small() {
    // 40-byte entry, 4 bytes of free list, 16 bytes of index.
    assert_eq!(core::mem::size_of::<Option<Flow>>(), 40);
    assert_eq!(Conntrack::BYTES_PER_FLOW, 64);
    let ct = Conntrack::new(room(1024), Timeouts::default(), 0);
    assert_eq!(ct.memory_bytes(), 1024 * Conntrack::BYTES_PER_FLOW + 4 * 4, "plus a counter per owner");
}

#[test]
fn a_full_table_gives_up_its_oldest_closed_flow_before_refusing() {
    let t = Timeouts::default();
    let mut ct = Conntrack::new(room(3), t, 1);
    let keys: alloc::vec::Vec<_> = (0..3).map(|i| key(Protocol::Tcp, 2, 40000 + i)).collect();
    let ids: alloc::vec::Vec<_> = keys.iter().map(|k| add(&mut ct, at(0), *k).unwrap()).collect();
    // The second connection ends with a reset; the others stay up.
    ct.track(at(1), ids[0], Direction::Reply, SYN | ACK);
    ct.track(at(1), ids[1], Direction::Original, RST);
    ct.track(at(1), ids[2], Direction::Reply, SYN | ACK);
    let fresh = key(Protocol::Tcp, 2, 50000);
    assert!(add(&mut ct, at(2), fresh).is_ok(), "the closed flow makes room at once");
    assert!(ct.lookup(at(2), &keys[1]).is_none(), "the closed flow went");
    assert!(ct.lookup(at(2), &keys[0]).is_some() && ct.lookup(at(2), &keys[2]).is_some());
    // Full of live flows: refused and counted, the live flows go on.
    assert!(add(&mut ct, at(2), key(Protocol::Tcp, 2, 50001)).is_err());
    assert_eq!(ct.stats().refused, 1);
    assert_eq!(ct.len(), 3);
}

#[test]
fn an_owner_at_its_quota_is_refused_while_others_open_flows() {
    let mut ct =
        Conntrack::new(Capacity { flows: 8, owners: 3, max_flows_per_pod: 3 }, Timeouts::default(), 5);
    let (flooder, victim) = (Owner(1), Owner(2));
    let flood: alloc::vec::Vec<_> = (0..3).map(|i| key(Protocol::Tcp, 2, 1000 + i)).collect();
    for k in &flood {
        ct.insert(at(0), flooder, *k, reply_of(k)).unwrap();
    }
    let k = key(Protocol::Tcp, 2, 2000);
    assert_eq!(ct.insert(at(0), flooder, k, reply_of(&k)), Err(Refused::OverQuota));
    assert_eq!((ct.stats().over_quota, ct.stats().refused), (1, 0));
    assert_eq!(ct.live(flooder), 3);
    let v = key(Protocol::Tcp, 3, 40000);
    assert!(ct.insert(at(0), victim, v, reply_of(&v)).is_ok(), "the flood does not touch others' share");
    assert_eq!(ct.live(victim), 1);
}

#[test]
fn closed_and_removed_flows_give_their_quota_back() {
    let mut ct =
        Conntrack::new(Capacity { flows: 8, owners: 2, max_flows_per_pod: 2 }, Timeouts::default(), 5);
    let owner = Owner(1);
    let ks: alloc::vec::Vec<_> = (0..4).map(|i| key(Protocol::Tcp, 2, 1000 + i)).collect();
    let a = ct.insert(at(0), owner, ks[0], reply_of(&ks[0])).unwrap();
    let b = ct.insert(at(0), owner, ks[1], reply_of(&ks[1])).unwrap();
    assert!(ct.insert(at(0), owner, ks[2], reply_of(&ks[2])).is_err());
    // A reset closes the first: it stays tracked (stray packets) but no longer counts.
    ct.track(at(1), a, Direction::Original, RST);
    assert_eq!(ct.live(owner), 1);
    let c = ct.insert(at(1), owner, ks[2], reply_of(&ks[2])).unwrap();
    // Removing a closed flow gives nothing back twice; removing a live one does.
    ct.remove(a);
    assert_eq!(ct.live(owner), 2);
    ct.remove(b);
    assert_eq!(ct.live(owner), 1);
    // An unanswered SYN idles out after 30 s and gives its place back then.
    assert!(ct.lookup(at(40), &ks[2]).is_none());
    assert!(ct.get(c).is_none());
    assert_eq!(ct.live(owner), 0);
    assert!(ct.insert(at(40), owner, ks[3], reply_of(&ks[3])).is_ok());
}

#[test]
fn udp_flows_count_against_the_quota_until_they_idle_out() {
    let mut ct =
        Conntrack::new(Capacity { flows: 16, owners: 2, max_flows_per_pod: 4 }, Timeouts::default(), 9);
    let owner = Owner(0);
    for port in 0..10u16 {
        let k = key(Protocol::Udp, 2, port);
        let added = ct.insert(at(0), owner, k, reply_of(&k));
        assert_eq!(added.is_ok(), port < 4, "port {port}");
    }
    assert_eq!(ct.stats().over_quota, 6);
    ct.expire(at(31));
    assert_eq!(ct.live(owner), 0);
    let k = key(Protocol::Udp, 2, 99);
    assert!(ct.insert(at(31), owner, k, reply_of(&k)).is_ok());
}
