//! The egress table in simulated time: a real TCP stack (smoltcp) plays the
//! pod, simulated kernel sockets play the destinations.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    HardwareAddress, Icmpv4Message, Icmpv4Packet, IpAddress, IpCidr, IpProtocol, Ipv4Packet, TcpPacket,
    UdpPacket,
};

use super::*;
use crate::conntrack::Timeouts;
use crate::testing::{ethernet, ip, mac, with_vnet};

const POD: Ipv4Address = ip(5);
const POD2: Ipv4Address = ip(6);
const POD3: Ipv4Address = ip(7);
const GATEWAY: Ipv4Address = ip(1);
const REMOTE: Ipv4Address = Ipv4Address::new(192, 168, 77, 2);
const GW_MAC: EthernetAddress = mac(1);
const BUFFER: usize = 4096;

fn config() -> EgressConfig {
    EgressConfig {
        mac: GW_MAC,
        tcp: Limit { total: 8, per_pod: 4 },
        udp: Limit { total: 8, per_pod: 4 },
        echo: Limit { total: 8, per_pod: 4 },
        tcp_buffer: BUFFER,
        timeouts: Timeouts::default(),
        echo_idle: Duration::from_secs(10),
    }
}

/// One simulated kernel socket.
#[derive(Default)]
struct Sock {
    to: Option<(Ipv4Address, u16)>,
    udp: bool,
    /// What the destination received (TCP bytes; UDP datagrams appended).
    received: Vec<u8>,
    datagrams: Vec<Vec<u8>>,
    /// Room left in the kernel's send buffer.
    room: usize,
    /// What the destination sent, not read yet.
    incoming: VecDeque<u8>,
    incoming_datagrams: VecDeque<Transfer>,
    eof: bool,
    error: Option<Transfer>,
    shut_wr: bool,
    closed: Option<Close>,
    reads: usize,
}

/// Simulated kernel: sockets by entry id, frames toward the pods, echoes.
#[derive(Default)]
struct Sim {
    socks: BTreeMap<EntryId, Sock>,
    to_pod: Vec<Vec<u8>>,
    fail_sockets: bool,
    echoes: Vec<(Ipv4Address, Vec<u8>)>,
    echo_replies: VecDeque<Vec<u8>>,
    closes: u64,
}

impl Sim {
    fn only(&self) -> (EntryId, &Sock) {
        assert_eq!(self.socks.len(), 1, "one socket");
        let (id, sock) = self.socks.iter().next().unwrap();
        (*id, sock)
    }
    fn sock(&mut self, id: EntryId) -> &mut Sock {
        self.socks.get_mut(&id).unwrap()
    }
    fn open(&mut self, id: EntryId, to: Ipv4Address, port: u16, udp: bool) -> Result<(), SocketFailed> {
        if self.fail_sockets {
            return Err(SocketFailed);
        }
        let sock = Sock { to: Some((to, port)), udp, room: usize::MAX, ..Sock::default() };
        assert!(self.socks.insert(id, sock).is_none(), "an id is not reused while open");
        Ok(())
    }
}

