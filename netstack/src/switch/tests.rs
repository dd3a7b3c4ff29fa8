//! Byte-level tests of the switch: frames are built with smoltcp's emitters,
//! handed to `process`, and the verdict and output bytes checked.

use super::*;
use crate::testing::{self, NOW, Node, arp_request, ip, mac, with_vnet};
use crate::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress, IpProtocol, vnet};
use smoltcp::wire::Ipv4Repr;

/// Host at .1, pods .2 (a) and .3 (b), room for one more port.
fn fixture() -> Node {
    Node::new(0, 2, SwitchConfig { max_ports: 4, ..testing::config(0) })
}

/// An IPv4 frame (protocol UDP, `payload` as the whole IP payload) behind
/// a plain virtio-net header.
fn ipv4_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Address,
    dst: Ipv4Address,
    payload: &[u8],
) -> Vec<u8> {
    let ip_repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut frame = testing::ipv4(src_mac, dst_mac, ip_repr);
    let at = frame.len() - payload.len();
    frame[at..].copy_from_slice(payload);
    with_vnet(&vnet::Repr::PLAIN, &frame)
}

fn run(ingress: PortId, f: &mut Node, frame: &mut [u8]) -> (Verdict, Vec<u8>) {
    f.send(NOW, ingress, frame, 128)
}

fn parse_arp_reply(bytes: &[u8]) -> (EthernetAddress, ArpRepr) {
    let frame = EthernetFrame::new_checked(&bytes[vnet::HEADER_LEN..]).unwrap();
    let arp = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
    (frame.dst_addr(), arp)
}

#[test]
fn arp_for_another_pod_is_answered_with_its_mac() {
    let mut f = fixture();
    let (verdict, out) = run(f.a, &mut f, &mut arp_request(mac(2), ip(2), ip(3)));
    assert!(matches!(verdict, Verdict::Reply { len: 52 }));
    assert_eq!(&out[..vnet::HEADER_LEN], &[0; vnet::HEADER_LEN], "plain virtio header");
    let (dst, arp) = parse_arp_reply(&out);
    assert_eq!(dst, mac(2));
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: mac(3),
            source_protocol_addr: ip(3),
            target_hardware_addr: mac(2),
            target_protocol_addr: ip(2),
        }
    );
    assert_eq!(f.switch.port(f.b).unwrap().1.rx_packets, 0, "nothing reached pod b");
}

#[test]
fn arp_for_the_gateway_gets_the_host_mac() {
    let mut f = fixture();
    let (_, out) = run(f.a, &mut f, &mut arp_request(mac(2), ip(2), ip(1)));
    let (_, arp) = parse_arp_reply(&out);
    let ArpRepr::EthernetIpv4 { source_hardware_addr, .. } = arp else { panic!("{arp:?}") };
    assert_eq!(source_hardware_addr, mac(1));
}

#[test]
fn the_host_may_arp_from_any_of_its_addresses() {
    let mut f = fixture();
    let other_host_ip = Ipv4Address::new(192, 168, 1, 10);
    let (verdict, _) = run(f.host, &mut f, &mut arp_request(mac(1), other_host_ip, ip(2)));
    assert!(matches!(verdict, Verdict::Reply { .. }));
}

#[test]
fn arp_for_an_unknown_address_is_dropped_not_flooded() {
    let mut f = fixture();
    let (verdict, _) = run(f.a, &mut f, &mut arp_request(mac(2), ip(2), ip(77)));
    assert_eq!(verdict, Verdict::Drop(DropReason::NoSuchHost));
    assert_eq!(f.switch.port(f.a).unwrap().1.dropped(DropReason::NoSuchHost), 1);
}

#[test]
fn forged_arp_sender_is_dropped() {
    let mut f = fixture();
    let (verdict, _) = run(f.a, &mut f, &mut arp_request(mac(2), ip(3), ip(1)));
    assert_eq!(verdict, Verdict::Drop(DropReason::SpoofedIp));
}

#[test]
fn pod_to_pod_is_forwarded_with_the_destination_mac_set() {
    let mut f = fixture();
    let mut frame = ipv4_frame(mac(2), mac(1), ip(2), ip(3), b"hello");
    let (verdict, _) = run(f.a, &mut f, &mut frame);
    assert_eq!(verdict, Verdict::Forward { egress: f.b });
    let eth = EthernetFrame::new_checked(&frame[vnet::HEADER_LEN..]).unwrap();
    assert_eq!(eth.dst_addr(), mac(3));
    assert_eq!(eth.src_addr(), mac(2));
    let stats = f.switch.port(f.b).unwrap().1;
    assert_eq!((stats.tx_packets, stats.tx_bytes), (1, 14 + 20 + 5));
}

#[test]
fn off_subnet_traffic_goes_to_the_node() {
    let mut f = fixture();
    let mut frame = ipv4_frame(mac(2), mac(1), ip(2), Ipv4Address::new(192, 168, 1, 10), b"x");
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Forward { egress: f.host });
}

