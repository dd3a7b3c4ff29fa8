//! Frames from pods and kernel-socket events into the egress table
//! (`netstack::egress::Egress`), with simulated kernel sockets.
//!
//! Input: records `[op][arg][len u16 LE][bytes]`. `op % 8` picks: 0 a frame
//! from a pod (`bytes` as the IPv4 packet behind plain virtio-net and
//! Ethernet headers; `arg` bit 0: `bytes` is the whole frame instead; the
//! source address is set to 10.244.0.((arg >> 1) % 4 + 2), as the switch's
//! anti-spoofing would have it), 1 a
//! connect outcome (entry `arg`, success when `bytes` is empty), 2 a
//! readiness event (entry `arg`, `bytes[0]` bits: readable, writable), 3 the
//! destination of entry `arg` sends `bytes` (`bytes` empty: EOF; `arg` bit 7:
//! an error instead, ECONNREFUSED when bit 6), 4 the kernel's send room of
//! entry `arg` becomes `len`, 5 an echo reply `bytes` on the raw socket,
//! 6 the pod `10.244.0.(arg % 4 + 2)` is deleted, 7 the clock moves by `arg`
//! seconds (`arg` 0: 10 ms) and the table polls. Every record ends with a
//! poll. Checks: nothing panics; the table calls only open sockets and
//! closes each once; what it holds stays within its caps; every frame toward
//! a pod is an IPv4 packet to a pod address, behind the headers.
#![no_main]

use std::collections::{BTreeMap, VecDeque};

use libfuzzer_sys::fuzz_target;
use netstack::egress::{
    Close, ConnectFailed, Egress, EgressConfig, EntryId, HEADERS, Io, Limit, Readiness, SocketFailed,
    Transfer,
};
use netstack::service::Timeouts;
use netstack::testing::{ethernet, mac, with_vnet};
use netstack::wire::{EthernetAddress, Ipv4Address, Ipv4Packet, vnet};
use netstack::{Duration, Instant};

const TCP: Limit = Limit { total: 6, per_pod: 3 };
const UDP: Limit = Limit { total: 6, per_pod: 3 };
const ECHO: Limit = Limit { total: 6, per_pod: 3 };

#[derive(Default)]
struct Sock {
    udp: bool,
    incoming: VecDeque<u8>,
    datagrams: VecDeque<Transfer>,
    eof: bool,
    error: Option<Transfer>,
    room: usize,
    shut_wr: bool,
}

#[derive(Default)]
struct Sim {
    socks: BTreeMap<EntryId, Sock>,
    /// Ids in the order they were opened, for records to pick from.
    ids: Vec<EntryId>,
    replies: VecDeque<Vec<u8>>,
}

impl Sim {
    fn open(&mut self, id: EntryId, udp: bool) -> Result<(), SocketFailed> {
        assert!(!self.socks.contains_key(&id), "id {id:?} given twice while open");
        self.socks.insert(id, Sock { udp, room: 4096, ..Sock::default() });
        self.ids.push(id);
        Ok(())
    }

    fn pick(&self, n: u8) -> Option<EntryId> {
        (!self.ids.is_empty()).then(|| self.ids[usize::from(n) % self.ids.len()])
    }

    fn sock(&mut self, id: EntryId) -> &mut Sock {
        self.socks.get_mut(&id).unwrap_or_else(|| panic!("{id:?} is not open"))
    }
}

impl Io for Sim {
    fn to_pod(&mut self, frame: &[u8]) {
        assert!(frame.len() > HEADERS, "a frame of {} bytes", frame.len());
        let ip = Ipv4Packet::new_checked(&frame[HEADERS..]).expect("an IPv4 packet toward the pod");
        let [a, b, ..] = ip.dst_addr().octets();
        assert_eq!((a, b), (10, 244), "toward {}", ip.dst_addr());
    }
    fn connect(&mut self, id: EntryId, _to: Ipv4Address, _port: u16) -> Result<(), SocketFailed> {
        self.open(id, false)
    }
    fn udp_open(&mut self, id: EntryId, _to: Ipv4Address, _port: u16) -> Result<(), SocketFailed> {
        self.open(id, true)
    }
    fn write(&mut self, id: EntryId, data: &[u8]) -> Transfer {
        let sock = self.sock(id);
        assert!(!sock.shut_wr, "write after shutdown");
        if sock.udp {
            return Transfer::Moved(data.len());
        }
        if sock.room == 0 {
            return Transfer::WouldBlock;
        }
        let n = data.len().min(sock.room);
        sock.room -= n;
        Transfer::Moved(n)
    }
    fn read(&mut self, id: EntryId, buf: &mut [u8]) -> Transfer {
        let sock = self.sock(id);
        if sock.udp {
            return sock.datagrams.pop_front().unwrap_or(Transfer::WouldBlock);
        }
        if let Some(error) = sock.error {
            return error;
        }
        if sock.incoming.is_empty() {
            return if sock.eof { Transfer::Moved(0) } else { Transfer::WouldBlock };
        }
        let n = buf.len().min(sock.incoming.len());
        for b in &mut buf[..n] {
            *b = sock.incoming.pop_front().unwrap();
        }
        Transfer::Moved(n)
    }
    fn shutdown_write(&mut self, id: EntryId) {
        self.sock(id).shut_wr = true;
    }
    fn close(&mut self, id: EntryId, _how: Close) {
        assert!(self.socks.remove(&id).is_some(), "{id:?} closed twice or never opened");
        self.ids.retain(|i| *i != id);
    }
    fn echo_send(&mut self, _to: Ipv4Address, message: &[u8]) {
        assert!(message.len() >= 8);
    }
    fn echo_read(&mut self, buf: &mut [u8]) -> Transfer {
        match self.replies.pop_front() {
            Some(packet) => {
                let n = packet.len().min(buf.len());
                buf[..n].copy_from_slice(&packet[..n]);
                Transfer::Moved(n)
            }
            None => Transfer::WouldBlock,
        }
    }
}

