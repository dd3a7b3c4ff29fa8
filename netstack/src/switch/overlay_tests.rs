//! The overlay in bytes: encapsulation verdicts and inner MAC rewrites, peer
//! routing, decapsulation with anti-spoofing, Services across nodes, and two
//! switches (two nodes) talking through VXLAN datagrams built as the runtime
//! builds them.

use super::*;
use crate::Protocol;
use crate::overlay::{DECAP_HEADROOM, OverlayConfig, OverlayError, OverlayPeer, vtep_mac};
use crate::service::{Affinity, Backend, ServiceKey};
use crate::testing::{self, NOW, Node, Udp, arp_request, peer, pod_ip, pod_mac, subnet, underlay};
use crate::wire::{ArpPacket, ArpRepr, EthernetAddress, IpProtocol, Ipv4Packet, ipv4_of, vxlan};
use smoltcp::wire::{IpAddress, UdpPacket};

const VNI: u32 = 1;

/// Node `n`'s switch: host port, pods .2 and .3, an overlay port to `peers`.
fn node(n: u8, peers: &[OverlayPeer]) -> Node {
    let config = SwitchConfig { max_ports: 8, ..testing::config(n) };
    Node::with_overlay(
        n,
        2,
        SwitchConfig { overlay: OverlayConfig { vni: VNI, ..config.overlay }, ..config },
        peers,
    )
}

/// Node 0 with peers 1 and 2.
fn node0() -> Node {
    node(0, &[peer(1), peer(2)])
}

/// A UDP datagram from port 40000, behind a plain virtio-net header.
fn udp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Address,
    dst: Ipv4Address,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    Udp { eth_src: src_mac, eth_dst: dst_mac, ..Udp::new((src, 40000), (dst, dst_port), payload) }.vnet()
}

/// A frame from pod `.last` of node `n` to `dst`, as its kernel sends it
/// (to the gateway's MAC).
fn from_pod(n: u8, last: u8, dst: Ipv4Address, port: u16) -> Vec<u8> {
    udp_frame(pod_mac(n, last), pod_mac(n, 1), pod_ip(n, last), dst, port, b"hello overlay")
}

/// What the runtime sends for an Encapsulate verdict on `frame` (a complete
/// frame): the VXLAN header written over the end of the virtio-net header.
fn encapsulate(frame: &[u8], vni: u32) -> Vec<u8> {
    let mut datagram = frame[DECAP_HEADROOM..].to_vec();
    vxlan::Repr { vni }.emit(&mut vxlan::Packet::new_unchecked(&mut datagram[..]));
    datagram
}

/// What the runtime hands `process_overlay` for a received datagram.
fn received(datagram: &[u8]) -> Vec<u8> {
    let mut buf = vec![0xeeu8; DECAP_HEADROOM];
    buf.extend_from_slice(datagram);
    buf
}

/// A VXLAN datagram from node `n`'s VTEP with an inner packet `src` → `dst`.
fn datagram_from(n: u8, src: Ipv4Address, dst: Ipv4Address, vni: u32) -> Vec<u8> {
    let inner = udp_frame(vtep_mac(subnet(n)), vtep_mac(subnet(0)), src, dst, 9000, b"from afar");
    encapsulate(&inner, vni)
}

fn decap(node: &mut Node, from: Ipv4Address, datagram: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = received(datagram);
    let mut reply = [0u8; 128];
    let verdict = node.switch.process_overlay(NOW, from, &mut buf, &mut reply);
    (verdict, buf)
}

impl Node {
    fn process(&mut self, port: PortId, frame: &mut [u8]) -> Verdict {
        let mut reply = [0u8; 128];
        self.switch.process(NOW, port, frame, &mut reply)
    }
}

fn eth(buf: &[u8]) -> EthernetFrame<&[u8]> {
    EthernetFrame::new_checked(&buf[vnet::HEADER_LEN..]).unwrap()
}

fn addrs(buf: &[u8]) -> (Ipv4Address, Ipv4Address) {
    let frame = eth(buf);
    let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
    assert!(ip.verify_checksum());
    (ip.src_addr(), ip.dst_addr())
}

fn drops(node: &Node, port: PortId, reason: DropReason) -> u64 {
    node.switch.port(port).unwrap().1.dropped(reason)
}

