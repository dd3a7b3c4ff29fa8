//! Frames as pod kernels and peers send them, built with smoltcp's emitters:
//! TCP and UDP over IPv4 in Ethernet ([`Tcp`], [`Udp`]), ARP requests, and
//! the virtio-net header in front ([`with_vnet`]). Fields not named keep the
//! defaults of [`Tcp::new`] and [`Udp::new`].

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    TcpTimestampRepr, UdpPacket, UdpRepr, checksum,
};

use super::addr::Endpoint;
use crate::mac;
use crate::wire::vnet::{self, Gso};
use crate::wire::{ETHERNET_HEADER_LEN, TCP_CHECKSUM_AT, UDP_CHECKSUM_AT, tcp_flags};

/// How a frame's L4 checksum is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Complete, as on the wire.
    Full,
    /// The pseudo-header sum only, as a kernel leaves it for offload
    /// (`NEEDS_CSUM`).
    Partial,
}

/// A TCP segment over IPv4 in an Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct Tcp<'a> {
    /// Ethernet source.
    pub eth_src: EthernetAddress,
    /// Ethernet destination.
    pub eth_dst: EthernetAddress,
    /// IPv4 source and TCP source port.
    pub src: Endpoint,
    /// IPv4 destination and TCP destination port.
    pub dst: Endpoint,
    /// SYN, FIN, RST, PSH or none.
    pub control: TcpControl,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (sets ACK).
    pub ack: Option<u32>,
    /// Window.
    pub window: u16,
    /// Timestamp option (tsval, tsecr).
    pub timestamp: Option<(u32, u32)>,
    /// Flag bits set on top of `control` and `ack` (PSH, FIN, CWR, ECE …).
    pub flags: u8,
    /// IPv4 TTL.
    pub hop_limit: u8,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv4 don't-fragment bit.
    pub dont_frag: bool,
    /// The TCP checksum.
    pub checksum: Checksum,
    /// TCP payload.
    pub payload: &'a [u8],
}

impl<'a> Tcp<'a> {
    /// An ACK segment from `src` to `dst` carrying `payload`, sequence 1000,
    /// ack 1, window 64000, TTL 64, a full checksum, between the MACs of
    /// the two addresses.
    pub fn new(src: Endpoint, dst: Endpoint, payload: &'a [u8]) -> Tcp<'a> {
        Tcp {
            eth_src: mac::of_ip(src.0),
            eth_dst: mac::of_ip(dst.0),
            src,
            dst,
            control: TcpControl::None,
            seq: 1000,
            ack: Some(1),
            window: 64_000,
            timestamp: None,
            flags: 0,
            hop_limit: 64,
            ident: 0,
            dont_frag: false,
            checksum: Checksum::Full,
            payload,
        }
    }

    /// The Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: self.src.1,
            dst_port: self.dst.1,
            control: self.control,
            seq_number: TcpSeqNumber(self.seq as i32),
            ack_number: self.ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: self.window,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: self.timestamp.map(|(tsval, tsecr)| TcpTimestampRepr { tsval, tsecr }),
            payload: self.payload,
        };
        let mut buf = ipv4(self.eth_src, self.eth_dst, self.ip(IpProtocol::Tcp, tcp.buffer_len()));
        let at = ip_payload_at(&buf);
        let (src, dst) = (IpAddress::Ipv4(self.src.0), IpAddress::Ipv4(self.dst.0));
        let mut segment = TcpPacket::new_unchecked(&mut buf[at..]);
        tcp.emit(&mut segment, &src, &dst, &ChecksumCapabilities::ignored());
        tcp_flags::set(&mut buf[at..], self.flags);
        let mut segment = TcpPacket::new_unchecked(&mut buf[at..]);
        match self.checksum {
            Checksum::Full => segment.fill_checksum(&src, &dst),
            Checksum::Partial => segment.set_checksum(checksum::pseudo_header_v4(
                &self.src.0,
                &self.dst.0,
                IpProtocol::Tcp,
                tcp.buffer_len() as u32,
            )),
        }
        buf
    }

    /// The frame behind a plain virtio-net header, as a switch port takes it.
    pub fn vnet(&self) -> Vec<u8> {
        with_vnet(&vnet::Repr::PLAIN, &self.frame())
    }

    /// The frame as a TSO super-frame of `mss`-byte segments, and the
    /// virtio-net header that says so (a pod kernel's partial checksum
    /// unless `checksum` says otherwise).
    pub fn tso(&self, mss: u16) -> (Vec<u8>, vnet::Repr) {
        let frame = self.frame();
        let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]);
        let tcp_at = ETHERNET_HEADER_LEN + usize::from(ip.header_len());
        let headers = tcp_at + usize::from(TcpPacket::new_unchecked(&frame[tcp_at..]).header_len());
        let offload = vnet::Repr {
            flags: vnet::FLAG_NEEDS_CSUM,
            gso: Gso::TcpV4,
            ecn: false,
            hdr_len: headers as u16,
            gso_size: mss,
            csum_start: tcp_at as u16,
            csum_offset: TCP_CHECKSUM_AT as u16,
        };
        (frame, offload)
    }

    fn ip(&self, next_header: IpProtocol, payload_len: usize) -> Ip {
        Ip {
            repr: Ipv4Repr {
                src_addr: self.src.0,
                dst_addr: self.dst.0,
                next_header,
                payload_len,
                hop_limit: self.hop_limit,
            },
            ident: self.ident,
            dont_frag: self.dont_frag,
        }
    }
}