fn frame(packet: &[u8]) -> Vec<u8> {
    let unset = EthernetAddress([0; 6]);
    with_vnet(&vnet::Repr::PLAIN, &ethernet(unset, unset, packet))
}

fuzz_target!(|data: &[u8]| {
    let config = EgressConfig {
        mac: mac(1),
        tcp: TCP,
        udp: UDP,
        echo: ECHO,
        tcp_buffer: 2048,
        timeouts: Timeouts::default(),
        echo_idle: Duration::from_secs(10),
    };
    let mut now = Instant::ZERO;
    let mut egress = Egress::new(config, now);
    let mut sim = Sim::default();
    let mut rest = data;
    while rest.len() >= 4 {
        let (op, arg) = (rest[0], rest[1]);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        let bytes = &rest[4..(4 + len).min(rest.len())];
        rest = &rest[(4 + len).min(rest.len())..];
        match op % 8 {
            0 => {
                let mut frame = if arg & 1 == 1 { bytes.to_vec() } else { frame(bytes) };
                // From a pod, as the switch's anti-spoofing guarantees.
                if let Some(src) = frame.get_mut(HEADERS + 12..HEADERS + 16) {
                    src.copy_from_slice(&[10, 244, 0, (arg >> 1) % 4 + 2]);
                }
                egress.frame(now, &frame, &mut sim);
            }
            1 => {
                if let Some(id) = sim.pick(arg)
                    && egress.awaiting_connect(id)
                {
                    let outcome = if bytes.is_empty() { Ok(()) } else { Err(ConnectFailed) };
                    egress.connected(now, id, outcome, &mut sim);
                }
            }
            2 => {
                if let Some(id) = sim.pick(arg) {
                    let bits = bytes.first().copied().unwrap_or(3);
                    let ready = Readiness { readable: bits & 1 != 0, writable: bits & 2 != 0 };
                    egress.ready(now, id, ready, &mut sim);
                }
            }
            3 => {
                if let Some(id) = sim.pick(arg) {
                    let sock = sim.sock(id);
                    match (arg & 0x80 != 0, arg & 0x40 != 0) {
                        (true, true) if sock.udp => sock.datagrams.push_back(Transfer::Refused),
                        (true, true) => sock.error = Some(Transfer::Refused),
                        (true, false) if sock.udp => sock.datagrams.push_back(Transfer::Failed),
                        (true, false) => sock.error = Some(Transfer::Failed),
                        _ if sock.udp => sock.datagrams.push_back(Transfer::Moved(bytes.len())),
                        _ if bytes.is_empty() => sock.eof = true,
                        _ => sock.incoming.extend(bytes),
                    }
                }
            }
            4 => {
                if let Some(id) = sim.pick(arg) {
                    sim.sock(id).room = len;
                }
            }
            5 => {
                sim.replies.push_back(bytes.to_vec());
                egress.echo_readable(&mut sim);
            }
            6 => egress.forget_pod(Ipv4Address::new(10, 244, 0, arg % 4 + 2), &mut sim),
            _ => {
                now += if arg == 0 { Duration::from_millis(10) } else { Duration::from_secs(u64::from(arg)) };
            }
        }
        egress.poll(now, &mut sim);
        let (tcp, udp, echo) = egress.held();
        assert!(tcp <= TCP.total && udp <= UDP.total && echo <= ECHO.total, "{tcp} {udp} {echo}");
        assert_eq!(tcp + udp, sim.socks.len(), "every entry holds exactly one open socket");
    }
});