#[test]
fn a_pod_reaches_another_nodes_pod_through_its_peer() {
    let mut n = node0();
    let mut frame = from_pod(0, 2, pod_ip(2, 7), 9000);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Encapsulate { peer: underlay(2) });
    assert_eq!(eth(&frame).src_addr(), vtep_mac(subnet(0)), "inner source: the local VTEP");
    assert_eq!(eth(&frame).dst_addr(), vtep_mac(subnet(2)), "inner destination: the peer's VTEP");
    assert_eq!(addrs(&frame), (pod_ip(0, 2), pod_ip(2, 7)), "no NAT");
    let overlay = n.switch.port(n.overlay_port()).unwrap().1;
    assert_eq!((overlay.tx_packets, overlay.tx_bytes), (1, (frame.len() - vnet::HEADER_LEN) as u64));
}

#[test]
fn the_cluster_cidr_without_a_peer_is_no_route() {
    let mut n = node0();
    let mut frame = from_pod(0, 2, pod_ip(9, 7), 9000);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Drop(DropReason::NoRoute));
    // Outside the cluster CIDR is the node's business, as before.
    let mut frame = from_pod(0, 2, Ipv4Address::new(192, 168, 250, 2), 9000);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Forward { egress: n.host });
    // Local pods stay local.
    let mut frame = from_pod(0, 2, pod_ip(0, 3), 9000);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Forward { egress: n.b });
}

#[test]
fn without_an_overlay_port_remote_pods_go_to_the_node() {
    let mut n = node0();
    n.switch.detach(n.overlay_port());
    assert_eq!(n.switch.overlay_port(), None);
    let mut frame = from_pod(0, 2, pod_ip(1, 7), 9000);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Forward { egress: n.host });
}

#[test]
fn peers_change_as_nodes_join_and_leave() {
    let mut n = node(0, &[]);
    let mut frame = from_pod(0, 2, pod_ip(1, 7), 9000);
    assert_eq!(n.process(n.a, &mut frame.clone()), Verdict::Drop(DropReason::NoRoute));
    n.switch.set_overlay_peers(&[peer(1)]).unwrap();
    assert_eq!(n.switch.overlay_peers(), &[peer(1)]);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Encapsulate { peer: underlay(1) });
    // Node 1 moves to another address (a DHCP lease changed).
    let moved = OverlayPeer { underlay: Ipv4Address::new(192, 168, 250, 99).into(), ..peer(1) };
    n.switch.set_overlay_peers(&[moved]).unwrap();
    let mut frame = from_pod(0, 2, pod_ip(1, 7), 9000);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Encapsulate { peer: ipv4_of(moved.underlay) });
    assert_eq!(
        n.switch.set_overlay_peers(&[peer(0)]),
        Err(OverlayError::OverlapsLocalSubnet(subnet(0).into())),
        "a peer cannot claim this node's subnet"
    );
    assert_eq!(n.switch.overlay_peers(), &[moved], "unchanged on error");
}

#[test]
fn the_node_reaches_remote_pods_and_arps_for_them() {
    let mut n = node0();
    // The node routes the cluster CIDR to its switch port on-link and asks
    // for remote pods: the answer is the local VTEP.
    let mut reply = [0u8; 128];
    let mut request = arp_request(pod_mac(0, 1), pod_ip(0, 1), pod_ip(1, 5));
    let Verdict::Reply { len } = n.switch.process(NOW, n.host, &mut request, &mut reply) else {
        panic!("ARP for a remote pod is answered");
    };
    let frame = EthernetFrame::new_checked(&reply[vnet::HEADER_LEN..len]).unwrap();
    let arp = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
    let ArpRepr::EthernetIpv4 { source_hardware_addr, source_protocol_addr, .. } = arp else { panic!() };
    assert_eq!((source_hardware_addr, source_protocol_addr), (vtep_mac(subnet(0)), pod_ip(1, 5)));
    let mut request = arp_request(pod_mac(0, 1), pod_ip(0, 1), pod_ip(9, 5));
    assert_eq!(
        n.switch.process(NOW, n.host, &mut request, &mut reply),
        Verdict::Drop(DropReason::NoSuchHost),
        "no peer, no answer"
    );

    let mut frame = udp_frame(pod_mac(0, 1), vtep_mac(subnet(0)), pod_ip(0, 1), pod_ip(1, 5), 53, b"x");
    assert_eq!(n.process(n.host, &mut frame), Verdict::Encapsulate { peer: underlay(1) });
    // From a node address outside the subnet: not the node's own traffic.
    let lan = Ipv4Address::new(192, 168, 250, 10);
    let mut frame = udp_frame(pod_mac(0, 1), vtep_mac(subnet(0)), lan, pod_ip(1, 5), 53, b"x");
    assert_eq!(n.process(n.host, &mut frame), Verdict::Drop(DropReason::NotFromNode));
}