impl Io for Sim {
    fn to_pod(&mut self, frame: &[u8]) {
        self.to_pod.push(frame.to_vec());
    }
    fn connect(&mut self, id: EntryId, to: Ipv4Address, port: u16) -> Result<(), SocketFailed> {
        self.open(id, to, port, false)
    }
    fn udp_open(&mut self, id: EntryId, to: Ipv4Address, port: u16) -> Result<(), SocketFailed> {
        self.open(id, to, port, true)
    }
    fn write(&mut self, id: EntryId, data: &[u8]) -> Transfer {
        let sock = self.socks.get_mut(&id).expect("write to an open socket");
        assert!(sock.closed.is_none() && !sock.shut_wr, "write after close or shutdown");
        if sock.udp {
            sock.datagrams.push(data.to_vec());
            return Transfer::Moved(data.len());
        }
        if sock.room == 0 {
            return Transfer::WouldBlock;
        }
        let n = data.len().min(sock.room);
        sock.received.extend_from_slice(&data[..n]);
        sock.room -= n;
        Transfer::Moved(n)
    }
    fn read(&mut self, id: EntryId, buf: &mut [u8]) -> Transfer {
        let sock = self.socks.get_mut(&id).expect("read from an open socket");
        sock.reads += 1;
        if sock.udp {
            return match sock.incoming_datagrams.pop_front() {
                Some(Transfer::Moved(n)) => {
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        *b = i as u8;
                    }
                    Transfer::Moved(n)
                }
                Some(other) => other,
                None => Transfer::WouldBlock,
            };
        }
        if let Some(error) = sock.error {
            return error;
        }
        if sock.incoming.is_empty() {
            return if sock.eof { Transfer::Moved(0) } else { Transfer::WouldBlock };
        }
        let n = buf.len().min(sock.incoming.len());
        for b in buf[..n].iter_mut() {
            *b = sock.incoming.pop_front().unwrap();
        }
        Transfer::Moved(n)
    }
    fn shutdown_write(&mut self, id: EntryId) {
        self.sock(id).shut_wr = true;
    }
    fn close(&mut self, id: EntryId, how: Close) {
        let sock = self.socks.get_mut(&id).expect("close of an open socket");
        assert!(sock.closed.is_none(), "closed twice");
        sock.closed = Some(how);
        // Kept, closed, so tests can look; moved out of the way of a new id.
        let sock = self.socks.remove(&id).unwrap();
        self.closes += 1;
        self.socks.insert(EntryId::from_raw(u64::MAX - self.closes), sock);
    }
    fn echo_send(&mut self, to: Ipv4Address, message: &[u8]) {
        self.echoes.push((to, message.to_vec()));
    }
    fn echo_read(&mut self, buf: &mut [u8]) -> Transfer {
        match self.echo_replies.pop_front() {
            Some(packet) => {
                buf[..packet.len()].copy_from_slice(&packet);
                Transfer::Moved(packet.len())
            }
            None => Transfer::WouldBlock,
        }
    }
}

impl Sim {
    fn open_socks(&self) -> impl Iterator<Item = (&EntryId, &Sock)> {
        self.socks.iter().filter(|(_, s)| s.closed.is_none())
    }
    fn closed(&self) -> Vec<Close> {
        self.socks.values().filter_map(|s| s.closed).collect()
    }
}

/// The pod's link: IP packets both ways.
#[derive(Default)]
struct Link {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((Rx(packet), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// A pod: a TCP stack at `ip`.
struct Pod {
    iface: Interface,
    link: Link,
    sockets: SocketSet<'static>,
}

impl Pod {
    fn new(ip: Ipv4Address) -> Pod {
        let mut link = Link::default();
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut link, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), 24));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(GATEWAY);
        Pod { iface, link, sockets: SocketSet::new(Vec::new()) }
    }

    fn connect(&mut self, port: u16, buffer: usize) -> SocketHandle {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buffer]),
            tcp::SocketBuffer::new(vec![0; buffer]),
        );
        socket.connect(self.iface.context(), (IpAddress::Ipv4(REMOTE), 80), port).unwrap();
        self.sockets.add(socket)
    }

    fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }
}

/// The table, the simulated kernel, a pod and the clock.
struct World {
    egress: Egress,
    sim: Sim,
    pod: Pod,
    now: Instant,
}

impl World {
    fn new(config: EgressConfig) -> World {
        World {
            egress: Egress::new(config, Instant::ZERO),
            sim: Sim::default(),
            pod: Pod::new(POD),
            now: Instant::ZERO,
        }
    }

    /// Moves packets between the pod and the table until both are quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.pod.iface.poll(self.now, &mut self.pod.link, &mut self.pod.sockets);
            let from_pod: Vec<Vec<u8>> = self.pod.link.tx.drain(..).collect();
            for packet in &from_pod {
                self.egress.frame(self.now, &frame(packet), &mut self.sim);
            }
            self.egress.poll(self.now, &mut self.sim);
            let to_pod: Vec<Vec<u8>> = self.sim.to_pod.drain(..).collect();
            if from_pod.is_empty() && to_pod.is_empty() {
                return;
            }
            for frame in to_pod {
                self.pod.link.rx.push_back(frame[HEADERS..].to_vec());
            }
            self.now += Duration::from_millis(1);
        }
        panic!("never settles");
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.settle();
    }

    /// A pod socket connected through the table; returns it and its entry.
    fn open(&mut self, port: u16, pod_buffer: usize) -> (SocketHandle, EntryId) {
        let handle = self.pod.connect(port, pod_buffer);
        self.settle();
        let (id, _) = self.sim.open_socks().last().map(|(id, s)| (*id, s.to)).unwrap();
        assert_eq!(self.egress.tcp_state(id), Some(TcpState::Connecting));
        self.egress.connected(self.now, id, Ok(()), &mut self.sim);
        self.settle();
        assert_eq!(self.pod.tcp(handle).state(), tcp::State::Established);
        (handle, id)
    }

    fn ready(&mut self, id: EntryId, readable: bool, writable: bool) {
        self.egress.ready(self.now, id, Readiness { readable, writable }, &mut self.sim);
        self.settle();
    }

    fn pod_received(&mut self, handle: SocketHandle) -> Vec<u8> {
        let mut out = Vec::new();
        let socket = self.pod.tcp(handle);
        while socket.can_recv() {
            socket.recv(|d| (d.len(), out.extend_from_slice(d))).unwrap();
        }
        out
    }
}