#[test]
fn a_pod_cannot_reach_the_nodes_loopback() {
    let mut f = fixture();
    for dst in [Ipv4Address::new(127, 0, 0, 1), Ipv4Address::new(127, 9, 9, 9), Ipv4Address::new(0, 0, 0, 0)]
    {
        let mut frame = ipv4_frame(mac(2), mac(1), ip(2), dst, b"to the agent's 127.0.0.1 listeners");
        assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::MartianDestination), "{dst}");
    }
    assert_eq!(f.switch.port(f.a).unwrap().1.dropped(DropReason::MartianDestination), 3);
    assert_eq!(f.switch.port(f.host).unwrap().1.tx_packets, 0);
}

#[test]
fn the_node_reaches_pods_but_gets_no_transit() {
    let mut f = fixture();
    let mut to_pod = ipv4_frame(mac(1), mac(2), ip(1), ip(2), b"ping");
    assert_eq!(run(f.host, &mut f, &mut to_pod).0, Verdict::Forward { egress: f.a });
    let mut transit = ipv4_frame(mac(1), mac(9), ip(1), Ipv4Address::new(8, 8, 8, 8), b"x");
    assert_eq!(run(f.host, &mut f, &mut transit).0, Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn spoofed_source_ip_is_dropped_and_counted() {
    let mut f = fixture();
    let mut frame = ipv4_frame(mac(2), mac(3), ip(3), ip(3), b"forged");
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::SpoofedIp));
    let mut frame = ipv4_frame(mac(1), mac(3), ip(2), ip(3), b"forged by the host");
    assert_eq!(run(f.host, &mut f, &mut frame).0, Verdict::Drop(DropReason::SpoofedIp));
    assert_eq!(f.switch.port(f.a).unwrap().1.dropped(DropReason::SpoofedIp), 1);
    assert_eq!(f.switch.port(f.b).unwrap().1.rx_packets, 0);
}

#[test]
fn spoofed_source_mac_is_dropped_and_counted() {
    let mut f = fixture();
    let mut frame = ipv4_frame(mac(3), mac(1), ip(2), ip(3), b"forged");
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::SpoofedMac));
    assert_eq!(f.switch.port(f.a).unwrap().1.dropped(DropReason::SpoofedMac), 1);
}

#[test]
fn broadcast_and_multicast_are_dropped() {
    let mut f = fixture();
    let bcast = EthernetAddress::BROADCAST;
    let mut frame = ipv4_frame(mac(2), bcast, ip(2), ip(255), b"storm");
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::Broadcast));
    let mut frame = ipv4_frame(mac(2), mac(1), ip(2), ip(255), b"directed broadcast");
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::Broadcast));
    let mcast = EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 0xfb]);
    let mut frame = ipv4_frame(mac(2), mcast, ip(2), Ipv4Address::new(224, 0, 0, 251), b"mdns");
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::Broadcast));
}

#[test]
fn ipv6_is_counted_as_unsupported() {
    let mut f = fixture();
    let mut frame = ipv4_frame(mac(2), mac(3), ip(2), ip(3), b"x");
    frame[vnet::HEADER_LEN + 12..vnet::HEADER_LEN + 14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::UnsupportedProtocol));
}

#[test]
fn truncated_frames_are_malformed() {
    let mut f = fixture();
    for len in [0, 5, vnet::HEADER_LEN + 13] {
        let mut frame = vec![0u8; len];
        assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::Malformed));
    }
    let mut frame = ipv4_frame(mac(2), mac(3), ip(2), ip(3), b"payload");
    let cut = frame.len() - 4; // IPv4 total length now exceeds the buffer
    assert_eq!(run(f.a, &mut f, &mut frame[..cut]).0, Verdict::Drop(DropReason::Malformed));
}

#[test]
fn gso_super_frames_pass_with_their_virtio_header_intact() {
    let mut f = fixture();
    let payload = vec![0xab; 60_000];
    let mut frame = ipv4_frame(mac(2), mac(1), ip(2), ip(3), &payload);
    let header = [0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00];
    frame[..vnet::HEADER_LEN].copy_from_slice(&header);
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Forward { egress: f.b });
    assert_eq!(&frame[..vnet::HEADER_LEN], &header);
}

#[test]
fn unknown_ingress_port_is_rejected() {
    let mut f = fixture();
    let mut frame = ipv4_frame(mac(2), mac(3), ip(2), ip(3), b"x");
    assert_eq!(run(PortId(99), &mut f, &mut frame).0, Verdict::Drop(DropReason::UnknownPort));
}