#[test]
fn a_peers_frame_is_delivered_to_the_local_pod() {
    let mut n = node0();
    let datagram = datagram_from(1, pod_ip(1, 5), pod_ip(0, 2), VNI);
    let (verdict, buf) = decap(&mut n, underlay(1), &datagram);
    assert_eq!(verdict, Verdict::Forward { egress: n.a });
    assert_eq!(buf[..vnet::HEADER_LEN], [0; vnet::HEADER_LEN], "a plain virtio-net header");
    assert_eq!(buf.len(), datagram.len() + DECAP_HEADROOM);
    assert_eq!(eth(&buf).dst_addr(), pod_mac(0, 2));
    assert_eq!(eth(&buf).src_addr(), pod_mac(0, 1), "as routed by the gateway");
    assert_eq!(addrs(&buf), (pod_ip(1, 5), pod_ip(0, 2)), "both pod addresses kept");
    assert_eq!(buf[vnet::HEADER_LEN + 14..], datagram[vxlan::HEADER_LEN + 14..], "IP packet untouched");
    let overlay = n.switch.port(n.overlay_port()).unwrap().1;
    assert_eq!(overlay.rx_packets, 1);
    assert_eq!(n.switch.port(n.a).unwrap().1.tx_packets, 1);

    // The node itself (the gateway) is reachable from other nodes' pods.
    let datagram = datagram_from(1, pod_ip(1, 5), pod_ip(0, 1), VNI);
    assert_eq!(decap(&mut n, underlay(1), &datagram).0, Verdict::Forward { egress: n.host });
}

#[test]
fn a_peer_speaks_for_its_own_subnet_only() {
    let mut n = node0();
    for src in [pod_ip(2, 5), pod_ip(0, 3), pod_ip(9, 9), Ipv4Address::new(192, 168, 250, 11)] {
        let datagram = datagram_from(1, src, pod_ip(0, 2), VNI);
        assert_eq!(decap(&mut n, underlay(1), &datagram).0, Verdict::Drop(DropReason::SpoofedIp), "{src}");
    }
    assert_eq!(drops(&n, n.overlay_port(), DropReason::SpoofedIp), 4, "counted on the overlay port");
    assert_eq!(n.switch.port(n.a).unwrap().1.tx_packets, 0);
}

#[test]
fn unknown_senders_are_dropped_and_counted() {
    let mut n = node0();
    let datagram = datagram_from(1, pod_ip(1, 5), pod_ip(0, 2), VNI);
    let stranger = Ipv4Address::new(192, 168, 250, 66);
    assert_eq!(decap(&mut n, stranger, &datagram).0, Verdict::Drop(DropReason::UnknownPeer));
    assert_eq!(drops(&n, n.overlay_port(), DropReason::UnknownPeer), 1);
    // A peer that left is a stranger.
    n.switch.set_overlay_peers(&[peer(2)]).unwrap();
    assert_eq!(decap(&mut n, underlay(1), &datagram).0, Verdict::Drop(DropReason::UnknownPeer));
    assert_eq!(drops(&n, n.overlay_port(), DropReason::UnknownPeer), 2);
}

#[test]
fn bad_vxlan_headers_are_dropped() {
    let mut n = node0();
    let other_vni = datagram_from(1, pod_ip(1, 5), pod_ip(0, 2), 42);
    assert_eq!(decap(&mut n, underlay(1), &other_vni).0, Verdict::Drop(DropReason::WrongVni));
    let mut no_i_flag = datagram_from(1, pod_ip(1, 5), pod_ip(0, 2), VNI);
    no_i_flag[0] = 0;
    assert_eq!(decap(&mut n, underlay(1), &no_i_flag).0, Verdict::Drop(DropReason::Malformed));
    assert_eq!(decap(&mut n, underlay(1), &no_i_flag[..5]).0, Verdict::Drop(DropReason::Malformed));
    assert_eq!(decap(&mut n, underlay(1), &no_i_flag[..20]).0, Verdict::Drop(DropReason::Malformed));
    let mut reply = [0u8; 64];
    assert_eq!(
        n.switch.process_overlay(NOW, underlay(1), &mut [0u8; 1], &mut reply),
        Verdict::Drop(DropReason::Malformed)
    );
    assert_eq!(drops(&n, n.overlay_port(), DropReason::Malformed), 4);
    assert_eq!(drops(&n, n.overlay_port(), DropReason::WrongVni), 1);
}

