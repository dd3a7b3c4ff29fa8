//! Services through the switch, byte for byte: frames are built with
//! smoltcp's emitters, handed to `Switch::process`, and the rewritten frames
//! and refusals parsed back with checksums verified.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet,
    Ipv4Repr, TcpControl, TcpPacket, TcpSeqNumber, UdpPacket, checksum,
};

use super::{Affinity, Backend, ServiceConfig, ServiceError, ServiceKey};
use crate::Protocol;
use crate::conntrack::Timeouts;
use crate::switch::{DropReason, MIN_REPLY_LEN, Switch, SwitchConfig, SwitchError, Verdict};
use crate::testing::{self, Endpoint, Node, Tcp, Udp, VIP, at, ip, mac, with_vnet};
use crate::wire::{ETHERNET_HEADER_LEN, vnet};
use crate::{Duration, Instant};

const ETH: usize = vnet::HEADER_LEN + ETHERNET_HEADER_LEN;
const GW: EthernetAddress = mac(1);

fn tcp_key(port: u16) -> ServiceKey {
    ServiceKey { vip: VIP.into(), port, proto: Protocol::Tcp }
}

fn udp_key(port: u16) -> ServiceKey {
    ServiceKey { proto: Protocol::Udp, ..tcp_key(port) }
}

fn backend(last: u8) -> Backend {
    Backend { ip: ip(last).into(), port: 8080 }
}

/// Host port at .1, pods .2 (client "a"), .3, .4, .5.
fn net(max_flows: u32) -> Node {
    net_with(ServiceConfig { max_flows, hash_seed: 0x5eed, ..ServiceConfig::default() })
}

fn net_with(services: ServiceConfig) -> Node {
    Node::new(
        0,
        4,
        SwitchConfig {
            max_ports: 8,
            services,
            // Away from VIP: these tests send UDP to VIP:53 through the Service path.
            cluster_dns: Ipv4Address::new(10, 96, 0, 53),
            ..testing::config(0)
        },
    )
}

/// Frames from the host or pods by their last address byte.
trait Pods {
    /// Sends `frame` from the pod (or host) at `.last`; returns the verdict
    /// and the reply bytes, if any.
    fn send_from(&mut self, now: Instant, last: u8, frame: &mut [u8]) -> (Verdict, Vec<u8>);
    /// The verdict forwarding to `.last`.
    fn fwd(&self, last: u8) -> Verdict;
}

impl Pods for Node {
    fn send_from(&mut self, now: Instant, last: u8, frame: &mut [u8]) -> (Verdict, Vec<u8>) {
        let port = self.port(last);
        self.send(now, port, frame, MIN_REPLY_LEN)
    }

    fn fwd(&self, last: u8) -> Verdict {
        Verdict::Forward { egress: self.port(last) }
    }
}

/// A TCP segment from `src` to `dst` with `control`, an ACK if `ack` is
/// set, and a full checksum. `src_mac` is `src`'s pod; it is sent to `dst_mac`.
#[allow(clippy::too_many_arguments)]
fn tcp(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Endpoint,
    dst: Endpoint,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    Tcp { eth_src: src_mac, eth_dst: dst_mac, control, seq, ack, ..Tcp::new(src, dst, payload) }.vnet()
}

fn syn(src_last: u8, sport: u16, dst: Endpoint) -> Vec<u8> {
    tcp(mac(src_last), GW, (ip(src_last), sport), dst, TcpControl::Syn, 1000, None, &[])
}

fn ack_from(src_last: u8, dst_mac: EthernetAddress, src: Endpoint, dst: Endpoint) -> Vec<u8> {
    tcp(mac(src_last), dst_mac, src, dst, TcpControl::None, 1001, Some(5001), b"data")
}

fn udp(src_last: u8, dst_mac: EthernetAddress, src: Endpoint, dst: Endpoint, payload: &[u8]) -> Vec<u8> {
    Udp { eth_src: mac(src_last), eth_dst: dst_mac, ..Udp::new(src, dst, payload) }.vnet()
}

