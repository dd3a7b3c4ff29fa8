//! Mount attributes nix has no wrapper for: mount_setattr(2), which changes
//! a whole tree of mounts in one call (Linux 5.12). One system call on data
//! the caller prepared, so it is safe in a pre_exec hook.

use std::ffi::CStr;
use std::io;

/// `MOUNT_ATTR_RDONLY` of <linux/mount.h>.
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// `AT_RECURSIVE` of <linux/fcntl.h>: the mount and every mount below it.
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// `struct mount_attr` of <linux/mount.h> (version 0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes the mount at `path` and every mount below it read-only in the
/// calling process's mount namespace, atomically. `ENOSYS` before Linux 5.12.
pub fn read_only_recursive(path: &CStr) -> io::Result<()> {
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr reads a NUL-terminated path that outlives the
    // call and `size_of::<MountAttr>()` bytes of a live repr(C) local laid
    // out as the kernel's struct; it writes no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