/// `packet` behind a plain virtio-net header and an Ethernet header.
fn frame(packet: &[u8]) -> Vec<u8> {
    with_vnet(&vnet::Repr::PLAIN, &ethernet(EthernetAddress([0; 6]), GW_MAC, packet))
}

/// An IPv4 packet from `src` to `dst` carrying `payload` as `proto`.
fn ipv4(src: Ipv4Address, dst: Ipv4Address, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; 20 + payload.len()];
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len((20 + payload.len()) as u16);
    ip.set_hop_limit(64);
    ip.set_next_header(proto);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    packet[20..].copy_from_slice(payload);
    packet
}

fn udp_frame(src: Ipv4Address, src_port: u16, dst: Ipv4Address, dst_port: u16, data: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0u8; 8 + data.len()];
    let mut udp = UdpPacket::new_unchecked(&mut datagram[..]);
    udp.set_src_port(src_port);
    udp.set_dst_port(dst_port);
    udp.set_len((8 + data.len()) as u16);
    datagram[8..].copy_from_slice(data);
    frame(&ipv4(src, dst, IpProtocol::Udp, &datagram))
}

fn syn_frame(src: Ipv4Address, src_port: u16) -> Vec<u8> {
    let mut segment = vec![0u8; 20];
    let mut tcp = TcpPacket::new_unchecked(&mut segment[..]);
    tcp.set_src_port(src_port);
    tcp.set_dst_port(80);
    tcp.set_seq_number(smoltcp::wire::TcpSeqNumber(1000));
    tcp.set_header_len(20);
    tcp.set_syn(true);
    tcp.set_window_len(1000);
    frame(&ipv4(src, REMOTE, IpProtocol::Tcp, &segment))
}

fn echo(src: Ipv4Address, dst: Ipv4Address, message: Icmpv4Message, ident: u16) -> Vec<u8> {
    let mut icmp = vec![0u8; 12];
    let mut packet = Icmpv4Packet::new_unchecked(&mut icmp[..]);
    packet.set_msg_type(message);
    packet.set_msg_code(0);
    packet.set_echo_ident(ident);
    packet.set_echo_seq_no(1);
    packet.fill_checksum();
    ipv4(src, dst, IpProtocol::Icmp, &icmp)
}

/// The TCP segment in a frame toward a pod.
fn segment(frame: &[u8]) -> TcpPacket<&[u8]> {
    let ip = Ipv4Packet::new_checked(&frame[HEADERS..]).unwrap();
    assert_eq!(ip.next_header(), IpProtocol::Tcp);
    TcpPacket::new_checked(&frame[HEADERS + 20..]).unwrap()
}

fn is_rst_to(frame: &[u8], pod: Ipv4Address, port: u16) -> bool {
    let ip = Ipv4Packet::new_checked(&frame[HEADERS..]).unwrap();
    let tcp = segment(frame);
    ip.dst_addr() == pod
        && ip.src_addr() == REMOTE
        && tcp.dst_port() == port
        && tcp.src_port() == 80
        && tcp.rst()
}

#[test]
fn a_syn_waits_for_the_kernel_connect_then_the_pod_is_connected() {
    let mut w = World::new(config());
    let handle = w.pod.connect(40_000, BUFFER);
    w.settle();
    let (id, sock) = w.sim.only();
    assert_eq!(sock.to, Some((REMOTE, 80)));
    assert!(w.egress.awaiting_connect(id));
    // Nothing answers the pod while the destination has not.
    assert_eq!(w.pod.tcp(handle).state(), tcp::State::SynSent);
    // A retransmitted SYN waits with the first: still one socket.
    w.advance(Duration::from_secs(2));
    assert_eq!(w.sim.socks.len(), 1);
    w.egress.connected(w.now, id, Ok(()), &mut w.sim);
    w.settle();
    assert_eq!(w.pod.tcp(handle).state(), tcp::State::Established);
    assert_eq!(w.egress.tcp_state(id), Some(TcpState::Open));
    assert_eq!(w.egress.stats().tcp_opened, 1);
}

