//! The overlay's encapsulation step: a frame the switch answered with
//! `Verdict::Encapsulate { peer }` becomes VXLAN datagrams, described as
//! [`Transmit`]s for the runtime's UDP socket (destination, `UDP_SEGMENT`
//! size, byte ranges of the buffers to gather). The runtime only makes the
//! system calls and reports how each went; what to send, what to hold
//! back and when to give up UDP GSO is decided here.
//!
//! - A plain frame is one datagram, its VXLAN header written into the
//!   frame's headroom; a partial checksum is completed first.
//! - A TSO super-frame is cut into MSS-sized segments
//!   ([`crate::offload::gso`]), each a whole VXLAN datagram, gathered into as
//!   few UDP GSO sends as the 64 KiB limit allows
//!   ([`crate::offload::vxlan_batch`]).
//! - When every segment of a super-frame is full-size, the tail that would
//!   make a small send of its own is held back (the *carry*) to lead the
//!   next send to the same peer with the same segment size: a stream of
//!   46-segment frames then needs ~1.05 sends per frame instead of 2.
//!   Nothing overtakes held datagrams: they are flushed before a datagram
//!   of another kind or peer, and by [`Encapsulator::flush`] at the end of
//!   each read burst.
//! - A refused GSO send is retried datagram by datagram; when the refusal
//!   says the kernel or route cannot do UDP GSO at all, every later send
//!   goes datagram by datagram too.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::offload::gso::{self, Segments, Work};
use crate::offload::vxlan_batch::{self, MAX_SEGMENTS, MAX_UDP_PAYLOAD, Piece};
use crate::wire::{ETHERNET_HEADER_LEN, Ipv4Address, MAX_IPV4_HEADER_LEN, MAX_TCP_HEADER_LEN, vnet, vxlan};

use super::DECAP_HEADROOM;

/// Most parts one transmit gathers: the carry, then a header and a
/// payload per datagram.
pub const MAX_PARTS: usize = 1 + 2 * MAX_SEGMENTS;

/// Longest header a segment repeats: VXLAN, Ethernet, and IPv4 and TCP with
/// options.
const MAX_SEGMENT_HEADER: usize =
    vxlan::HEADER_LEN + ETHERNET_HEADER_LEN + MAX_IPV4_HEADER_LEN + MAX_TCP_HEADER_LEN;

/// Which buffer a [`Part`] lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    /// Held-back datagrams, in the encapsulator.
    Carry,
    /// Segment headers, in the encapsulator.
    Headers,
    /// The frame buffer the caller passed (virtio-net header first).
    Frame,
}

/// A byte range of one buffer; a transmit sends its parts back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The buffer.
    pub buffer: Buffer,
    /// The bytes in it.
    pub range: Range<usize>,
}

/// One send on the overlay socket; its bytes are [`Plan::parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The peer's underlay address.
    pub to: Ipv4Address,
    /// `Some(size)`: a UDP GSO send the kernel cuts every `size` bytes (the
    /// last datagram may be shorter); `None`: the parts are one datagram.
    pub segment_len: Option<u16>,
    /// Datagrams in this send.
    pub datagrams: usize,
    /// Bytes in this send.
    pub len: usize,
    /// These datagrams were offered before, in a GSO send that was refused
    /// (a capture has seen them already).
    pub retry: bool,
}

/// Why a send failed, as the runtime classifies the socket's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No room in the socket buffer (`EAGAIN`, `ENOBUFS`): the datagrams
    /// are lost, as they would be one by one.
    Full,
    /// The kernel or the route's device cannot do UDP GSO (`EIO`,
    /// `ENOPROTOOPT`, `EOPNOTSUPP`).
    GsoRefused,
    /// Anything else.
    Other,
}

/// What [`Plan::sent`] decided after a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Nothing: go on with [`Plan::next`].
    None,
    /// A refused GSO send: its datagrams come again one by one.
    Retry,
    /// As `Retry`, and UDP GSO is off from now on.
    GsoOff,
}

/// Whole VXLAN datagrams held back for the next UDP GSO send to a peer.
#[derive(Debug, Clone)]
struct Carry {
    /// The datagrams, end to end, each `segment_len` long.
    bytes: Vec<u8>,
    count: usize,
    segment_len: usize,
    to: Ipv4Address,
}

