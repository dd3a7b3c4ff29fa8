//! A volume's files laid out as the kubelet's atomic writer lays them, so a
//! running container sees a ConfigMap or Secret change all at once: the
//! files live in a timestamped directory (`..2026_12_06_01_55_42.1`), a
//! `..data` symlink names the current one, and each top-level name the
//! container sees is a symlink through `..data`. An update writes a new
//! timestamped directory, points a `..data_tmp` symlink at it and renames
//! that over `..data` (one atomic step), then adds and removes the
//! top-level links and the old directory. Names starting with `..` are
//! the writer's own (item paths and keys may not start with them).
//!
//! Callers serialise writes to one directory (the node's volume lock).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ContainerError;
use crate::model::volumes::{VolumeFile, check_file_path};

/// The symlink naming the current data directory.
pub(super) const DATA_LINK: &str = "..data";
/// The link made beside it and renamed over it.
const DATA_TMP: &str = "..data_tmp";
/// The most timestamped names tried in one second before giving up.
const MAX_TRIES: u32 = 1000;

/// Writes `files` into `dir` (which exists) unless it holds exactly them
/// already; whether anything changed.
pub(super) fn write(dir: &Path, files: &[VolumeFile]) -> Result<bool, ContainerError> {
    let io = |what, path: &Path| ContainerError::io(what, path.to_path_buf());
    for file in files {
        if check_file_path(&file.path).is_err() {
            return Err(io("refusing", &dir.join(&file.path))(std::io::Error::other(format!(
                "bad file path {:?}",
                file.path
            ))));
        }
    }
    let data_link = dir.join(DATA_LINK);
    let old = std::fs::read_link(&data_link).ok();
    if let Some(old) = &old
        && holds(&dir.join(old), files)
    {
        return Ok(false);
    }
    let (name, current) = new_data_dir(dir)?;
    if let Err(e) = write_files(&current, files) {
        let _ = std::fs::remove_dir_all(&current);
        return Err(e);
    }
    // The swap: a reader sees the old files or the new, never a mixture.
    let tmp = dir.join(DATA_TMP);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("cannot remove", &tmp)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(&name, &tmp).map_err(io("cannot link", &tmp))?;
    std::fs::rename(&tmp, &data_link).map_err(io("cannot rename onto", &data_link))?;

    let top: BTreeSet<&str> = files.iter().filter_map(|f| first_component(&f.path)).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(name), &link)
                .map_err(io("cannot link", &link))?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(io("cannot read", dir))? {
        let entry = entry.map_err(io("cannot read", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("..") && !top.contains(name.as_ref()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
        }
    }
    if let Some(old) = old.filter(|old| old != Path::new(&name)) {
        let old = dir.join(old);
        std::fs::remove_dir_all(&old).map_err(io("cannot remove", &old))?;
    }
    Ok(true)
}

/// The first component of a checked relative path (`a` of `a/b`).
fn first_component(path: &str) -> Option<&str> {
    path.split('/').find(|c| !c.is_empty() && *c != ".")
}

/// Makes a new timestamped directory in `dir`, as the kubelet names them
/// (`..YYYY_MM_DD_HH_MM_SS.N`, UTC); its name and path.
fn new_data_dir(dir: &Path) -> Result<(String, PathBuf), ContainerError> {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String =
        now.trim_end_matches('Z').chars().map(|c| if c.is_ascii_digit() { c } else { '_' }).collect();
    for n in 0..MAX_TRIES {
        let name = format!("..{stamp}.{n}");
        let path = dir.join(&name);
        match std::fs::DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(ContainerError::io("cannot set the mode of", path.clone()))?;
                return Ok((name, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ContainerError::io("cannot create", path)(e)),
        }
    }
    Err(ContainerError::io("cannot create", dir.join("..data"))(std::io::Error::other(
        "too many data directories this second",
    )))
}

/// Writes each file, with its parents, its mode as given whatever the
/// agent's umask.
fn write_files(root: &Path, files: &[VolumeFile]) -> Result<(), ContainerError> {
    for file in files {
        let path = root.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(ContainerError::io("cannot create", parent.to_path_buf()))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&path)
            .map_err(ContainerError::io("cannot create", path.clone()))?;
        out.write_all(&file.data).map_err(ContainerError::io("cannot write", path.clone()))?;
        out.set_permissions(std::fs::Permissions::from_mode(file.mode))
            .map_err(ContainerError::io("cannot set the mode of", path.clone()))?;
    }
    Ok(())
}

/// Whether the data directory `current` holds exactly `files`: each with
/// its bytes and mode, and no other file.
fn holds(current: &Path, files: &[VolumeFile]) -> bool {
    let same = files.iter().all(|f| {
        let path = current.join(&f.path);
        std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_file() && m.mode() & 0o7777 == f.mode && m.len() == f.data.len() as u64)
            && std::fs::read(&path).is_ok_and(|data| data == f.data)
    });
    same && count_files(current) == Some(files.len())
}

/// How many regular files lie under `dir`, or None if it cannot be read.
fn count_files(dir: &Path) -> Option<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let kind = entry.file_type().ok()?;
        n += match kind.is_dir() {
            true => count_files(&entry.path())?,
            false => 1,
        };
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str) -> VolumeFile {
        VolumeFile { path: path.into(), data: data.as_bytes().to_vec(), mode: 0o644 }
    }

    #[test]
    fn updates_swap_the_data_link_and_keep_the_visible_names_in_step() {
        let dir = std::env::temp_dir().join(format!("podnet-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let result = std::panic::catch_unwind(|| swapped(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        result.unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        names.sort();
        names
    }

    fn swapped(dir: &Path) {
        assert!(write(dir, &[file("a", "1"), file("conf/b", "2")]).unwrap());
        let first = std::fs::read_link(dir.join(DATA_LINK)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("conf/b")).unwrap(), "2");
        assert_eq!(std::fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(std::fs::read_link(dir.join("conf")).unwrap(), Path::new("..data/conf"));

        // The same files again: nothing is written.
        assert!(!write(dir, &[file("a", "1"), file("conf/b", "2")]).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA_LINK)).unwrap(), first);

        // A new value, a key gone, a key added: one swap, the old directory gone.
        assert!(write(dir, &[file("a", "one"), file("c", "3")]).unwrap());
        let second = std::fs::read_link(dir.join(DATA_LINK)).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(dir.join("c")).unwrap(), "3");
        let stamp = second.to_string_lossy().into_owned();
        assert!(stamp.starts_with("..20") && stamp.len() == "..2026_12_06_01_55_42.0".len(), "{stamp}");
        assert_eq!(names(dir), vec![stamp, "..data".to_string(), "a".into(), "c".into()]);

        // A mode change alone is a change.
        let mut secret = file("a", "one");
        secret.mode = 0o400;
        assert!(write(dir, &[secret, file("c", "3")]).unwrap());
        assert_eq!(std::fs::metadata(dir.join("a")).unwrap().mode() & 0o777, 0o400);

        // Paths out of the volume are refused before anything is written.
        let before = std::fs::read_link(dir.join(DATA_LINK)).unwrap();
        assert!(write(dir, &[file("../x", "x")]).is_err());
        assert!(write(dir, &[file("..data/x", "x")]).is_err());
        assert_eq!(std::fs::read_link(dir.join(DATA_LINK)).unwrap(), before);
    }
}
