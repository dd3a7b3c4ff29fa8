//! NetworkPolicy verdicts (`netstack::policy`) on tables and connections
//! built from the input: any mix of isolated pods, rules, address blocks
//! with exceptions, pod sets and port ranges (first > last included).
//!
//! Checks: nothing panics; the node and a pod's traffic to itself are
//! always allowed; a connection between pods no policy isolates is allowed;
//! a denial names a direction in which the pod it blames is isolated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::Protocol;
use netstack::policy::{Connection, Direction, Isolation, Judgement, ResolvedPeer, PolicyTable, PortRange, Rule};
use netstack::wire::{Ipv4Address, Ipv4Cidr};

/// Reads the input a byte at a time; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.next(), self.next()])
    }

    /// One of 16 addresses: 10.244.0.0-7, 10.244.1.0-3, 192.168.1.0-3.
    fn addr(&mut self) -> Ipv4Address {
        let b = self.next() % 16;
        match b {
            0..8 => Ipv4Address::new(10, 244, 0, b),
            8..12 => Ipv4Address::new(10, 244, 1, b - 8),
            _ => Ipv4Address::new(192, 168, 1, b - 12),
        }
    }

    fn cidr(&mut self) -> Ipv4Cidr {
        Ipv4Cidr::new(self.addr(), self.next() % 33)
    }

    fn protocol(&mut self) -> Protocol {
        if self.next() % 2 == 0 { Protocol::Tcp } else { Protocol::Udp }
    }

    fn rules(&mut self) -> Option<Vec<Rule>> {
        let n = self.next();
        if n % 3 == 0 {
            return None;
        }
        let rules = (0..n % 4)
            .map(|_| {
                let peers = (0..self.next() % 3)
                    .map(|_| match self.next() % 2 {
                        0 => ResolvedPeer::Block { cidr: self.cidr(), except: (0..self.next() % 3).map(|_| self.cidr()).collect() },
                        _ => ResolvedPeer::pods((0..self.next() % 4).map(|_| self.addr()).collect()),
                    })
                    .collect();
                let ports = (0..self.next() % 3)
                    .map(|_| PortRange { protocol: self.protocol(), first: self.u16() % 8, last: self.u16() % 8 })
                    .collect();
                Rule { peers, ports }
            })
            .collect();
        Some(rules)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let node = Ipv4Address::new(10, 244, 0, 1);
    let pods: Vec<(Ipv4Address, Isolation)> = (0..b.next() % 8)
        .map(|_| {
            let addr = b.addr();
            (addr, Isolation { ingress: b.rules(), egress: b.rules() })
        })
        .collect();
    let table = PolicyTable::new(node, pods.clone());
    // The last isolation given for an address is the one kept.
    let isolation = |addr: Ipv4Address| pods.iter().rev().find(|(a, _)| *a == addr).map(|(_, i)| i.clone());
    for _ in 0..16 {
        let port = match b.next() % 3 {
            0 => None,
            _ => Some((b.protocol(), b.u16() % 8)),
        };
        let c = Connection { src: b.addr(), dst: b.addr(), port };
        let verdict = table.judge(&c);
        if c.src == c.dst || c.src == node || c.dst == node {
            assert_eq!(verdict, Judgement::Allowed, "{c:?}");
        }
        match verdict {
            Judgement::Allowed => {}
            Judgement::Denied(Direction::Egress) => {
                assert!(isolation(c.src).is_some_and(|i| i.egress.is_some()), "{c:?}")
            }
            Judgement::Denied(Direction::Ingress) => {
                assert!(isolation(c.dst).is_some_and(|i| i.ingress.is_some()), "{c:?}")
            }
        }
        if isolation(c.src).is_none() && isolation(c.dst).is_none() {
            assert_eq!(verdict, Judgement::Allowed, "{c:?}");
        }
    }
});