impl Carry {
    fn hold(&mut self, headers: &[u8], frame: &[u8], pieces: &[Piece], segment_len: usize, to: Ipv4Address) {
        for piece in pieces {
            self.bytes.extend_from_slice(&headers[piece.header.clone()]);
            self.bytes.extend_from_slice(&frame[piece.payload.clone()]);
        }
        self.count += pieces.len();
        self.segment_len = segment_len;
        self.to = to;
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }
}

/// The encapsulation state that outlives a frame: buffers for segment
/// headers, the carry, and whether UDP GSO still works.
#[derive(Debug, Clone)]
pub struct Encapsulator {
    vni: u32,
    headers: Vec<u8>,
    pieces: Vec<Piece>,
    parts: Vec<Part>,
    carry: Carry,
    udp_gso: bool,
}

impl Encapsulator {
    /// An encapsulator for VNI `vni`, with every buffer allocated.
    pub fn new(vni: u32) -> Encapsulator {
        Encapsulator {
            vni,
            headers: vec![0u8; MAX_SEGMENTS * MAX_SEGMENT_HEADER],
            pieces: vec![Piece::default(); MAX_SEGMENTS],
            parts: Vec::with_capacity(MAX_PARTS),
            // Fewer datagrams than one send takes: under its limit.
            carry: Carry {
                bytes: Vec::with_capacity(MAX_UDP_PAYLOAD),
                count: 0,
                segment_len: 0,
                to: Ipv4Address::UNSPECIFIED,
            },
            udp_gso: true,
        }
    }

    /// False once a send said the kernel cannot do UDP GSO.
    pub fn udp_gso(&self) -> bool {
        self.udp_gso
    }

    /// Datagrams held back for the next send.
    pub fn held(&self) -> usize {
        self.carry.count
    }

    /// Plans the sends of `buf` to `peer`: a virtio-net header, then the
    /// Ethernet frame, as a TAP hands it over. The VXLAN header of a plain
    /// frame is written over the end of the virtio-net header, and a
    /// partial checksum is completed in place.
    pub fn encapsulate<'a>(&'a mut self, peer: Ipv4Address, buf: &'a mut [u8]) -> Plan<'a> {
        let offload =
            vnet::Header::new_checked(&buf[..]).map(|h| vnet::Repr::parse(&h)).unwrap_or(vnet::Repr::PLAIN);
        let vni = self.vni;
        let mut failed = false;
        let stage = match gso::work(&offload) {
            _ if buf.len() < vnet::HEADER_LEN => {
                failed = true;
                Stage::Done
            }
            Ok(Work::None) => Stage::Single,
            Ok(Work::Checksum) => match gso::complete_checksum(&mut buf[vnet::HEADER_LEN..], &offload) {
                Ok(()) => Stage::Single,
                Err(_) => {
                    failed = true;
                    Stage::Done
                }
            },
            Ok(Work::SegmentTcpV4) => Stage::Cut,
            Err(_) => {
                failed = true;
                Stage::Done
            }
        };
        if stage == Stage::Single {
            vxlan::Repr { vni }.emit(&mut vxlan::Packet::new_unchecked(&mut buf[DECAP_HEADROOM..]));
        }
        let buf = &*buf;
        let mut plan = Plan {
            enc: self,
            frame: buf,
            to: peer,
            stage,
            cut: None,
            flush_first: false,
            batch: None,
            errors: 0,
            frame_failed: failed,
        };
        match plan.stage {
            // Nothing overtakes held-back datagrams (they may be of the same flow).
            Stage::Single => plan.flush_first = plan.enc.carry.count > 0,
            Stage::Cut => match Segments::new(&buf[vnet::HEADER_LEN..], &offload) {
                Ok(segments) => {
                    let segment_len = vxlan::HEADER_LEN + segments.max_len();
                    let carry = &plan.enc.carry;
                    plan.flush_first =
                        carry.count > 0 && (carry.to != peer || carry.segment_len != segment_len);
                    let per_send = vxlan_batch::per_send(segment_len);
                    plan.cut = Some(Cut {
                        hold_tail: segments.all_full() && per_send > 1 && plan.enc.udp_gso,
                        segments,
                        segment_len,
                        per_send,
                    });
                }
                Err(_) => {
                    plan.frame_failed = true;
                    plan.stage = Stage::Done;
                }
            },
            Stage::Done => {}
        }
        plan
    }

