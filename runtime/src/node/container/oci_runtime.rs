//! Finding the node's OCI runtime (crun or runc) and whether it can run
//! containers with this node's cgroup setup.
//!
//! Found by running both on a hybrid machine (v1 controllers plus a v2
//! `unified` tree holding `hugetlb`): crun 1.8.1 refuses every container
//! ("cgroups in hybrid mode not supported, drop all controllers from
//! cgroupv2") while runc 1.1.5 runs them. runc before 1.0 has no cgroup v2.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::ContainerError;

/// Where podnet keeps each runtime's state (`--root`), apart from the
/// runtime's default, so it never sees other users' containers.
pub const STATE_BASE: &str = "/run/podnet";

/// The runtimes podnet drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// containers/crun (C).
    Crun,
    /// opencontainers/runc (Go).
    Runc,
}

impl RuntimeKind {
    /// The program's usual name.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Crun => "crun",
            RuntimeKind::Runc => "runc",
        }
    }
}

/// The node's cgroup setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v2 only (Raspberry Pi OS bookworm).
    V2,
    /// v1 controllers plus a v2 tree at `/sys/fs/cgroup/unified`, holding
    /// these controllers.
    Hybrid {
        /// Controllers the v2 tree has.
        v2_controllers: Vec<String>,
    },
    /// cgroup v1 only.
    V1,
}

impl CgroupMode {
    /// Reads the setup under `root` (normally `/sys/fs/cgroup`).
    pub fn read(root: &Path) -> Result<CgroupMode, ContainerError> {
        use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
        let kind = |path: &Path| statfs(path).ok().map(|s| s.filesystem_type());
        match kind(root) {
            None => Err(ContainerError::NoCgroups),
            Some(fs) if fs == CGROUP2_SUPER_MAGIC => Ok(CgroupMode::V2),
            Some(_) => {
                let unified = root.join("unified");
                if kind(&unified) == Some(CGROUP2_SUPER_MAGIC) {
                    let controllers =
                        std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
                    Ok(CgroupMode::Hybrid {
                        v2_controllers: controllers.split_whitespace().map(String::from).collect(),
                    })
                } else if root.join("memory").is_dir() || root.join("cpu").is_dir() {
                    Ok(CgroupMode::V1)
                } else {
                    Err(ContainerError::NoCgroups)
                }
            }
        }
    }

    /// True when limits go to the v2 tree.
    pub fn is_v2(&self) -> bool {
        matches!(self, CgroupMode::V2)
    }
}

/// A runtime found on this node, with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which one.
    pub kind: RuntimeKind,
    /// The program.
    pub path: PathBuf,
    /// `major.minor.patch`.
    pub version: (u32, u32, u32),
}

impl Found {
    /// `runc 1.1.5`.
    pub fn describe(&self) -> String {
        let (a, b, c) = self.version;
        format!("{} {a}.{b}.{c}", self.kind.name())
    }

    /// Why this runtime cannot run containers with `cgroups`, if it cannot:
    /// the reason and the fix.
    pub fn refusal(&self, cgroups: &CgroupMode) -> Option<(String, String)> {
        match (self.kind, cgroups) {
            (RuntimeKind::Crun, CgroupMode::Hybrid { v2_controllers }) if !v2_controllers.is_empty() => {
                Some((
                    format!(
                        "it refuses cgroups in hybrid mode while the v2 tree has controllers ({})",
                        v2_controllers.join(" ")
                    ),
                    "use runc (apt-get install runc; pods.runtime = \"runc\") or boot with cgroup v2 only"
                        .into(),
                ))
            }
            (RuntimeKind::Runc, CgroupMode::V2) if self.version.0 < 1 => Some((
                "runc before 1.0 has no cgroup v2 support".into(),
                "upgrade runc to 1.0 or later, or use crun".into(),
            )),
            _ => None,
        }
    }
}

/// Asks `path --version` which runtime it is.
pub fn probe(path: &Path) -> Result<Found, ContainerError> {
    let unknown = |detail: String| ContainerError::UnknownRuntime { path: path.to_path_buf(), detail };
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| unknown(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text)
        .ok_or_else(|| unknown(text.lines().next().unwrap_or("no output").to_string()))
        .map(|(kind, version)| Found { kind, path: path.to_path_buf(), version })
}

