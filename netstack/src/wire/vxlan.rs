//! The VXLAN header (RFC 7348 §5): eight bytes in front of an inner Ethernet
//! frame, carried in UDP (8472 on Linux by flannel's convention, 4789 by
//! IANA's).
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The I flag must be set for a valid VNI; reserved bits are sent as zero and
//! ignored on receipt, as the RFC says.

use core::fmt;

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Bytes VXLAN adds around an inner frame on an IPv4 underlay: outer
/// Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8). Pods' MTU must be this
/// much below the underlay's.
pub const OVERHEAD: usize =
    super::ETHERNET_HEADER_LEN + super::IPV4_HEADER_LEN + super::UDP_HEADER_LEN + HEADER_LEN;
/// The UDP port Linux's vxlan driver and flannel use by default.
pub const DEFAULT_PORT: u16 = 8472;
/// The `I` flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// Why a VXLAN header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than [`HEADER_LEN`].
    Truncated,
    /// The I flag is clear: no valid VNI.
    NoVni,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "VXLAN header truncated",
            Error::NoVni => "VXLAN header without the I flag",
        })
    }
}

/// A zero-copy view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checks; accessors panic if it is too short.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer`, checking that it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The 24-bit VNI (meaningful when the I flag is set).
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[0] = flags;
    }

    /// Sets the VNI (its low 24 bits).
    pub fn set_vni(&mut self, vni: u32) {
        let bytes = (vni & MAX_VNI).to_be_bytes();
        self.buffer.as_mut()[4..7].copy_from_slice(&bytes[1..]);
    }

    /// Zeroes the reserved fields.
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[1..4].fill(0);
        b[7] = 0;
    }

    /// The inner Ethernet frame, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The meaning of a VXLAN header: its network identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// VXLAN Network Identifier, 24 bits.
    pub vni: u32,
}

impl Repr {
    /// Parses a header: the I flag must be set; reserved bits are ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Error> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if packet.flags() & FLAG_I == 0 {
            return Err(Error::NoVni);
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// Length of the header this emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: I flag, the VNI, zero reserved fields.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.clear_reserved();
        packet.set_flags(FLAG_I);
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a Linux vxlan device (`id 1 dstport 8472`): I flag,
    // VNI 1, then the inner frame's first bytes.
    const VNI1: [u8; 10] = [0x08, 0, 0, 0, 0x00, 0x00, 0x01, 0x00, 0x0a, 0x58];

    #[test]
    fn parses_the_linux_header() {
        let packet = Packet::new_checked(&VNI1[..]).unwrap();
        assert_eq!(packet.flags(), FLAG_I);
        assert_eq!(Repr::parse(&packet), Ok(Repr { vni: 1 }));
        assert_eq!(packet.payload(), &[0x0a, 0x58]);
    }

    #[test]
    fn emits_the_linux_header() {
        let mut buf = [0xffu8; 10];
        Repr { vni: 1 }.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..8], VNI1[..8]);
        assert_eq!(buf[8..], [0xff, 0xff], "the payload is untouched");
    }

    #[test]
    fn vni_uses_24_bits_in_network_order() {
        let mut buf = [0u8; HEADER_LEN];
        Repr { vni: 0x00ab_cdef }.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), Ok(Repr { vni: 0x00ab_cdef }));
        // Bits above 24 are not representable and are not written.
        Repr { vni: 0x1ff_ffff }.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0, 0, 7, 0xff];
        assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), Ok(Repr { vni: 7 }));
    }

    #[test]
    fn missing_i_flag_and_short_headers_are_refused() {
        let buf = [0x00, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), Err(Error::NoVni));
        assert_eq!(Packet::new_checked(&buf[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..7])), Err(Error::Truncated));
    }

    #[test]
    fn overhead_is_fifty_bytes() {
        assert_eq!(OVERHEAD, 50);
    }
}
