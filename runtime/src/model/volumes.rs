//! ConfigMap and Secret volumes (`volumes[].configMap`, `volumes[].secret`)
//! and where the container sees them (`volumeMounts`). As env references,
//! they are resolved for the node the pod runs on into the files to write
//! (so a node holds its own pods' keys, and no other object), bounded in
//! bytes; a missing object or key keeps the container from starting
//! (CreateContainerConfigError) unless the volume is optional.

use serde::{Deserialize, Serialize};

use super::env_refs::{EnvRefError, Lookup, Source};

/// Most volumes one pod may declare, and mounts its container may make.
pub const MAX_VOLUMES: usize = 16;
/// Most `items` one volume may list.
pub const MAX_VOLUME_ITEMS: usize = 64;
/// Most bytes the files of one pod's volumes may hold in all, counted as
/// they are read: every node holds its pods' files in its desired state,
/// which travels in one control frame. (A ConfigMap alone may hold 1 MiB;
/// a pod mounting more than this names the keys it needs with `items`.)
pub const MAX_VOLUME_BYTES: usize = 256 << 10;
/// Most files and directories one pod's volumes may hold in all (each path
/// counted by its components): each costs the node an inode and a page,
/// on a Secret volume's tmpfs too.
pub const MAX_VOLUME_ENTRIES: usize = 1024;
/// The files' mode when the volume sets none (the kubelet's `defaultMode`,
/// for Secrets too).
pub const DEFAULT_MODE: u32 = 0o644;
/// Longest file path or mount path taken.
const MAX_PATH: usize = 1024;

/// One volume of a pod, from a ConfigMap or a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its name, as mounts name it.
    pub name: String,
    /// ConfigMap or Secret.
    pub source: Source,
    /// The object's name (in the pod's namespace).
    pub object: String,
    /// The keys to write and where; every key, named as it is, when empty.
    pub items: Vec<KeyToPath>,
    /// An empty directory instead of an error when the object (or a key
    /// of `items`) is missing.
    pub optional: bool,
    /// The files' mode when an item sets none (`defaultMode`, defaulted
    /// to [`DEFAULT_MODE`] as the API server does).
    pub default_mode: u32,
}

/// One key of a volume's object written as a file (`items[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyToPath {
    /// The key.
    pub key: String,
    /// The file, relative to the volume's directory.
    pub path: String,
    /// Its mode, over the volume's `defaultMode`.
    pub mode: Option<u32>,
}

/// Where the container sees a volume (`volumeMounts[]`). Always read-only,
/// as the kubelet mounts ConfigMap and Secret volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// The directory in the container.
    pub mount_path: String,
    /// `readOnly` as written (the mount is read-only either way).
    pub read_only: bool,
}

/// A volume's files as resolved for its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFiles {
    /// The volume's name.
    pub name: String,
    /// Its files.
    pub files: Vec<VolumeFile>,
}

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFile {
    /// Relative to the volume's directory (checked by [`check_file_path`]).
    pub path: String,
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its mode.
    pub mode: u32,
}

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty.
    #[error("must not be empty")]
    Empty,
    /// Over [`MAX_PATH`].
    #[error("must be at most {MAX_PATH} bytes")]
    TooLong,
    /// A file path that is absolute.
    #[error("must be a relative path")]
    Absolute,
    /// A mount path that is not absolute.
    #[error("must be an absolute path")]
    Relative,
    /// `..` would leave the directory.
    #[error("must not contain '..'")]
    DotDot,
    /// A NUL, or a `:` (Kubernetes' rule for mount paths).
    #[error("must not contain NUL or ':'")]
    Character,
    /// `/`: the container's root.
    #[error("must not be the container's root: mount the volume in a directory of its own")]
    Root,
    /// A file path starting with `..`: the names the node's atomic writer
    /// keeps for itself (`..data`).
    #[error("must not start with '..'")]
    Reserved,
}

