//! Zone tests on wire bytes: queries are written by hand (as `dig` sends
//! them), responses are read back with `domain`'s parser.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use domain::base::iana::Rcode as WireRcode;
use domain::base::{Message, ParsedName, Rtype};
use domain::rdata::AllRecordData;

use super::*;
use crate::Protocol;
use crate::wire::{Ipv4Address, Ipv4Cidr};

const A: u16 = 1;
const NS: u16 = 2;
const CNAME: u16 = 5;
const SOA: u16 = 6;
const PTR: u16 = 12;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const SRV: u16 = 33;
const AXFR: u16 = 252;
const ANY: u16 = 255;

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Address {
    Ipv4Address::new(a, b, c, d)
}

fn port(name: Option<&str>, port: u16, protocol: Protocol) -> ServicePort {
    ServicePort { name: name.map(String::from), port, protocol }
}

fn endpoint(address: Ipv4Address, hostname: Option<&str>) -> Endpoint {
    Endpoint { ip: address, hostname: hostname.map(String::from) }
}

fn service(ns: &str, name: &str, ports: Vec<ServicePort>, kind: ServiceKind) -> Service {
    Service { name: name.into(), namespace: ns.into(), ports, kind }
}

/// web (ClusterIP), db (headless, two endpoints), ext (ExternalName),
/// empty (headless, nothing ready), and pod 10.244.0.7 in `default`.
fn zone() -> Zone {
    let mut zone = Zone::new(ZoneConfig::default()).unwrap();
    zone.upsert_service(&service(
        "default",
        "web",
        vec![
            port(Some("http"), 80, Protocol::Tcp),
            port(None, 443, Protocol::Tcp),
            port(Some("dns"), 53, Protocol::Udp),
        ],
        ServiceKind::ClusterIp(ip(10, 96, 0, 20)),
    ))
    .unwrap();
    zone.upsert_service(&service(
        "default",
        "db",
        vec![port(Some("pg"), 5432, Protocol::Tcp)],
        ServiceKind::Headless(vec![
            endpoint(ip(10, 244, 1, 5), Some("db-0")),
            endpoint(ip(10, 244, 1, 6), None),
        ]),
    ))
    .unwrap();
    zone.upsert_service(&service(
        "default",
        "ext",
        vec![],
        ServiceKind::ExternalName("db.example.com".into()),
    ))
    .unwrap();
    zone.upsert_service(&service(
        "kube-system",
        "empty",
        vec![port(Some("x"), 1, Protocol::Tcp)],
        ServiceKind::Headless(vec![]),
    ))
    .unwrap();
    zone.upsert_pod(ip(10, 244, 0, 7), "default").unwrap();
    zone
}

/// Wire form of a dotted name.
fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A query as `dig +noedns` sends it: ID 0xbeef, RD set, one question.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend(wire(name));
    q.extend(qtype.to_be_bytes());
    q.extend(1u16.to_be_bytes());
    q
}

