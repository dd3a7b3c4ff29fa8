//! Delivery of what the overlay forwards to pods, through the receive
//! coalescer ([`crate::offload::gro`]): consecutive TCP segments of a flow
//! reach the pod's TAP as one super-frame. [`Coalescer`] keeps at most one
//! pending super-frame and the port it goes to, and tells the runtime when
//! to write what; the runtime writes and nothing else.

use alloc::boxed::Box;

use crate::offload::gro::{self, Gro};
use crate::switch::PortId;
use crate::wire::vnet;

/// What the caller does after [`Coalescer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The frame is held in the pending super-frame: nothing to write yet.
    Held,
    /// Write the pending super-frame ([`Coalescer::take`]) to its port,
    /// then push the same frame again.
    Flush,
    /// Write the frame as it is to this port: it merges with nothing.
    Alone(PortId),
}

/// A receive coalescer and the port of its pending super-frame.
#[derive(Debug, Clone)]
pub struct Coalescer {
    gro: Box<Gro>,
    egress: Option<PortId>,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

impl Coalescer {
    /// A coalescer with room for a 64 KiB super-frame.
    pub fn new() -> Coalescer {
        Coalescer { gro: Box::default(), egress: None }
    }

    /// Offers `frame` (a virtio-net header, then the Ethernet frame) bound
    /// for `egress`. A push after a [`Push::Flush`] meets an empty
    /// coalescer, so it never says `Flush` twice in a row.
    pub fn push(&mut self, egress: PortId, frame: &[u8]) -> Push {
        let pending = self.gro.is_pending();
        let Ok(header) = vnet::Header::new_checked(frame) else {
            return if pending { Push::Flush } else { Push::Alone(egress) };
        };
        if pending && self.egress != Some(egress) {
            return Push::Flush;
        }
        match self.gro.push(&frame[vnet::HEADER_LEN..], &vnet::Repr::parse(&header)) {
            gro::Push::Held => {
                self.egress = Some(egress);
                Push::Held
            }
            gro::Push::Flush => Push::Flush,
            // Order is kept: what is pending leaves first.
            gro::Push::Alone if pending => Push::Flush,
            gro::Push::Alone => Push::Alone(egress),
        }
    }

    /// Completes the pending super-frame and says where it goes (virtio-net
    /// header first, ready for a TAP); the coalescer is empty afterwards.
    /// Called on [`Push::Flush`] and once the burst of reads is over.
    pub fn take(&mut self) -> Option<(PortId, &[u8])> {
        let egress = self.egress.take();
        let frame = self.gro.finish()?;
        Some((egress?, frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tcp, cut, mac, payload, pod_ip, with_vnet};
    use crate::wire::Ipv4Address;
    use alloc::vec;
    use alloc::vec::Vec;

    const SRC: Ipv4Address = pod_ip(1, 3);
    const DST: Ipv4Address = pod_ip(0, 2);
    const MSS: usize = 1000;
    const POD_A: PortId = PortId(1);
    const POD_B: PortId = PortId(2);

    /// The wire segments of `len` bytes of a stream from `src_port`, each
    /// behind a plain virtio-net header, as the switch forwards them.
    fn segments(len: usize, seq: u32, src_port: u16) -> Vec<Vec<u8>> {
        let data = payload(len);
        let (frame, offload) = Tcp {
            eth_src: mac(1),
            eth_dst: mac(2),
            seq,
            window: 1000,
            dont_frag: true,
            ..Tcp::new((SRC, src_port), (DST, 5201), &data)
        }
        .tso(MSS as u16);
        cut(&frame, &offload).iter().map(|s| with_vnet(&vnet::Repr::PLAIN, s)).collect()
    }

    /// Runs the driver as the runtime does; returns (port, bytes) written.
    fn deliver(co: &mut Coalescer, frames: &[(PortId, Vec<u8>)]) -> Vec<(PortId, Vec<u8>)> {
        let mut written = Vec::new();
        for (egress, frame) in frames {
            let mut flushes = 0;
            loop {
                match co.push(*egress, frame) {
                    Push::Held => break,
                    Push::Flush => {
                        flushes += 1;
                        assert_eq!(flushes, 1, "never two flushes for one frame");
                        let (port, bytes) = co.take().expect("a flush has something to take");
                        written.push((port, bytes.to_vec()));
                    }
                    Push::Alone(port) => {
                        written.push((port, frame.clone()));
                        break;
                    }
                }
            }
        }
        written.extend(co.take().map(|(p, b)| (p, b.to_vec())));
        written
    }

    fn header(frame: &[u8]) -> vnet::Repr {
        vnet::Repr::parse(&vnet::Header::new_checked(frame).unwrap())
    }

    #[test]
    fn a_flow_to_one_pod_is_written_once() {
        let frames: Vec<_> = segments(5 * MSS, 1, 40000).into_iter().map(|f| (POD_A, f)).collect();
        let written = deliver(&mut Coalescer::new(), &frames);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].0, POD_A);
        let h = header(&written[0].1);
        assert_eq!((h.gso, h.gso_size), (vnet::Gso::TcpV4, MSS as u16));
        assert_eq!(written[0].1.len(), vnet::HEADER_LEN + 54 + 5 * MSS);
    }

