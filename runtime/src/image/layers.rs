//! Applying one layer's tar stream to an empty directory that overlayfs
//! then uses as a lowerdir: owners, modes, mtimes, xattrs, symlinks, hard
//! links, devices and fifos as the tar says; OCI whiteouts become
//! overlayfs's (`.wh.NAME` → a 0/0 character device, `.wh..wh..opq` → the
//! `trusted.overlay.opaque` xattr).
//!
//! Layers are hostile input. Every path is taken relative to the layer
//! directory (a leading `/` is dropped, as containerd does) and `..` is
//! refused; nothing is written through a symlink (each parent is checked
//! with lstat, and the directory is this unpack's alone, so no one swaps
//! one in meanwhile); hard links point inside the layer only; GNU long
//! names and PAX headers are read only up to [`MAX_META`]; the entries and
//! bytes a layer may have are bounded by config.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

/// Largest GNU long name, long link or PAX header read into memory.
pub const MAX_META: u64 = 1 << 20;

/// Longest entry or link name taken (Linux's PATH_MAX).
const MAX_NAME: usize = 4096;
/// How much of a refused name an error shows.
const SHOWN: usize = 200;

/// The OCI whiteout prefix.
const WHITEOUT: &str = ".wh.";
/// The OCI opaque-directory marker.
const OPAQUE: &str = ".wh..wh..opq";
/// overlayfs's opaque-directory xattr.
const OVERLAY_OPAQUE: &[u8] = b"trusted.overlay.opaque";

/// What one layer may cost.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Uncompressed tar bytes (`images.max_layer_bytes`).
    pub bytes: u64,
    /// Tar entries, headers of long names and PAX included (`images.max_layer_entries`).
    pub entries: u64,
}

/// Why a layer cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An entry that would reach outside the layer, or is malformed on purpose.
    #[error("entry `{entry}` {why}: refusing a hostile layer")]
    Hostile {
        /// The entry's name as the tar gives it.
        entry: String,
        /// What it tried.
        why: String,
    },
    /// More uncompressed bytes than allowed.
    #[error(
        "it unpacks to more than {0} bytes (images.max_layer_bytes): raise images.max_layer_bytes in the board config if the image is trusted"
    )]
    TooLarge(u64),
    /// More entries than allowed.
    #[error(
        "it has more than {0} entries (images.max_layer_entries): raise images.max_layer_entries in the board config if the image is trusted"
    )]
    TooManyEntries(u64),
    /// A tar entry type podnet does not unpack.
    #[error(
        "entry `{entry}` is of tar type {kind:?}, which podnet does not unpack: rebuild the image with a standard tool"
    )]
    Unsupported {
        /// The entry.
        entry: String,
        /// Its type byte.
        kind: u8,
    },
    /// The unpacked stream is not what the image config names.
    #[error(
        "it unpacks to content {actual}, not the {expected} its image config names: the image is damaged or tampered with, pull it again"
    )]
    DiffId {
        /// The config's diff ID.
        expected: super::Digest,
        /// What the stream hashed to.
        actual: super::Digest,
    },
    /// A media type podnet cannot decompress.
    #[error("its type `{0}` is not one podnet unpacks (tar, tar+gzip, tar+zstd)")]
    MediaType(String),
    /// Not a tar stream, or a damaged or truncated one.
    #[error("a damaged layer ({0}): pull the image again")]
    Damaged(String),
    /// Writing the layer failed.
    #[error("cannot write {}: {source}", path.display())]
    Disk {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What an applied layer held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Tar entries read.
    pub entries: u64,
    /// Whiteouts and opaque markers converted.
    pub whiteouts: u64,
    /// `trusted.overlay.*` xattrs in the tar, not applied: only podnet
    /// writes overlayfs's own attributes.
    pub refused_xattrs: u64,
    /// Xattrs the file system would not take (ENOTSUP, EPERM), skipped
    /// as Docker and containerd skip them.
    pub unsupported_xattrs: u64,
}

fn disk(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Disk { path: path.to_path_buf(), source }
}