/// The same with an EDNS0 OPT record (payload size, version, DO bit).
fn query_edns(name: &str, qtype: u16, payload: u16, version: u8, dnssec_ok: bool) -> Vec<u8> {
    let mut q = query(name, qtype);
    q[11] = 1; // ARCOUNT
    q.push(0); // root owner
    q.extend(41u16.to_be_bytes());
    q.extend(payload.to_be_bytes());
    q.extend([0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
    q.extend(0u16.to_be_bytes());
    q
}

/// A response read back: rcode, flags and every record as zone-file text.
#[derive(Debug)]
struct Reply {
    rcode: WireRcode,
    aa: bool,
    tc: bool,
    ra: bool,
    rd: bool,
    id: u16,
    questions: usize,
    answers: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
    opt: Option<(u16, u8, bool, u8)>,
}

fn section(records: domain::base::message::RecordSection<'_, &[u8]>) -> Vec<String> {
    records
        .map(|r| {
            let r = r.unwrap();
            if r.rtype() == Rtype::OPT {
                return String::from("OPT");
            }
            r.to_any_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>().unwrap().to_string()
        })
        .filter(|s| s != "OPT")
        .collect()
}

fn read(bytes: &[u8]) -> Reply {
    let msg = Message::from_octets(bytes).unwrap();
    let h = msg.header();
    let opt =
        msg.opt().map(|o| (o.udp_payload_size(), o.version(), o.dnssec_ok(), o.rcode(h).to_int() as u8));
    Reply {
        rcode: h.rcode(),
        aa: h.aa(),
        tc: h.tc(),
        ra: h.ra(),
        rd: h.rd(),
        id: h.id(),
        questions: msg.header_counts().qdcount() as usize,
        answers: section(msg.answer().unwrap()),
        authority: section(msg.authority().unwrap()),
        additional: section(msg.additional().unwrap()),
        opt,
    }
}

fn ask_on(zone: &Zone, q: &[u8], transport: Transport) -> (Outcome, Vec<u8>) {
    let mut out = Vec::new();
    let outcome = zone.answer(q, transport, &mut out);
    (outcome, out)
}

/// Asks over UDP and expects an answer.
fn ask(zone: &Zone, q: &[u8]) -> Reply {
    let (outcome, out) = ask_on(zone, q, Transport::Udp);
    assert!(matches!(outcome, Outcome::Answered { .. }), "expected an answer, got {outcome:?}");
    assert!(out.len() <= 512);
    read(&out)
}

fn soa_line(serial: u32) -> String {
    format!(
        "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {serial} 7200 1800 86400 5"
    )
}

// --- services ---------------------------------------------------------------

#[test]
fn cluster_ip_service_has_an_a_record() {
    let zone = zone();
    let r = ask(&zone, &query("web.default.svc.cluster.local", A));
    assert_eq!(r.rcode, WireRcode::NOERROR);
    assert!(r.aa && r.ra && r.rd && !r.tc);
    assert_eq!(r.id, 0xbeef);
    assert_eq!(r.questions, 1);
    assert_eq!(r.answers, ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]);
    assert!(r.authority.is_empty() && r.additional.is_empty());
    assert_eq!(r.opt, None);
}

#[test]
fn matching_ignores_case_and_answers_echo_it() {
    let zone = zone();
    let q = query("Web.DEFAULT.svc.Cluster.Local.", A);
    let (_, out) = ask_on(&zone, &q, Transport::Udp);
    let r = read(&out);
    assert_eq!(r.answers, ["Web.DEFAULT.svc.Cluster.Local. 5 IN A 10.96.0.20"]);
    // The question is echoed byte for byte.
    assert_eq!(&out[12..q.len()], &q[12..]);
}

#[test]
fn known_name_of_another_type_is_nodata_with_soa() {
    let zone = zone();
    let serial = zone.serial();
    for qtype in [AAAA, TXT, SRV, PTR, NS] {
        let r = ask(&zone, &query("web.default.svc.cluster.local", qtype));
        assert_eq!(r.rcode, WireRcode::NOERROR, "type {qtype}");
        assert!(r.aa);
        assert!(r.answers.is_empty());
        assert_eq!(r.authority, [soa_line(serial)]);
    }
}

#[test]
fn unknown_names_in_the_zone_are_nxdomain_with_soa() {
    let zone = zone();
    for name in [
        "nope.default.svc.cluster.local",
        "web.other.svc.cluster.local",
        "nope.svc.cluster.local",
        "foo.cluster.local",
        "a.b.c.web.default.svc.cluster.local",
        "google.com.default.svc.cluster.local",
        "we_b.default.svc.cluster.local",
        "x.web.default.svc.cluster.local",
    ] {
        let r = ask(&zone, &query(name, A));
        assert_eq!(r.rcode, WireRcode::NXDOMAIN, "{name}");
        assert!(r.aa);
        assert!(r.answers.is_empty());
        assert_eq!(r.authority, [soa_line(zone.serial())], "{name}");
    }
}

#[test]
fn empty_non_terminals_are_nodata() {
    let zone = zone();
    for name in [
        "svc.cluster.local",
        "pod.cluster.local",
        "default.svc.cluster.local",
        "kube-system.svc.cluster.local",
        "default.pod.cluster.local",
        "_tcp.web.default.svc.cluster.local",
        "_udp.web.default.svc.cluster.local",
    ] {
        let r = ask(&zone, &query(name, A));
        assert_eq!(r.rcode, WireRcode::NOERROR, "{name}");
        assert!(r.answers.is_empty(), "{name}");
        assert_eq!(r.authority.len(), 1, "{name}");
    }
    assert_eq!(ask(&zone, &query("_sctp.web.default.svc.cluster.local", A)).rcode, WireRcode::NXDOMAIN);
}

#[test]
fn headless_service_has_one_a_per_ready_endpoint() {
    let zone = zone();
    let r = ask(&zone, &query("db.default.svc.cluster.local", A));
    assert_eq!(
        r.answers,
        [
            "db.default.svc.cluster.local. 5 IN A 10.244.1.5",
            "db.default.svc.cluster.local. 5 IN A 10.244.1.6",
        ]
    );
}

#[test]
fn headless_endpoints_are_named_by_hostname_or_address() {
    let zone = zone();
    let r = ask(&zone, &query("db-0.db.default.svc.cluster.local", A));
    assert_eq!(r.answers, ["db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5"]);
    let r = ask(&zone, &query("10-244-1-6.db.default.svc.cluster.local", A));
    assert_eq!(r.answers, ["10-244-1-6.db.default.svc.cluster.local. 5 IN A 10.244.1.6"]);
    // An endpoint with a hostname is not also reachable by its address name.
    let r = ask(&zone, &query("10-244-1-5.db.default.svc.cluster.local", A));
    assert_eq!(r.rcode, WireRcode::NXDOMAIN);
    // ClusterIP services publish no endpoint names.
    let r = ask(&zone, &query("10-96-0-20.web.default.svc.cluster.local", A));
    assert_eq!(r.rcode, WireRcode::NXDOMAIN);
}

#[test]
fn headless_service_without_ready_endpoints_is_nxdomain() {
    let zone = zone();
    for name in ["empty.kube-system.svc.cluster.local", "_x._tcp.empty.kube-system.svc.cluster.local"] {
        let qtype = if name.starts_with('_') { SRV } else { A };
        let r = ask(&zone, &query(name, qtype));
        assert_eq!(r.rcode, WireRcode::NXDOMAIN, "{name}");
    }
}

#[test]
fn srv_for_a_named_port_points_at_the_service_with_glue() {
    let zone = zone();
    let r = ask(&zone, &query("_http._tcp.web.default.svc.cluster.local", SRV));
    assert_eq!(
        r.answers,
        ["_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local"]
    );
    assert_eq!(r.additional, ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]);
    let r = ask(&zone, &query("_dns._udp.web.default.svc.cluster.local", SRV));
    assert_eq!(r.answers.len(), 1);
    assert!(r.answers[0].ends_with("SRV 0 100 53 web.default.svc.cluster.local"));
}