    #[test]
    fn another_port_flushes_the_pending_frame_to_its_own() {
        let a = segments(2 * MSS, 1, 40000);
        let b = segments(2 * MSS, 1, 40001);
        let frames =
            vec![(POD_A, a[0].clone()), (POD_A, a[1].clone()), (POD_B, b[0].clone()), (POD_B, b[1].clone())];
        let written = deliver(&mut Coalescer::new(), &frames);
        assert_eq!(written.iter().map(|w| w.0).collect::<Vec<_>>(), [POD_A, POD_B]);
        // The same bytes to another port must not merge either.
        let frames = vec![(POD_A, a[0].clone()), (POD_B, a[1].clone())];
        let written = deliver(&mut Coalescer::new(), &frames);
        assert_eq!(written, [(POD_A, a[0].clone()), (POD_B, a[1].clone())], "single segments pass unchanged");
    }

    #[test]
    fn a_frame_that_merges_with_nothing_leaves_after_the_pending_one() {
        let a = segments(2 * MSS, 1, 40000);
        let ack = segments(0, 9, 40000).remove(0);
        let frames =
            vec![(POD_A, a[0].clone()), (POD_A, a[1].clone()), (POD_B, ack.clone()), (POD_A, ack.clone())];
        let written = deliver(&mut Coalescer::new(), &frames);
        assert_eq!(written.len(), 3);
        assert_eq!(written[0].0, POD_A);
        assert_eq!(header(&written[0].1).gso, vnet::Gso::TcpV4, "the pending super-frame first");
        assert_eq!(written[1], (POD_B, ack.clone()));
        assert_eq!(written[2], (POD_A, ack.clone()));
        let mut co = Coalescer::new();
        assert_eq!(co.push(POD_A, &ack), Push::Alone(POD_A), "nothing pending: alone at once");
        assert_eq!(co.push(POD_A, &ack[..4]), Push::Alone(POD_A), "no virtio-net header");
        assert!(co.take().is_none());
    }

    #[test]
    fn a_gap_in_the_stream_flushes() {
        let a = segments(3 * MSS, 1, 40000);
        let mut co = Coalescer::new();
        assert_eq!(co.push(POD_A, &a[0]), Push::Held);
        assert_eq!(co.push(POD_A, &a[2]), Push::Flush);
        let (port, first) = co.take().unwrap();
        assert_eq!((port, first), (POD_A, &a[0][..]), "a lone segment comes back as it was");
        assert_eq!(co.push(POD_A, &a[2]), Push::Held);
        assert_eq!(co.take().map(|(p, _)| p), Some(POD_A));
        assert!(co.take().is_none(), "empty after a take");
    }
}