fn nix_disk(path: &Path) -> impl FnOnce(nix::Error) -> LayerError + '_ {
    move |e| LayerError::Disk { path: path.to_path_buf(), source: e.into() }
}

fn hostile(entry: &[u8], why: impl Into<String>) -> LayerError {
    // A hostile name may be a megabyte long: the message shows its start.
    let mut entry = String::from_utf8_lossy(&entry[..entry.len().min(SHOWN)]).into_owned();
    if entry.len() >= SHOWN {
        entry.push('…');
    }
    LayerError::Hostile { entry, why: why.into() }
}

/// The parts of `name` below the layer root: `/a/./b` → `[a, b]`; `..` refused.
fn components(name: &[u8]) -> Result<Vec<&OsStr>, LayerError> {
    let mut parts = Vec::new();
    for component in Path::new(OsStr::from_bytes(name)).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(hostile(name, "climbs out of the layer with `..`"));
            }
        }
    }
    Ok(parts)
}

/// Metadata of one entry, PAX and GNU extensions applied.
struct Meta {
    name: Vec<u8>,
    link: Option<Vec<u8>>,
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads at most `left` bytes, then fails, noting that it did.
struct Bounded<'a> {
    inner: &'a mut dyn Read,
    left: u64,
    hit: bool,
}

impl Read for Bounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.hit = true;
            return Err(io::Error::other("the layer is over its size bound"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Past the end of its input, reads as the zero blocks that end a tar:
/// Go's archive/tar (containerd, umoci) takes a stream that stops right
/// after an entry's data as ended, and umoci writes such layers.
struct Tail<'a> {
    inner: &'a mut dyn Read,
    /// Bytes of the input itself.
    real: u64,
    /// Zeros still to give once the input has ended.
    zeros: Option<u64>,
}

impl Read for Tail<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = &mut self.zeros {
            let n = buf.len().min(*left as usize);
            buf[..n].fill(0);
            *left -= n as u64;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // Padding to the block, and the two zero blocks of the end.
            self.zeros = Some(3 * 512);
            return self.read(buf);
        }
        self.real += n as u64;
        Ok(n)
    }
}

/// Applies the tar stream `from` to the empty directory `root`, and reads
/// `from` to its end (a digest of it covers the padding after the tar).
pub fn apply(from: &mut dyn Read, root: &Path, bounds: Bounds) -> Result<Applied, LayerError> {
    let mut bounded = Bounded { inner: from, left: bounds.bytes, hit: false };
    let mut tail = Tail { inner: &mut bounded, real: 0, zeros: None };
    let result = apply_tar(&mut tail, root, bounds).and_then(|(applied, data_end)| {
        io::copy(&mut tail, &mut io::sink()).map_err(|e| LayerError::Damaged(e.to_string()))?;
        // Zeros stand in for a missing end only, never for an entry's data.
        if tail.real < data_end {
            return Err(LayerError::Damaged("the stream ends inside an entry's data".into()));
        }
        Ok(applied)
    });
    match result {
        Err(_) if bounded.hit => Err(LayerError::TooLarge(bounds.bytes)),
        other => other,
    }
}

