//! Cluster DNS in the switch, on bytes: query frames as a pod's `dig` sends
//! them go in, reply frames come out and are parsed back with smoltcp and
//! `domain`, checksums verified.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use domain::base::{Message, ParsedName, Rtype};
use domain::rdata::AllRecordData;
use smoltcp::wire::{IpAddress, TcpControl, TcpPacket, UdpPacket, checksum};

use super::*;
use crate::dns::{Service, ServiceKind};
use crate::service::{Affinity, Backend, ServiceKey};
use crate::testing::{Endpoint, NOW, Node, Tcp, Udp, ip, mac};
use crate::wire::{EthernetAddress, IpProtocol, Ipv4Packet, vnet};

const DNS: Ipv4Address = SwitchConfig::DEFAULT_CLUSTER_DNS;
const WEB: Ipv4Address = Ipv4Address::new(10, 96, 0, 20);
const ETH: usize = vnet::HEADER_LEN + 14;

/// Host at .1, pods at .2 and .3; `web.default` (ClusterIP 10.96.0.20) in the zone.
fn net() -> Node {
    let mut n = Node::new(0, 2, SwitchConfig { max_ports: 4, ..SwitchConfig::default() });
    let web = Service {
        name: "web".into(),
        namespace: "default".into(),
        ports: vec![],
        kind: ServiceKind::ClusterIp(WEB),
    };
    n.switch.zone_mut().upsert_service(&web).unwrap();
    n
}

/// Queries at [`NOW`] with a reply buffer for DNS answers.
trait Ask {
    fn ask(&mut self, port: PortId, frame: &mut [u8]) -> (Verdict, Vec<u8>);
    fn ask_with(&mut self, port: PortId, frame: &mut [u8], reply_len: usize) -> (Verdict, Vec<u8>);
}

impl Ask for Node {
    fn ask(&mut self, port: PortId, frame: &mut [u8]) -> (Verdict, Vec<u8>) {
        self.send(NOW, port, frame, MIN_DNS_REPLY_LEN)
    }

    fn ask_with(&mut self, port: PortId, frame: &mut [u8], reply_len: usize) -> (Verdict, Vec<u8>) {
        self.send(NOW, port, frame, reply_len)
    }
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A query as dig 9.18 sends it: RD and AD set, EDNS0 with a 1232-byte
/// buffer and a client cookie.
fn dig(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1]);
    q.extend(wire_name(name));
    q.extend([0, 1, 0, 1]); // A, IN
    q.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12]); // OPT, 1232, 12 bytes of options
    q.extend([0, 10, 0, 8, 0x9a, 0x7c, 0x31, 0x0e, 0x54, 0x22, 0xb8, 0x6f]); // COOKIE
    q
}

/// The same as `dig +noedns` sends it.
fn dig_noedns(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend(wire_name(name));
    q.extend([0, 1, 0, 1]);
    q
}

/// A UDP datagram with full IPv4 and UDP checksums, behind a plain
/// virtio-net header.
fn udp(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Endpoint,
    dst: Endpoint,
    payload: &[u8],
) -> Vec<u8> {
    Udp { eth_src: src_mac, eth_dst: dst_mac, ..Udp::new(src, dst, payload) }.vnet()
}

/// A query from pod .2 (port 40000) to the cluster DNS address.
fn query_frame(payload: &[u8]) -> Vec<u8> {
    udp(mac(2), mac(1), (ip(2), 40000), (DNS, 53), payload)
}

/// A reply frame, parsed and checked: plain virtio header, both checksums.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    src: Endpoint,
    dst: Endpoint,
    dns: Vec<u8>,
}

fn parse_reply(frame: &[u8]) -> Reply {
    assert_eq!(&frame[..vnet::HEADER_LEN], &[0; vnet::HEADER_LEN], "plain virtio-net header");
    let eth = EthernetFrame::new_checked(&frame[vnet::HEADER_LEN..]).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let packet = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(packet.verify_checksum(), "IPv4 header checksum");
    assert_eq!(packet.next_header(), IpProtocol::Udp);
    assert_eq!(usize::from(packet.total_len()), frame.len() - ETH, "no trailing bytes");
    let (s, d) = (IpAddress::Ipv4(packet.src_addr()), IpAddress::Ipv4(packet.dst_addr()));
    let udp = UdpPacket::new_checked(packet.payload()).unwrap();
    assert_ne!(udp.checksum(), 0, "UDP checksum computed");
    assert!(udp.verify_checksum(&s, &d), "UDP checksum");
    // And by hand, in case smoltcp's verification were lenient.
    let sum = checksum::combine(&[
        checksum::pseudo_header(&s, &d, IpProtocol::Udp, u32::from(udp.len())),
        checksum::data(packet.payload()),
    ]);
    assert_eq!(sum, 0xffff);
    Reply {
        eth_src: eth.src_addr(),
        eth_dst: eth.dst_addr(),
        src: (packet.src_addr(), udp.src_port()),
        dst: (packet.dst_addr(), udp.dst_port()),
        dns: udp.payload().to_vec(),
    }
}