/// A UDP datagram over IPv4 in an Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct Udp<'a> {
    /// Ethernet source.
    pub eth_src: EthernetAddress,
    /// Ethernet destination.
    pub eth_dst: EthernetAddress,
    /// IPv4 source and UDP source port.
    pub src: Endpoint,
    /// IPv4 destination and UDP destination port.
    pub dst: Endpoint,
    /// IPv4 TTL.
    pub hop_limit: u8,
    /// The UDP checksum.
    pub checksum: Checksum,
    /// UDP payload.
    pub payload: &'a [u8],
}

impl<'a> Udp<'a> {
    /// A datagram from `src` to `dst` carrying `payload`, TTL 64, a full
    /// checksum, between the MACs of the two addresses.
    pub fn new(src: Endpoint, dst: Endpoint, payload: &'a [u8]) -> Udp<'a> {
        Udp {
            eth_src: mac::of_ip(src.0),
            eth_dst: mac::of_ip(dst.0),
            src,
            dst,
            hop_limit: 64,
            checksum: Checksum::Full,
            payload,
        }
    }

    /// The Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let udp = UdpRepr { src_port: self.src.1, dst_port: self.dst.1 };
        let len = udp.header_len() + self.payload.len();
        let ip = Ipv4Repr {
            src_addr: self.src.0,
            dst_addr: self.dst.0,
            next_header: IpProtocol::Udp,
            payload_len: len,
            hop_limit: self.hop_limit,
        };
        let mut buf = ipv4(self.eth_src, self.eth_dst, Ip { repr: ip, ident: 0, dont_frag: false });
        let at = ip_payload_at(&buf);
        let (src, dst) = (IpAddress::Ipv4(self.src.0), IpAddress::Ipv4(self.dst.0));
        let caps = match self.checksum {
            Checksum::Full => ChecksumCapabilities::default(),
            Checksum::Partial => ChecksumCapabilities::ignored(),
        };
        let mut datagram = UdpPacket::new_unchecked(&mut buf[at..]);
        let payload = self.payload;
        udp.emit(&mut datagram, &src, &dst, payload.len(), |p| p.copy_from_slice(payload), &caps);
        if self.checksum == Checksum::Partial {
            datagram.set_checksum(checksum::pseudo_header_v4(
                &self.src.0,
                &self.dst.0,
                IpProtocol::Udp,
                len as u32,
            ));
        }
        buf
    }

    /// The frame behind a plain virtio-net header, as a switch port takes it.
    pub fn vnet(&self) -> Vec<u8> {
        with_vnet(&vnet::Repr::PLAIN, &self.frame())
    }

    /// The virtio-net header of this frame with a partial checksum.
    pub fn partial_header(&self) -> vnet::Repr {
        vnet::Repr {
            flags: vnet::FLAG_NEEDS_CSUM,
            csum_start: (ETHERNET_HEADER_LEN + crate::wire::IPV4_HEADER_LEN) as u16,
            csum_offset: UDP_CHECKSUM_AT as u16,
            ..vnet::Repr::PLAIN
        }
    }
}

