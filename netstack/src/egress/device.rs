//! smoltcp's device for the egress endpoint: IP packets in (a SYN kept for
//! later, or the packet of the frame being handled, in place), frames out
//! through [`Io::to_pod`].

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium};

use super::frames::{HEADERS, frame_headers};
use super::io::Io;
use crate::Instant;
use crate::wire::EthernetAddress;

/// What smoltcp is told about the link.
pub(super) fn capabilities() -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ip;
    // Super-frames from pods arrive whole.
    caps.max_transmission_unit = 65_535;
    // Compute checksums on the way out; trust the virtual link on the way
    // in (partial NEEDS_CSUM sums are not verifiable anyway).
    caps.checksum.ipv4 = Checksum::Tx;
    caps.checksum.tcp = Checksum::Tx;
    caps.checksum.udp = Checksum::Tx;
    caps.checksum.icmpv4 = Checksum::Tx;
    caps
}

/// A device with nothing to send or receive, for `Interface::new`.
pub(super) struct Idle;

impl Device for Idle {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = Discard;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, Discard)> {
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<Discard> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities()
    }
}

/// Never handed out ([`Idle`] transmits nothing).
pub(super) struct Discard;

impl smoltcp::phy::TxToken for Discard {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        f(&mut alloc::vec![0; len])
    }
}

/// The device for one poll: borrows the table's queues and the caller's Io.
pub(super) struct Pipe<'a, I: Io + ?Sized> {
    /// Packets kept for later (a SYN held while its connection was made),
    /// handed over before `current`.
    pub kept: &'a mut VecDeque<Vec<u8>>,
    /// The IP packet of the frame being handled, taken in place.
    pub current: Option<&'a [u8]>,
    /// Where outgoing frames are built.
    pub tx: &'a mut Vec<u8>,
    pub io: &'a mut I,
    pub mac: EthernetAddress,
}

/// A packet for smoltcp: one kept for later, or one in the caller's frame.
pub(super) enum RxToken<'a> {
    Kept(Vec<u8>),
    InPlace(&'a [u8]),
}

impl smoltcp::phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            RxToken::Kept(packet) => f(&packet),
            RxToken::InPlace(packet) => f(packet),
        }
    }
}

pub(super) struct TxToken<'a, I: Io + ?Sized> {
    tx: &'a mut Vec<u8>,
    io: &'a mut I,
    mac: EthernetAddress,
}

impl<I: Io + ?Sized> smoltcp::phy::TxToken for TxToken<'_, I> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.tx.clear();
        self.tx.resize(HEADERS + len, 0);
        let result = f(&mut self.tx[HEADERS..]);
        frame_headers(self.tx, self.mac);
        // A full socketpair drops the segment; TCP retransmits it.
        self.io.to_pod(self.tx);
        result
    }
}

impl<'a, I: Io + ?Sized> Device for Pipe<'a, I> {
    type RxToken<'b>
        = RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b, I>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_, I>)> {
        let rx = match self.kept.pop_front() {
            Some(packet) => RxToken::Kept(packet),
            None => RxToken::InPlace(self.current.take()?),
        };
        Some((rx, TxToken { tx: self.tx, io: self.io, mac: self.mac }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_, I>> {
        Some(TxToken { tx: self.tx, io: self.io, mac: self.mac })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities()
    }
}