    /// Plans the send of the held-back datagrams, if any: at the end of a
    /// burst, so that they never wait for traffic that may not come.
    pub fn flush(&mut self) -> Plan<'_> {
        let flush_first = self.carry.count > 0;
        Plan {
            enc: self,
            frame: &[],
            to: Ipv4Address::UNSPECIFIED,
            stage: Stage::Done,
            cut: None,
            flush_first,
            batch: None,
            errors: 0,
            frame_failed: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The frame is one datagram, `frame[DECAP_HEADROOM..]`.
    Single,
    /// The frame is cut into segments ([`Plan::cut`]).
    Cut,
    /// Nothing left of the frame.
    Done,
}

/// A super-frame being cut.
#[derive(Debug, Clone)]
struct Cut<'a> {
    segments: Segments<'a>,
    segment_len: usize,
    per_send: usize,
    /// Every segment is full-size and UDP GSO works: a tail smaller than
    /// a send is held.
    hold_tail: bool,
}

/// The datagrams of one send: `carry` from the carry, then `pieces` of the
/// encapsulator's pieces, or the frame's single datagram.
#[derive(Debug, Clone, Copy)]
struct Batch {
    to: Ipv4Address,
    segment_len: usize,
    carry: usize,
    pieces: usize,
    single: bool,
    /// Its failure is the carry's, not the frame's.
    flush_only: bool,
    /// A gathered send was offered (and not refused).
    offered: bool,
    /// Next datagram to send alone, once sending one by one.
    alone: Option<usize>,
    /// A gathered send of these datagrams was refused.
    retry: bool,
}

impl Batch {
    fn count(&self) -> usize {
        self.carry + self.pieces + usize::from(self.single)
    }
}

/// The sends of one frame (or of a flush), produced one at a time: call
/// [`Plan::next`], send [`Plan::parts`] gathered, report with
/// [`Plan::sent`], until `next` says `None`; then count [`Plan::errors`].
#[derive(Debug)]
pub struct Plan<'a> {
    enc: &'a mut Encapsulator,
    frame: &'a [u8],
    to: Ipv4Address,
    stage: Stage,
    cut: Option<Cut<'a>>,
    /// Held-back datagrams go first, in a send of their own.
    flush_first: bool,
    batch: Option<Batch>,
    /// Failures already counted: a carry flush of its own is one.
    errors: u32,
    frame_failed: bool,
}

