//! A container's ConfigMap and Secret volumes on the node: each volume is
//! a directory `<pod dir>/volumes/<name>/` (removed with the pod's
//! directory), bind-mounted read-only where the container mounts it, as
//! the kubelet does. Its files are laid out by the atomic writer
//! (`..data` swapped over timestamped directories), so a running
//! container sees a ConfigMap's or Secret's change ([`update`]) whole. A
//! Secret volume's directory is a size-limited tmpfs of its own: its
//! files never touch the node's disk, as with the kubelet.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::ContainerError;
use super::atomic_writer;
use crate::model::ImageSpec;
use crate::model::env_refs::Source;
use crate::model::volumes::{
    MAX_VOLUME_BYTES, MAX_VOLUME_ENTRIES, VolumeFile, check_file_path, check_mount_path,
};

/// The directory a pod's volumes are written under.
const VOLUMES_DIR: &str = "volumes";
/// A Secret volume's tmpfs: room for the pod's files twice (the old and
/// the new data directory live side by side during a swap), each file
/// rounded up to a page.
const SECRET_TMPFS_BYTES: usize = 2 * (MAX_VOLUME_BYTES + MAX_VOLUME_ENTRIES * 4096);
/// Its inodes: every entry twice, and the links and the root.
const SECRET_TMPFS_INODES: usize = 3 * MAX_VOLUME_ENTRIES + 16;

/// Writes to volumes one at a time: the atomic writer needs its callers
/// serialised, and a container's start and an update of its running
/// volumes run on different blocking threads.
static WRITING: Mutex<()> = Mutex::new(());

/// One read-only bind mount: the volume's directory on the node, and
/// where the container sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeBind {
    /// The volume's directory on the node.
    pub source: PathBuf,
    /// The container's path.
    pub destination: String,
}

fn bad(root: &Path, what: &str, path: &str) -> ContainerError {
    ContainerError::io("refusing", root.join(path))(std::io::Error::other(format!("bad {what} {path:?}")))
}

/// The volume `name`'s files in `image` (none when it did not resolve:
/// an optional one that is missing).
fn payload<'a>(image: &'a ImageSpec, name: &str) -> &'a [VolumeFile] {
    image.files.iter().find(|v| v.name == name).map(|v| v.files.as_slice()).unwrap_or_default()
}

/// Whether the volume `name` is a Secret's.
fn is_secret(image: &ImageSpec, name: &str) -> bool {
    image.volumes.iter().any(|v| v.name == name && v.source == Source::Secret)
}

/// Makes the directories and files of `image`'s volumes under `pod_dir`
/// (anew: what a last run left goes first) and gives the mounts to make.
/// Paths were checked when the pod was taken; they are checked again
/// here, where a bad one would write outside the volume.
pub fn write(pod_dir: &Path, image: &ImageSpec) -> Result<Vec<VolumeBind>, ContainerError> {
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    unmount(pod_dir)?;
    let root = pod_dir.join(VOLUMES_DIR);
    match std::fs::remove_dir_all(&root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ContainerError::io("cannot remove", &root)(e));
        }
        _ => {}
    }
    if image.mounts.is_empty() {
        return Ok(Vec::new());
    }
    // Root's only on the node (a Secret's files are 0644 by default): the
    // container reaches each volume through its bind mount, not this path.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .and_then(|()| std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)))
        .map_err(ContainerError::io("cannot create", &root))?;
    let mut binds = Vec::with_capacity(image.mounts.len());
    for m in &image.mounts {
        check_mount_path(&m.mount_path).map_err(|_| bad(&root, "mount path", &m.mount_path))?;
        if m.name.contains('/') || check_file_path(&m.name).is_err() {
            return Err(bad(&root, "volume name", &m.name));
        }
        let source = root.join(&m.name);
        // Two mounts of one volume share its directory.
        if !source.exists() {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&source)
                .map_err(ContainerError::io("cannot create", &source))?;
            if is_secret(image, &m.name) {
                mount_tmpfs(&source)?;
            }
            atomic_writer::write(&source, payload(image, &m.name))?;
        }
        binds.push(VolumeBind { source, destination: m.mount_path.clone() });
    }
    Ok(binds)
}

/// Brings a running container's volumes to `image`'s files, each volume
/// swapped whole, as the kubelet's sync does when a ConfigMap or Secret
/// changes; volumes already holding their files are left alone. Nothing
/// is written unless `current()` still holds once it is this call's turn
/// (a later update or start overtook it). The names of the volumes that
/// changed.
pub fn update(
    pod_dir: &Path,
    image: &ImageSpec,
    current: &dyn Fn() -> bool,
) -> Result<Vec<String>, ContainerError> {
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    if !current() {
        return Ok(Vec::new());
    }
    let root = pod_dir.join(VOLUMES_DIR);
    let mut changed = Vec::new();
    let mut names: Vec<&str> = image.mounts.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let dir = root.join(name);
        // Made when the container started; a volume without one is not
        // this container's (its spec changed under it: a restart makes it).
        if name.contains('/') || !dir.join(atomic_writer::DATA_LINK).is_symlink() {
            continue;
        }
        if atomic_writer::write(&dir, payload(image, name))? {
            changed.push(name.to_string());
        }
    }
    Ok(changed)
}