/// What a forwarded frame carries, with its IPv4 and full L4 checksums verified.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    eth_src: EthernetAddress,
    eth_dst: EthernetAddress,
    src: Endpoint,
    dst: Endpoint,
}

fn seen(buf: &[u8]) -> Seen {
    let eth = EthernetFrame::new_checked(&buf[vnet::HEADER_LEN..]).unwrap();
    let packet = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(packet.verify_checksum(), "IPv4 header checksum");
    let (s, d) = (IpAddress::Ipv4(packet.src_addr()), IpAddress::Ipv4(packet.dst_addr()));
    let needs_csum = buf[0] & vnet::FLAG_NEEDS_CSUM != 0;
    let (sport, dport) = match packet.next_header() {
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(packet.payload()).unwrap();
            assert!(needs_csum || t.verify_checksum(&s, &d), "TCP checksum");
            (t.src_port(), t.dst_port())
        }
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(packet.payload()).unwrap();
            assert!(needs_csum || u.verify_checksum(&s, &d), "UDP checksum");
            (u.src_port(), u.dst_port())
        }
        other => panic!("{other}"),
    };
    Seen {
        eth_src: eth.src_addr(),
        eth_dst: eth.dst_addr(),
        src: (packet.src_addr(), sport),
        dst: (packet.dst_addr(), dport),
    }
}

/// Turns a full-checksum TCP frame into what a TSO-capable pod kernel
/// hands over: NEEDS_CSUM with only the pseudo-header sum in the field.
fn as_tso(mut buf: Vec<u8>) -> Vec<u8> {
    let header = [0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00];
    buf[..vnet::HEADER_LEN].copy_from_slice(&header);
    let packet = Ipv4Packet::new_checked(&buf[ETH..]).unwrap();
    let sum = checksum::pseudo_header_v4(
        &packet.src_addr(),
        &packet.dst_addr(),
        IpProtocol::Tcp,
        u32::from(packet.total_len()) - 20,
    );
    buf[ETH + 20 + 16..ETH + 20 + 18].copy_from_slice(&sum.to_be_bytes());
    buf
}

/// The partial sum in a NEEDS_CSUM frame equals a fresh pseudo-header sum.
fn assert_partial_sum_valid(buf: &[u8]) {
    let packet = Ipv4Packet::new_checked(&buf[ETH..]).unwrap();
    let stored = u16::from_be_bytes([buf[ETH + 36], buf[ETH + 37]]);
    let fresh = checksum::pseudo_header_v4(
        &packet.src_addr(),
        &packet.dst_addr(),
        IpProtocol::Tcp,
        u32::from(packet.total_len()) - 20,
    );
    assert!(crate::checksum::sums_equal(stored, fresh), "{stored:#06x} vs {fresh:#06x}");
}

fn net_with_web(backends: &[u8]) -> Node {
    let mut net = net(64);
    let list: Vec<_> = backends.iter().map(|&b| backend(b)).collect();
    net.switch.upsert_service(tcp_key(80), &list, Affinity::None).unwrap();
    net
}

#[test]
fn a_syn_to_a_vip_is_dnatted_to_a_backend_with_valid_checksums() {
    let mut net = net_with_web(&[3]);
    let mut f = syn(2, 40000, (VIP, 80));
    assert_eq!(net.send_from(at(0), 2, &mut f).0, net.fwd(3));
    assert_eq!(seen(&f), Seen { eth_src: mac(2), eth_dst: mac(3), src: (ip(2), 40000), dst: (ip(3), 8080) });
    assert_eq!(net.switch.conntrack().len(), 1);
}

#[test]
fn backend_replies_are_translated_back_to_the_vip() {
    let mut net = net_with_web(&[3]);
    net.send_from(at(0), 2, &mut syn(2, 40000, (VIP, 80)));
    let mut syn_ack =
        tcp(mac(3), mac(2), (ip(3), 8080), (ip(2), 40000), TcpControl::Syn, 5000, Some(1001), &[]);
    assert_eq!(net.send_from(at(0), 3, &mut syn_ack).0, net.fwd(2));
    assert_eq!(
        seen(&syn_ack),
        Seen {
            // From the VIP, so as routed by the gateway.
            eth_src: GW,
            eth_dst: mac(2),
            src: (VIP, 80),
            dst: (ip(2), 40000),
        }
    );
    let flow = net.switch.conntrack().iter().next().unwrap();
    assert_eq!(flow.state(), crate::conntrack::FlowState::Established);
}