impl Plan<'_> {
    /// The next send, or `None` when the frame is sent or held.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Transmit> {
        loop {
            if let Some(tx) = self.next_of_batch() {
                return Some(tx);
            }
            if self.flush_first {
                self.flush_first = false;
                let carry = &self.enc.carry;
                self.batch = Some(Batch {
                    to: carry.to,
                    segment_len: carry.segment_len,
                    carry: carry.count,
                    pieces: 0,
                    single: false,
                    flush_only: true,
                    offered: false,
                    alone: None,
                    retry: false,
                });
                continue;
            }
            match self.stage {
                Stage::Done => return None,
                Stage::Single => {
                    self.stage = Stage::Done;
                    let len = self.frame.len() - DECAP_HEADROOM;
                    self.batch = Some(Batch {
                        to: self.to,
                        segment_len: len,
                        carry: 0,
                        pieces: 0,
                        single: true,
                        flush_only: false,
                        offered: false,
                        alone: None,
                        retry: false,
                    });
                }
                Stage::Cut => self.next_cut(),
            }
        }
    }

    /// Takes the next batch of segments, or holds the frame's tail.
    fn next_cut(&mut self) {
        let Some(cut) = self.cut.as_mut() else {
            self.stage = Stage::Done;
            return;
        };
        let enc = &mut *self.enc;
        let held = enc.carry.count;
        let room = cut.per_send - held;
        let remaining = cut.segments.remaining();
        if remaining == 0 {
            self.stage = Stage::Done;
            return;
        }
        let take = remaining.min(room).min(enc.pieces.len());
        let batch = match vxlan_batch::next_batch(
            &mut cut.segments,
            enc.vni,
            &mut enc.headers,
            &mut enc.pieces[..take],
        ) {
            Some(Ok(batch)) => batch,
            Some(Err(_)) => {
                self.frame_failed = true;
                self.stage = Stage::Done;
                return;
            }
            None => {
                self.stage = Stage::Done;
                return;
            }
        };
        if cut.hold_tail && remaining < room {
            // The frame's last datagrams, all full-size: held for the next send.
            let frame = &self.frame[vnet::HEADER_LEN..];
            enc.carry.hold(&enc.headers, frame, &enc.pieces[..batch.count], cut.segment_len, self.to);
            self.stage = Stage::Done;
            return;
        }
        self.batch = Some(Batch {
            to: self.to,
            segment_len: cut.segment_len,
            carry: held,
            pieces: batch.count,
            single: false,
            flush_only: false,
            offered: false,
            alone: None,
            retry: false,
        });
    }

    /// The current batch's next send; `None` (and the batch retired) when
    /// it is done.
    fn next_of_batch(&mut self) -> Option<Transmit> {
        let batch = self.batch.as_mut()?;
        let count = batch.count();
        let gathered_len = u16::try_from(batch.segment_len).ok().filter(|_| count > 1);
        match batch.alone {
            None if !batch.offered && self.enc.udp_gso && gathered_len.is_some() => {
                batch.offered = true;
                let batch = *batch;
                self.fill_parts(&batch, 0..count);
                return Some(self.transmit(&batch, gathered_len));
            }
            None if !batch.offered => batch.alone = Some(0),
            _ => {}
        }
        match batch.alone {
            Some(i) if i < count => {
                batch.alone = Some(i + 1);
                let batch = *batch;
                self.fill_parts(&batch, i..i + 1);
                Some(self.transmit(&batch, None))
            }
            _ => {
                let batch = self.batch.take()?;
                if batch.carry > 0 {
                    self.enc.carry.clear();
                }
                None
            }
        }
    }

    fn transmit(&self, batch: &Batch, segment_len: Option<u16>) -> Transmit {
        let len = self.enc.parts.iter().map(|p| p.range.len()).sum();
        let datagrams = match segment_len {
            Some(size) => usize::div_ceil(len, usize::from(size).max(1)),
            None => 1,
        };
        Transmit { to: batch.to, segment_len, datagrams, len, retry: batch.retry }
    }

    /// Describes datagrams `which` of `batch` in the parts list.
    fn fill_parts(&mut self, batch: &Batch, which: Range<usize>) {
        let parts = &mut self.enc.parts;
        parts.clear();
        let seg = batch.segment_len;
        let in_carry = which.start.min(batch.carry)..which.end.min(batch.carry);
        if !in_carry.is_empty() {
            let end = (in_carry.end * seg).min(self.enc.carry.bytes.len());
            parts.push(Part { buffer: Buffer::Carry, range: in_carry.start * seg..end });
        }
        if batch.single {
            parts.push(Part { buffer: Buffer::Frame, range: DECAP_HEADROOM..self.frame.len() });
            return;
        }
        let pieces = which.start.max(batch.carry) - batch.carry..which.end.max(batch.carry) - batch.carry;
        for piece in &self.enc.pieces[pieces] {
            parts.push(Part { buffer: Buffer::Headers, range: piece.header.clone() });
            let payload = piece.payload.start + vnet::HEADER_LEN..piece.payload.end + vnet::HEADER_LEN;
            parts.push(Part { buffer: Buffer::Frame, range: payload });
        }
    }

    /// The parts of the send [`Plan::next`] returned last, to be sent back
    /// to back (their bytes are [`Plan::bytes`]).
    pub fn parts(&self) -> &[Part] {
        &self.enc.parts
    }

    /// The bytes of `part`.
    pub fn bytes(&self, part: &Part) -> &[u8] {
        let buffer = match part.buffer {
            Buffer::Carry => &self.enc.carry.bytes[..],
            Buffer::Headers => &self.enc.headers[..],
            Buffer::Frame => self.frame,
        };
        &buffer[part.range.clone()]
    }

    /// Reports how the send [`Plan::next`] returned last went, and says
    /// what happens next. Not calling it counts as success.
    pub fn sent(&mut self, result: Result<(), SendError>) -> Fallback {
        let Some(batch) = self.batch.as_mut() else { return Fallback::None };
        let Err(error) = result else { return Fallback::None };
        if batch.offered && batch.alone.is_none() {
            match error {
                SendError::Full => {}
                SendError::GsoRefused | SendError::Other => {
                    batch.alone = Some(0);
                    batch.retry = true;
                    if error == SendError::GsoRefused {
                        self.enc.udp_gso = false;
                        return Fallback::GsoOff;
                    }
                    return Fallback::Retry;
                }
            }
        }
        if batch.flush_only {
            self.errors = 1;
        } else {
            self.frame_failed = true;
        }
        Fallback::None
    }

    /// Failed sends to count: one for the frame if any of its datagrams
    /// was lost or it could not be encapsulated, one for a failed flush of
    /// held-back datagrams that were not the frame's.
    pub fn errors(&self) -> u32 {
        self.errors + u32::from(self.frame_failed)
    }
}
