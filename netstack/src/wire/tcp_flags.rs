//! TCP flag bits as they sit in byte 13 of the TCP header: what conntrack,
//! segmentation and coalescing read and write without parsing the header.

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