fn check_path(path: &str) -> Result<(), PathError> {
    match path {
        "" => Err(PathError::Empty),
        p if p.len() > MAX_PATH => Err(PathError::TooLong),
        p if p.contains(['\0', ':']) => Err(PathError::Character),
        p if p.split('/').any(|c| c == "..") => Err(PathError::DotDot),
        _ => Ok(()),
    }
}

/// A file path in a volume (an item's `path`, or a key): relative, with no
/// `..` component and not starting with `..` (Kubernetes' rules): it cannot
/// leave the volume's directory nor touch the atomic writer's `..data`.
pub fn check_file_path(path: &str) -> Result<(), PathError> {
    check_path(path)?;
    if path.starts_with('/') || path.split('/').all(|c| c.is_empty() || c == ".") {
        return Err(PathError::Absolute);
    }
    match path.trim_start_matches("./").starts_with("..") {
        true => Err(PathError::Reserved),
        false => Ok(()),
    }
}

/// A mount path: absolute, no `..`, not `/`.
pub fn check_mount_path(path: &str) -> Result<(), PathError> {
    check_path(path)?;
    if !path.starts_with('/') {
        return Err(PathError::Relative);
    }
    match path.split('/').all(|c| c.is_empty() || c == ".") {
        true => Err(PathError::Root),
        false => Ok(()),
    }
}

/// A file mode a manifest may give (`defaultMode`, `items[].mode`):
/// Kubernetes' 0 to 0777.
pub fn mode_ok(mode: u64) -> bool {
    mode <= 0o777
}