/// Mounts a Secret volume's tmpfs on `dir`: not executable, no devices or
/// set-uid files, bounded.
fn mount_tmpfs(dir: &Path) -> Result<(), ContainerError> {
    let data = format!("size={SECRET_TMPFS_BYTES},nr_inodes={SECRET_TMPFS_INODES},mode=0755");
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|source| ContainerError::VolumeMount {
        what: "cannot mount",
        path: dir.to_path_buf(),
        source,
    })
}

/// Unmounts the Secret volumes' tmpfs under `pod_dir`, so its directory can
/// go; detached if the container still holds them (they go when it does).
/// Fine when there are none.
pub fn unmount(pod_dir: &Path) -> Result<(), ContainerError> {
    let root = pod_dir.join(VOLUMES_DIR);
    let Ok(entries) = std::fs::read_dir(&root) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        match umount2(&path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            // EINVAL: not a mount point (a ConfigMap's volume).
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(source) => return Err(ContainerError::VolumeMount { what: "cannot unmount", path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::volumes::{VolumeFile, VolumeFiles, VolumeMount};
    use std::os::unix::fs::MetadataExt;

    fn image(files: Vec<VolumeFiles>, mounts: &[(&str, &str)]) -> ImageSpec {
        ImageSpec {
            image: "busybox".into(),
            pull_policy: crate::model::PullPolicy::IfNotPresent,
            command: vec![],
            args: vec![],
            env: vec![],
            env_refs: vec![],
            env_error: None,
            volumes: vec![],
            mounts: mounts
                .iter()
                .map(|(n, p)| VolumeMount { name: n.to_string(), mount_path: p.to_string(), read_only: true })
                .collect(),
            files,
            stdin_once: false,
            stdin: Default::default(),
        }
    }

    fn file(path: &str, data: &[u8], mode: u32) -> VolumeFile {
        VolumeFile { path: path.into(), data: data.to_vec(), mode }
    }

    #[test]
    fn files_are_written_with_their_modes_and_mounted_read_only_where_asked() {
        let dir = std::env::temp_dir().join(format!("podnet-volumes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let result = std::panic::catch_unwind(|| written(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        result.unwrap();
    }

    fn written(dir: &Path) {
        let files = vec![VolumeFiles {
            name: "cfg".into(),
            files: vec![file("app.conf", b"mode=fast\n", 0o644), file("pw/secret", b"x", 0o400)],
        }];
        let binds = write(dir, &image(files.clone(), &[("cfg", "/etc/app"), ("gone", "/etc/gone")])).unwrap();
        let cfg = dir.join("volumes/cfg");
        assert_eq!(
            binds,
            [
                VolumeBind { source: cfg.clone(), destination: "/etc/app".into() },
                VolumeBind { source: dir.join("volumes/gone"), destination: "/etc/gone".into() },
            ]
        );
        assert_eq!(std::fs::read(cfg.join("app.conf")).unwrap(), b"mode=fast\n");
        assert_eq!(std::fs::metadata(cfg.join("pw/secret")).unwrap().mode() & 0o777, 0o400);
        assert!(dir.join("volumes/gone").is_dir());
        assert_eq!(
            std::fs::metadata(dir.join("volumes")).unwrap().mode() & 0o777,
            0o700,
            "not the host users'"
        );
        assert_eq!(
            std::fs::read_link(cfg.join("app.conf")).unwrap(),
            Path::new("..data/app.conf"),
            "the atomic writer's layout"
        );
        // A running container's volume follows its ConfigMap: the new files
        // swapped in, the unchanged volume left alone, an overtaken update
        // writes nothing.
        let mut newer = image(files.clone(), &[("cfg", "/etc/app"), ("gone", "/etc/gone")]);
        newer.files[0].files[0].data = b"mode=slow\n".to_vec();
        assert_eq!(update(dir, &newer, &|| false).unwrap(), Vec::<String>::new());
        assert_eq!(std::fs::read(cfg.join("app.conf")).unwrap(), b"mode=fast\n");
        assert_eq!(update(dir, &newer, &|| true).unwrap(), vec!["cfg".to_string()]);
        assert_eq!(std::fs::read(cfg.join("app.conf")).unwrap(), b"mode=slow\n");
        assert_eq!(update(dir, &newer, &|| true).unwrap(), Vec::<String>::new());
        // A restart writes them anew.
        assert!(write(dir, &image(files, &[("cfg", "/etc/app")])).is_ok());

        let escape = vec![VolumeFiles { name: "cfg".into(), files: vec![file("../../x", b"x", 0o644)] }];
        assert!(write(dir, &image(escape, &[("cfg", "/etc/app")])).is_err());
        assert!(!dir.join("x").exists());
        assert!(write(dir, &image(vec![], &[("cfg", "/")])).is_err());
    }
}