#[test]
fn tso_super_frames_keep_a_valid_partial_checksum_both_ways() {
    let mut net = net_with_web(&[3]);
    net.send_from(at(0), 2, &mut syn(2, 40000, (VIP, 80)));
    let payload = vec![0x5a; 60_000];
    let mut f =
        as_tso(tcp(mac(2), GW, (ip(2), 40000), (VIP, 80), TcpControl::None, 1001, Some(5001), &payload));
    let header: [u8; vnet::HEADER_LEN] = f[..vnet::HEADER_LEN].try_into().unwrap();
    assert_eq!(net.send_from(at(1), 2, &mut f).0, net.fwd(3));
    assert_eq!(&f[..vnet::HEADER_LEN], &header, "virtio header untouched");
    assert_eq!(seen(&f).dst, (ip(3), 8080));
    assert_partial_sum_valid(&f);

    let mut back = as_tso(tcp(
        mac(3),
        mac(2),
        (ip(3), 8080),
        (ip(2), 40000),
        TcpControl::None,
        5001,
        Some(61_001),
        &payload,
    ));
    assert_eq!(net.send_from(at(1), 3, &mut back).0, net.fwd(2));
    assert_eq!(seen(&back).src, (VIP, 80));
    assert_partial_sum_valid(&back);
}

#[test]
fn a_partial_checksum_not_where_expected_is_malformed() {
    let mut net = net_with_web(&[3]);
    let mut f = as_tso(syn(2, 40000, (VIP, 80)));
    f[6] = 40; // csum_start past the TCP header start
    assert_eq!(net.send_from(at(0), 2, &mut f).0, Verdict::Drop(DropReason::Malformed));
}

#[test]
fn udp_is_dnatted_and_a_zero_checksum_stays_zero() {
    let mut net = net(64);
    net.switch.upsert_service(udp_key(53), &[backend(4)], Affinity::None).unwrap();
    let mut q = udp(2, GW, (ip(2), 5353), (VIP, 53), b"query");
    assert_eq!(net.send_from(at(0), 2, &mut q).0, net.fwd(4));
    assert_eq!(seen(&q).dst, (ip(4), 8080));
    let mut a = udp(4, mac(2), (ip(4), 8080), (ip(2), 5353), b"answer!");
    assert_eq!(net.send_from(at(0), 4, &mut a).0, net.fwd(2));
    assert_eq!(seen(&a).src, (VIP, 53));

    let mut none = udp(2, GW, (ip(2), 5354), (VIP, 53), b"no checksum");
    none[ETH + 26..ETH + 28].copy_from_slice(&[0, 0]);
    net.send_from(at(0), 2, &mut none);
    assert_eq!(&none[ETH + 26..ETH + 28], &[0, 0]);
    assert_eq!(seen(&none).dst, (ip(4), 8080));
}

#[test]
fn every_packet_of_a_connection_sticks_to_its_backend() {
    let mut net = net_with_web(&[3, 4, 5]);
    net.send_from(at(0), 2, &mut syn(2, 40000, (VIP, 80)));
    for i in 0..6u16 {
        // Other connections move the round-robin cursor in between.
        net.send_from(at(1), 2, &mut syn(2, 41000 + i, (VIP, 80)));
        let mut f = ack_from(2, GW, (ip(2), 40000), (VIP, 80));
        assert_eq!(net.send_from(at(1), 2, &mut f).0, net.fwd(3));
        assert_eq!(seen(&f).dst, (ip(3), 8080));
    }
}

#[test]
fn new_connections_spread_evenly_over_backends() {
    let mut net = net_with_web(&[3, 4, 5]);
    let mut counts = [0usize; 6];
    for i in 0..30u16 {
        let mut f = syn(2, 40000 + i, (VIP, 80));
        net.send_from(at(0), 2, &mut f);
        counts[seen(&f).dst.0.octets()[3] as usize] += 1;
    }
    assert_eq!(&counts[3..], &[10, 10, 10]);
}

