//! Arbitrary bytes as DNS queries to the cluster zone, over UDP and TCP.
//!
//! Checks: nothing panics; an answer is a parseable DNS response with the
//! query's ID, QR set, and no larger than the transport allows (512 bytes,
//! or the EDNS0 size capped by `max_udp_payload`, over UDP; 65535 over TCP).
#![no_main]

use std::sync::LazyLock;

use domain::base::Message;
use libfuzzer_sys::fuzz_target;
use netstack::dns::{
    Endpoint, Outcome, Service, ServiceKind, ServicePort, Transport, Zone, ZoneConfig,
};
use netstack::Protocol;
use netstack::wire::Ipv4Address;

fn port(name: Option<&str>, port: u16, protocol: Protocol) -> ServicePort {
    ServicePort { name: name.map(String::from), port, protocol }
}

fn service(ns: &str, name: &str, ports: Vec<ServicePort>, kind: ServiceKind) -> Service {
    Service { name: name.into(), namespace: ns.into(), ports, kind }
}

static ZONE: LazyLock<Zone> = LazyLock::new(|| {
    let mut zone = Zone::new(ZoneConfig::default()).unwrap();
    let ports = vec![
        port(Some("http"), 80, Protocol::Tcp),
        port(None, 443, Protocol::Tcp),
        port(Some("dns"), 53, Protocol::Udp),
        port(Some("sig"), 5060, Protocol::Udp),
    ];
    let web = ServiceKind::ClusterIp(Ipv4Address::new(10, 96, 0, 20));
    zone.upsert_service(&service("default", "web", ports, web)).unwrap();
    let db = ServiceKind::Headless(vec![
        Endpoint { ip: Ipv4Address::new(10, 244, 1, 5), hostname: Some("db-0".into()) },
        Endpoint { ip: Ipv4Address::new(10, 244, 1, 6), hostname: None },
    ]);
    zone.upsert_service(&service("default", "db", vec![port(Some("pg"), 5432, Protocol::Tcp)], db)).unwrap();
    // Enough endpoints that A and SRV answers overflow 512 bytes (truncation).
    let many = (0..120u8).map(|i| Endpoint { ip: Ipv4Address::new(10, 244, 2, i), hostname: None }).collect();
    let big_ports = vec![port(Some("a"), 1, Protocol::Tcp), port(Some("b"), 2, Protocol::Udp)];
    zone.upsert_service(&service("big", "many", big_ports, ServiceKind::Headless(many))).unwrap();
    let ext = ServiceKind::ExternalName("db.example.com".into());
    zone.upsert_service(&service("default", "ext", vec![], ext)).unwrap();
    zone.upsert_service(&service("kube-system", "empty", vec![], ServiceKind::Headless(vec![]))).unwrap();
    zone.upsert_pod(Ipv4Address::new(10, 244, 0, 7), "default").unwrap();
    zone.upsert_pod(Ipv4Address::new(10, 244, 0, 8), "kube-system").unwrap();
    zone
});

fuzz_target!(|data: &[u8]| {
    let zone = &*ZONE;
    let mut out = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        let outcome = zone.answer(data, transport, &mut out);
        if let Outcome::Answered { .. } = outcome {
            let msg = Message::from_octets(out.as_slice()).expect("answer is a DNS message");
            // Without EDNS0 (no OPT echoed) a UDP answer stays within 512 bytes.
            let limit = match transport {
                Transport::Udp if msg.opt().is_none() => 512,
                Transport::Udp => usize::from(zone.config().max_udp_payload).max(512),
                Transport::Tcp => 65535,
            };
            assert!(out.len() <= limit, "{} byte answer over {transport:?}", out.len());
            assert!(msg.header().qr(), "answer without QR");
            assert_eq!(msg.header().id(), u16::from_be_bytes([data[0], data[1]]), "answer with another ID");
        }
    }
});
