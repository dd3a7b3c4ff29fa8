//! Reading /proc/PID/mountinfo: the kernel writes a path's spaces, tabs,
//! newlines and backslashes as octal escapes (`\040`), undone here once for
//! every reader (the pod sandbox, container rootfs mounts, layer GC).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// A mountinfo path field with its octal escapes undone, as bytes.
pub fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// A mountinfo path field as the path it names.
pub fn path(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(path(r"/a\040b"), PathBuf::from("/a b"));
        assert_eq!(path("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape(r"/t\011ab\134x\0"), b"/t\tab\\x\\0");
    }
}