#[test]
fn srv_needs_the_right_name_and_protocol() {
    let zone = zone();
    for name in [
        "_http._udp.web.default.svc.cluster.local",
        "_https._tcp.web.default.svc.cluster.local",
        "http._tcp.web.default.svc.cluster.local",
        "_http.tcp.web.default.svc.cluster.local",
    ] {
        assert_eq!(ask(&zone, &query(name, SRV)).rcode, WireRcode::NXDOMAIN, "{name}");
    }
    // The SRV name exists: other types are NODATA.
    let r = ask(&zone, &query("_http._tcp.web.default.svc.cluster.local", A));
    assert_eq!(r.rcode, WireRcode::NOERROR);
    assert!(r.answers.is_empty());
}

#[test]
fn headless_srv_has_one_record_per_endpoint() {
    let zone = zone();
    let r = ask(&zone, &query("_pg._tcp.db.default.svc.cluster.local", SRV));
    assert_eq!(
        r.answers,
        [
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 100 5432 db-0.db.default.svc.cluster.local",
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 100 5432 10-244-1-6.db.default.svc.cluster.local",
        ]
    );
    assert_eq!(
        r.additional,
        [
            "db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5",
            "10-244-1-6.db.default.svc.cluster.local. 5 IN A 10.244.1.6",
        ]
    );
}

#[test]
fn external_name_is_a_cname_for_any_type() {
    let zone = zone();
    for qtype in [A, AAAA, CNAME, ANY] {
        let r = ask(&zone, &query("ext.default.svc.cluster.local", qtype));
        assert_eq!(r.rcode, WireRcode::NOERROR);
        assert_eq!(r.answers, ["ext.default.svc.cluster.local. 5 IN CNAME db.example.com."], "type {qtype}");
    }
}

#[test]
fn any_returns_every_record_of_the_name() {
    let zone = zone();
    let r = ask(&zone, &query("web.default.svc.cluster.local", ANY));
    assert_eq!(r.answers, ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]);
}

// --- pods, version, apex ----------------------------------------------------

#[test]
fn pods_resolve_in_their_namespace_only() {
    let zone = zone();
    let r = ask(&zone, &query("10-244-0-7.default.pod.cluster.local", A));
    assert_eq!(r.answers, ["10-244-0-7.default.pod.cluster.local. 5 IN A 10.244.0.7"]);
    for name in [
        "10-244-0-7.other.pod.cluster.local",
        "10-244-0-8.default.pod.cluster.local",
        "10-244-0-07.default.pod.cluster.local",
        "x.10-244-0-7.default.pod.cluster.local",
    ] {
        assert_eq!(ask(&zone, &query(name, A)).rcode, WireRcode::NXDOMAIN, "{name}");
    }
}

#[test]
fn dns_version_is_a_txt_record() {
    let zone = zone();
    let r = ask(&zone, &query("dns-version.cluster.local", TXT));
    assert_eq!(r.answers, ["dns-version.cluster.local. 5 IN TXT \"1.1.0\""]);
    let r = ask(&zone, &query("dns-version.cluster.local", A));
    assert!(r.answers.is_empty() && r.rcode == WireRcode::NOERROR);
}

#[test]
fn the_apex_has_an_soa() {
    let zone = zone();
    let r = ask(&zone, &query("cluster.local", SOA));
    assert_eq!(r.answers, [soa_line(zone.serial())]);
    let r = ask(&zone, &query("cluster.local", A));
    assert!(r.answers.is_empty());
    assert_eq!(r.authority, [soa_line(zone.serial())]);
}

#[test]
fn a_configured_domain_and_ttl_are_used() {
    let config = ZoneConfig { domain: "Edge.Example.".into(), ttl: 30, ..ZoneConfig::default() };
    let mut zone = Zone::new(config).unwrap();
    zone.upsert_service(&service("default", "web", vec![], ServiceKind::ClusterIp(ip(10, 96, 0, 1))))
        .unwrap();
    let r = ask(&zone, &query("web.default.svc.edge.example", A));
    assert_eq!(r.answers, ["web.default.svc.edge.example. 30 IN A 10.96.0.1"]);
    let (outcome, _) = ask_on(&zone, &query("web.default.svc.cluster.local", A), Transport::Udp);
    assert_eq!(outcome, Outcome::Forward);
    for bad in ["", ".", "a..b", "under_score.local", "-x.local"] {
        let config = ZoneConfig { domain: bad.into(), ..ZoneConfig::default() };
        assert_eq!(Zone::new(config).unwrap_err(), ZoneError::InvalidDomain, "{bad:?}");
    }
}

// --- reverse ----------------------------------------------------------------

