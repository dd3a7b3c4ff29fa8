//! Capabilities: the bounding, ambient and process sets, which nix does not
//! cover. Each call is one system call on integers or local data, so it is
//! safe in a pre_exec hook.

use std::io;

/// The result of a prctl or syscall as an `io::Result`.
fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Removes capability `cap` from the calling thread's bounding set.
pub fn drop_bounding(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes integers only and touches no memory of ours.
    check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) }.into())
}

/// Empties the calling thread's ambient set.
pub fn clear_ambient() -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT takes integers only and touches no memory of ours.
    check(
        unsafe {
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
        }
        .into(),
    )
}

/// Sets the calling thread's effective and permitted sets to `mask`, its
/// inheritable set to nothing.
pub fn set(mask: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let half = |shift: u32| {
        let bits = (mask >> shift) as u32;
        Data { effective: bits, permitted: bits, inheritable: 0 }
    };
    let data = [half(0), half(32)];
    // SAFETY: capset reads a v3 header (and may write its version) and the
    // two data words a v3 header calls for; both are live locals laid out as
    // the kernel's structs (repr(C)).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    check(rc)
}