#[test]
fn a_failed_connect_resets_the_pod() {
    let mut w = World::new(config());
    let handle = w.pod.connect(40_000, BUFFER);
    w.settle();
    let (id, _) = w.sim.only();
    w.egress.connected(w.now, id, Err(ConnectFailed), &mut w.sim);
    w.settle();
    assert_eq!(w.pod.tcp(handle).state(), tcp::State::Closed);
    assert_eq!(w.egress.tcp_state(id), None);
    assert_eq!(w.sim.closed(), [Close::Graceful]);
    assert_eq!(w.egress.stats().count(Reason::TcpConnectFailed), 1);
    assert_eq!(w.egress.held(), (0, 0, 0));
}

#[test]
fn a_socket_that_cannot_be_made_resets_the_pod_at_once() {
    let mut w = World::new(config());
    w.sim.fail_sockets = true;
    w.egress.frame(w.now, &syn_frame(POD, 40_000), &mut w.sim);
    assert_eq!(w.sim.to_pod.len(), 1);
    assert!(is_rst_to(&w.sim.to_pod[0], POD, 40_000));
    assert_eq!(w.egress.stats().count(Reason::TcpSocketFailed), 1);
    assert_eq!(w.egress.held(), (0, 0, 0));
}

#[test]
fn data_moves_both_ways() {
    let mut w = World::new(config());
    let (handle, id) = w.open(40_000, BUFFER);
    w.pod.tcp(handle).send_slice(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    w.settle();
    assert_eq!(w.sim.sock(id).received, b"GET / HTTP/1.0\r\n\r\n");
    w.sim.sock(id).incoming.extend(b"HTTP/1.0 200 OK\r\n\r\nhello");
    w.ready(id, true, false);
    assert_eq!(w.pod_received(handle), b"HTTP/1.0 200 OK\r\n\r\nhello");
}

#[test]
fn a_full_kernel_buffer_stops_reading_from_the_pod() {
    let mut w = World::new(config());
    let (handle, id) = w.open(40_000, 64 * 1024);
    w.sim.sock(id).room = 0;
    let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let sent = w.pod.tcp(handle).send_slice(&data).unwrap();
    assert_eq!(sent, data.len());
    w.advance(Duration::from_millis(500));
    // The table's buffer is full and the pod's window closed: the rest
    // waits in the pod.
    assert!(w.sim.sock(id).received.is_empty());
    assert!(w.pod.tcp(handle).send_queue() >= data.len() - BUFFER);
    // Room again: everything arrives, in order.
    w.sim.sock(id).room = usize::MAX;
    w.ready(id, false, true);
    for _ in 0..50 {
        w.advance(Duration::from_millis(300));
        w.ready(id, false, true);
    }
    assert_eq!(w.sim.sock(id).received, data);
}

#[test]
fn a_pod_that_does_not_read_stops_reading_from_the_destination() {
    let mut w = World::new(config());
    let (handle, id) = w.open(40_000, 2048);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    w.sim.sock(id).incoming.extend(&data);
    w.ready(id, true, false);
    w.advance(Duration::from_secs(1));
    // At most the pod's window and the table's buffer left the kernel.
    let left = w.sim.sock(id).incoming.len();
    assert!(left >= data.len() - 2048 - BUFFER, "read {} bytes", data.len() - left);
    // The pod reads; the rest follows.
    let mut got = Vec::new();
    for _ in 0..500 {
        got.extend(w.pod_received(handle));
        w.advance(Duration::from_millis(10));
        w.ready(id, true, false);
        if got.len() == data.len() {
            break;
        }
    }
    assert_eq!(got, data);
}

#[test]
fn the_pods_fin_half_closes_and_the_destination_may_still_send() {
    let mut w = World::new(config());
    let (handle, id) = w.open(40_000, BUFFER);
    w.pod.tcp(handle).send_slice(b"request").unwrap();
    w.pod.tcp(handle).close();
    w.settle();
    assert_eq!(w.sim.sock(id).received, b"request");
    assert!(w.sim.sock(id).shut_wr);
    assert_eq!(w.egress.tcp_state(id), Some(TcpState::PodFinPassed));
    w.sim.sock(id).incoming.extend(b"reply");
    w.sim.sock(id).eof = true;
    w.ready(id, true, false);
    assert_eq!(w.pod_received(handle), b"reply");
    w.advance(Duration::from_secs(1));
    // Both FINs passed: the entry goes with an ordinary close.
    assert_eq!(w.egress.tcp_state(id), None);
    assert_eq!(w.sim.closed(), [Close::Graceful]);
    assert!(matches!(w.pod.tcp(handle).state(), tcp::State::TimeWait | tcp::State::Closed));
}

#[test]
fn the_destinations_eof_half_closes_and_the_pod_may_still_send() {
    let mut w = World::new(config());
    let (handle, id) = w.open(40_000, BUFFER);
    w.sim.sock(id).eof = true;
    w.ready(id, true, false);
    assert_eq!(w.egress.tcp_state(id), Some(TcpState::RemoteFinPassed));
    assert!(!w.pod.tcp(handle).may_recv());
    assert!(w.pod.tcp(handle).may_send());
    w.pod.tcp(handle).send_slice(b"after").unwrap();
    w.settle();
    assert_eq!(w.sim.sock(id).received, b"after");
    w.pod.tcp(handle).close();
    w.advance(Duration::from_secs(1));
    assert_eq!(w.egress.tcp_state(id), None);
    assert_eq!(w.sim.closed(), [Close::Graceful]);
}

#[test]
fn the_pods_rst_resets_the_destination() {
    let mut w = World::new(config());
    let (handle, id) = w.open(40_000, BUFFER);
    w.pod.tcp(handle).abort();
    w.settle();
    assert_eq!(w.egress.tcp_state(id), None);
    assert_eq!(w.sim.closed(), [Close::Reset]);
}

#[test]
fn the_destinations_rst_resets_the_pod() {
    let mut w = World::new(config());
    let (handle, id) = w.open(40_000, BUFFER);
    w.sim.sock(id).error = Some(Transfer::Failed);
    w.ready(id, true, false);
    assert_eq!(w.pod.tcp(handle).state(), tcp::State::Closed);
    assert_eq!(w.egress.tcp_state(id), None);
    assert_eq!(w.sim.closed(), [Close::Graceful]);
}

#[test]
fn a_segment_of_no_connection_is_answered_with_a_rst() {
    let mut w = World::new(config());
    let mut ack = syn_frame(POD, 40_001);
    let mut tcp = TcpPacket::new_unchecked(&mut ack[HEADERS + 20..]);
    tcp.set_syn(false);
    tcp.set_ack(true);
    w.egress.frame(w.now, &ack, &mut w.sim);
    w.egress.poll(w.now, &mut w.sim);
    assert!(w.sim.socks.is_empty());
    assert_eq!(w.sim.to_pod.len(), 1);
    assert!(is_rst_to(&w.sim.to_pod[0], POD, 40_001));
}

#[test]
fn connections_are_capped_per_pod_and_on_the_node() {
    let mut cfg = config();
    cfg.tcp = Limit { total: 3, per_pod: 2 };
    let mut w = World::new(cfg);
    for port in [1, 2, 3] {
        w.egress.frame(w.now, &syn_frame(POD, port), &mut w.sim);
    }
    assert_eq!(w.sim.socks.len(), 2);
    assert_eq!(w.egress.stats().count(Reason::TcpPodQuota), 1);
    assert!(is_rst_to(&w.sim.to_pod[0], POD, 3));
    w.egress.frame(w.now, &syn_frame(POD2, 1), &mut w.sim);
    w.egress.frame(w.now, &syn_frame(POD3, 1), &mut w.sim);
    assert_eq!(w.sim.socks.len(), 3);
    assert_eq!(w.egress.stats().count(Reason::TcpTableFull), 1);
    assert!(is_rst_to(&w.sim.to_pod[1], POD3, 1));
    assert_eq!(w.egress.held(), (3, 0, 0));
}

#[test]
fn a_deleted_pods_entries_are_freed() {
    let mut cfg = config();
    cfg.tcp = Limit { total: 3, per_pod: 2 };
    let mut w = World::new(cfg);
    let (_handle, id) = w.open(40_000, BUFFER);
    w.egress.frame(w.now, &syn_frame(POD, 2), &mut w.sim);
    w.egress.frame(w.now, &udp_frame(POD, 5353, REMOTE, 53, b"q"), &mut w.sim);
    w.egress.frame(w.now, &frame(&echo(POD, REMOTE, Icmpv4Message::EchoRequest, 9)), &mut w.sim);
    w.egress.frame(w.now, &syn_frame(POD2, 2), &mut w.sim);
    assert_eq!(w.egress.held(), (3, 1, 1));
    w.sim.to_pod.clear();
    w.egress.forget_pod(POD, &mut w.sim);
    assert_eq!(w.egress.held(), (1, 0, 0));
    assert_eq!(w.egress.tcp_state(id), None);
    assert_eq!(w.egress.stats().count(Reason::PodGone), 4);
    let mut closed = w.sim.closed();
    closed.sort_by_key(|c| *c as u8);
    assert_eq!(closed, [Close::Graceful, Close::Reset, Close::Reset]);
    // Nothing is sent to the gone pod, and its address starts afresh.
    w.egress.poll(w.now, &mut w.sim);
    assert!(w.sim.to_pod.is_empty());
    w.egress.frame(w.now, &syn_frame(POD, 7), &mut w.sim);
    w.egress.frame(w.now, &syn_frame(POD, 8), &mut w.sim);
    assert_eq!(w.egress.held(), (3, 0, 0));
}

#[test]
fn a_connect_that_never_completes_expires_with_a_rst() {
    let mut w = World::new(config());
    w.egress.frame(w.now, &syn_frame(POD, 1), &mut w.sim);
    let (id, _) = w.sim.only();
    w.now += Timeouts::default().tcp_syn - Duration::from_secs(1);
    w.egress.poll(w.now, &mut w.sim);
    assert!(w.egress.awaiting_connect(id));
    w.now += Duration::from_secs(2);
    w.egress.poll(w.now, &mut w.sim);
    assert_eq!(w.egress.tcp_state(id), None);
    assert!(is_rst_to(&w.sim.to_pod[0], POD, 1));
    assert_eq!(w.egress.stats().count(Reason::TcpExpired), 1);
}

#[test]
fn an_idle_connection_expires_with_a_rst_both_ways() {
    let mut w = World::new(config());
    let (handle, id) = w.open(40_000, BUFFER);
    let established = Timeouts::default().tcp_established;
    w.now += established - Duration::from_secs(5);
    w.egress.poll(w.now, &mut w.sim);
    assert_eq!(w.egress.tcp_state(id), Some(TcpState::Open));
    w.now += Duration::from_secs(10);
    w.egress.poll(w.now, &mut w.sim);
    assert_eq!(w.egress.tcp_state(id), Some(TcpState::Aborting));
    assert!(w.sim.to_pod.iter().any(|f| segment(f).rst()));
    w.settle();
    assert_eq!(w.egress.tcp_state(id), None);
    assert_eq!(w.sim.closed(), [Close::Reset]);
    assert_eq!(w.pod.tcp(handle).state(), tcp::State::Closed);
    assert_eq!(w.egress.stats().count(Reason::TcpExpired), 1);
}

#[test]
fn a_udp_flow_is_made_once_and_carries_replies_back() {
    let mut w = World::new(config());
    w.egress.frame(w.now, &udp_frame(POD, 5353, REMOTE, 53, b"one"), &mut w.sim);
    w.egress.frame(w.now, &udp_frame(POD, 5353, REMOTE, 53, b"two"), &mut w.sim);
    let (id, sock) = w.sim.only();
    assert!(sock.udp);
    assert_eq!(sock.to, Some((REMOTE, 53)));
    assert_eq!(sock.datagrams, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(w.egress.stats().udp_opened, 1);
    let tuple = Tuple { pod: POD, pod_port: 5353, remote: REMOTE, remote_port: 53 };
    assert_eq!(w.egress.udp_id(&tuple), Some(id));
    w.sim.sock(id).incoming_datagrams.push_back(Transfer::Moved(5));
    w.egress.ready(w.now, id, Readiness { readable: true, writable: false }, &mut w.sim);
    assert_eq!(w.sim.to_pod.len(), 1);
    let reply = &w.sim.to_pod[0];
    let ip = Ipv4Packet::new_checked(&reply[HEADERS..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (REMOTE, POD));
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port()), (53, 5353));
    assert!(udp.verify_checksum(&IpAddress::Ipv4(REMOTE), &IpAddress::Ipv4(POD)));
    assert_eq!(udp.payload(), [0, 1, 2, 3, 4]);
}

#[test]
fn a_refused_udp_port_is_a_port_unreachable_for_the_pod() {
    let mut w = World::new(config());
    w.egress.frame(w.now, &udp_frame(POD, 5353, REMOTE, 9999, b"x"), &mut w.sim);
    let (id, _) = w.sim.only();
    w.sim.sock(id).incoming_datagrams.push_back(Transfer::Refused);
    w.egress.ready(w.now, id, Readiness { readable: true, writable: false }, &mut w.sim);
    assert_eq!(w.sim.to_pod.len(), 1);
    let ip = Ipv4Packet::new_checked(&w.sim.to_pod[0][HEADERS..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr(), ip.next_header()), (REMOTE, POD, IpProtocol::Icmp));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.msg_code()), (Icmpv4Message::DstUnreachable, 3));
    // It quotes the pod's own datagram.
    let quoted = Ipv4Packet::new_checked(icmp.data()).unwrap();
    assert_eq!((quoted.src_addr(), quoted.dst_addr()), (POD, REMOTE));
    let ports = &icmp.data()[20..24];
    assert_eq!(ports, [0x14, 0xe9, 0x27, 0x0f]);
}