#[test]
fn ptr_for_cluster_ips_endpoints_and_pods() {
    let zone = zone();
    let cases = [
        ("20.0.96.10.in-addr.arpa", "web.default.svc.cluster.local."),
        ("5.1.244.10.in-addr.arpa", "db-0.db.default.svc.cluster.local."),
        ("6.1.244.10.in-addr.arpa", "10-244-1-6.db.default.svc.cluster.local."),
        ("7.0.244.10.in-addr.arpa", "10-244-0-7.default.pod.cluster.local."),
    ];
    for (name, target) in cases {
        let r = ask(&zone, &query(name, PTR));
        assert_eq!(r.rcode, WireRcode::NOERROR, "{name}");
        assert!(r.aa);
        assert_eq!(r.answers, [format!("{name}. 5 IN PTR {target}")]);
    }
    // A known address asked for another type.
    let r = ask(&zone, &query("20.0.96.10.in-addr.arpa", A));
    assert!(r.answers.is_empty() && r.rcode == WireRcode::NOERROR);
}

#[test]
fn endpoint_ptr_wins_over_the_pod_name() {
    let mut zone = zone();
    zone.upsert_pod(ip(10, 244, 1, 5), "default").unwrap();
    let r = ask(&zone, &query("5.1.244.10.in-addr.arpa", PTR));
    assert_eq!(r.answers, ["5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."]);
}

#[test]
fn unknown_addresses_in_cluster_ranges_are_nxdomain_others_forwarded() {
    let zone = zone();
    for name in [
        "9.9.244.10.in-addr.arpa",
        "1.0.100.10.in-addr.arpa", // service CIDR 10.96.0.0/12 reaches 10.111.x
        "x.9.9.244.10.in-addr.arpa",
        "junk.0.244.10.in-addr.arpa",
    ] {
        let r = ask(&zone, &query(name, PTR));
        assert_eq!(r.rcode, WireRcode::NXDOMAIN, "{name}");
        assert_eq!(r.authority.len(), 1);
        assert!(r.authority[0].starts_with("in-addr.arpa. 5 IN SOA"), "{name}");
    }
    for name in [
        "8.8.8.8.in-addr.arpa",
        "1.0.112.10.in-addr.arpa",
        "1.1.168.192.in-addr.arpa",
        "10.in-addr.arpa",
        "in-addr.arpa",
        "x.8.8.8.8.in-addr.arpa",
        "junk.in-addr.arpa",
    ] {
        let (outcome, out) = ask_on(&zone, &query(name, PTR), Transport::Udp);
        assert_eq!(outcome, Outcome::Forward, "{name}");
        assert!(out.is_empty());
    }
    // Partial names inside the ranges exist (they have addresses under them).
    for name in ["0.244.10.in-addr.arpa", "244.10.in-addr.arpa", "97.10.in-addr.arpa"] {
        let r = ask(&zone, &query(name, PTR));
        assert_eq!(r.rcode, WireRcode::NOERROR, "{name}");
        assert!(r.answers.is_empty());
    }
}

// --- forwarding -------------------------------------------------------------

#[test]
fn names_outside_the_zone_are_forwarded() {
    let zone = zone();
    for name in ["example.com", "local", "cluster.local.example.com", "xcluster.local", "."] {
        for qtype in [A, AAAA, 65, 99, 0xff00] {
            let (outcome, out) = ask_on(&zone, &query(name, qtype), Transport::Udp);
            assert_eq!(outcome, Outcome::Forward, "{name} type {qtype}");
            assert!(out.is_empty());
        }
    }
    // Whatever the class, the upstream resolver deals with foreign names.
    let mut chaos = query("version.bind", TXT);
    let n = chaos.len();
    chaos[n - 1] = 3;
    assert_eq!(ask_on(&zone, &chaos, Transport::Udp).0, Outcome::Forward);
}

// --- EDNS and truncation ----------------------------------------------------

#[test]
fn edns_queries_get_an_opt_record_back() {
    let zone = zone();
    let r = ask(&zone, &query_edns("web.default.svc.cluster.local", A, 4096, 0, false));
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.opt, Some((1232, 0, false, 0)));
    let r = ask(&zone, &query_edns("web.default.svc.cluster.local", A, 1232, 0, true));
    assert_eq!(r.opt, Some((1232, 0, true, 0)), "DO is copied (RFC 3225)");
    // Negative answers keep the OPT too.
    let r = ask(&zone, &query_edns("nope.default.svc.cluster.local", A, 512, 0, false));
    assert_eq!(r.rcode, WireRcode::NXDOMAIN);
    assert!(r.opt.is_some());
}

#[test]
fn an_unknown_edns_version_is_badvers() {
    let zone = zone();
    let (outcome, out) =
        ask_on(&zone, &query_edns("web.default.svc.cluster.local", A, 1232, 1, false), Transport::Udp);
    assert_eq!(outcome, Outcome::Answered { rcode: Rcode::BadVers, truncated: false });
    let r = read(&out);
    assert!(r.answers.is_empty());
    assert_eq!(r.opt, Some((1232, 0, false, 16)));
}

#[test]
fn dig_fixture_with_edns_cookie_is_answered() {
    // `dig @10.96.0.10 web.default.svc.cluster.local` (BIND 9.18): RD and AD
    // set, OPT with a 4096-byte buffer and a client COOKIE option.
    let q: &[u8] = &[
        0x3a, 0x51, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // header
        0x03, b'w', b'e', b'b', 0x07, b'd', b'e', b'f', b'a', b'u', b'l', b't', 0x03, b's', b'v', b'c', 0x07,
        b'c', b'l', b'u', b's', b't', b'e', b'r', 0x05, b'l', b'o', b'c', b'a', b'l', 0x00, 0x00, 0x01, 0x00,
        0x01, // question
        0x00, 0x00, 0x29, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, // OPT
        0x00, 0x0a, 0x00, 0x08, 0x5e, 0x1b, 0x7e, 0xa3, 0x91, 0x4c, 0x02, 0x6f, // COOKIE
    ];
    let r = ask(&zone(), q);
    assert_eq!(r.id, 0x3a51);
    assert_eq!(r.answers, ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]);
    assert_eq!(r.opt, Some((1232, 0, false, 0)));
}