/// Answer records of a DNS message as zone-file lines.
fn answers(dns: &[u8]) -> Vec<String> {
    let msg = Message::from_octets(dns).unwrap();
    msg.answer()
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            r.to_any_record::<AllRecordData<&[u8], ParsedName<&[u8]>>>().unwrap().to_string()
        })
        .collect()
}

/// An upstream response to `query` with `count` A records.
fn upstream_answer(query: &[u8], id: u16, count: u8) -> Vec<u8> {
    let msg = Message::from_octets(query).unwrap();
    let question_end = 12 + wire_name(&msg.sole_question().unwrap().qname().to_string()).len() + 4;
    let mut r = id.to_be_bytes().to_vec();
    r.extend([0x81, 0x80, 0, 1, 0, count, 0, 0, 0, 0]);
    r.extend(&query[12..question_end]);
    for i in 0..count {
        r.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, i]);
    }
    r
}

#[test]
fn a_pods_query_for_a_service_is_answered_by_the_switch() {
    let mut n = net();
    let q = dig(0x4d2a, "web.default.svc.cluster.local");
    let (verdict, out) = n.ask(n.a, &mut query_frame(&q));
    let Verdict::Reply { len } = verdict else { panic!("{verdict:?}") };
    assert_eq!(len, out.len());
    let r = parse_reply(&out);
    assert_eq!((r.eth_src, r.eth_dst), (mac(1), mac(2)), "from the gateway MAC the pod addressed");
    assert_eq!((r.src, r.dst), ((DNS, 53), (ip(2), 40000)));
    let msg = Message::from_octets(&r.dns[..]).unwrap();
    let h = msg.header();
    assert_eq!(h.id(), 0x4d2a);
    assert!(h.qr() && h.aa() && h.rd() && !h.tc());
    assert_eq!(h.rcode(), domain::base::iana::Rcode::NOERROR);
    assert_eq!(answers(&r.dns), ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]);
    assert_eq!(msg.opt().unwrap().udp_payload_size(), 1232, "EDNS0 answered with EDNS0");

    let stats = n.switch.dns_stats();
    assert_eq!(stats, DnsStats { answered: 1, ..DnsStats::default() });
    let (_, port) = n.switch.port(n.a).unwrap();
    assert_eq!((port.tx_packets, port.tx_bytes), (1, (len - vnet::HEADER_LEN) as u64));
    assert_eq!(n.switch.port(n.host).unwrap().1.rx_packets, 0, "nothing reached the node");
}

#[test]
fn answers_are_counted_by_result() {
    let mut n = net();
    n.ask(n.a, &mut query_frame(&dig(1, "nope.default.svc.cluster.local")));
    n.ask(n.a, &mut query_frame(&dig(2, "web.default.svc.cluster.local")));
    let mut notimp = dig(3, "web.default.svc.cluster.local");
    notimp[2] |= 0x10; // opcode 2, STATUS
    let (verdict, out) = n.ask(n.a, &mut query_frame(&notimp));
    assert!(matches!(verdict, Verdict::Reply { .. }));
    assert_eq!(Message::from_octets(&parse_reply(&out).dns[..]).unwrap().header().rcode().to_int(), 4);
    let stats = n.switch.dns_stats();
    assert_eq!((stats.answered, stats.nxdomain, stats.refused), (1, 1, 1));
}

#[test]
fn a_query_from_the_node_is_answered_to_the_address_it_came_from() {
    let mut n = net();
    let node_mac_target = EthernetAddress([0x02, 0, 0, 0, 0, 0xdd]);
    // The node's other addresses are not accepted from its port (only the
    // gateway's: what the node's kernel forwards from elsewhere stays out).
    let q = dig_noedns(7, "web.default.svc.cluster.local");
    let lan = Ipv4Address::new(192, 168, 1, 10);
    let mut frame = udp(mac(1), node_mac_target, (lan, 5353), (DNS, 53), &q);
    assert_eq!(n.ask(n.host, &mut frame).0, Verdict::Drop(DropReason::NotFromNode));
    {
        let src = ip(1);
        let q = dig_noedns(7, "web.default.svc.cluster.local");
        let mut frame = udp(mac(1), node_mac_target, (src, 5353), (DNS, 53), &q);
        let (verdict, out) = n.ask(n.host, &mut frame);
        assert!(matches!(verdict, Verdict::Reply { .. }), "{verdict:?}");
        let r = parse_reply(&out);
        assert_eq!((r.eth_src, r.eth_dst), (node_mac_target, mac(1)));
        assert_eq!((r.src, r.dst), ((DNS, 53), (src, 5353)));
        assert_eq!(answers(&r.dns), ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]);
    }
}

