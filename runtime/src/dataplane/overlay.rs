//! The overlay's UDP socket on the underlay: its tuning, and the batched
//! sends and receives the data path uses (the loop is in `dataplane/mod.rs`;
//! what to send, hold back or retry is decided by netstack's
//! `overlay::transmit`, what to write to pods by `overlay::deliver`).
//!
//! A TSO super-frame leaves as one `sendmsg` with `UDP_SEGMENT` (UDP GSO):
//! the kernel cuts the buffer into datagrams, over a veth or a NIC with
//! UDP segmentation offload not even that. With `UDP_GRO` on, the kernel
//! hands over a run of datagrams from one sender as one buffer with their
//! size in a control message; the data path splits it again.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt, sockopt,
};

/// Socket buffers for bursts: a 64 KiB GSO frame becomes ~45 datagrams at
/// once, and the data-plane thread may be busy with other ports for a while.
const BUFFER_BYTES: usize = 4 << 20;

/// Enlarges the socket's buffers (best effort: root may exceed the sysctl
/// limits with the FORCE options, others get what the limits allow) and
/// asks for coalesced receives (`UDP_GRO`, best effort: without it every
/// datagram comes alone).
pub fn tune(socket: &std::net::UdpSocket) {
    if setsockopt(socket, sockopt::RcvBufForce, &BUFFER_BYTES).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &BUFFER_BYTES);
    }
    if setsockopt(socket, sockopt::SndBufForce, &BUFFER_BYTES).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &BUFFER_BYTES);
    }
    if let Err(e) = setsockopt(socket, sockopt::UdpGroSegment, &true) {
        tracing::debug!("overlay socket: no UDP_GRO ({e}); datagrams are received one by one");
    }
}

/// Room for the control message of one receive (`UDP_GRO`'s segment size).
pub fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::c_int)
}

/// What [`recv_batch`] received.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes received.
    pub len: usize,
    /// The sender.
    pub from: SockaddrIn,
    /// Length of each datagram in the buffer (the last may be shorter);
    /// `len` when the buffer holds one.
    pub segment_len: usize,
}

/// Receives one datagram, or a coalesced run of datagrams, into `buf`.
/// `Ok(None)` for something to skip (no sender address, a truncated
/// buffer); errors are the socket's (`EAGAIN` when drained).
pub fn recv_batch(fd: BorrowedFd<'_>, buf: &mut [u8], control: &mut [u8]) -> nix::Result<Option<Received>> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(fd.as_raw_fd(), &mut iov, Some(control), MsgFlags::empty())?;
    let Some(from) = msg.address else { return Ok(None) };
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        // Larger than any VXLAN datagram of ours: not worth a partial look.
        return Ok(None);
    }
    let mut segment_len = msg.bytes;
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            if let ControlMessageOwned::UdpGroSegments(size) = cmsg
                && size > 0
            {
                segment_len = size as usize;
            }
        }
    }
    Ok(Some(Received { len: msg.bytes, from, segment_len: segment_len.min(msg.bytes).max(1) }))
}

/// Sends the datagrams gathered from `iov` (cut every `segment_len` bytes;
/// the last may be shorter) in one `sendmsg` with `UDP_SEGMENT`, or, with
/// `segment_len` `None`, the one datagram gathered from `iov`.
pub fn send_gathered(
    fd: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    segment_len: Option<u16>,
    to: &SockaddrIn,
) -> nix::Result<()> {
    let gso;
    let cmsg: &[ControlMessage] = match &segment_len {
        Some(size) => {
            gso = [ControlMessage::UdpGsoSegments(size)];
            &gso
        }
        None => &[],
    };
    loop {
        match sendmsg(fd.as_raw_fd(), iov, cmsg, MsgFlags::empty(), Some(to)) {
            Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