/// A headless service with `n` ready endpoints, all with long hostnames.
fn big_zone(n: u8) -> Zone {
    let mut zone = Zone::new(ZoneConfig::default()).unwrap();
    let endpoints = (0..n).map(|i| endpoint(ip(10, 244, 2, i), None)).collect();
    zone.upsert_service(&service(
        "default",
        "big",
        vec![port(Some("http"), 80, Protocol::Tcp)],
        ServiceKind::Headless(endpoints),
    ))
    .unwrap();
    zone
}

#[test]
fn udp_answers_over_512_bytes_are_truncated_without_edns() {
    let zone = big_zone(40); // 40 × 16 bytes of A records + header: > 512
    let q = query("big.default.svc.cluster.local", A);
    let (outcome, out) = ask_on(&zone, &q, Transport::Udp);
    assert_eq!(outcome, Outcome::Answered { rcode: Rcode::NoError, truncated: true });
    assert_eq!(out.len(), q.len(), "header and question only");
    let r = read(&out);
    assert!(r.tc && r.answers.is_empty() && r.authority.is_empty());
    assert_eq!(r.questions, 1);

    // The same over TCP is whole.
    let (outcome, out) = ask_on(&zone, &q, Transport::Tcp);
    assert!(matches!(outcome, Outcome::Answered { truncated: false, .. }));
    let r = read(&out);
    assert_eq!(r.answers.len(), 40);
    assert!(!r.tc && out.len() > 512);
}

#[test]
fn edns_buffer_size_bounds_udp_answers() {
    let zone = big_zone(40);
    let name = "big.default.svc.cluster.local";
    // 4096 offered, capped at our 1232: 40 records fit.
    let (outcome, out) = ask_on(&zone, &query_edns(name, A, 4096, 0, false), Transport::Udp);
    assert!(matches!(outcome, Outcome::Answered { truncated: false, .. }));
    assert!(out.len() > 512 && out.len() <= 1232);
    assert_eq!(read(&out).answers.len(), 40);
    // Below 512 counts as 512.
    let (outcome, out) = ask_on(&zone, &query_edns(name, A, 100, 0, false), Transport::Udp);
    assert!(matches!(outcome, Outcome::Answered { truncated: true, .. }));
    let r = read(&out);
    assert!(r.tc && r.answers.is_empty());
    assert_eq!(r.opt, Some((1232, 0, false, 0)), "OPT kept in a truncated answer");
    // 200 endpoints do not fit 1232 bytes either.
    let zone = big_zone(200);
    let (outcome, out) = ask_on(&zone, &query_edns(name, A, 4096, 0, false), Transport::Udp);
    assert!(matches!(outcome, Outcome::Answered { truncated: true, .. }));
    assert!(out.len() <= 1232);
}

#[test]
fn srv_glue_that_does_not_fit_is_left_out_without_tc() {
    // SRV targets are never compressed (RFC 2782): 15 records take ~900
    // bytes, which leaves room for some of their A records, not all.
    let zone = big_zone(15);
    let q = query_edns("_http._tcp.big.default.svc.cluster.local", SRV, 1232, 0, false);
    let (outcome, out) = ask_on(&zone, &q, Transport::Udp);
    assert!(matches!(outcome, Outcome::Answered { truncated: false, .. }), "{outcome:?}");
    let r = read(&out);
    assert_eq!(r.answers.len(), 15);
    assert!(!r.tc);
    assert!(r.additional.len() < 15, "{}", r.additional.len());
    assert!(!r.additional.is_empty());
    assert!(out.len() <= 1232);
}

// --- hostile input ----------------------------------------------------------

fn outcome_of(zone: &Zone, q: &[u8]) -> Outcome {
    ask_on(zone, q, Transport::Udp).0
}

fn formerr(zone: &Zone, q: &[u8]) {
    let (outcome, out) = ask_on(zone, q, Transport::Udp);
    assert_eq!(outcome, Outcome::Answered { rcode: Rcode::FormErr, truncated: false }, "{q:02x?}");
    let r = read(&out);
    assert_eq!(r.rcode, WireRcode::FORMERR);
    assert_eq!(r.id, u16::from_be_bytes([q[0], q[1]]));
    assert!(r.answers.is_empty());
}

#[test]
fn short_messages_and_responses_are_dropped() {
    let zone = zone();
    for len in 0..12 {
        assert_eq!(
            outcome_of(&zone, &query("web.default.svc.cluster.local", A)[..len]),
            Outcome::Drop(DropReason::DnsUnanswerable)
        );
    }
    let mut response = query("web.default.svc.cluster.local", A);
    response[2] |= 0x80;
    assert_eq!(outcome_of(&zone, &response), Outcome::Drop(DropReason::DnsUnanswerable));
}