#[test]
fn names_outside_the_zone_go_upstream_and_come_back_as_a_frame() {
    let mut n = net();
    let q = dig(0x1111, "example.com");
    let mut frame = query_frame(&q);
    let (verdict, _) = n.ask(n.a, &mut frame);
    let Verdict::Upstream(up) = verdict else { panic!("{verdict:?}") };
    assert_eq!(up.query(&frame), &q[..], "the query, untouched, for the runtime to relay");
    assert_eq!(up.range(), ETH + 28..frame.len());
    let client = up.client;
    assert_eq!(
        client,
        DnsClient {
            port: n.a,
            mac: mac(2),
            ip: ip(2),
            udp_port: 40000,
            server_mac: mac(1),
            server: DNS,
            id: 0x1111,
            max_payload: 1232,
        }
    );
    assert_eq!(n.switch.dns_stats().forwarded, 1);
    assert_eq!(n.switch.port(n.host).unwrap().1.tx_packets, 0, "nothing sent anywhere yet");

    // The runtime relayed it with an ID of its own; the answer goes back with the client's.
    let answer = upstream_answer(&q, 0x9999, 2);
    let mut out = vec![0u8; n.switch.min_reply_len()];
    let len = n.switch.dns_reply_frame(&client, &answer, &mut out).unwrap();
    let r = parse_reply(&out[..len]);
    assert_eq!((r.eth_src, r.eth_dst), (mac(1), mac(2)));
    assert_eq!((r.src, r.dst), ((DNS, 53), (ip(2), 40000)));
    assert_eq!(r.dns[..2], 0x1111u16.to_be_bytes());
    assert_eq!(r.dns[2..], answer[2..]);
    assert_eq!(answers(&r.dns), ["example.com. 3600 IN A 192.0.2.0", "example.com. 3600 IN A 192.0.2.1"]);
    let stats = n.switch.dns_stats();
    assert_eq!((stats.upstream_replies, stats.truncated), (1, 0));
    assert_eq!(n.switch.port(n.a).unwrap().1.tx_packets, 1);
}

#[test]
fn large_upstream_answers_are_truncated_to_the_clients_limit() {
    let mut n = net();
    let q = dig_noedns(0x2222, "example.com");
    let mut frame = query_frame(&q);
    let Verdict::Upstream(up) = n.ask(n.a, &mut frame).0 else { panic!() };
    assert_eq!(up.client.max_payload, 512, "no EDNS0: 512 bytes");
    let answer = upstream_answer(&q, 0x2222, 40);
    assert!(answer.len() > 512);
    let mut out = vec![0u8; MIN_DNS_REPLY_LEN];
    let len = n.switch.dns_reply_frame(&up.client, &answer, &mut out).unwrap();
    let r = parse_reply(&out[..len]);
    let msg = Message::from_octets(&r.dns[..]).unwrap();
    assert!(msg.header().tc(), "TC set");
    assert_eq!(msg.sole_question().unwrap().qtype(), Rtype::A);
    assert!(answers(&r.dns).is_empty());
    assert_eq!(r.dns.len(), 12 + 13 + 4, "header and question only");
    assert_eq!(n.switch.dns_stats().truncated, 1);

    // An EDNS0 client takes the same answer whole.
    let Verdict::Upstream(up) = n.ask(n.a, &mut query_frame(&dig(0x2223, "example.com"))).0 else { panic!() };
    let len = n.switch.dns_reply_frame(&up.client, &answer, &mut out).unwrap();
    assert_eq!(answers(&parse_reply(&out[..len]).dns).len(), 40);
}