/// Reads the first line of `--version` output: `runc version 1.1.5+ds1`,
/// `crun version 1.8.1`.
pub fn parse_version(text: &str) -> Option<(RuntimeKind, (u32, u32, u32))> {
    let mut words = text.lines().next()?.split_whitespace();
    let kind = match words.next()? {
        "runc" => RuntimeKind::Runc,
        "crun" => RuntimeKind::Crun,
        _ => return None,
    };
    if words.next()? != "version" {
        return None;
    }
    let number = words.next()?;
    let end = number.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(number.len());
    let mut parts = number[..end].split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((kind, (major, minor, patch)))
}

/// The first `name` on `path` (a PATH value) that is an executable file.
pub fn which(name: &str, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Picks the runtime: the configured one (`crun`, `runc` or a path) when it
/// can work here, else crun or runc, whichever works, crun first (it starts
/// containers faster and is smaller).
pub fn choose(
    configured: Option<&str>,
    path: &OsStr,
    cgroups: &CgroupMode,
    probe: impl Fn(&Path) -> Result<Found, ContainerError>,
) -> Result<Found, ContainerError> {
    if let Some(wanted) = configured {
        let program = if wanted.contains('/') {
            Some(PathBuf::from(wanted)).filter(|p| p.is_file())
        } else {
            which(wanted, path)
        };
        let program = program.ok_or_else(|| ContainerError::RuntimeNotFound(wanted.to_string()))?;
        let found = probe(&program)?;
        return match found.refusal(cgroups) {
            None => Ok(found),
            Some((reason, fix)) => {
                Err(ContainerError::RuntimeUnusable { runtime: found.describe(), reason, fix })
            }
        };
    }
    let mut refusals = Vec::new();
    for kind in [RuntimeKind::Crun, RuntimeKind::Runc] {
        let Some(program) = which(kind.name(), path) else { continue };
        match probe(&program) {
            Ok(found) => match found.refusal(cgroups) {
                None => return Ok(found),
                Some((reason, _)) => refusals.push(format!("{}: {reason}", found.describe())),
            },
            Err(e) => refusals.push(e.to_string()),
        }
    }
    if refusals.is_empty() {
        return Err(ContainerError::NoRuntime);
    }
    Err(ContainerError::NoUsableRuntime(format!(
        "{}; install runc (apt-get install runc)",
        refusals.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(kind: RuntimeKind, version: (u32, u32, u32)) -> Found {
        Found { kind, path: PathBuf::from(format!("/usr/bin/{}", kind.name())), version }
    }

    fn hybrid() -> CgroupMode {
        CgroupMode::Hybrid { v2_controllers: vec!["hugetlb".into()] }
    }

    #[test]
    fn versions_are_read_from_both_runtimes() {
        assert_eq!(
            parse_version("runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\n"),
            Some((RuntimeKind::Runc, (1, 1, 5)))
        );
        assert_eq!(
            parse_version("crun version 1.8.1\ncommit: f8a09\n"),
            Some((RuntimeKind::Crun, (1, 8, 1)))
        );
        assert_eq!(parse_version("runc version 1.2.0-rc.1"), Some((RuntimeKind::Runc, (1, 2, 0))));
        assert_eq!(parse_version("youki version 0.3.0"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn crun_is_refused_on_hybrid_cgroups_with_v2_controllers_and_runc_is_not() {
        let crun = found(RuntimeKind::Crun, (1, 8, 1));
        let runc = found(RuntimeKind::Runc, (1, 1, 5));
        assert!(crun.refusal(&hybrid()).unwrap().0.contains("hybrid"));
        assert_eq!(crun.refusal(&CgroupMode::Hybrid { v2_controllers: vec![] }), None);
        assert_eq!(crun.refusal(&CgroupMode::V2), None);
        assert_eq!(crun.refusal(&CgroupMode::V1), None);
        for mode in [hybrid(), CgroupMode::V2, CgroupMode::V1] {
            assert_eq!(runc.refusal(&mode), None);
        }
        assert!(found(RuntimeKind::Runc, (0, 1, 1)).refusal(&CgroupMode::V2).is_some());
    }

    /// A PATH holding fake `crun` and `runc` programs (only their names
    /// matter: `probe` is replaced).
    fn path_with(names: &[&str]) -> (PathBuf, std::ffi::OsString) {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("podnet-oci-path-{}-{}", std::process::id(), names.join("-")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in names {
            let file = dir.join(name);
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = dir.clone().into_os_string();
        (dir, path)
    }

    fn fake_probe(program: &Path) -> Result<Found, ContainerError> {
        match program.file_name().and_then(|n| n.to_str()) {
            Some("crun") => Ok(Found { path: program.into(), ..found(RuntimeKind::Crun, (1, 8, 1)) }),
            Some("runc") => Ok(Found { path: program.into(), ..found(RuntimeKind::Runc, (1, 1, 5)) }),
            _ => Err(ContainerError::UnknownRuntime { path: program.into(), detail: "?".into() }),
        }
    }

    #[test]
    fn the_choice_prefers_crun_falls_back_to_runc_and_explains_refusals() {
        let (dir, both) = path_with(&["crun", "runc"]);
        assert_eq!(choose(None, &both, &CgroupMode::V2, fake_probe).unwrap().kind, RuntimeKind::Crun);
        assert_eq!(choose(None, &both, &hybrid(), fake_probe).unwrap().kind, RuntimeKind::Runc);
        assert_eq!(choose(Some("runc"), &both, &CgroupMode::V2, fake_probe).unwrap().kind, RuntimeKind::Runc);
        let refused = choose(Some("crun"), &both, &hybrid(), fake_probe).unwrap_err().to_string();
        assert!(refused.starts_with("crun 1.8.1 cannot run containers on this node"), "{refused}");
        assert!(refused.contains("use runc"), "{refused}");
        let by_path = dir.join("runc");
        let by_path = by_path.to_str().unwrap();
        assert_eq!(choose(Some(by_path), &both, &hybrid(), fake_probe).unwrap().path, Path::new(by_path));
        std::fs::remove_dir_all(&dir).unwrap();

        let (dir, only_crun) = path_with(&["crun"]);
        let none = choose(None, &only_crun, &hybrid(), fake_probe).unwrap_err().to_string();
        assert!(none.starts_with("no OCI runtime works on this node: crun 1.8.1: it refuses"), "{none}");
        assert!(none.ends_with("install runc (apt-get install runc)"), "{none}");
        std::fs::remove_dir_all(&dir).unwrap();

        let (dir, empty) = path_with(&[]);
        assert_eq!(
            choose(None, &empty, &CgroupMode::V2, fake_probe).unwrap_err().to_string(),
            "no OCI runtime: apt-get install runc (or crun)"
        );
        let missing = choose(Some("crun"), &empty, &CgroupMode::V2, fake_probe).unwrap_err().to_string();
        assert!(missing.starts_with("OCI runtime `crun` (pods.runtime) not found"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_three_cgroup_setups_are_told_apart() {
        use nix::mount::{MntFlags, MsFlags, mount, umount2};
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let base = std::env::temp_dir().join(format!("podnet-cgroup-modes-{}", std::process::id()));
        let none = None::<&str>;
        let (v2, hybrid, v1) = (base.join("v2"), base.join("hybrid"), base.join("v1"));
        for dir in [&v2, &hybrid, &v1] {
            std::fs::create_dir_all(dir).unwrap();
        }
        // Views of this machine's own v2 hierarchy, and tmpfs roots as
        // systemd makes them for hybrid and v1 setups.
        mount(Some("cgroup2"), &v2, Some("cgroup2"), MsFlags::empty(), none).unwrap();
        mount(Some("tmpfs"), &hybrid, Some("tmpfs"), MsFlags::empty(), none).unwrap();
        std::fs::create_dir(hybrid.join("unified")).unwrap();
        mount(Some("cgroup2"), &hybrid.join("unified"), Some("cgroup2"), MsFlags::empty(), none).unwrap();
        mount(Some("tmpfs"), &v1, Some("tmpfs"), MsFlags::empty(), none).unwrap();
        std::fs::create_dir(v1.join("memory")).unwrap();
        let read = |root: &Path| CgroupMode::read(root);
        let (v2_mode, hybrid_mode, v1_mode, empty) = (read(&v2), read(&hybrid), read(&v1), read(&base));
        let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap();
        for dir in [hybrid.join("unified"), hybrid.clone(), v2.clone(), v1.clone()] {
            umount2(&dir, MntFlags::MNT_DETACH).unwrap();
        }
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(v2_mode.unwrap(), CgroupMode::V2);
        let v2_controllers: Vec<String> = controllers.split_whitespace().map(String::from).collect();
        assert_eq!(hybrid_mode.unwrap(), CgroupMode::Hybrid { v2_controllers });
        assert_eq!(v1_mode.unwrap(), CgroupMode::V1);
        assert_eq!(empty.unwrap_err().to_string(), ContainerError::NoCgroups.to_string());
    }
}