/// The entries applied, and where the last one's data ends in the stream.
fn apply_tar(from: &mut dyn Read, root: &Path, bounds: Bounds) -> Result<(Applied, u64), LayerError> {
    let mut applier = Applier { root, applied: Applied::default() };
    let mut archive = tar::Archive::new(from);
    let entries = archive.entries().map_err(|e| LayerError::Damaged(e.to_string()))?;
    // Raw: the crate would read long names and PAX headers whole, unbounded.
    let entries = entries.raw(true);
    let (mut long_name, mut long_link, mut pax) = (None, None, None::<Vec<u8>>);
    let mut data_end = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| LayerError::Damaged(e.to_string()))?;
        data_end = entry.raw_file_position().saturating_add(entry.size());
        applier.applied.entries += 1;
        if applier.applied.entries > bounds.entries {
            return Err(LayerError::TooManyEntries(bounds.entries));
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(
            kind,
            EntryType::GNULongName | EntryType::GNULongLink | EntryType::XHeader | EntryType::XGlobalHeader
        ) {
            let size = entry.size();
            if size > MAX_META {
                return Err(hostile(&header.path_bytes(), format!("has a {size}-byte extended header")));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes).map_err(|e| LayerError::Damaged(e.to_string()))?;
            match kind {
                EntryType::GNULongName => {
                    // GNU writes the name NUL-terminated.
                    while bytes.last() == Some(&0) {
                        bytes.pop();
                    }
                    long_name = Some(bytes)
                }
                EntryType::GNULongLink => {
                    while bytes.last() == Some(&0) {
                        bytes.pop();
                    }
                    long_link = Some(bytes)
                }
                EntryType::XHeader => pax = Some(bytes),
                // Global headers (git archive's comment) say nothing podnet keeps.
                _ => {}
            }
            continue;
        }
        let mut meta = Meta {
            name: long_name.take().unwrap_or_else(|| header.path_bytes().into_owned()),
            link: long_link.take().or_else(|| header.link_name_bytes().map(|l| l.into_owned())),
            uid: 0,
            gid: 0,
            mode: header.mode().map_err(|e| LayerError::Damaged(e.to_string()))?,
            mtime: TimeSpec::new(0, 0),
            xattrs: Vec::new(),
        };
        let number = |v: io::Result<u64>| v.map_err(|e| LayerError::Damaged(e.to_string()));
        let (mut uid, mut gid, mtime) =
            (number(header.uid())?, number(header.gid())?, number(header.mtime())?);
        let mut mtime = TimeSpec::new(mtime.min(i64::MAX as u64) as i64, 0);
        if let Some(pax) = pax.take() {
            for record in tar::PaxExtensions::new(&pax) {
                let record = record.map_err(|e| LayerError::Damaged(format!("a PAX header: {e}")))?;
                let (key, value) = (record.key_bytes(), record.value_bytes());
                let text = || std::str::from_utf8(value).ok();
                match key {
                    b"path" => meta.name = value.to_vec(),
                    b"linkpath" => meta.link = Some(value.to_vec()),
                    b"uid" => uid = text().and_then(|t| t.parse().ok()).unwrap_or(uid),
                    b"gid" => gid = text().and_then(|t| t.parse().ok()).unwrap_or(gid),
                    b"mtime" => mtime = text().and_then(pax_time).unwrap_or(mtime),
                    // Raw entries take their size from the header: one PAX
                    // overrides (files past 8 GiB) would be misread.
                    b"size" if text().and_then(|t| t.parse::<u64>().ok()) != Some(entry.size()) => {
                        return Err(hostile(
                            &meta.name,
                            "has a PAX size unlike its header's (a file over 8 GiB?)",
                        ));
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            meta.xattrs.push((name.to_vec(), value.to_vec()));
                        }
                    }
                }
            }
        }
        if meta.name.len() > MAX_NAME || meta.link.as_ref().is_some_and(|l| l.len() > MAX_NAME) {
            return Err(hostile(&meta.name, format!("has a name or link over {MAX_NAME} bytes")));
        }
        let id = |n: u64| u32::try_from(n).map_err(|_| hostile(&meta.name, format!("has owner ID {n}")));
        meta.uid = id(uid)?;
        meta.gid = id(gid)?;
        meta.mtime = mtime;
        applier.entry(&meta, kind, &header, &mut entry)?;
    }
    Ok((applier.applied, data_end))
}

/// A PAX time, `seconds[.fraction]`.
fn pax_time(text: &str) -> Option<TimeSpec> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos =
        if digits.is_empty() { 0 } else { digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32) };
    Some(TimeSpec::new(secs, nanos))
}

struct Applier<'a> {
    root: &'a Path,
    applied: Applied,
}

/// Runs `change` on an entry of `dir`, keeping `dir`'s times as the tar set
/// them (in O(1) memory: no list of directories to fix up at the end).
fn keeping_times<T>(dir: &Path, change: impl FnOnce() -> Result<T, LayerError>) -> Result<T, LayerError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(dir).map_err(disk(dir))?;
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    let result = change();
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, dir, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(nix_disk(dir))?;
    result
}