#[test]
fn upstream_answers_for_gone_clients_or_that_are_no_answers_are_refused() {
    let mut n = net();
    let q = dig(5, "example.com");
    let Verdict::Upstream(up) = n.ask(n.a, &mut query_frame(&q)).0 else { panic!() };
    let mut out = vec![0u8; MIN_DNS_REPLY_LEN];
    assert_eq!(n.switch.dns_reply_frame(&up.client, &q, &mut out), None, "a query is no answer");
    assert_eq!(n.switch.dns_reply_frame(&up.client, &[0x81; 11], &mut out), None, "shorter than a header");
    assert_eq!(n.switch.dns_reply_frame(&up.client, &upstream_answer(&q, 5, 1), &mut out[..40]), None);
    n.switch.detach(n.a).unwrap();
    let answer = upstream_answer(&q, 5, 1);
    assert_eq!(n.switch.dns_reply_frame(&up.client, &answer, &mut out), None, "port gone");
    let other = n.switch.attach(PortSpec { kind: PortKind::Pod, mac: mac(9), ip: ip(2).into() }).unwrap();
    assert_eq!(other, up.client.port, "slot reused by another pod");
    assert_eq!(n.switch.dns_reply_frame(&up.client, &answer, &mut out), None, "port changed hands");
    assert_eq!(n.switch.dns_stats().upstream_replies, 0);
}

#[test]
fn garbage_to_the_dns_port_is_dropped_and_counted() {
    let mut n = net();
    let cases: Vec<(Vec<u8>, DropReason)> = {
        let good = query_frame(&dig(1, "web.default.svc.cluster.local"));
        let mut bad_udp_sum = good.clone();
        bad_udp_sum[ETH + 20 + 6] ^= 0x55;
        let mut bad_ip_sum = good.clone();
        bad_ip_sum[ETH + 10] ^= 0x55;
        let mut fragment = good.clone();
        fragment[ETH + 6] = 0x20; // MF
        fragment[ETH + 10..ETH + 12].fill(0);
        let sum = !checksum::data(&fragment[ETH..ETH + 20]);
        fragment[ETH + 10..ETH + 12].copy_from_slice(&sum.to_be_bytes());
        let mut response = dig(1, "web.default.svc.cluster.local");
        response[2] |= 0x80;
        vec![
            (query_frame(b"hello"), DropReason::DnsUnanswerable),
            (query_frame(b""), DropReason::DnsUnanswerable),
            (query_frame(&response), DropReason::DnsUnanswerable),
            (bad_udp_sum, DropReason::DnsMalformed),
            (bad_ip_sum, DropReason::DnsMalformed),
            (fragment, DropReason::DnsMalformed),
        ]
    };
    let count = cases.len() as u64;
    for (mut frame, reason) in cases {
        assert_eq!(n.ask(n.a, &mut frame).0, Verdict::Drop(reason));
    }
    let stats = n.switch.dns_stats();
    assert_eq!(stats, DnsStats { dropped: count, ..DnsStats::default() });
    let (_, port) = n.switch.port(n.a).unwrap();
    assert_eq!(port.dropped(DropReason::DnsUnanswerable) + port.dropped(DropReason::DnsMalformed), count);
    assert_eq!(port.tx_packets, 0);
}

#[test]
fn a_partial_checksum_from_an_offloading_kernel_is_accepted() {
    let mut n = net();
    let mut frame = query_frame(&dig(9, "web.default.svc.cluster.local"));
    // NEEDS_CSUM at the UDP checksum: the field holds only the pseudo-header sum.
    frame[..vnet::HEADER_LEN].copy_from_slice(&[1, 0, 0, 0, 0, 0, 34, 0, 6, 0]);
    frame[ETH + 20 + 6..ETH + 20 + 8].copy_from_slice(&[0x12, 0x34]);
    let (verdict, out) = n.ask(n.a, &mut frame);
    assert!(matches!(verdict, Verdict::Reply { .. }), "{verdict:?}");
    assert_eq!(answers(&parse_reply(&out).dns).len(), 1);
    // A UDP GSO super-frame of several datagrams is not one query.
    let mut frame = query_frame(&dig(9, "web.default.svc.cluster.local"));
    frame[..vnet::HEADER_LEN].copy_from_slice(&[1, 5, 42, 0, 16, 0, 34, 0, 6, 0]);
    assert_eq!(n.ask(n.a, &mut frame).0, Verdict::Drop(DropReason::DnsMalformed));
}