#[test]
fn the_overlay_is_no_transit_and_carries_no_arp() {
    let mut n = node0();
    // To another peer's pod, to a Service address, to nobody.
    let via = datagram_from(1, pod_ip(1, 5), pod_ip(2, 2), VNI);
    assert_eq!(decap(&mut n, underlay(1), &via).0, Verdict::Drop(DropReason::NoRoute));
    let vip = datagram_from(1, pod_ip(1, 5), Ipv4Address::new(10, 96, 0, 20), VNI);
    assert_eq!(decap(&mut n, underlay(1), &vip).0, Verdict::Drop(DropReason::NoRoute));
    let dns = datagram_from(1, pod_ip(1, 5), SwitchConfig::DEFAULT_CLUSTER_DNS, VNI);
    assert_eq!(decap(&mut n, underlay(1), &dns).0, Verdict::Drop(DropReason::NoRoute));
    let nobody = datagram_from(1, pod_ip(1, 5), pod_ip(0, 77), VNI);
    assert_eq!(decap(&mut n, underlay(1), &nobody).0, Verdict::Drop(DropReason::NoSuchHost));
    let broadcast = datagram_from(1, pod_ip(1, 5), pod_ip(0, 255), VNI);
    assert_eq!(decap(&mut n, underlay(1), &broadcast).0, Verdict::Drop(DropReason::Broadcast));

    let arp = arp_request(vtep_mac(subnet(1)), pod_ip(1, 0), pod_ip(0, 2));
    let datagram = encapsulate(&arp, VNI);
    assert_eq!(decap(&mut n, underlay(1), &datagram).0, Verdict::Drop(DropReason::UnsupportedProtocol));

    // Nor does anything enter by the overlay port without its sender.
    let mut frame = from_pod(1, 5, pod_ip(0, 2), 9000);
    let id = n.overlay_port();
    assert_eq!(n.process(id, &mut frame), Verdict::Drop(DropReason::UnknownPeer));
}

#[test]
fn one_overlay_port_owning_no_address() {
    let mut n = node0();
    let again = PortSpec {
        kind: PortKind::Overlay,
        mac: EthernetAddress([0; 6]),
        ip: Ipv4Address::UNSPECIFIED.into(),
    };
    assert_eq!(n.switch.attach(again), Err(SwitchError::OverlayPortExists));
    let (spec, _) = n.switch.port(n.overlay_port()).unwrap();
    assert_eq!((spec.mac, spec.ip), (vtep_mac(subnet(0)), Ipv4Address::UNSPECIFIED.into()));
    n.switch.detach(n.overlay_port());
    let id = n.switch.attach(again).unwrap();
    assert_eq!(n.switch.overlay_port(), Some(id));
    // Pods and the host are unaffected.
    let mut frame = from_pod(0, 2, pod_ip(0, 3), 9000);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Forward { egress: n.b });
}

#[test]
fn a_service_backend_on_another_node() {
    let mut n = node0();
    let vip = Ipv4Address::new(10, 96, 0, 20);
    let key = ServiceKey { vip: vip.into(), port: 80, proto: Protocol::Udp };
    n.switch.upsert_service(key, &[Backend { ip: pod_ip(1, 5).into(), port: 8080 }], Affinity::None).unwrap();
    let mut frame = from_pod(0, 2, vip, 80);
    assert_eq!(n.process(n.a, &mut frame), Verdict::Encapsulate { peer: underlay(1) });
    assert_eq!(addrs(&frame), (pod_ip(0, 2), pod_ip(1, 5)), "DNAT'd to the remote backend");
    let udp_ok = |buf: &[u8]| {
        let frame = eth(buf);
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        UdpPacket::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(&IpAddress::Ipv4(ip.src_addr()), &IpAddress::Ipv4(ip.dst_addr()))
    };
    assert!(udp_ok(&frame));

    // The backend's answer comes back through the overlay and is un-DNAT'd.
    let answer =
        udp_frame(vtep_mac(subnet(1)), vtep_mac(subnet(0)), pod_ip(1, 5), pod_ip(0, 2), 40000, b"hi");
    let mut answer = answer;
    // From port 8080 to the client's port.
    let ip_at = vnet::HEADER_LEN + 14;
    answer[ip_at + 20..ip_at + 22].copy_from_slice(&8080u16.to_be_bytes());
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut answer[ip_at..]);
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
        udp.fill_checksum(&IpAddress::Ipv4(s), &IpAddress::Ipv4(d));
    }
    let (verdict, buf) = decap(&mut n, underlay(1), &encapsulate(&answer, VNI));
    assert_eq!(verdict, Verdict::Forward { egress: n.a });
    assert_eq!(addrs(&buf), (vip, pod_ip(0, 2)), "the client sees the Service address");
    assert!(udp_ok(&buf));
}