#[test]
fn other_opcodes_are_notimp() {
    let zone = zone();
    for opcode in [1u8, 2, 4, 5, 15] {
        let mut q = query("web.default.svc.cluster.local", A);
        q[2] = (q[2] & 0x87) | (opcode << 3);
        let (outcome, out) = ask_on(&zone, &q, Transport::Udp);
        assert_eq!(outcome, Outcome::Answered { rcode: Rcode::NotImp, truncated: false });
        let r = read(&out);
        assert_eq!(r.rcode, WireRcode::NOTIMP);
        assert_eq!(out[2] & 0x78, opcode << 3, "opcode echoed");
    }
}

#[test]
fn question_counts_other_than_one_are_formerr() {
    let zone = zone();
    let mut none = query("web.default.svc.cluster.local", A);
    none[5] = 0;
    formerr(&zone, &none);
    formerr(&zone, &none[..12]);
    let mut two = query("web.default.svc.cluster.local", A);
    two[5] = 2;
    two.extend_from_slice(&query("db.default.svc.cluster.local", A)[12..]);
    formerr(&zone, &two);
}

#[test]
fn broken_names_are_formerr() {
    let zone = zone();
    let header = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let tail = [0, 1, 0, 1];
    let with = |name: &[u8]| -> Vec<u8> { [&header[..], name, &tail].concat() };
    // A pointer to itself.
    formerr(&zone, &with(&[0xc0, 12]));
    // Two pointers pointing at each other.
    formerr(&zone, &with(&[0x01, b'a', 0xc0, 16, 0xc0, 12]));
    // A pointer forwards, past the end.
    formerr(&zone, &with(&[0xc0, 0xff]));
    // A pointer into the header.
    formerr(&zone, &with(&[0xc0, 0x00]));
    // Reserved label types (0x40, 0x80).
    formerr(&zone, &with(&[0x41, b'a', 0]));
    formerr(&zone, &with(&[0x81, b'a', 0]));
    // A label running past the end.
    formerr(&zone, &[&header[..], &[0x3f, b'a', b'b']].concat());
    // No root label.
    formerr(&zone, &[&header[..], &[0x01, b'a']].concat());
    // Name longer than 255 bytes: 5 × 63-byte labels.
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(63);
        long.extend([b'a'; 63]);
    }
    long.push(0);
    formerr(&zone, &with(&long));
    // Missing type and class.
    formerr(&zone, &[&header[..], &wire("web.default.svc.cluster.local")].concat());
}

#[test]
fn broken_or_doubled_opt_is_formerr() {
    let zone = zone();
    let name = "web.default.svc.cluster.local";
    let mut cut = query_edns(name, A, 1232, 0, false);
    cut.truncate(cut.len() - 3);
    formerr(&zone, &cut);
    let mut two = query_edns(name, A, 1232, 0, false);
    let opt = two[two.len() - 11..].to_vec();
    two.extend(opt);
    two[11] = 2;
    formerr(&zone, &two);
    // ARCOUNT promising a record that is not there.
    let mut missing = query(name, A);
    missing[11] = 1;
    formerr(&zone, &missing);
}

#[test]
fn other_classes_and_zone_transfers_are_notimp_in_the_zone() {
    let zone = zone();
    for (qtype, class) in [(A, 3u16), (A, 4), (A, 0), (A, 42), (AXFR, 1)] {
        let mut q = query("web.default.svc.cluster.local", qtype);
        let n = q.len();
        q[n - 2..].copy_from_slice(&class.to_be_bytes());
        let (outcome, out) = ask_on(&zone, &q, Transport::Udp);
        assert_eq!(
            outcome,
            Outcome::Answered { rcode: Rcode::NotImp, truncated: false },
            "type {qtype} class {class}"
        );
        assert_eq!(read(&out).rcode, WireRcode::NOTIMP);
    }
    // Class ANY is served like IN.
    let mut q = query("web.default.svc.cluster.local", A);
    let n = q.len();
    q[n - 1] = 255;
    assert_eq!(ask(&zone, &q).answers.len(), 1);
}