#[test]
fn a_small_reply_buffer_gets_a_truncated_answer() {
    let mut n = net();
    let mut frame = query_frame(&dig(3, "web.default.svc.cluster.local"));
    let (verdict, out) = n.ask_with(n.a, &mut frame, MIN_REPLY_LEN);
    assert!(matches!(verdict, Verdict::Reply { .. }), "{verdict:?}");
    let r = parse_reply(&out);
    let msg = Message::from_octets(&r.dns[..]).unwrap();
    assert!(msg.header().tc());
    assert!(msg.opt().is_some(), "OPT kept");
    assert_eq!(n.switch.dns_stats().truncated, 1);
    // Too small for even that: dropped, not written past the buffer.
    let (verdict, _) = n.ask_with(n.a, &mut frame, DNS_REPLY_OVERHEAD + 20);
    assert_eq!(verdict, Verdict::Drop(DropReason::DnsUnanswerable));
    let (verdict, _) = n.ask_with(n.a, &mut frame, 30);
    assert_eq!(verdict, Verdict::Drop(DropReason::DnsUnanswerable));
}

#[test]
fn other_service_traffic_still_takes_the_service_path() {
    let mut n = net();
    // Another port of the DNS address: nobody serves it, ICMP port unreachable.
    let mut frame = udp(mac(2), mac(1), (ip(2), 40000), (DNS, 5353), b"not dns");
    let (verdict, out) = n.ask(n.a, &mut frame);
    assert!(matches!(verdict, Verdict::Reply { .. }), "{verdict:?}");
    let icmp = Ipv4Packet::new_checked(&out[ETH..]).unwrap();
    assert_eq!((icmp.next_header(), icmp.payload()[0], icmp.payload()[1]), (IpProtocol::Icmp, 3, 3));
    // UDP port 53 of another VIP is a Service like any other.
    let key = ServiceKey { vip: WEB.into(), port: 53, proto: crate::Protocol::Udp };
    n.switch.upsert_service(key, &[Backend { ip: ip(3).into(), port: 5353 }], Affinity::None).unwrap();
    let q = dig(4, "web.default.svc.cluster.local");
    let mut frame = udp(mac(2), mac(1), (ip(2), 40000), (WEB, 53), &q);
    assert_eq!(n.ask(n.a, &mut frame).0, Verdict::Forward { egress: n.b });
    let ip_packet = Ipv4Packet::new_checked(&frame[ETH..]).unwrap();
    assert_eq!(ip_packet.dst_addr(), ip(3));
    // A Service on the DNS address itself does not shadow the zone.
    let key = ServiceKey { vip: DNS.into(), port: 53, proto: crate::Protocol::Udp };
    n.switch.upsert_service(key, &[Backend { ip: ip(3).into(), port: 53 }], Affinity::None).unwrap();
    let (verdict, _) = n.ask(n.a, &mut query_frame(&q));
    assert!(matches!(verdict, Verdict::Reply { .. }), "{verdict:?}");
    assert_eq!(n.switch.dns_stats().answered, 1);
}

#[test]
fn tcp_to_the_dns_address_is_reset_at_once() {
    let mut n = net();
    let mut frame = Tcp {
        eth_dst: mac(1),
        control: TcpControl::Syn,
        ack: None,
        ..Tcp::new((ip(2), 41000), (DNS, 53), &[])
    }
    .vnet();
    let (verdict, out) = n.ask(n.a, &mut frame);
    assert!(matches!(verdict, Verdict::Reply { .. }), "{verdict:?}");
    let packet = Ipv4Packet::new_checked(&out[ETH..]).unwrap();
    assert_eq!(packet.src_addr(), DNS);
    let tcp = TcpPacket::new_checked(packet.payload()).unwrap();
    assert!(tcp.rst() && tcp.ack());
    assert_eq!((tcp.src_port(), tcp.dst_port()), (53, 41000));
    assert_eq!(n.switch.dns_stats(), DnsStats::default(), "not counted as DNS");
}

#[test]
fn config_is_checked_and_sizes_the_reply_buffer() {
    let in_subnet = SwitchConfig { cluster_dns: ip(53), ..SwitchConfig::default() };
    assert_eq!(Switch::new(in_subnet).unwrap_err(), SwitchError::DnsAddress);
    let mut bad_domain = SwitchConfig::default();
    bad_domain.dns.domain = "bad..domain".into();
    assert_eq!(Switch::new(bad_domain).unwrap_err(), SwitchError::Dns(crate::dns::ZoneError::InvalidDomain));
    let switch = Switch::new(SwitchConfig::default()).unwrap();
    assert_eq!(switch.min_reply_len(), MIN_DNS_REPLY_LEN);
    assert_eq!(MIN_DNS_REPLY_LEN, 1284);
    assert_eq!(switch.cluster_dns(), DNS);
    let mut big = SwitchConfig::default();
    big.dns.max_udp_payload = 4096;
    assert_eq!(Switch::new(big).unwrap().min_reply_len(), 4096 + 52);
}
