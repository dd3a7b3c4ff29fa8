//! TCP flag bits as they sit in byte 13 of the TCP header: what conntrack,
//! segmentation and coalescing compare and carry as one byte (smoltcp's
//! `TcpPacket` reads and sets them one at a time).

/// No more data from the sender.
pub const FIN: u8 = 0x01;
/// Synchronize sequence numbers: a connection attempt.
pub const SYN: u8 = 0x02;
/// Reset the connection.
pub const RST: u8 = 0x04;
/// Push: deliver what is buffered.
pub const PSH: u8 = 0x08;
/// The acknowledgment field is significant.
pub const ACK: u8 = 0x10;
/// The urgent pointer is significant.
pub const URG: u8 = 0x20;
/// Congestion window reduced (ECN).
pub const CWR: u8 = 0x80;

/// Offset of the flags byte in the TCP header.
const AT: usize = 13;

/// The flags byte of `tcp`, a TCP header of at least 14 bytes (as
/// `TcpPacket::new_checked` guarantees).
pub fn of(tcp: &[u8]) -> u8 {
    tcp[AT]
}

/// Sets the bits of `flags` in the flags byte of `tcp`.
pub fn set(tcp: &mut [u8], flags: u8) {
    tcp[AT] |= flags;
}

/// Clears the bits of `flags` in the flags byte of `tcp`.
pub fn clear(tcp: &mut [u8], flags: u8) {
    tcp[AT] &= !flags;
}
