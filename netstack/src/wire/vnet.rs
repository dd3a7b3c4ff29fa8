//! The `virtio_net_hdr` that prefixes every frame on a TAP opened with
//! `IFF_VNET_HDR`. It lets pod kernels hand over checksum-less GSO
//! super-frames of up to 64 KiB, which is what makes a userspace switch fast
//! (see ARCHITECTURE.md). Fields are little-endian: TAPs on x86_64 and aarch64
//! use the host's byte order, and the runtime sets `TUNSETVNETLE` to be sure.

use core::fmt;

/// Length of the header as podnet configures it (`TUNSETVNETHDRSZ` = 10).
pub const HEADER_LEN: usize = 10;

/// `flags`: the L4 checksum is partial and must be completed at
/// `csum_start + csum_offset`.
pub const FLAG_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum has been validated already.
pub const FLAG_DATA_VALID: u8 = 2;

/// Segmentation the receiver must do (`gso_type`, without the ECN bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gso {
    /// A plain frame.
    None,
    /// A TCP over IPv4 super-frame.
    TcpV4,
    /// A UDP super-frame (UFO).
    Udp,
    /// A TCP over IPv6 super-frame.
    TcpV6,
    /// A type this code does not know.
    Unknown(u8),
}

impl Gso {
    const ECN: u8 = 0x80;

    fn from_raw(raw: u8) -> Self {
        match raw & !Self::ECN {
            0 => Gso::None,
            1 => Gso::TcpV4,
            3 => Gso::Udp,
            4 => Gso::TcpV6,
            other => Gso::Unknown(other),
        }
    }

    fn to_raw(self) -> u8 {
        match self {
            Gso::None => 0,
            Gso::TcpV4 => 1,
            Gso::Udp => 3,
            Gso::TcpV6 => 4,
            Gso::Unknown(raw) => raw,
        }
    }
}

/// The header is shorter than [`HEADER_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("virtio-net header truncated")
    }
}

/// A zero-copy view of a virtio-net header at the start of a buffer.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer`, checking that it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Header { buffer })
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    /// Raw `flags`.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Segmentation type.
    pub fn gso(&self) -> Gso {
        Gso::from_raw(self.buffer.as_ref()[1])
    }
    /// Length of the headers to replicate in each segment.
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(2)
    }
    /// Payload bytes per segment.
    pub fn gso_size(&self) -> u16 {
        self.u16_at(4)
    }
    /// Offset from the Ethernet header where checksumming starts.
    pub fn csum_start(&self) -> u16 {
        self.u16_at(6)
    }
    /// Offset after `csum_start` where the checksum is stored.
    pub fn csum_offset(&self) -> u16 {
        self.u16_at(8)
    }
    /// True when the L4 checksum is partial (pseudo-header sum only).
    pub fn needs_csum(&self) -> bool {
        self.flags() & FLAG_NEEDS_CSUM != 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    fn set_u16_at(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }
}

/// The parsed meaning of a virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Raw flags ([`FLAG_NEEDS_CSUM`], [`FLAG_DATA_VALID`]).
    pub flags: u8,
    /// Segmentation to perform.
    pub gso: Gso,
    /// ECN bit of `gso_type`.
    pub ecn: bool,
    /// Header length hint.
    pub hdr_len: u16,
    /// Segment size.
    pub gso_size: u16,
    /// Checksum start.
    pub csum_start: u16,
    /// Checksum offset.
    pub csum_offset: u16,
}

impl Repr {
    /// A header for a complete frame: no offload, nothing left to do.
    pub const PLAIN: Repr =
        Repr { flags: 0, gso: Gso::None, ecn: false, hdr_len: 0, gso_size: 0, csum_start: 0, csum_offset: 0 };

    /// Parses a header view.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Repr {
        Repr {
            flags: header.flags(),
            gso: header.gso(),
            ecn: header.buffer.as_ref()[1] & Gso::ECN != 0,
            hdr_len: header.hdr_len(),
            gso_size: header.gso_size(),
            csum_start: header.csum_start(),
            csum_offset: header.csum_offset(),
        }
    }

    /// Writes this header into a view.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.buffer.as_mut()[0] = self.flags;
        header.buffer.as_mut()[1] = self.gso.to_raw() | if self.ecn { Gso::ECN } else { 0 };
        header.set_u16_at(2, self.hdr_len);
        header.set_u16_at(4, self.gso_size);
        header.set_u16_at(6, self.csum_start);
        header.set_u16_at(8, self.csum_offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A TSO frame as a Linux 6.x pod kernel hands it over: NEEDS_CSUM,
    // TCPV4, hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16.
    const TSO: [u8; 10] = [0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00];

    #[test]
    fn parses_a_tso_header() {
        let repr = Repr::parse(&Header::new_checked(&TSO[..]).unwrap());
        assert_eq!(repr.gso, Gso::TcpV4);
        assert_eq!(repr.flags, FLAG_NEEDS_CSUM);
        assert_eq!(repr.hdr_len, 66);
        assert_eq!(repr.gso_size, 1448);
        assert_eq!(repr.csum_start, 34);
        assert_eq!(repr.csum_offset, 16);
    }

    #[test]
    fn emit_round_trips() {
        let repr = Repr::parse(&Header::new_checked(&TSO[..]).unwrap());
        let mut out = [0u8; HEADER_LEN];
        repr.emit(&mut Header::new_checked(&mut out[..]).unwrap());
        assert_eq!(out, TSO);
    }

    #[test]
    fn short_buffer_is_rejected() {
        assert_eq!(Header::new_checked(&TSO[..9]).unwrap_err(), Truncated);
    }
}
