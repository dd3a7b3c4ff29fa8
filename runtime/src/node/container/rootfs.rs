//! A container's root filesystem: an overlayfs of the image's layers (read
//! only, shared by every container of the image) under the container's own
//! upper and work directories.
//!
//! Mount data is limited to one page (4 KiB). A few dozen layers with long
//! store paths exceed it, so, as Docker's overlay2 driver does, each layer
//! gets a short link (`l/0`, `l/1`, …) in the container's directory, and
//! the mount is made from a thread that has its own working directory
//! (`unshare(CLONE_FS)`) set to that directory, with relative paths: the
//! data stays short for any number of layers overlayfs can stack.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::ContainerError;
use crate::sys::mountinfo;

/// The most lower layers overlayfs stacks (the kernel's OVL_MAX_STACK).
pub const MAX_LAYERS: usize = 500;

/// The paths of one container's root filesystem.
#[derive(Debug, Clone)]
pub struct Rootfs {
    dir: PathBuf,
}

impl Rootfs {
    /// The rootfs of the container whose directory is `dir`.
    pub fn new(dir: &Path) -> Rootfs {
        Rootfs { dir: dir.to_path_buf() }
    }

    /// Where the merged tree is mounted.
    pub fn merged(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Mounts `layers` (bottom first) with fresh upper and work directories.
    /// On error, whatever it made is removed again.
    pub fn mount(&self, layers: &[PathBuf]) -> Result<(), ContainerError> {
        if layers.is_empty() {
            return Err(ContainerError::NoLayers);
        }
        if layers.len() > MAX_LAYERS {
            return Err(ContainerError::TooManyLayers(layers.len()));
        }
        let made = self.prepare(layers).and_then(|()| self.mount_relative(layers.len()));
        if made.is_err() {
            self.remove_parts();
        }
        made
    }

    fn prepare(&self, layers: &[PathBuf]) -> Result<(), ContainerError> {
        let links = self.dir.join("l");
        for dir in [self.merged(), self.dir.join("upper"), self.dir.join("work"), links.clone()] {
            std::fs::create_dir_all(&dir).map_err(ContainerError::io("cannot create", &dir))?;
        }
        for (i, layer) in layers.iter().enumerate() {
            if !layer.is_dir() {
                return Err(ContainerError::Io {
                    what: "missing image layer",
                    path: layer.clone(),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
            let link = links.join(i.to_string());
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(layer, &link).map_err(ContainerError::io("cannot link", &link))?;
        }
        Ok(())
    }

    /// Mounts with paths relative to the container's directory, from a
    /// thread of its own whose working directory no other thread shares.
    fn mount_relative(&self, layers: usize) -> Result<(), ContainerError> {
        let data = mount_data(layers);
        let dir = self.dir.clone();
        let merged = self.merged();
        let mounted = std::thread::spawn(move || -> Result<(), nix::Error> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::unistd::chdir(&dir)?;
            mount(Some("overlay"), "rootfs", Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        })
        .join();
        let source = match mounted {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => nix::Error::EIO,
        };
        Err(ContainerError::Mount { what: "cannot mount", path: merged, source })
    }

    /// Unmounts the merged tree (if mounted) and removes what `mount` made.
    /// Idempotent.
    pub fn unmount(&self) -> Result<(), ContainerError> {
        let merged = self.merged();
        match umount2(&merged, MntFlags::empty()) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            // Something still has it open: detach it now, it goes when they do.
            Err(nix::Error::EBUSY) => umount2(&merged, MntFlags::MNT_DETACH).map_err(|source| {
                ContainerError::Mount { what: "cannot unmount", path: merged.clone(), source }
            })?,
            Err(source) => {
                return Err(ContainerError::Mount { what: "cannot unmount", path: merged, source });
            }
        }
        if is_mounted(&merged) {
            return Err(ContainerError::Mount {
                what: "still mounted:",
                path: merged,
                source: nix::Error::EBUSY,
            });
        }
        self.remove_parts();
        Ok(())
    }

    fn remove_parts(&self) {
        for part in ["rootfs", "upper", "work", "l"] {
            let _ = std::fs::remove_dir_all(self.dir.join(part));
        }
    }
}

/// The overlay options for `layers` short links, top layer first.
fn mount_data(layers: usize) -> String {
    let lower: Vec<String> = (0..layers).rev().map(|i| format!("l/{i}")).collect();
    format!("lowerdir={},upperdir=upper,workdir=work", lower.join(":"))
}

/// True when `path` is a mount point in this mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    // Field 5 is the mount point.
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|point| mountinfo::path(point) == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_data_lists_short_links_top_first() {
        assert_eq!(mount_data(3), "lowerdir=l/2:l/1:l/0,upperdir=upper,workdir=work");
        // Well under a page for as many layers as overlayfs takes.
        assert!(mount_data(MAX_LAYERS).len() < 4096);
    }

    #[test]
    fn forty_layers_with_long_paths_mount_and_unmount() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let base = std::env::temp_dir().join(format!("podnet-rootfs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // 40 layers of ~150-byte paths: 6 KB of plain lowerdir, over a page.
        let long = "a-long-store-directory-name-".repeat(4);
        let layers: Vec<PathBuf> = (0..40)
            .map(|i| {
                let dir = base.join("store").join(format!("{long}{i:03}")).join(&long).join("fs");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("layer"), i.to_string()).unwrap();
                std::fs::write(dir.join(format!("only-{i}")), "").unwrap();
                dir
            })
            .collect();
        let plain: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
        assert!(plain > 4096, "the test's paths must be too long for one page: {plain}");
        let pod = base.join("pods").join(&long);
        std::fs::create_dir_all(&pod).unwrap();
        let rootfs = Rootfs::new(&pod);
        rootfs.mount(&layers).unwrap();
        let merged = rootfs.merged();
        assert!(is_mounted(&merged));
        // The top layer wins; every layer's own files are there.
        assert_eq!(std::fs::read_to_string(merged.join("layer")).unwrap(), "39");
        assert!(merged.join("only-0").exists() && merged.join("only-39").exists());
        // Writes go to the container's upper directory, not the layers.
        std::fs::write(merged.join("layer"), "mine").unwrap();
        assert_eq!(std::fs::read_to_string(layers[39].join("layer")).unwrap(), "39");
        assert_eq!(std::fs::read_to_string(pod.join("upper/layer")).unwrap(), "mine");
        rootfs.unmount().unwrap();
        assert!(!is_mounted(&merged));
        assert!(!merged.exists() && !pod.join("upper").exists() && !pod.join("l").exists());
        rootfs.unmount().unwrap(); // idempotent
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_missing_layer_leaves_nothing_behind() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let pod = std::env::temp_dir().join(format!("podnet-rootfs-missing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&pod);
        std::fs::create_dir_all(&pod).unwrap();
        let err = Rootfs::new(&pod).mount(&[pod.join("no-such-layer")]).unwrap_err();
        assert!(err.to_string().starts_with("missing image layer"), "{err}");
        assert_eq!(std::fs::read_dir(&pod).unwrap().count(), 0);
        std::fs::remove_dir_all(&pod).unwrap();
    }
}