#[test]
fn client_ip_affinity_holds_across_connections_until_its_timeout() {
    let mut net = net_with_web(&[3, 4, 5]);
    let timeout = Duration::from_secs(60);
    net.switch.set_service_affinity(tcp_key(80), Affinity::ClientIp { timeout }).unwrap();
    let target = |net: &mut Node, now, port| {
        let mut f = syn(2, port, (VIP, 80));
        net.send_from(now, 2, &mut f);
        seen(&f).dst
    };
    let first = target(&mut net, at(0), 40000);
    for (i, s) in [10u64, 50, 100].into_iter().enumerate() {
        assert_eq!(target(&mut net, at(s), 40001 + i as u16), first);
    }
    assert_ne!(target(&mut net, at(161), 40010), first, "timed out");
}

#[test]
fn a_full_flow_table_refuses_new_connections_and_keeps_the_old() {
    let mut net = net(2);
    net.switch.upsert_service(tcp_key(80), &[backend(3)], Affinity::None).unwrap();
    net.send_from(at(0), 2, &mut syn(2, 40000, (VIP, 80)));
    net.send_from(at(0), 4, &mut syn(4, 40000, (VIP, 80)));
    let mut third = syn(5, 40000, (VIP, 80));
    assert_eq!(net.send_from(at(1), 5, &mut third).0, Verdict::Drop(DropReason::FlowTableFull));
    let stats = net.switch.port(net.port(5)).unwrap().1;
    assert_eq!(stats.dropped(DropReason::FlowTableFull), 1);
    assert_eq!(net.switch.conntrack().stats().refused, 1);
    for client in [2, 4] {
        let mut f = ack_from(client, GW, (ip(client), 40000), (VIP, 80));
        assert_eq!(net.send_from(at(2), client, &mut f).0, net.fwd(3));
        let mut r = ack_from(3, mac(client), (ip(3), 8080), (ip(client), 40000));
        assert_eq!(net.send_from(at(2), 3, &mut r).0, net.fwd(client));
        assert_eq!(seen(&r).src, (VIP, 80));
    }
}

#[test]
fn a_pod_flooding_syns_fills_its_quota_not_the_table() {
    let mut net = net_with(ServiceConfig { max_flows: 64, max_flows_per_pod: 8, ..Default::default() });
    net.switch.upsert_service(tcp_key(80), &[backend(3)], Affinity::None).unwrap();
    // 1,000 SYNs from fresh source ports that nobody answers.
    let forwarded = (0..1000u16)
        .filter(|i| net.send_from(at(0), 2, &mut syn(2, 10_000 + i, (VIP, 80))).0 == net.fwd(3))
        .count();
    assert_eq!(forwarded, 8);
    let flooder = net.switch.port(net.port(2)).unwrap().1;
    assert_eq!(flooder.dropped(DropReason::FlowQuota), 992);
    assert_eq!(flooder.dropped(DropReason::FlowTableFull), 0);
    // Another pod's connection goes through at once, and is answered.
    let mut f = syn(4, 40000, (VIP, 80));
    assert_eq!(net.send_from(at(0), 4, &mut f).0, net.fwd(3));
    assert_eq!(net.switch.conntrack().stats().over_quota, 992);
    // The flooder's flows leave with its port.
    net.switch.detach(net.port(2));
    assert_eq!(net.switch.conntrack().len(), 1);
}

#[test]
fn an_expired_flow_answers_its_next_segment_with_a_reset() {
    let mut net = net_with_web(&[3]);
    net.send_from(at(0), 2, &mut syn(2, 40000, (VIP, 80)));
    // The handshake never completed: gone after the SYN timeout.
    let t = Timeouts::default().tcp_syn;
    let mut f = ack_from(2, GW, (ip(2), 40000), (VIP, 80));
    let (verdict, out) = net.send_from(at(0) + t, 2, &mut f);
    assert!(matches!(verdict, Verdict::Reply { .. }), "{verdict:?}");
    let rst = parse_rst(&out, 80);
    assert_eq!(rst.seq_number(), TcpSeqNumber(5001), "seq from the ACK field");
    assert!(!rst.ack());
    assert_eq!(net.switch.conntrack().len(), 0);
}

