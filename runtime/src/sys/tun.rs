//! The TUN/TAP ioctls (linux/if_tun.h), which nix only lets us declare.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

nix::ioctl_write_ptr_bad!(
    /// TUNSETIFF: attach the descriptor to an interface.
    tun_set_iff,
    nix::request_code_write!(b'T', 202, size_of::<libc::c_int>()),
    libc::ifreq
);
nix::ioctl_write_int_bad!(
    /// TUNSETPERSIST: keep the interface after the descriptor closes.
    tun_set_persist,
    nix::request_code_write!(b'T', 203, size_of::<libc::c_int>())
);
nix::ioctl_write_int_bad!(
    /// TUNSETOFFLOAD: the offloads the reader accepts.
    tun_set_offload,
    nix::request_code_write!(b'T', 208, size_of::<libc::c_uint>())
);
nix::ioctl_write_ptr_bad!(
    /// TUNSETVNETHDRSZ: the virtio-net header's size.
    tun_set_vnet_hdr_size,
    nix::request_code_write!(b'T', 216, size_of::<libc::c_int>()),
    libc::c_int
);

/// Attaches the fresh `/dev/net/tun` descriptor `fd` to the interface `name`
/// (created if missing) with `flags` (IFF_TAP, IFF_NO_PI, ...).
pub fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: libc::c_short) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    // SAFETY: ifreq is plain old data (integers, arrays and a union of
    // them); all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name is shorter than IFNAMSIZ, so the zeroed tail terminates it.
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    // SAFETY: TUNSETIFF reads an ifreq; `req` is a live, initialised one and
    // `fd` is open for the call (borrowed).
    unsafe { tun_set_iff(fd.as_raw_fd(), &req) }?;
    Ok(())
}

/// Makes the attached TAP behind `fd` persistent (TUNSETPERSIST).
pub fn set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer argument and no pointer; `fd`
    // is open for the call.
    unsafe { tun_set_persist(fd.as_raw_fd(), libc::c_int::from(persist)) }?;
    Ok(())
}

/// Sets the length of the virtio-net header on the TAP behind `fd`
/// (TUNSETVNETHDRSZ).
pub fn set_vnet_hdr_size(fd: BorrowedFd<'_>, len: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points
    // at the live local `len`; `fd` is open for the call.
    unsafe { tun_set_vnet_hdr_size(fd.as_raw_fd(), &len) }?;
    Ok(())
}

/// Sets the offloads (TUN_F_*) the TAP behind `fd` accepts (TUNSETOFFLOAD).
pub fn set_offload(fd: BorrowedFd<'_>, offload: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes an integer argument and no pointer; `fd`
    // is open for the call.
    unsafe { tun_set_offload(fd.as_raw_fd(), offload as libc::c_int) }?;
    Ok(())
}
