//! What the egress table asks of the kernel side. The table decides; the
//! caller (the runtime's epoll loop, or a test's simulated sockets) carries
//! each call out with a system call and reports what happened. Data moves
//! through these calls straight between smoltcp's buffers and the kernel,
//! with no copy of the table's own.

use super::table::EntryId;
use crate::wire::Ipv4Address;

/// A socket the caller could not make (no fd, an immediate connect error,
/// no epoll registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFailed;

impl core::fmt::Display for SocketFailed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the kernel socket could not be made")
    }
}

impl core::error::Error for SocketFailed {}

/// A kernel connect that did not succeed: the destination refused, could
/// not be reached, or timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectFailed;

impl core::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the destination refused or could not be reached")
    }
}

impl core::error::Error for ConnectFailed {}

/// The outcome of one read or write on a kernel socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// This many bytes moved; a TCP read of 0 is the destination's EOF.
    Moved(usize),
    /// Nothing now: the socket's buffer is full (write) or empty (read).
    WouldBlock,
    /// The destination answered ICMP port unreachable (UDP: ECONNREFUSED).
    Refused,
    /// Any other error: for TCP, the connection is reset.
    Failed,
}

/// How a kernel socket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// An ordinary close (a FIN if one is still due).
    Graceful,
    /// With a RST (SO_LINGER 0): the pod reset its side, or the entry was
    /// given up.
    Reset,
}

/// The kernel side of the egress endpoint, and its frames toward the pods.
pub trait Io {
    /// Sends a frame (virtio-net header first) toward the pods.
    fn to_pod(&mut self, frame: &[u8]);
    /// Starts a non-blocking TCP connect to `to`:`port` for entry `id`; its
    /// outcome comes back through [`super::Egress::connected`].
    fn connect(&mut self, id: EntryId, to: Ipv4Address, port: u16) -> Result<(), SocketFailed>;
    /// Opens a UDP socket connected to `to`:`port` for entry `id`.
    fn udp_open(&mut self, id: EntryId, to: Ipv4Address, port: u16) -> Result<(), SocketFailed>;
    /// Writes to the kernel socket of `id` (TCP stream bytes, or one UDP
    /// datagram).
    fn write(&mut self, id: EntryId, data: &[u8]) -> Transfer;
    /// Reads from the kernel socket of `id` into `buf` (TCP stream bytes,
    /// or one UDP datagram).
    fn read(&mut self, id: EntryId, buf: &mut [u8]) -> Transfer;
    /// Half-closes the kernel socket of `id` (shutdown(SHUT_WR)).
    fn shutdown_write(&mut self, id: EntryId);
    /// Closes the kernel socket of `id`; `id` is not used again.
    fn close(&mut self, id: EntryId, how: Close);
    /// Sends an ICMP message (an echo request) to `to` from the raw socket.
    fn echo_send(&mut self, to: Ipv4Address, message: &[u8]);
    /// Reads one IP packet (header included) from the raw ICMP socket.
    fn echo_read(&mut self, buf: &mut [u8]) -> Transfer;
}