#[test]
fn closed_connections_expire_quickly_and_established_ones_slowly() {
    let mut net = net_with_web(&[3]);
    for port in [40000, 40001] {
        net.send_from(at(0), 2, &mut syn(2, port, (VIP, 80)));
        let mut sa =
            tcp(mac(3), mac(2), (ip(3), 8080), (ip(2), port), TcpControl::Syn, 5000, Some(1001), &[]);
        net.send_from(at(0), 3, &mut sa);
    }
    let fin = |src_last: u8, dst_mac, src, dst| {
        tcp(mac(src_last), dst_mac, src, dst, TcpControl::Fin, 1001, Some(5001), &[])
    };
    net.send_from(at(1), 2, &mut fin(2, GW, (ip(2), 40001), (VIP, 80)));
    net.send_from(at(1), 3, &mut fin(3, mac(2), (ip(3), 8080), (ip(2), 40001)));
    assert_eq!(net.switch.expire_flows(at(1) + Timeouts::default().tcp_closed), 1);
    assert_eq!(net.switch.expire_flows(at(7200)), 0, "established survives 2 h idle");
    assert_eq!(net.switch.conntrack().len(), 1);
}

#[test]
fn a_new_syn_on_a_closed_tuple_is_balanced_afresh() {
    let mut net = net_with_web(&[3, 4]);
    net.send_from(at(0), 2, &mut syn(2, 40000, (VIP, 80)));
    let mut rst = tcp(mac(2), GW, (ip(2), 40000), (VIP, 80), TcpControl::Rst, 1001, None, &[]);
    assert_eq!(net.send_from(at(1), 2, &mut rst).0, net.fwd(3));
    let mut again = syn(2, 40000, (VIP, 80));
    assert_eq!(net.send_from(at(2), 2, &mut again).0, net.fwd(4));
    assert_eq!(net.switch.conntrack().len(), 1);
}

#[test]
fn a_direct_connection_reusing_a_finished_service_tuple_is_not_rewritten() {
    let mut net = net_with_web(&[3]);
    net.send_from(at(0), 2, &mut syn(2, 40000, (VIP, 80)));
    let mut rst = tcp(mac(2), GW, (ip(2), 40000), (VIP, 80), TcpControl::Rst, 1001, None, &[]);
    net.send_from(at(1), 2, &mut rst);
    // The client now connects straight to the pod from the same port.
    let mut direct = syn(2, 40000, (ip(3), 8080));
    assert_eq!(net.send_from(at(2), 2, &mut direct).0, net.fwd(3));
    let mut syn_ack =
        tcp(mac(3), mac(2), (ip(3), 8080), (ip(2), 40000), TcpControl::Syn, 5000, Some(1001), &[]);
    assert_eq!(net.send_from(at(2), 3, &mut syn_ack).0, net.fwd(2));
    assert_eq!(seen(&syn_ack).src, (ip(3), 8080), "the reply keeps the pod's address");
    assert_eq!(net.switch.conntrack().len(), 0, "the finished service flow went");
}

#[test]
fn hairpin_round_trip_through_the_vip() {
    let mut net = net_with_web(&[2]);
    let mut f = syn(2, 40000, (VIP, 80));
    assert_eq!(net.send_from(at(0), 2, &mut f).0, net.fwd(2));
    assert_eq!(
        seen(&f),
        Seen {
            eth_src: GW,
            eth_dst: mac(2),
            // SNAT'd to the VIP so the pod answers through the switch.
            src: (VIP, 40000),
            dst: (ip(2), 8080),
        }
    );
    // The pod's kernel answers the VIP via its default route (the gateway).
    let mut sa = tcp(mac(2), GW, (ip(2), 8080), (VIP, 40000), TcpControl::Syn, 5000, Some(1001), &[]);
    assert_eq!(net.send_from(at(0), 2, &mut sa).0, net.fwd(2));
    assert_eq!(seen(&sa), Seen { eth_src: GW, eth_dst: mac(2), src: (VIP, 80), dst: (ip(2), 40000) });
    let mut data = ack_from(2, GW, (ip(2), 40000), (VIP, 80));
    assert_eq!(net.send_from(at(0), 2, &mut data).0, net.fwd(2));
    assert_eq!(seen(&data).src, (VIP, 40000));
}