#[test]
fn fuzzed_input_never_panics() {
    let zone = big_zone(30);
    let mut zone2 = zone.clone();
    zone2.upsert_pod(ip(10, 244, 0, 7), "default").unwrap();
    let seeds: Vec<Vec<u8>> = vec![
        query("big.default.svc.cluster.local", A),
        query("_http._tcp.big.default.svc.cluster.local", SRV),
        query_edns("big.default.svc.cluster.local", A, 4096, 0, true),
        query_edns("7.0.244.10.in-addr.arpa", PTR, 1232, 0, false),
        query("10-244-2-3.big.default.svc.cluster.local", ANY),
        query("example.com", A),
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out = Vec::new();
    let mut answered = 0;
    for round in 0..300_000u32 {
        let r = next();
        let input: Vec<u8> = if round % 4 == 0 {
            // Pure noise, a header's worth to a few hundred bytes.
            let len = (r % 300) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            // A real query, mutated: flipped bytes, cut short or grown.
            let mut q = seeds[(r % seeds.len() as u64) as usize].clone();
            let mutations = 1 + (next() % 4);
            for _ in 0..mutations {
                let m = next();
                let at = (m >> 8) as usize % q.len().max(1);
                match m % 5 {
                    0 | 1 if !q.is_empty() => q[at] = (m >> 32) as u8,
                    2 if !q.is_empty() => q[at] ^= 1 << ((m >> 40) % 8),
                    3 => q.truncate(at),
                    _ => q.insert(at.min(q.len()), (m >> 24) as u8),
                }
            }
            q
        };
        let z = if round % 2 == 0 { &zone } else { &zone2 };
        let transport = if round % 3 == 0 { Transport::Tcp } else { Transport::Udp };
        match z.answer(&input, transport, &mut out) {
            Outcome::Answered { .. } => {
                answered += 1;
                let limit = if transport == Transport::Tcp { 65535 } else { 1232 };
                assert!(out.len() <= limit);
                let msg = Message::from_octets(&out[..]).expect("responses parse");
                assert!(msg.header().qr());
                assert_eq!(msg.header().id(), u16::from_be_bytes([input[0], input[1]]));
            }
            Outcome::Forward | Outcome::Drop(_) => assert!(out.is_empty()),
        }
    }
    assert!(answered > 10_000, "the fuzzer reaches the answer path: {answered}");
}

// --- updates and capacities -------------------------------------------------

#[test]
fn services_are_replaced_and_removed() {
    let mut zone = zone();
    let serial = zone.serial();
    zone.upsert_service(&service("default", "web", vec![], ServiceKind::ClusterIp(ip(10, 96, 0, 21))))
        .unwrap();
    assert!(zone.serial() != serial);
    let r = ask(&zone, &query("web.default.svc.cluster.local", A));
    assert_eq!(r.answers, ["web.default.svc.cluster.local. 5 IN A 10.96.0.21"]);
    // The old ClusterIP no longer has a PTR; the new one does.
    assert_eq!(ask(&zone, &query("20.0.96.10.in-addr.arpa", PTR)).rcode, WireRcode::NXDOMAIN);
    assert_eq!(ask(&zone, &query("21.0.96.10.in-addr.arpa", PTR)).answers.len(), 1);
    // The port is gone with the update.
    assert_eq!(
        ask(&zone, &query("_http._tcp.web.default.svc.cluster.local", SRV)).rcode,
        WireRcode::NXDOMAIN
    );

    assert_eq!(zone.endpoint_count(), 2);
    assert!(zone.remove_service("default", "db"));
    assert!(!zone.remove_service("default", "db"));
    assert!(!zone.remove_service("Bad Name", "db"));
    assert_eq!(zone.endpoint_count(), 0);
    assert_eq!(ask(&zone, &query("5.1.244.10.in-addr.arpa", PTR)).rcode, WireRcode::NXDOMAIN);
    assert_eq!(ask(&zone, &query("db.default.svc.cluster.local", A)).rcode, WireRcode::NXDOMAIN);
}

#[test]
fn namespaces_exist_while_they_hold_something() {
    let mut zone = zone();
    assert!(zone.remove_service("kube-system", "empty"));
    assert_eq!(ask(&zone, &query("kube-system.svc.cluster.local", A)).rcode, WireRcode::NXDOMAIN);
    zone.upsert_pod(ip(10, 244, 0, 9), "kube-system").unwrap();
    assert_eq!(ask(&zone, &query("kube-system.svc.cluster.local", A)).rcode, WireRcode::NOERROR);
    // Moving the pod moves the namespace count with it.
    zone.upsert_pod(ip(10, 244, 0, 9), "other").unwrap();
    assert_eq!(ask(&zone, &query("kube-system.pod.cluster.local", A)).rcode, WireRcode::NXDOMAIN);
    assert!(zone.remove_pod(ip(10, 244, 0, 9)));
    assert!(!zone.remove_pod(ip(10, 244, 0, 9)));
    assert_eq!(ask(&zone, &query("other.pod.cluster.local", A)).rcode, WireRcode::NXDOMAIN);
}

#[test]
fn capacities_are_enforced_and_failures_change_nothing() {
    let config = ZoneConfig { max_services: 2, max_endpoints: 3, max_pods: 1, ..ZoneConfig::default() };
    let mut zone = Zone::new(config).unwrap();
    let headless = |name: &str, n: u8| {
        service(
            "default",
            name,
            vec![],
            ServiceKind::Headless((0..n).map(|i| endpoint(ip(10, 244, 0, i), None)).collect()),
        )
    };
    zone.upsert_service(&headless("a", 2)).unwrap();
    assert_eq!(zone.upsert_service(&headless("b", 2)), Err(ZoneError::EndpointsFull));
    zone.upsert_service(&headless("b", 1)).unwrap();
    assert_eq!(zone.upsert_service(&headless("c", 0)), Err(ZoneError::ServicesFull));
    // Replacing within the budget is fine; growing past it is not.
    zone.upsert_service(&headless("a", 1)).unwrap();
    zone.upsert_service(&headless("b", 2)).unwrap();
    assert_eq!(zone.upsert_service(&headless("a", 2)), Err(ZoneError::EndpointsFull));
    assert_eq!(zone.endpoint_count(), 3);
    assert_eq!(zone.service_count(), 2);
    let serial = zone.serial();
    assert_eq!(zone.upsert_service(&headless("c", 0)), Err(ZoneError::ServicesFull));
    assert_eq!(zone.serial(), serial);

    zone.upsert_pod(ip(10, 244, 0, 1), "default").unwrap();
    zone.upsert_pod(ip(10, 244, 0, 1), "default").unwrap();
    assert_eq!(zone.upsert_pod(ip(10, 244, 0, 2), "default"), Err(ZoneError::PodsFull));
    assert_eq!(zone.pod_count(), 1);
}

#[test]
fn invalid_names_are_refused() {
    let mut zone = zone();
    let ok = |kind| service("default", "ok", vec![], kind);
    let cluster_ip = ServiceKind::ClusterIp(ip(10, 96, 0, 1));
    for (ns, name) in
        [("default", "Web"), ("default", "a.b"), ("default", ""), ("", "web"), ("default", "-web")]
    {
        assert_eq!(
            zone.upsert_service(&service(ns, name, vec![], cluster_ip.clone())),
            Err(ZoneError::InvalidName),
            "{ns}/{name}"
        );
    }
    let mut bad_port = ok(cluster_ip.clone());
    bad_port.ports = vec![port(Some("a-very-long-port-name"), 1, Protocol::Tcp)];
    assert_eq!(zone.upsert_service(&bad_port), Err(ZoneError::InvalidName));
    bad_port.ports = vec![port(Some("_http"), 1, Protocol::Tcp)];
    assert_eq!(zone.upsert_service(&bad_port), Err(ZoneError::InvalidName));
    let mut many = ok(cluster_ip);
    many.ports = (0..65).map(|i| port(Some(&format!("p{i}")), i, Protocol::Tcp)).collect();
    assert_eq!(zone.upsert_service(&many), Err(ZoneError::TooManyPorts));
    let bad_host = ok(ServiceKind::Headless(vec![endpoint(ip(10, 244, 0, 1), Some("A_b"))]));
    assert_eq!(zone.upsert_service(&bad_host), Err(ZoneError::InvalidName));
    for target in ["", "a..b", "has space.com", &"x".repeat(64)] {
        assert_eq!(
            zone.upsert_service(&ok(ServiceKind::ExternalName(target.into()))),
            Err(ZoneError::InvalidName),
            "{target:?}"
        );
    }
    // 3 × 64 + 4 bytes of `<host>.<svc>.<ns>.svc.` leave 59 for the domain.
    let long = "a".repeat(63);
    let too_long =
        service(&long, &long, vec![], ServiceKind::Headless(vec![endpoint(ip(10, 244, 0, 1), Some(&long))]));
    for (domain, fits) in [("d".repeat(51) + ".local", true), ("d".repeat(52) + ".local", false)] {
        let mut long_zone = Zone::new(ZoneConfig { domain, ..ZoneConfig::default() }).unwrap();
        let result = long_zone.upsert_service(&too_long);
        assert_eq!(result.is_ok(), fits, "{result:?}");
        if !fits {
            assert_eq!(result, Err(ZoneError::NameTooLong));
            assert_eq!(long_zone.service_count(), 0);
        }
    }
    assert_eq!(zone.upsert_pod(ip(10, 244, 0, 1), "Default"), Err(ZoneError::InvalidName));
    assert_eq!(zone.service_count(), 4);
}

#[test]
fn long_but_legal_names_are_served() {
    let mut zone = zone();
    let (svc, ns, host) = ("s".repeat(63), "n".repeat(63), "h".repeat(63));
    zone.upsert_service(&service(
        &ns,
        &svc,
        vec![],
        ServiceKind::Headless(vec![endpoint(ip(10, 244, 3, 1), Some(&host))]),
    ))
    .unwrap();
    let name = format!("{host}.{svc}.{ns}.svc.cluster.local");
    let r = ask(&zone, &query(&name, A));
    assert_eq!(r.answers.len(), 1);
    let r = ask(&zone, &query("1.3.244.10.in-addr.arpa", PTR));
    assert_eq!(r.answers, [format!("1.3.244.10.in-addr.arpa. 5 IN PTR {name}.")]);
}

#[test]
fn entry_sizes_stay_small() {
    use super::records::{EndpointEntry, PortEntry, ServiceEntry};
    use core::mem::size_of;
    // Printed with --nocapture for the memory budget in the docs.
    let sizes = [
        ("ServiceEntry", size_of::<ServiceEntry>()),
        ("EndpointEntry", size_of::<EndpointEntry>()),
        ("PortEntry", size_of::<PortEntry>()),
        ("service key", size_of::<alloc::boxed::Box<[u8]>>()),
        ("reverse entry", size_of::<(u32, alloc::boxed::Box<[u8]>)>()),
        ("pod entry", size_of::<(u32, alloc::boxed::Box<[u8]>)>()),
    ];
    extern crate std;
    for (name, size) in sizes {
        std::println!("{name}: {size} bytes");
    }
    assert!(size_of::<ServiceEntry>() <= 48);
    assert!(size_of::<EndpointEntry>() <= 24);
    assert!(size_of::<PortEntry>() <= 20);
}

#[test]
fn cluster_cidrs_are_configurable() {
    let config =
        ZoneConfig { cluster_cidrs: vec![Ipv4Cidr::new(ip(192, 168, 50, 0), 24)], ..ZoneConfig::default() };
    let zone = Zone::new(config).unwrap();
    assert_eq!(ask(&zone, &query("9.50.168.192.in-addr.arpa", PTR)).rcode, WireRcode::NXDOMAIN);
    assert_eq!(outcome_of(&zone, &query("9.9.244.10.in-addr.arpa", PTR)), Outcome::Forward);
}