impl Applier<'_> {
    /// The entry's path inside the root (the root itself for no parts),
    /// its parents made and checked: directories, never symlinks or files.
    fn place(&self, name: &[u8], parts: &[&OsStr]) -> Result<PathBuf, LayerError> {
        let mut path = self.root.to_path_buf();
        for part in &parts[..parts.len().saturating_sub(1)] {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(hostile(
                        name,
                        format!("is written through the symlink `{}`", self.show(&path)),
                    ));
                }
                Ok(_) => {
                    return Err(hostile(
                        name,
                        format!("has `{}`, not a directory, as parent", self.show(&path)),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A parent the tar does not list: as the runtimes make it.
                    let parent = path.parent().unwrap_or(self.root);
                    keeping_times(parent, || {
                        fs::DirBuilder::new().mode(0o755).create(&path).map_err(disk(&path))
                    })?;
                }
                Err(e) => return Err(disk(&path)(e)),
            }
        }
        if let Some(last) = parts.last() {
            path.push(last);
        }
        Ok(path)
    }

    fn show(&self, path: &Path) -> String {
        path.strip_prefix(self.root).unwrap_or(path).display().to_string()
    }

    /// Removes what `path` holds, unless both it and the new entry are directories.
    fn clear(&self, path: &Path, keep_dir: bool) -> Result<(), LayerError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && keep_dir => Ok(()),
            Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(disk(path)),
            Ok(_) => fs::remove_file(path).map_err(disk(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(disk(path)(e)),
        }
    }

    fn entry(
        &mut self,
        meta: &Meta,
        kind: EntryType,
        header: &tar::Header,
        data: &mut dyn Read,
    ) -> Result<(), LayerError> {
        let parts = components(&meta.name)?;
        let Some(base) = parts.last() else {
            // `./`: the layer's root directory itself.
            if kind.is_dir() {
                return self.metadata(self.root.to_path_buf(), meta);
            }
            return Err(hostile(&meta.name, "names the layer's root as a file"));
        };
        let base = base.as_bytes();
        if let Some(hidden) = base.strip_prefix(WHITEOUT.as_bytes()) {
            return self.whiteout(meta, &parts, hidden);
        }
        let path = self.place(&meta.name, &parts)?;
        let parent = path.parent().unwrap_or(self.root);
        let set_metadata = keeping_times(parent, || {
            self.clear(&path, kind.is_dir())?;
            self.create(meta, kind, header, data, &path)
        })?;
        if set_metadata { self.metadata(path, meta) } else { Ok(()) }
    }

    /// Makes the node; false when it takes no metadata of its own (a hard link).
    fn create(
        &self,
        meta: &Meta,
        kind: EntryType,
        header: &tar::Header,
        data: &mut dyn Read,
        path: &Path,
    ) -> Result<bool, LayerError> {
        let path = path.to_path_buf();
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(disk(&path))?;
                // The kernel's errors are the disk's; the rest, the stream's.
                io::copy(data, &mut file).map_err(|e| match e.raw_os_error() {
                    Some(_) => disk(&path)(e),
                    None => LayerError::Damaged(e.to_string()),
                })?;
            }
            EntryType::Directory => {
                if !path.is_dir() {
                    fs::DirBuilder::new().mode(0o700).create(&path).map_err(disk(&path))?;
                }
            }
            EntryType::Symlink => {
                let target =
                    meta.link.as_deref().ok_or_else(|| hostile(&meta.name, "is a symlink to nothing"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).map_err(disk(&path))?;
            }
            EntryType::Link => {
                let target =
                    meta.link.as_deref().ok_or_else(|| hostile(&meta.name, "is a hard link to nothing"))?;
                let target_parts = components(target)
                    .map_err(|_| hostile(&meta.name, "is a hard link that climbs out of the layer"))?;
                if target_parts.is_empty() {
                    return Err(hostile(&meta.name, "is a hard link to the layer's root"));
                }
                // The target's parents are checked like any entry's: the
                // link cannot reach outside through a symlink.
                let source = self.place(target, &target_parts)?;
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(hostile(
                            &meta.name,
                            format!(
                                "is a hard link to `{}`, which the layer has not written before it",
                                String::from_utf8_lossy(target)
                            ),
                        ));
                    }
                }
                fs::hard_link(&source, &path).map_err(disk(&path))?;
                // A hard link shares its target's metadata: nothing more to set.
                return Ok(false);
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let flag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = nix::sys::stat::makedev(u64::from(major), u64::from(minor));
                nix::sys::stat::mknod(&path, flag, Mode::from_bits_truncate(0o600), dev)
                    .map_err(nix_disk(&path))?;
            }
            other => return Err(LayerError::Unsupported { entry: self.show(&path), kind: other.as_byte() }),
        }
        Ok(true)
    }

    /// `.wh.NAME` hides NAME of the layers below; `.wh..wh..opq` hides all
    /// of its directory's contents below.
    fn whiteout(&mut self, meta: &Meta, parts: &[&OsStr], hidden: &[u8]) -> Result<(), LayerError> {
        let dir_parts = &parts[..parts.len() - 1];
        if parts.last().is_some_and(|p| p.as_bytes() == OPAQUE.as_bytes()) {
            // place() makes (and checks) the parents, the marked directory too.
            let mut dir = self.place(&meta.name, parts)?;
            dir.pop();
            crate::sys::xattr::set(&dir, OVERLAY_OPAQUE, b"y").map_err(disk(&dir))?;
            self.applied.whiteouts += 1;
            return Ok(());
        }
        if hidden.starts_with(WHITEOUT.as_bytes()) {
            // Other `.wh..wh.` names are AUFS bookkeeping: nothing to keep.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(hostile(&meta.name, "is a whiteout naming no file of its directory"));
        }
        let mut target: Vec<&OsStr> = dir_parts.to_vec();
        target.push(OsStr::from_bytes(hidden));
        let path = self.place(&meta.name, &target)?;
        keeping_times(path.parent().unwrap_or(self.root), || {
            self.clear(&path, false)?;
            nix::sys::stat::mknod(&path, SFlag::S_IFCHR, Mode::empty(), nix::sys::stat::makedev(0, 0))
                .map_err(nix_disk(&path))
        })?;
        self.applied.whiteouts += 1;
        Ok(())
    }

    /// Owner, then mode (chown clears setuid), xattrs, and mtime.
    fn metadata(&mut self, path: PathBuf, meta: &Meta) -> Result<(), LayerError> {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &path,
            Some(meta.uid.into()),
            Some(meta.gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(nix_disk(&path))?;
        let is_link = fs::symlink_metadata(&path).map_err(disk(&path))?.file_type().is_symlink();
        if !is_link {
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode & 0o7777))
                .map_err(disk(&path))?;
        }
        for (name, value) in &meta.xattrs {
            if name.starts_with(b"trusted.overlay.") {
                self.applied.refused_xattrs += 1;
                continue;
            }
            match crate::sys::xattr::set(&path, name, value) {
                Ok(()) => {}
                // user.* ones cannot be set on symlinks, some file systems take none.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM)) => {
                    self.applied.unsupported_xattrs += 1;
                }
                Err(e) => return Err(disk(&path)(e)),
            }
        }
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &path,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(nix_disk(&path))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// One entry of a crafted layer.
    pub(crate) enum T<'a> {
        /// A regular file, mode 0644.
        File(&'a str, &'a [u8]),
        /// A file with mode, owner and mtime.
        Owned(&'a str, &'a [u8], u32, u64, u64),
        /// A directory with mode and mtime.
        Dir(&'a str, u32, u64),
        /// A symlink and its target.
        Sym(&'a str, &'a str),
        /// A hard link and its target.
        Hard(&'a str, &'a str),
        /// A device or fifo, with major and minor.
        Node(&'a str, EntryType, u32, u32),
        /// PAX records for the next entry.
        Pax(&'a [(&'a str, &'a [u8])]),
        /// A header of any type and size, with that many zero bytes.
        Raw(&'a str, EntryType, u64),
    }

    /// A tar of `entries`, names and link targets written raw (the crate's
    /// setters refuse `..`, as a hostile tool would not).
    pub(crate) fn tar(entries: &[T<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let header = |name: &str, kind: EntryType, mode: u32, link: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(0);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h
        };
        for entry in entries {
            let (mut h, data): (tar::Header, &[u8]) = match *entry {
                T::File(name, data) => (header(name, EntryType::Regular, 0o644, ""), data),
                T::Owned(name, data, mode, id, mtime) => {
                    let mut h = header(name, EntryType::Regular, mode, "");
                    h.set_uid(id);
                    h.set_gid(id);
                    h.set_mtime(mtime);
                    (h, data)
                }
                T::Dir(name, mode, mtime) => {
                    let mut h = header(name, EntryType::Directory, mode, "");
                    h.set_mtime(mtime);
                    (h, &[])
                }
                T::Sym(name, target) => (header(name, EntryType::Symlink, 0o777, target), &[]),
                T::Hard(name, target) => (header(name, EntryType::Link, 0o644, target), &[]),
                T::Node(name, kind, major, minor) => {
                    let mut h = header(name, kind, 0o666, "");
                    h.set_device_major(major).unwrap();
                    h.set_device_minor(minor).unwrap();
                    (h, &[])
                }
                T::Pax(records) => {
                    builder.append_pax_extensions(records.iter().copied()).unwrap();
                    continue;
                }
                T::Raw(name, kind, size) => {
                    let mut h = header(name, kind, 0o644, "");
                    h.set_size(size);
                    h.set_cksum();
                    builder.append(&h, io::repeat(0).take(size)).unwrap();
                    continue;
                }
            };
            h.set_size(data.len() as u64);
            h.set_cksum();
            builder.append(&h, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// A fresh directory for one test: `layer/` to unpack into, and
    /// `outside/secret`, which no layer may touch.
    pub(crate) fn sandbox(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podnet-layers-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("layer")).unwrap();
        fs::create_dir_all(dir.join("outside")).unwrap();
        fs::write(dir.join("outside/secret"), b"untouched").unwrap();
        dir
    }

    const BOUNDS: Bounds = Bounds { bytes: 1 << 30, entries: 10_000 };

    fn run(dir: &Path, entries: &[T<'_>]) -> Result<Applied, LayerError> {
        let _ = fs::remove_dir_all(dir.join("layer"));
        fs::create_dir(dir.join("layer")).unwrap();
        apply(&mut &tar(entries)[..], &dir.join("layer"), BOUNDS)
    }

    #[test]
    fn a_layer_keeps_owners_modes_times_links_devices_and_xattrs() {
        let dir = sandbox("keep");
        let layer = dir.join("layer");
        let applied = run(
            &dir,
            &[
                T::Dir("./", 0o755, 1_500_000_000),
                T::Dir("./etc/", 0o750, 1_400_000_000),
                T::Owned("./etc/passwd", b"root:x:0:0", 0o640, 1000, 1_300_000_000),
                T::Owned("./usr/bin/su", b"elf", 0o4755, 0, 1_300_000_000),
                T::Sym("./etc/link", "/usr/bin/su"),
                T::Hard("./etc/hard", "etc/passwd"),
                T::Node("./dev/null", EntryType::Char, 1, 3),
                T::Node("./run/fifo", EntryType::Fifo, 0, 0),
                T::Pax(&[
                    ("SCHILY.xattr.user.podnet", b"kept"),
                    ("SCHILY.xattr.trusted.overlay.redirect", b"/x"),
                ]),
                T::File("./etc/tagged", b""),
            ],
        )
        .unwrap();
        assert_eq!(applied.entries, 10, "nine entries and one PAX header");
        assert_eq!(applied.refused_xattrs, 1, "only podnet writes overlayfs's xattrs");
        let meta = |p: &str| fs::symlink_metadata(layer.join(p)).unwrap();
        assert_eq!(fs::read(layer.join("etc/passwd")).unwrap(), b"root:x:0:0");
        assert_eq!((meta("etc/passwd").uid(), meta("etc/passwd").gid()), (1000, 1000));
        assert_eq!(meta("etc/passwd").mode() & 0o7777, 0o640);
        assert_eq!(meta("etc/passwd").mtime(), 1_300_000_000);
        assert_eq!(meta("usr/bin/su").mode() & 0o7777, 0o4755, "setuid kept (chown came first)");
        assert_eq!(fs::read_link(layer.join("etc/link")).unwrap(), Path::new("/usr/bin/su"));
        assert_eq!(meta("etc/hard").ino(), meta("etc/passwd").ino());
        assert!(meta("dev/null").file_type().is_char_device());
        assert_eq!(meta("dev/null").rdev(), nix::sys::stat::makedev(1, 3));
        assert!(meta("run/fifo").file_type().is_fifo());
        assert_eq!(crate::sys::xattr::get(&layer.join("etc/tagged"), b"user.podnet").unwrap(), b"kept");
        assert!(crate::sys::xattr::get(&layer.join("etc/tagged"), b"trusted.overlay.redirect").is_err());
        // Directory times hold though entries were written into them later.
        assert_eq!(meta("etc").mtime(), 1_400_000_000);
        assert_eq!(meta("etc").mode() & 0o7777, 0o750);
        assert_eq!(meta("").mtime(), 1_500_000_000);
        // Parents the tar does not list are made 0755.
        assert_eq!(meta("usr/bin").mode() & 0o7777, 0o755);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts_and_opaque_directories() {
        let dir = sandbox("whiteout");
        let layer = dir.join("layer");
        let applied = run(
            &dir,
            &[
                T::Dir("etc/", 0o755, 0),
                T::File("etc/.wh.motd", b""),
                T::File("var/cache/.wh..wh..opq", b""),
                T::File(".wh..wh.plnk", b""),
                T::File(".wh.gone", b""),
            ],
        )
        .unwrap();
        assert_eq!(applied.whiteouts, 3);
        for hidden in ["etc/motd", "gone"] {
            let meta = fs::symlink_metadata(layer.join(hidden)).unwrap();
            assert!(meta.file_type().is_char_device() && meta.rdev() == 0, "{hidden} is a 0/0 char device");
        }
        assert!(!layer.join("etc/.wh.motd").exists() && !layer.join(".wh..wh.plnk").exists());
        assert_eq!(
            crate::sys::xattr::get(&layer.join("var/cache"), b"trusted.overlay.opaque").unwrap(),
            b"y"
        );
        assert!(!layer.join("var/cache/.wh..wh..opq").exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_is_written_outside_the_layer() {
        let dir = sandbox("hostile");
        let outside = dir.join("outside");
        let out = outside.to_str().unwrap();
        let long_name = "a/".repeat(3000);
        let long_path = &[("path", long_name.as_bytes())];
        let cases: Vec<(Vec<T<'_>>, &str)> = vec![
            (vec![T::File("../outside/new", b"x")], "climbs out of the layer"),
            (vec![T::File("a/../../outside/new", b"x")], "climbs out of the layer"),
            (vec![T::Sym("link", out), T::File("link/new", b"x")], "written through the symlink `link`"),
            (vec![T::Sym("link", "../outside"), T::File("link/new", b"x")], "written through the symlink"),
            (vec![T::Sym("link", out), T::Dir("link/sub/", 0o755, 0)], "written through the symlink"),
            (vec![T::Sym("link", out), T::File("link/.wh.secret", b"")], "written through the symlink"),
            (vec![T::Sym("link", out), T::File("link/.wh..wh..opq", b"")], "written through the symlink"),
            (vec![T::Sym("link", out), T::Hard("h", "link/secret")], "written through the symlink"),
            (vec![T::Hard("h", "../outside/secret")], "climbs out of the layer"),
            (vec![T::Hard("h", "/etc/passwd")], "has not written before it"),
            (vec![T::File(".wh...", b"")], "whiteout naming no file"),
            (vec![T::File("d/.wh..", b"")], "whiteout naming no file"),
            (vec![T::File("f", b"x"), T::File("f/g", b"x")], "not a directory"),
            (vec![T::Raw("big", EntryType::XHeader, MAX_META + 1)], "extended header"),
            (vec![T::Raw("sparse", EntryType::GNUSparse, 0)], "tar type"),
            (vec![T::Pax(&[("size", b"9999999999")]), T::File("f", b"x")], "PAX size unlike its header's"),
            (vec![T::Pax(long_path), T::File("f", b"x")], "over 4096 bytes"),
        ];
        for (entries, expected) in cases {
            let err = run(&dir, &entries).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}: wanted {expected}");
            assert!(err.len() < 400, "a short message: {err}");
        }
        // Allowed, and kept inside: an absolute name, a symlink replaced by
        // a file (not written through), a device node.
        run(
            &dir,
            &[
                T::File("/abs/file", b"in"),
                T::Sym("s", &format!("{out}/secret")),
                T::File("s", b"replaced"),
                T::Node("sda", EntryType::Block, 8, 0),
            ],
        )
        .unwrap();
        assert_eq!(fs::read(dir.join("layer/abs/file")).unwrap(), b"in");
        assert_eq!(fs::read(dir.join("layer/s")).unwrap(), b"replaced");
        let names: Vec<_> = fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["secret"], "nothing new outside");
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"untouched");
        assert!(crate::sys::xattr::get(&outside, b"trusted.overlay.opaque").is_err());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn the_bounds_on_bytes_and_entries_are_named_when_hit() {
        let dir = sandbox("bounds");
        let layer = dir.join("layer");
        let many = tar(&(0..20).map(|_| T::File("f", b"x")).collect::<Vec<_>>());
        let err = apply(&mut &many[..], &layer, Bounds { bytes: 1 << 20, entries: 10 }).unwrap_err();
        assert!(matches!(err, LayerError::TooManyEntries(10)), "{err}");
        assert!(err.to_string().contains("images.max_layer_entries"));
        let big = tar(&[T::File("f", &[7u8; 100_000])]);
        let err = apply(&mut &big[..], &layer, Bounds { bytes: 50_000, entries: 10 }).unwrap_err();
        assert!(matches!(err, LayerError::TooLarge(50_000)), "{err}");
        assert!(err.to_string().contains("images.max_layer_bytes"));
        // The padding after the tar counts too: it is hashed.
        assert!(apply(&mut &big[..], &layer, Bounds { bytes: big.len() as u64, entries: 10 }).is_ok());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_tar_that_stops_right_after_its_last_entry_is_whole_as_go_reads_it() {
        // umoci writes such layers: no padding after the data, no end blocks.
        let dir = sandbox("unterminated");
        let mut bytes = tar(&[T::File("a", b"first"), T::File("bin/busybox", &[5u8; 1000])]);
        bytes.truncate(512 + 512 + 512 + 1000);
        apply(&mut &bytes[..], &dir.join("layer"), BOUNDS).unwrap();
        assert_eq!(fs::read(dir.join("layer/bin/busybox")).unwrap(), [5u8; 1000]);
        // One byte of its data fewer: damaged.
        bytes.pop();
        let err =
            run(&dir, &[]).and_then(|_| apply(&mut &bytes[..], &dir.join("layer"), BOUNDS)).unwrap_err();
        assert!(matches!(err, LayerError::Damaged(_)), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_damaged_or_truncated_tar_is_refused() {
        let dir = sandbox("damaged");
        let mut bytes = tar(&[T::File("f", &[1u8; 5000])]);
        bytes.truncate(2048);
        let err = apply(&mut &bytes[..], &dir.join("layer"), BOUNDS).unwrap_err();
        assert!(matches!(err, LayerError::Damaged(_)), "{err}");
        let err = apply(&mut &[0x55u8; 1024][..], &dir.join("layer"), BOUNDS).unwrap_err();
        assert!(matches!(err, LayerError::Damaged(_)), "{err}");
        let _ = fs::remove_dir_all(dir);
    }
}
