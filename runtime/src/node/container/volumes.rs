//! A container's ConfigMap and Secret volumes on the node: each volume's
//! files written under `<pod dir>/volumes/<name>/` (removed with the pod's
//! directory), and the directory bind-mounted read-only where the
//! container mounts it, as the kubelet does. The files are written when
//! the container starts; a later change of the ConfigMap reaches a
//! restarted container only (the kubelet updates them in place).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ContainerError;
use crate::model::ImageSpec;
use crate::model::volumes::{check_file_path, check_mount_path};

/// The directory a pod's volumes are written under.
const VOLUMES_DIR: &str = "volumes";

/// One read-only bind mount: the volume's directory on the node, and
/// where the container sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeBind {
    /// The volume's directory on the node.
    pub source: PathBuf,
    /// The container's path.
    pub destination: String,
}

/// Writes the files of `image`'s volumes under `pod_dir` (anew: what a
/// last run left goes first) and gives the mounts to make. Paths were
/// checked when the pod was taken; they are checked again here, where a
/// bad one would write outside the volume.
pub fn write(pod_dir: &Path, image: &ImageSpec) -> Result<Vec<VolumeBind>, ContainerError> {
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
    let bad = |what: &str, path: &str| {
        ContainerError::io("refusing", root.join(path))(std::io::Error::other(format!("bad {what} {path:?}")))
    };
    let mkdir = |dir: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(ContainerError::io("cannot create", dir))
    };
    // Root's only on the node (a Secret's files are 0644 by default): the
    // container reaches each volume through its bind mount, not this path.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&root)
        .and_then(|()| std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)))
        .map_err(ContainerError::io("cannot create", &root))?;
    for volume in &image.files {
        if volume.name.contains('/') || check_file_path(&volume.name).is_err() {
            return Err(bad("volume name", &volume.name));
        }
        let dir = root.join(&volume.name);
        mkdir(&dir)?;
        for file in &volume.files {
            check_file_path(&file.path).map_err(|_| bad("file path", &file.path))?;
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                mkdir(parent)?;
            }
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(file.mode)
                .open(&path)
                .map_err(ContainerError::io("cannot create", &path))?;
            out.write_all(&file.data).map_err(ContainerError::io("cannot write", &path))?;
            // The mode as given, whatever the agent's umask.
            out.set_permissions(std::fs::Permissions::from_mode(file.mode))
                .map_err(ContainerError::io("cannot set the mode of", &path))?;
        }
    }
    image
        .mounts
        .iter()
        .map(|m| {
            check_mount_path(&m.mount_path).map_err(|_| bad("mount path", &m.mount_path))?;
            // A volume whose files could not be resolved is an empty
            // directory (an optional one that is missing).
            let source = root.join(&m.name);
            if !image.files.iter().any(|v| v.name == m.name) {
                mkdir(&source)?;
            }
            Ok(VolumeBind { source, destination: m.mount_path.clone() })
        })
        .collect()
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
        // A restart writes them anew.
        assert!(write(dir, &image(files, &[("cfg", "/etc/app")])).is_ok());

        let escape = vec![VolumeFiles { name: "cfg".into(), files: vec![file("../../x", b"x", 0o644)] }];
        assert!(write(dir, &image(escape, &[("cfg", "/etc/app")])).is_err());
        assert!(!dir.join("x").exists());
        assert!(write(dir, &image(vec![], &[("cfg", "/")])).is_err());
    }
}