#[test]
fn two_nodes_talk_through_vxlan() {
    let mut n0 = node(0, &[peer(1)]);
    let mut n1 = node(1, &[peer(0)]);
    assert_eq!(n0.n + 1, n1.n);

    // Pod 10.244.0.2 → pod 10.244.1.3, and the answer back.
    let mut frame = from_pod(0, 2, pod_ip(1, 3), 7);
    assert_eq!(n0.process(n0.a, &mut frame), Verdict::Encapsulate { peer: underlay(1) });
    let (verdict, delivered) = decap(&mut n1, underlay(0), &encapsulate(&frame, VNI));
    assert_eq!(verdict, Verdict::Forward { egress: n1.b });
    assert_eq!(addrs(&delivered), (pod_ip(0, 2), pod_ip(1, 3)));
    assert_eq!(eth(&delivered).dst_addr(), pod_mac(1, 3));

    let mut back = from_pod(1, 3, pod_ip(0, 2), 40000);
    assert_eq!(n1.process(n1.b, &mut back), Verdict::Encapsulate { peer: underlay(0) });
    let (verdict, delivered) = decap(&mut n0, underlay(1), &encapsulate(&back, VNI));
    assert_eq!(verdict, Verdict::Forward { egress: n0.a });
    assert_eq!(addrs(&delivered), (pod_ip(1, 3), pod_ip(0, 2)));

    // The host of node 0 reaches pod b of node 1, which answers the gateway.
    let mut frame = udp_frame(pod_mac(0, 1), vtep_mac(subnet(0)), pod_ip(0, 1), pod_ip(1, 2), 9, b"x");
    assert_eq!(n0.process(n0.host, &mut frame), Verdict::Encapsulate { peer: underlay(1) });
    let (verdict, _) = decap(&mut n1, underlay(0), &encapsulate(&frame, VNI));
    assert_eq!(verdict, Verdict::Forward { egress: n1.a });
}

#[test]
fn an_inner_checksum_left_partial_is_passed_on_as_such() {
    let mut n = node0();
    // As a kernel vxlan device over a veth hands it over: the UDP checksum
    // field holds only the pseudo-header sum.
    let mut inner =
        udp_frame(vtep_mac(subnet(1)), vtep_mac(subnet(0)), pod_ip(1, 5), pod_ip(0, 2), 9000, b"p");
    let ip_at = vnet::HEADER_LEN + 14;
    let pseudo = smoltcp::wire::checksum::pseudo_header_v4(&pod_ip(1, 5), &pod_ip(0, 2), IpProtocol::Udp, 9);
    inner[ip_at + 26..ip_at + 28].copy_from_slice(&pseudo.to_be_bytes());
    let (verdict, buf) = decap(&mut n, underlay(1), &encapsulate(&inner, VNI));
    assert_eq!(verdict, Verdict::Forward { egress: n.a });
    let offload = vnet::Repr::parse(&vnet::Header::new_checked(&buf[..]).unwrap());
    assert_eq!((offload.flags, offload.csum_start, offload.csum_offset), (vnet::FLAG_NEEDS_CSUM, 34, 6));
    // A complete one is not.
    let datagram = datagram_from(1, pod_ip(1, 5), pod_ip(0, 2), VNI);
    let (_, buf) = decap(&mut n, underlay(1), &datagram);
    assert_eq!(buf[..vnet::HEADER_LEN], [0; vnet::HEADER_LEN]);
}