/// An IPv4 header as [`ipv4`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct Ip {
    /// What smoltcp emits.
    pub repr: Ipv4Repr,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment bit.
    pub dont_frag: bool,
}

impl From<Ipv4Repr> for Ip {
    fn from(repr: Ipv4Repr) -> Ip {
        Ip { repr, ident: 0, dont_frag: false }
    }
}

/// An Ethernet frame carrying the IPv4 header `ip` (with its checksum) and
/// `ip.repr.payload_len` zero bytes of payload for the caller to fill.
pub fn ipv4(eth_src: EthernetAddress, eth_dst: EthernetAddress, ip: impl Into<Ip>) -> Vec<u8> {
    let ip = ip.into();
    let eth = EthernetRepr { src_addr: eth_src, dst_addr: eth_dst, ethertype: EthernetProtocol::Ipv4 };
    let mut buf = vec![0u8; eth.buffer_len() + ip.repr.buffer_len() + ip.repr.payload_len];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.repr.emit(&mut packet, &ChecksumCapabilities::ignored());
    packet.set_ident(ip.ident);
    packet.set_dont_frag(ip.dont_frag);
    packet.fill_checksum();
    buf
}

fn ip_payload_at(frame: &[u8]) -> usize {
    ETHERNET_HEADER_LEN + usize::from(Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]).header_len())
}

/// An ARP request as a pod kernel sends it, behind a plain virtio-net header.
pub fn arp_request(src_mac: EthernetAddress, src_ip: Ipv4Address, target: Ipv4Address) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: src_mac,
        source_protocol_addr: src_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut view);
    arp.emit(&mut ArpPacket::new_unchecked(view.payload_mut()));
    with_vnet(&vnet::Repr::PLAIN, &frame)
}

/// `frame` behind a virtio-net header saying `offload`.
pub fn with_vnet(offload: &vnet::Repr, frame: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; vnet::HEADER_LEN];
    offload.emit(&mut vnet::Header::new_checked(&mut buf[..]).expect("room for the header"));
    buf.extend_from_slice(frame);
    buf
}

/// The segments `Segments` cuts a TSO super-frame into, complete frames.
pub fn cut(frame: &[u8], offload: &vnet::Repr) -> Vec<Vec<u8>> {
    let mut segments = crate::offload::gso::Segments::new(frame, offload).expect("a super-frame to cut");
    let count = segments.count();
    let mut out = vec![0u8; segments.max_len()];
    let mut all = Vec::new();
    while let Some(len) = segments.next_into(&mut out) {
        all.push(out[..len.expect("room for a segment")].to_vec());
    }
    assert_eq!(all.len(), count, "count() predicted the segments");
    all
}

/// Recomputes the IPv4 header checksum of an Ethernet frame after a test
/// changed a header field.
pub fn refill_ipv4_checksum(frame: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]).fill_checksum();
}

/// A TSO super-frame from pod 10.244.0.2:40000 to pod 10.244.1.2:5201
/// between the two nodes' VTEP MACs, as the overlay sends it: PSH and ACK
/// 0, IPv4 id 100 with DF, a partial checksum, `mss`-byte segments.
pub fn overlay_tso(data: &[u8], mss: u16, seq: u32) -> (Vec<u8>, vnet::Repr) {
    use super::addr::{pod_ip, subnet};
    Tcp {
        eth_src: mac::vtep(subnet(1)),
        eth_dst: mac::vtep(subnet(0)),
        seq,
        ack: Some(0),
        window: 500,
        flags: tcp_flags::PSH,
        ident: 100,
        dont_frag: true,
        checksum: Checksum::Partial,
        ..Tcp::new((pod_ip(0, 2), 40000), (pod_ip(1, 2), 5201), data)
    }
    .tso(mss)
}

/// The IPv4 `packet` in an Ethernet frame from `src` to `dst`.
pub fn ethernet(src: EthernetAddress, dst: EthernetAddress, packet: &[u8]) -> Vec<u8> {
    let eth = EthernetRepr { src_addr: src, dst_addr: dst, ethertype: EthernetProtocol::Ipv4 };
    let mut frame = vec![0u8; eth.buffer_len() + packet.len()];
    let mut view = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.emit(&mut view);
    view.payload_mut().copy_from_slice(packet);
    frame
}