#[test]
fn a_taken_reply_tuple_gets_another_source_port() {
    // Two service ports onto the same backend port, one client port: the
    // backend would see one 4-tuple twice without a port translation.
    let mut net = net_with_web(&[3]);
    net.switch.upsert_service(tcp_key(81), &[backend(3)], Affinity::None).unwrap();
    let mut a = syn(2, 40000, (VIP, 80));
    let mut b = syn(2, 40000, (VIP, 81));
    net.send_from(at(0), 2, &mut a);
    net.send_from(at(0), 2, &mut b);
    let (a, b) = (seen(&a), seen(&b));
    assert_eq!(a.src, (ip(2), 40000));
    assert_eq!(b.src.0, ip(2));
    assert_ne!(b.src.1, 40000);
    let mut reply = ack_from(3, mac(2), (ip(3), 8080), b.src);
    net.send_from(at(0), 3, &mut reply);
    assert_eq!(seen(&reply), Seen { eth_src: GW, eth_dst: mac(2), src: (VIP, 81), dst: (ip(2), 40000) });
}

fn parse_rst(out: &[u8], vport: u16) -> TcpPacket<&[u8]> {
    assert_eq!(&out[..vnet::HEADER_LEN], &[0; vnet::HEADER_LEN], "plain virtio header");
    let eth = EthernetFrame::new_checked(&out[vnet::HEADER_LEN..]).unwrap();
    assert_eq!((eth.src_addr(), eth.dst_addr()), (GW, mac(2)));
    let packet = Ipv4Packet::new_checked(&out[ETH..]).unwrap();
    assert!(packet.verify_checksum());
    assert_eq!((packet.src_addr(), packet.dst_addr()), (VIP, ip(2)));
    let tcp = TcpPacket::new_checked(&out[ETH + 20..]).unwrap();
    assert!(tcp.verify_checksum(&IpAddress::Ipv4(VIP), &IpAddress::Ipv4(ip(2))));
    assert!(tcp.rst());
    assert_eq!((tcp.src_port(), tcp.dst_port()), (vport, 40000));
    tcp
}

#[test]
fn a_syn_to_a_port_without_backends_or_service_is_reset() {
    let mut net = net(8);
    net.switch.upsert_service(tcp_key(80), &[], Affinity::None).unwrap();
    for port in [80, 443] {
        let mut f = syn(2, 40000, (VIP, port));
        let (verdict, out) = net.send_from(at(0), 2, &mut f);
        assert_eq!(verdict, Verdict::Reply { len: 64 });
        let rst = parse_rst(&out, port);
        assert!(rst.ack());
        assert_eq!(rst.ack_number(), TcpSeqNumber(1001), "SYN + 1");
        assert_eq!(rst.seq_number(), TcpSeqNumber(0));
    }
    assert_eq!(net.switch.conntrack().len(), 0);
}

#[test]
fn udp_to_a_port_nobody_serves_gets_icmp_port_unreachable() {
    let mut net = net(8);
    let mut f = udp(2, GW, (ip(2), 5353), (VIP, 53), b"where is everyone");
    let original = f.clone();
    let (verdict, out) = net.send_from(at(0), 2, &mut f);
    let Verdict::Reply { len } = verdict else { panic!("{verdict:?}") };
    assert_eq!(len, ETH + 20 + 8 + 28);
    assert!(len <= MIN_REPLY_LEN);
    let eth = EthernetFrame::new_checked(&out[vnet::HEADER_LEN..]).unwrap();
    assert_eq!((eth.src_addr(), eth.dst_addr()), (GW, mac(2)));
    let packet = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(packet.verify_checksum());
    assert_eq!(packet.next_header(), IpProtocol::Icmp);
    assert_eq!((packet.src_addr(), packet.dst_addr()), (VIP, ip(2)));
    let icmp = Icmpv4Packet::new_checked(packet.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type().into(), icmp.msg_code()), (3u8, 3u8));
    assert_eq!(&icmp.data()[..28], &original[ETH..ETH + 28], "quotes header + 8 bytes");
}