/// The files of `volumes`, read through `lookup` and bounded by
/// [`MAX_VOLUME_BYTES`] as they are read; the kubelet's message when an
/// object or key is missing from a volume that is not optional.
pub fn resolve(volumes: &[Volume], lookup: &dyn Lookup) -> Result<Vec<VolumeFiles>, EnvRefError> {
    let (mut bytes, mut entries) = (0usize, 0usize);
    let mut out = Vec::with_capacity(volumes.len());
    for v in volumes {
        let mode = |m: Option<u32>| m.unwrap_or(v.default_mode);
        let mut files = Vec::new();
        let mut take = |path: &str, data: &[u8], mode: u32| -> Result<(), EnvRefError> {
            bytes += path.len() + data.len();
            entries += path.split('/').filter(|c| !c.is_empty() && *c != ".").count();
            if bytes > MAX_VOLUME_BYTES {
                return Err(EnvRefError::VolumesTooLarge);
            }
            if entries > MAX_VOLUME_ENTRIES {
                return Err(EnvRefError::TooManyVolumeFiles);
            }
            files.push(VolumeFile { path: path.to_string(), data: data.to_vec(), mode });
            Ok(())
        };
        match lookup.bytes(v.source, &v.object) {
            None if v.optional => {}
            None => return Err(EnvRefError::NoObject { kind: v.source, object: v.object.clone() }),
            Some(values) if v.items.is_empty() => {
                for (key, data) in values {
                    // Keys are checked when the object is made; one that is
                    // not a file name is never written.
                    if check_file_path(key).is_ok() {
                        take(key, data, mode(None))?;
                    }
                }
            }
            Some(values) => {
                let values: Vec<(&str, &[u8])> = values.collect();
                for item in &v.items {
                    match values.iter().find(|(k, _)| *k == item.key) {
                        Some((_, data)) => take(&item.path, data, mode(item.mode))?,
                        None if v.optional => {}
                        None => {
                            return Err(EnvRefError::NoVolumeKey { kind: v.source, key: item.key.clone() });
                        }
                    }
                }
            }
        }
        out.push(VolumeFiles { name: v.name.clone(), files });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::env_refs::{Bytes, FieldPath, Values};

    struct Objects;
    impl Lookup for Objects {
        fn values<'a>(&'a self, _: Source, _: &str) -> Option<Values<'a>> {
            None
        }
        fn bytes<'a>(&'a self, source: Source, name: &str) -> Option<Bytes<'a>> {
            let pairs: &'static [(&'static str, &'static [u8])] = match (source, name) {
                (Source::ConfigMap, "app") => &[("app.conf", b"mode=fast\n"), ("other", b"x")],
                (Source::Secret, "db") => &[("password", b"\xffhunter2")],
                (Source::ConfigMap, "big") => &[("a", &[0; MAX_VOLUME_BYTES])],
                _ => return None,
            };
            Some(Box::new(pairs.iter().copied()))
        }
        fn field(&self, _: &FieldPath) -> String {
            String::new()
        }
    }

    fn volume(name: &str, source: Source, object: &str, items: &[(&str, &str)], optional: bool) -> Volume {
        Volume {
            name: name.into(),
            source,
            object: object.into(),
            items: items
                .iter()
                .map(|(k, p)| KeyToPath { key: k.to_string(), path: p.to_string(), mode: None })
                .collect(),
            optional,
            default_mode: DEFAULT_MODE,
        }
    }

    #[test]
    fn volumes_become_files_with_the_kubelets_modes_and_errors() {
        let mut secret = volume("db", Source::Secret, "db", &[], false);
        secret.default_mode = 0o400;
        let vols = [
            volume("cfg", Source::ConfigMap, "app", &[], false),
            volume("one", Source::ConfigMap, "app", &[("app.conf", "conf/app.conf")], false),
            secret,
            volume("gone", Source::ConfigMap, "nope", &[], true),
        ];
        let files = resolve(&vols, &Objects).unwrap();
        let paths: Vec<Vec<(&str, u32)>> =
            files.iter().map(|v| v.files.iter().map(|f| (f.path.as_str(), f.mode)).collect()).collect();
        assert_eq!(
            paths,
            vec![
                vec![("app.conf", 0o644), ("other", 0o644)],
                vec![("conf/app.conf", 0o644)],
                vec![("password", 0o400)],
                vec![]
            ]
        );
        assert_eq!(files[2].files[0].data, b"\xffhunter2", "a Secret's bytes as they are");

        let e = |v: Volume| resolve(&[v], &Objects).unwrap_err().to_string();
        assert_eq!(e(volume("v", Source::ConfigMap, "nope", &[], false)), "configmap \"nope\" not found");
        assert_eq!(
            e(volume("v", Source::ConfigMap, "app", &[("absent", "a")], false)),
            "configmap references non-existent config key: absent"
        );
        assert_eq!(
            e(volume("v", Source::Secret, "db", &[("absent", "a")], false)),
            "secret references non-existent secret key: absent"
        );
        assert!(e(volume("v", Source::ConfigMap, "big", &[], false)).contains("over 262144 bytes"));
        let many: Vec<Volume> = (0..=MAX_VOLUME_ENTRIES)
            .map(|i| volume(&format!("v{i}"), Source::Secret, "db", &[], false))
            .collect();
        assert!(resolve(&many, &Objects).unwrap_err().to_string().contains("more than 1024 files"));
        let optional = resolve(&[volume("v", Source::ConfigMap, "app", &[("absent", "a")], true)], &Objects);
        assert_eq!(optional.unwrap()[0].files, vec![]);
    }

    #[test]
    fn paths_stay_inside_the_volume_and_mounts_off_the_root() {
        for ok in ["a", "conf/app.conf", "a/..data", "a..b"] {
            assert_eq!(check_file_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("../x", PathError::DotDot),
            ("a/../../x", PathError::DotDot),
            (".", PathError::Absolute),
            ("a\0", PathError::Character),
            ("..data", PathError::Reserved),
            ("..2026_12_06/x", PathError::Reserved),
            ("./..data", PathError::Reserved),
        ] {
            assert_eq!(check_file_path(bad), Err(why), "{bad}");
        }
        assert_eq!(check_mount_path("/etc/config"), Ok(()));
        assert_eq!(check_mount_path("etc"), Err(PathError::Relative));
        assert_eq!(check_mount_path("/"), Err(PathError::Root));
        assert_eq!(check_mount_path("/./"), Err(PathError::Root));
        assert_eq!(check_mount_path("/a/../.."), Err(PathError::DotDot));
        assert!(mode_ok(0o644) && !mode_ok(0o1000));
    }
}
