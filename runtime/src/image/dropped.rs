//! Archives dropped into the store's directory for air-gapped nodes (as
//! k3s's agent/images): `*.tar` files, OCI or `docker save`, imported when
//! the agent starts, each once per (name, size, mtime) recorded in the
//! store, so a restart does not import them again.

use std::path::{Path, PathBuf};

use super::store::{ArchiveStamp, Store};

/// The archives in `dir` not imported as they are now: path, file name, stamp.
pub fn pending(store: &Store, dir: &Path) -> Vec<(PathBuf, String, ArchiveStamp)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "tar") {
            continue;
        }
        // Symlinks are followed, as a user may link an archive in.
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        let stamp = ArchiveStamp { size: meta.len(), mtime_ns };
        if store.imported(&name).ok().flatten() != Some(stamp) {
            found.push((path, name, stamp));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}