#[test]
fn what_a_vip_cannot_serve_is_dropped_and_counted() {
    let mut net = net_with_web(&[3]);
    // A stray RST is never answered.
    let mut rst = tcp(mac(2), GW, (ip(2), 40000), (VIP, 80), TcpControl::Rst, 1, None, &[]);
    assert_eq!(net.send_from(at(0), 2, &mut rst).0, Verdict::Drop(DropReason::ServiceUnsupported));
    // ICMP echo to a ClusterIP goes unanswered, as with kube-proxy.
    let ping = testing::ipv4(
        mac(2),
        GW,
        Ipv4Repr {
            src_addr: ip(2),
            dst_addr: VIP,
            next_header: IpProtocol::Icmp,
            payload_len: 8,
            hop_limit: 64,
        },
    );
    let mut ping = with_vnet(&vnet::Repr::PLAIN, &ping);
    assert_eq!(net.send_from(at(0), 2, &mut ping).0, Verdict::Drop(DropReason::ServiceUnsupported));
    let stats = net.switch.port(net.port(2)).unwrap().1;
    assert_eq!(stats.dropped(DropReason::ServiceUnsupported), 2);
}

#[test]
fn removed_backends_lose_their_udp_flows_but_keep_tcp_connections() {
    let mut net = net(16);
    net.switch.upsert_service(udp_key(53), &[backend(3)], Affinity::None).unwrap();
    net.switch.upsert_service(tcp_key(80), &[backend(3)], Affinity::None).unwrap();
    net.send_from(at(0), 2, &mut udp(2, GW, (ip(2), 5353), (VIP, 53), b"q"));
    net.send_from(at(0), 2, &mut syn(2, 40000, (VIP, 80)));
    net.switch.upsert_service(udp_key(53), &[backend(4)], Affinity::None).unwrap();
    net.switch.upsert_service(tcp_key(80), &[backend(4)], Affinity::None).unwrap();
    let mut q = udp(2, GW, (ip(2), 5353), (VIP, 53), b"q");
    assert_eq!(net.send_from(at(1), 2, &mut q).0, net.fwd(4), "UDP moves on");
    let mut t = ack_from(2, GW, (ip(2), 40000), (VIP, 80));
    assert_eq!(net.send_from(at(1), 2, &mut t).0, net.fwd(3), "TCP finishes");
    net.switch.remove_service(&udp_key(53)).unwrap();
    assert_eq!(net.switch.conntrack().len(), 1);
}

#[test]
fn service_and_config_errors_are_reported() {
    let mut net = net(8);
    let outside = ServiceKey { vip: Ipv4Address::new(192, 168, 0, 1).into(), ..tcp_key(80) };
    assert_eq!(
        net.switch.upsert_service(outside, &[], Affinity::None),
        Err(ServiceError::OutsideServiceCidr)
    );
    assert_eq!(net.switch.remove_service(&tcp_key(80)), Err(ServiceError::NotFound));
    let overlapping = Switch::new(SwitchConfig {
        subnet: Ipv4Cidr::new(Ipv4Address::new(10, 100, 0, 0), 24),
        max_ports: 4,
        service_cidr: SwitchConfig::DEFAULT_SERVICE_CIDR,
        services: ServiceConfig::default(),
        ..SwitchConfig::default()
    });
    assert_eq!(overlapping.unwrap_err(), SwitchError::ServiceCidrOverlap);
}

#[test]
fn traffic_outside_the_service_cidr_is_untouched() {
    let mut net = net_with_web(&[3]);
    let mut f = ack_from(2, mac(3), (ip(2), 40000), (ip(3), 8080));
    let before = f.clone();
    assert_eq!(net.send_from(at(0), 2, &mut f).0, net.fwd(3));
    assert_eq!(f, before);
    assert_eq!(net.switch.conntrack().len(), 0);
}