#[test]
fn an_idle_udp_flow_is_forgotten() {
    let mut w = World::new(config());
    w.egress.frame(w.now, &udp_frame(POD, 5353, REMOTE, 53, b"q"), &mut w.sim);
    let (id, _) = w.sim.only();
    let idle = Timeouts::default().udp;
    // A reply keeps it alive.
    w.now += idle - Duration::from_secs(2);
    w.sim.sock(id).incoming_datagrams.push_back(Transfer::Moved(1));
    w.egress.ready(w.now, id, Readiness { readable: true, writable: false }, &mut w.sim);
    w.now += Duration::from_secs(4);
    w.egress.poll(w.now, &mut w.sim);
    assert_eq!(w.egress.held(), (0, 1, 0));
    w.now += idle;
    w.egress.poll(w.now, &mut w.sim);
    assert_eq!(w.egress.held(), (0, 0, 0));
    assert_eq!(w.sim.closed(), [Close::Graceful]);
    assert_eq!(w.egress.stats().count(Reason::UdpExpired), 1);
}

#[test]
fn udp_flows_are_capped_per_pod_and_on_the_node() {
    let mut cfg = config();
    cfg.udp = Limit { total: 3, per_pod: 2 };
    let mut w = World::new(cfg);
    for port in [1, 2, 3] {
        w.egress.frame(w.now, &udp_frame(POD, port, REMOTE, 53, b"q"), &mut w.sim);
    }
    w.egress.frame(w.now, &udp_frame(POD2, 1, REMOTE, 53, b"q"), &mut w.sim);
    w.egress.frame(w.now, &udp_frame(POD3, 1, REMOTE, 53, b"q"), &mut w.sim);
    assert_eq!(w.egress.held(), (0, 3, 0));
    assert_eq!(w.egress.stats().count(Reason::UdpPodQuota), 1);
    assert_eq!(w.egress.stats().count(Reason::UdpTableFull), 1);
    w.sim.fail_sockets = true;
    w.egress.frame(w.now, &udp_frame(POD2, 9, REMOTE, 53, b"q"), &mut w.sim);
    assert_eq!(w.egress.stats().count(Reason::UdpTableFull), 2);
}

