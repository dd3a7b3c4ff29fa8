//! Installing a seccomp filter without no_new_privs, which neither nix nor
//! seccompiler offers (`seccompiler::apply_filter` always sets it).

use std::io;

/// Installs the BPF `program` on the calling thread (SECCOMP_SET_MODE_FILTER,
/// no flags). The caller must hold CAP_SYS_ADMIN, as no_new_privs is not set.
/// One system call, so safe in a pre_exec hook.
pub fn set_mode_filter(program: &[seccompiler::sock_filter]) -> io::Result<()> {
    // Too long for the kernel (BPF_MAXINSNS is 4096): its own answer, EINVAL,
    // made without allocating.
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // seccompiler's sock_filter is repr(C) with the kernel's fields in the
    // kernel's order, so it has libc's layout.
    let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut() };
    // SAFETY: `fprog` points at `len` instructions of `program`, which
    // outlives the call; the kernel copies (and never writes) them.
    let rc = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog)
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