/// A pod of node 0 writing VXLAN itself to `dst`:`port`: a datagram from
/// node 0's VTEP carrying a frame "from" `spoofed` to pod .3 of node 1.
fn vxlan_from_pod(dst: Ipv4Address, port: u16, spoofed: Ipv4Address) -> Vec<u8> {
    let inner = udp_frame(vtep_mac(subnet(0)), vtep_mac(subnet(1)), spoofed, pod_ip(1, 3), 9000, b"injected");
    let payload = encapsulate(&inner, VNI);
    udp_frame(pod_mac(0, 2), pod_mac(0, 1), pod_ip(0, 2), dst, port, &payload)
}

#[test]
fn a_pod_cannot_send_vxlan_to_a_peer_node() {
    let mut n0 = node(0, &[peer(1)]);
    let mut n1 = node(1, &[peer(0)]);
    // What the attack would achieve: the peer takes the pod's payload as
    // VXLAN from node 0 (egress sends it from node 0's address), with the
    // source the pod chose.
    let mut frame = vxlan_from_pod(underlay(1), 8472, pod_ip(0, 3));
    let payload = frame[vnet::HEADER_LEN + 14 + 20 + 8..].to_vec();
    assert_eq!(decap(&mut n1, underlay(0), &payload).0, Verdict::Forward { egress: n1.b });

    assert_eq!(n0.process(n0.a, &mut frame), Verdict::Drop(DropReason::OverlayBypass));
    assert_eq!(drops(&n0, n0.a, DropReason::OverlayBypass), 1, "counted on the pod's port");
    // Through loopback to the node's own overlay socket, too.
    let mut frame = vxlan_from_pod(Ipv4Address::new(127, 0, 0, 1), 8472, pod_ip(0, 3));
    assert_eq!(n0.process(n0.a, &mut frame), Verdict::Drop(DropReason::OverlayBypass));
    assert_eq!(drops(&n0, n0.a, DropReason::OverlayBypass), 2);

    // Other ports of the peer, and the overlay port of hosts that are no
    // peer, are ordinary egress.
    let mut frame = vxlan_from_pod(underlay(1), 8473, pod_ip(0, 3));
    assert_eq!(n0.process(n0.a, &mut frame), Verdict::Forward { egress: n0.host });
    let mut frame = vxlan_from_pod(Ipv4Address::new(192, 168, 250, 99), 8472, pod_ip(0, 3));
    assert_eq!(n0.process(n0.a, &mut frame), Verdict::Forward { egress: n0.host });
    // A node that leaves the peer set is no node of the cluster any more.
    n0.switch.set_overlay_peers(&[]).unwrap();
    let mut frame = vxlan_from_pod(underlay(1), 8472, pod_ip(0, 3));
    assert_eq!(n0.process(n0.a, &mut frame), Verdict::Forward { egress: n0.host });
    assert_eq!(drops(&n0, n0.a, DropReason::OverlayBypass), 2);
}

#[test]
fn the_overlay_port_refused_is_the_configured_one() {
    let mut switch = Switch::new(SwitchConfig {
        subnet: subnet(0),
        max_ports: 8,
        overlay: OverlayConfig { udp_port: 4789, ..OverlayConfig::default() },
        ..SwitchConfig::default()
    })
    .unwrap();
    switch.attach(PortSpec { kind: PortKind::Host, mac: pod_mac(0, 1), ip: pod_ip(0, 1).into() }).unwrap();
    let a =
        switch.attach(PortSpec { kind: PortKind::Pod, mac: pod_mac(0, 2), ip: pod_ip(0, 2).into() }).unwrap();
    switch.set_overlay_peers(&[peer(1)]).unwrap();
    let mut reply = [0u8; 128];
    let mut frame = vxlan_from_pod(underlay(1), 4789, pod_ip(0, 3));
    assert_eq!(switch.process(NOW, a, &mut frame, &mut reply), Verdict::Drop(DropReason::OverlayBypass));
    let mut frame = vxlan_from_pod(underlay(1), 8472, pod_ip(0, 3));
    assert!(matches!(switch.process(NOW, a, &mut frame, &mut reply), Verdict::Forward { .. }));
    // A later fragment has no port to check; the egress endpoint drops it.
    let mut frame = vxlan_from_pod(underlay(1), 4789, pod_ip(0, 3));
    Ipv4Packet::new_unchecked(&mut frame[vnet::HEADER_LEN + 14..]).set_frag_offset(8);
    assert!(matches!(switch.process(NOW, a, &mut frame, &mut reply), Verdict::Forward { .. }));
}