#[test]
fn attach_enforces_capacity_uniqueness_and_subnet() {
    let mut f = fixture();
    let pod = |last| PortSpec { kind: PortKind::Pod, mac: mac(last), ip: ip(last).into() };
    assert_eq!(f.switch.attach(pod(3)), Err(SwitchError::AddressInUse));
    let outside = PortSpec { ip: Ipv4Address::new(10, 244, 1, 2).into(), ..pod(4) };
    assert_eq!(f.switch.attach(outside), Err(SwitchError::OutsideSubnet));
    let host = PortSpec { kind: PortKind::Host, ..pod(9) };
    assert_eq!(f.switch.attach(host), Err(SwitchError::HostPortExists));
    f.switch.attach(pod(4)).unwrap();
    assert_eq!(f.switch.attach(pod(5)), Err(SwitchError::TableFull));
}

#[test]
fn a_detached_port_stops_receiving_and_frees_its_address() {
    let mut f = fixture();
    f.switch.detach(f.b).unwrap();
    let mut frame = ipv4_frame(mac(2), mac(3), ip(2), ip(3), b"x");
    assert_eq!(run(f.a, &mut f, &mut frame).0, Verdict::Drop(DropReason::NoSuchHost));
    let (verdict, _) = run(f.a, &mut f, &mut arp_request(mac(2), ip(2), ip(3)));
    assert_eq!(verdict, Verdict::Drop(DropReason::NoSuchHost));
    let again = PortSpec { kind: PortKind::Pod, mac: mac(3), ip: ip(3).into() };
    assert!(f.switch.attach(again).is_ok());
}

#[test]
fn the_node_is_told_cluster_ips_sit_behind_the_service_router() {
    let mut f = fixture();
    let vip = Ipv4Address::new(10, 96, 0, 42);
    let (verdict, out) = run(f.host, &mut f, &mut arp_request(mac(1), ip(1), vip));
    assert!(matches!(verdict, Verdict::Reply { .. }));
    let (_, arp) = parse_arp_reply(&out);
    let ArpRepr::EthernetIpv4 { source_hardware_addr, source_protocol_addr, .. } = arp else { panic!() };
    assert_eq!((source_hardware_addr, source_protocol_addr), (arp::SERVICE_ROUTER_MAC, vip));
    let outside = Ipv4Address::new(10, 200, 0, 1);
    let (verdict, _) = run(f.host, &mut f, &mut arp_request(mac(1), ip(1), outside));
    assert_eq!(verdict, Verdict::Drop(DropReason::NoSuchHost));
}

#[test]
fn with_an_egress_port_off_subnet_traffic_goes_there_and_replies_come_back() {
    let mut f = fixture();
    let spec = PortSpec { kind: PortKind::Egress, mac: mac(1), ip: Ipv4Address::UNSPECIFIED.into() };
    let egress = f.switch.attach(spec).unwrap();
    assert_eq!(f.switch.attach(spec), Err(SwitchError::HostPortExists), "one egress port");
    let lan = Ipv4Address::new(192, 168, 1, 10);
    let mut out = ipv4_frame(mac(2), mac(1), ip(2), lan, b"x");
    assert_eq!(run(f.a, &mut f, &mut out).0, Verdict::Forward { egress });
    let mut back = ipv4_frame(mac(1), mac(9), lan, ip(2), b"y");
    assert_eq!(run(egress, &mut f, &mut back).0, Verdict::Forward { egress: f.a });
    let eth = EthernetFrame::new_checked(&back[vnet::HEADER_LEN..]).unwrap();
    assert_eq!(eth.dst_addr(), mac(2));
    // Never in a pod's name, nor the node's.
    for forged in [ip(3), ip(1)] {
        let mut frame = ipv4_frame(mac(1), mac(9), forged, ip(2), b"z");
        assert_eq!(run(egress, &mut f, &mut frame).0, Verdict::Drop(DropReason::SpoofedIp));
    }
    // The gateway is still the node's kernel.
    let mut to_node = ipv4_frame(mac(2), mac(1), ip(2), ip(1), b"x");
    assert_eq!(run(f.a, &mut f, &mut to_node).0, Verdict::Forward { egress: f.host });
    // Without the endpoint, off-subnet traffic falls back to the node.
    f.switch.detach(egress);
    let mut out = ipv4_frame(mac(2), mac(1), ip(2), lan, b"x");
    assert_eq!(run(f.a, &mut f, &mut out).0, Verdict::Forward { egress: f.host });
}

#[test]
fn what_the_node_would_forward_from_outside_does_not_reach_pods() {
    let mut f = fixture();
    let lan = Ipv4Address::new(192, 168, 1, 10);
    let mut frame = ipv4_frame(mac(1), mac(2), lan, ip(2), b"from the lan");
    assert_eq!(run(f.host, &mut f, &mut frame).0, Verdict::Drop(DropReason::NotFromNode));
    assert_eq!(f.switch.port(f.host).unwrap().1.dropped(DropReason::NotFromNode), 1);
    assert_eq!(f.switch.port(f.a).unwrap().1.tx_packets, 0);
}
