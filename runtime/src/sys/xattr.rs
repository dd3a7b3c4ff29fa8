//! Extended attributes of a path itself, never a symlink's target
//! (lsetxattr, lgetxattr): an unpacked layer keeps the image's xattrs, and
//! overlayfs reads its opaque-directory marker from one.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Sets xattr `name` of `path` (not following a final symlink) to `value`.
pub fn set(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let path = c_path(path)?;
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // value pointer and length describe one readable slice.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Reads xattr `name` of `path` (not following a final symlink), up to 64 KiB.
pub fn get(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let path = c_path(path)?;
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: both strings are NUL-terminated; the buffer is writable for
    // its whole length, which is what the kernel is told.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}
