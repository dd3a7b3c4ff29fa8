//! Packet views that smoltcp's `wire` module does not have, plus re-exports of
//! the ones it does, so the rest of netstack names one module for formats.

pub mod tcp_flags;
pub mod vnet;
pub mod vxlan;

pub use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet,
};
