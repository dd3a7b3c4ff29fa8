//! Named network namespaces, as `ip netns` keeps them: a bind mount of the
//! namespace file under /run/netns, so users can `ip netns exec` into a pod.
//!
//! `unshare`/`setns` act on the calling thread, so namespace work runs on a
//! short-lived thread of its own and never on a tokio worker.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use super::SysError;

/// Where named namespaces live (iproute2's NETNS_RUN_DIR).
pub const NETNS_DIR: &str = "/run/netns";

/// Path of the named namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn nix_err(what: &'static str) -> impl Fn(nix::Error) -> SysError {
    move |source| SysError::Call { what, source }
}

/// Makes /run/netns a shared mount point, as iproute2 does, so namespace
/// mounts made here are seen by every mount namespace (`ip netns list`).
fn prepare_dir() -> Result<(), SysError> {
    fs::create_dir_all(NETNS_DIR)?;
    let shared =
        || mount(None::<&str>, NETNS_DIR, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    if shared().is_err() {
        mount(Some(NETNS_DIR), NETNS_DIR, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(nix_err("bind-mount /run/netns"))?;
        shared().map_err(nix_err("make /run/netns shared"))?;
    }
    Ok(())
}

/// Creates the named namespace `name` and runs `setup` inside it, on a thread
/// of its own. If `setup` fails the namespace is removed again: nothing is
/// left half-created.
pub fn create<T: Send + 'static>(
    name: &str,
    setup: impl FnOnce() -> Result<T, SysError> + Send + 'static,
) -> Result<T, SysError> {
    let target = path(name);
    std::thread::Builder::new()
        .name("netns-create".into())
        .spawn(move || {
            prepare_dir()?;
            File::options().write(true).create_new(true).open(&target).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    SysError::NetnsExists(target.clone())
                } else {
                    SysError::Io(e)
                }
            })?;
            let result = unshare(CloneFlags::CLONE_NEWNET)
                .map_err(nix_err("unshare(CLONE_NEWNET)"))
                .and_then(|()| {
                    mount(
                        Some("/proc/thread-self/ns/net"),
                        &target,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(nix_err("bind-mount the namespace"))
                })
                .and_then(|()| setup());
            if result.is_err() {
                let _ = remove_path(&target);
            }
            // The thread ends here, and with it the only task inside the new
            // namespace that was not meant to be there.
            result
        })?
        .join()
        .map_err(|_| SysError::ThreadPanicked)?
}

/// Runs `work` on a thread inside the existing namespace at `ns`.
pub fn run_in<T: Send + 'static>(
    ns: &Path,
    work: impl FnOnce() -> Result<T, SysError> + Send + 'static,
) -> Result<T, SysError> {
    let file = File::open(ns)?;
    std::thread::Builder::new()
        .name("netns-enter".into())
        .spawn(move || {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix_err("setns"))?;
            work()
        })?
        .join()
        .map_err(|_| SysError::ThreadPanicked)?
}

/// Removes the named namespace `name`. The namespace itself disappears once
/// no process and no fd holds it any more.
pub fn remove(name: &str) -> Result<(), SysError> {
    remove_path(&path(name))
}

fn remove_path(target: &Path) -> Result<(), SysError> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(nix_err("unmount namespace")(e)),
    }
    match fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Names of the named namespaces that start with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// PIDs of every process whose network namespace is the named one `name`.
pub fn pids_inside(name: &str) -> Vec<i32> {
    let Ok(target) = fs::metadata(path(name)) else {
        return Vec::new();
    };
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev())
        })
        .collect()
}