/// The echo reply `REMOTE` (or `from`) sends for a request sent with `ident`.
fn echo_reply(from: Ipv4Address, ident: u16) -> Vec<u8> {
    echo(from, Ipv4Address::new(192, 168, 77, 1), Icmpv4Message::EchoReply, ident)
}

#[test]
fn echo_identifiers_are_the_endpoints_own_and_replies_map_back() {
    let mut w = World::new(config());
    // Two pods ping the same destination with the same identifier.
    w.egress.frame(w.now, &frame(&echo(POD, REMOTE, Icmpv4Message::EchoRequest, 7)), &mut w.sim);
    w.egress.frame(w.now, &frame(&echo(POD2, REMOTE, Icmpv4Message::EchoRequest, 7)), &mut w.sim);
    w.egress.frame(w.now, &frame(&echo(POD, REMOTE, Icmpv4Message::EchoRequest, 7)), &mut w.sim);
    let ids: Vec<u16> = w
        .sim
        .echoes
        .iter()
        .map(|(to, m)| {
            assert_eq!(*to, REMOTE);
            let icmp = Icmpv4Packet::new_checked(&m[..]).unwrap();
            assert!(icmp.verify_checksum());
            icmp.echo_ident()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[2]);
    assert_eq!(w.egress.held(), (0, 0, 2));
    // Replies: one per pod, one from a stranger, one with an unknown id.
    w.sim.echo_replies.extend([
        echo_reply(REMOTE, ids[1]),
        echo_reply(REMOTE, ids[0]),
        echo_reply(Ipv4Address::new(192, 168, 77, 9), ids[0]),
        echo_reply(REMOTE, 0xbeef),
    ]);
    w.egress.echo_readable(&mut w.sim);
    let back: Vec<(Ipv4Address, u16)> = w
        .sim
        .to_pod
        .iter()
        .map(|f| {
            let ip = Ipv4Packet::new_checked(&f[HEADERS..]).unwrap();
            assert!(ip.verify_checksum());
            let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
            assert!(icmp.verify_checksum());
            assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
            (ip.dst_addr(), icmp.echo_ident())
        })
        .collect();
    assert_eq!(back, [(POD2, 7), (POD, 7)]);
}

#[test]
fn echo_identifiers_are_capped_and_expire() {
    let mut cfg = config();
    cfg.echo = Limit { total: 3, per_pod: 2 };
    let mut w = World::new(cfg);
    for ident in [1, 2, 3] {
        w.egress.frame(w.now, &frame(&echo(POD, REMOTE, Icmpv4Message::EchoRequest, ident)), &mut w.sim);
    }
    w.egress.frame(w.now, &frame(&echo(POD2, REMOTE, Icmpv4Message::EchoRequest, 1)), &mut w.sim);
    w.egress.frame(w.now, &frame(&echo(POD3, REMOTE, Icmpv4Message::EchoRequest, 1)), &mut w.sim);
    assert_eq!(w.sim.echoes.len(), 3);
    assert_eq!(w.egress.stats().count(Reason::EchoPodQuota), 1);
    assert_eq!(w.egress.stats().count(Reason::EchoTableFull), 1);
    w.now += Duration::from_secs(11);
    w.egress.poll(w.now, &mut w.sim);
    assert_eq!(w.egress.held(), (0, 0, 0));
    w.egress.frame(w.now, &frame(&echo(POD3, REMOTE, Icmpv4Message::EchoRequest, 1)), &mut w.sim);
    assert_eq!(w.sim.echoes.len(), 4);
}

#[test]
fn echo_is_refused_when_off_and_other_icmp_is_dropped() {
    let mut cfg = config();
    cfg.echo = Limit { total: 0, per_pod: 0 };
    let mut w = World::new(cfg);
    w.egress.frame(w.now, &frame(&echo(POD, REMOTE, Icmpv4Message::EchoRequest, 1)), &mut w.sim);
    w.egress.frame(w.now, &frame(&echo(POD, REMOTE, Icmpv4Message::EchoReply, 1)), &mut w.sim);
    assert!(w.sim.echoes.is_empty());
    assert_eq!(w.egress.stats().count(Reason::EchoDisabled), 1);
    assert_eq!(w.egress.stats().count(Reason::NotEchoRequest), 1);
}

#[test]
fn the_identifier_search_is_bounded_and_skips_zero() {
    let mut ids = ids::IdAllocator::new();
    // Everything taken: a refusal, not a spin.
    assert_eq!(ids.allocate(usize::MAX, |_| true), None);
    assert_eq!(ids.allocate(2, |id| id < 3), None);
    assert_eq!(ids.allocate(10, |id| id < 3), Some(3));
    assert_eq!(ids.allocate(10, |_| false), Some(4));
    let mut ids = ids::IdAllocator::new();
    assert_eq!(ids.allocate(65_535, |id| id != 65_535), Some(65_535));
    // Wraps past 0 to 1.
    assert_eq!(ids.allocate(2, |_| false), Some(1));
}

#[test]
fn bad_frames_are_counted_by_reason() {
    let mut w = World::new(config());
    w.egress.frame(w.now, &[0u8; 5], &mut w.sim);
    let mut arp = frame(&[0u8; 28]);
    arp[vnet::HEADER_LEN + 12..HEADERS].copy_from_slice(&[0x08, 0x06]);
    w.egress.frame(w.now, &arp, &mut w.sim);
    let mut fragment = udp_frame(POD, 1, REMOTE, 53, b"q");
    Ipv4Packet::new_unchecked(&mut fragment[HEADERS..]).set_more_frags(true);
    w.egress.frame(w.now, &fragment, &mut w.sim);
    w.egress.frame(w.now, &frame(&ipv4(POD, REMOTE, IpProtocol::Unknown(47), &[0; 8])), &mut w.sim);
    w.egress.frame(w.now, &frame(&ipv4(POD, REMOTE, IpProtocol::Udp, &[0; 3])), &mut w.sim);
    let stats = w.egress.stats();
    assert_eq!(stats.count(Reason::Malformed), 2);
    assert_eq!(stats.count(Reason::UnsupportedProtocol), 2);
    assert_eq!(stats.count(Reason::Fragment), 1);
    assert!(w.sim.socks.is_empty() && w.sim.to_pod.is_empty());
    assert_eq!(stats.nonzero().count(), 3);
}
