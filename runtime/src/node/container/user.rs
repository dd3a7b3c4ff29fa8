//! The user a container runs as, resolved as runc resolves an image's
//! `User` (`name`, `uid`, `name:group`, `uid:gid`) against the image's own
//! /etc/passwd and /etc/group. The image may be hostile: its files are
//! opened with the rootfs as `/` (`openat2` with RESOLVE_IN_ROOT, so a
//! symlink to the host's /etc/passwd resolves inside the rootfs), must be
//! regular files (a FIFO would block), and are read up to a bound.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use super::ContainerError;

/// The most of /etc/passwd or /etc/group read.
const MAX_FILE: u64 = 1 << 20;

/// Who the container's process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from /etc/group, when no group was given).
    pub additional_gids: Vec<u32>,
}

/// Resolves `user` (the image config's `User`; root when empty) in the
/// image whose root is `rootfs`.
pub fn resolve(rootfs: &Path, user: &str) -> Result<User, ContainerError> {
    let problem = |problem: String| ContainerError::User { user: user.to_string(), problem };
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ContainerError::io("cannot open the rootfs", rootfs)(e.into()))?;
    let passwd = read_in_root(&root, "/etc/passwd").map_err(problem)?;
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = passwd.as_deref().unwrap_or("");
    let entries: Vec<Passwd> = passwd.lines().filter_map(Passwd::parse).collect();
    let (uid, entry) = if user_part.is_empty() {
        (0, entries.iter().find(|e| e.uid == 0))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        (uid, entries.iter().find(|e| e.uid == uid))
    } else {
        let entry = entries.iter().find(|e| e.name == user_part).ok_or_else(|| {
            problem(format!(
                "no user `{user_part}` in the image's /etc/passwd: run it as a number (--user UID[:GID]) or fix the image"
            ))
        })?;
        (entry.uid, Some(entry))
    };
    let mut gid = entry.map_or(0, |e| e.gid);
    let mut additional_gids = Vec::new();
    let group = read_in_root(&root, "/etc/group").map_err(problem)?;
    let groups: Vec<Group> = group.as_deref().unwrap_or("").lines().filter_map(Group::parse).collect();
    match group_part {
        Some("") => return Err(problem("the group after `:` is empty: give a name or number".into())),
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => groups.iter().find(|e| e.name == g).map(|e| e.gid).ok_or_else(|| {
                    problem(format!(
                        "no group `{g}` in the image's /etc/group: run it as numbers (--user UID:GID) or fix the image"
                    ))
                })?,
            }
        }
        None => {
            if let Some(entry) = entry {
                additional_gids = groups
                    .iter()
                    .filter(|g| g.gid != gid && g.members.split(',').any(|m| m == entry.name))
                    .map(|g| g.gid)
                    .collect();
                additional_gids.dedup();
            }
        }
    }
    Ok(User { uid, gid, additional_gids })
}

/// Reads `path` with `root` as `/`; None when it does not exist.
fn read_in_root(root: &OwnedFd, path: &str) -> Result<Option<String>, String> {
    // Symlinks (a symlinked /etc/passwd is common) resolve with `root` as
    // `/`, so none leads out of the rootfs.
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // RESOLVE_IN_ROOT answers EAGAIN when a rename or mount anywhere on the
    // system raced its resolution of a `..` (openat2(2) says to retry), and
    // containers starting beside this one mount all the time.
    let open = || openat2(root, path, how);
    let mut opened = open();
    for _ in 0..16 {
        if !matches!(opened, Err(nix::Error::EAGAIN)) {
            break;
        }
        opened = open();
    }
    let fd = match opened {
        Ok(fd) => fd,
        Err(nix::Error::ENOENT) | Err(nix::Error::ENOTDIR) => return Ok(None),
        Err(e) => return Err(format!("cannot open the image's {path}: {e}")),
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| format!("cannot read the image's {path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("the image's {path} is not a regular file: fix the image"));
    }
    if meta.len() > MAX_FILE {
        return Err(format!("the image's {path} is larger than {} KiB: fix the image", MAX_FILE >> 10));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the image's {path}: {e}"))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// One /etc/passwd line.
struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

impl<'a> Passwd<'a> {
    fn parse(line: &'a str) -> Option<Passwd<'a>> {
        let mut fields = line.split(':');
        let name = fields.next().filter(|n| !n.is_empty() && !n.starts_with('#'))?;
        let _password = fields.next()?;
        Some(Passwd { name, uid: fields.next()?.parse().ok()?, gid: fields.next()?.parse().ok()? })
    }
}

/// One /etc/group line.
struct Group<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

impl<'a> Group<'a> {
    fn parse(line: &'a str) -> Option<Group<'a>> {
        let mut fields = line.split(':');
        let name = fields.next().filter(|n| !n.is_empty() && !n.starts_with('#'))?;
        let _password = fields.next()?;
        let gid = fields.next()?.parse().ok()?;
        Some(Group { name, gid, members: fields.next().unwrap_or("") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A rootfs with the given /etc files.
    fn rootfs(name: &str, passwd: Option<&str>, group: Option<&str>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podnet-user-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        if let Some(passwd) = passwd {
            std::fs::write(dir.join("etc/passwd"), passwd).unwrap();
        }
        if let Some(group) = group {
            std::fs::write(dir.join("etc/group"), group).unwrap();
        }
        dir
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n\
                          app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnginx:x:101:\napp:x:1000:\nvideo:x:44:app,nginx\naudio:x:29:app\n";

    #[test]
    fn names_and_numbers_resolve_as_runc_resolves_them() {
        let root = rootfs("names", Some(PASSWD), Some(GROUP));
        let user = |u: &str| resolve(&root, u).unwrap();
        assert_eq!(user(""), User { uid: 0, gid: 0, additional_gids: vec![] });
        assert_eq!(user("nginx"), User { uid: 101, gid: 101, additional_gids: vec![44] });
        assert_eq!(user("app"), User { uid: 1000, gid: 1000, additional_gids: vec![44, 29] });
        assert_eq!(user("1000"), User { uid: 1000, gid: 1000, additional_gids: vec![44, 29] });
        // A number the image does not know is fine, in group 0.
        assert_eq!(user("4242"), User { uid: 4242, gid: 0, additional_gids: vec![] });
        assert_eq!(user("app:video"), User { uid: 1000, gid: 44, additional_gids: vec![] });
        assert_eq!(user("65534:65534"), User { uid: 65534, gid: 65534, additional_gids: vec![] });
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_user_or_group_is_a_clear_error() {
        let root = rootfs("missing", Some(PASSWD), Some(GROUP));
        let err = resolve(&root, "postgres").unwrap_err().to_string();
        assert_eq!(
            err,
            "the image's user `postgres`: no user `postgres` in the image's /etc/passwd: run it as a number (--user UID[:GID]) or fix the image"
        );
        let err = resolve(&root, "app:wheel").unwrap_err().to_string();
        assert!(err.contains("no group `wheel` in the image's /etc/group"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
        // No /etc/passwd at all: numbers still work, names do not.
        let bare = rootfs("bare", None, None);
        assert_eq!(resolve(&bare, "").unwrap(), User { uid: 0, gid: 0, additional_gids: vec![] });
        assert_eq!(resolve(&bare, "7:8").unwrap(), User { uid: 7, gid: 8, additional_gids: vec![] });
        assert!(resolve(&bare, "nobody").is_err());
        std::fs::remove_dir_all(&bare).unwrap();
    }

    #[test]
    fn symlinks_out_of_the_rootfs_resolve_inside_it() {
        // A passwd outside the rootfs that makes `evil` root.
        let outside = rootfs("outside", Some("evil:x:0:0::/:/bin/sh\n"), Some("evil:x:0:\n"));
        let root = rootfs("hostile", None, None);
        let link = |target: &Path, name: &str| {
            let _ = std::fs::remove_file(root.join(name));
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        };
        // Absolute and relative links to it: both resolve inside the rootfs,
        // where there is no such file.
        link(&outside.join("etc/passwd"), "etc/passwd");
        let escape = Path::new("../../../../../../../..").join(outside.strip_prefix("/").unwrap());
        link(&escape.join("etc/group"), "etc/group");
        let err = resolve(&root, "evil").unwrap_err().to_string();
        assert!(err.contains("no user `evil`"), "{err}");
        let err = resolve(&root, "0:evil").unwrap_err().to_string();
        assert!(err.contains("no group `evil`"), "{err}");
        // The same through a symlinked /etc.
        std::fs::remove_dir_all(root.join("etc")).unwrap();
        link(&outside.join("etc"), "etc");
        assert!(resolve(&root, "evil").is_err());
        // A link to /etc/passwd is the image's own file (here, a loop).
        std::fs::remove_file(root.join("etc")).unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        link(Path::new("/etc/passwd"), "etc/passwd");
        let err = resolve(&root, "root").unwrap_err().to_string();
        assert!(err.contains("cannot open the image's /etc/passwd"), "{err}");
        // A link inside the image is followed.
        std::fs::write(root.join("etc/passwd.real"), "app:x:1000:1000::/:/bin/sh\n").unwrap();
        link(Path::new("/etc/passwd.real"), "etc/passwd");
        assert_eq!(resolve(&root, "app").unwrap().uid, 1000);
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn a_fifo_or_a_huge_passwd_is_refused_without_hanging() {
        let root = rootfs("fifo", None, None);
        nix::unistd::mkfifo(&root.join("etc/passwd"), nix::sys::stat::Mode::from_bits_truncate(0o644))
            .unwrap();
        let err = resolve(&root, "app").unwrap_err().to_string();
        assert!(err.contains("/etc/passwd is not a regular file"), "{err}");
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        let big = std::fs::File::create(root.join("etc/passwd")).unwrap();
        big.set_len(MAX_FILE + 1).unwrap();
        let err = resolve(&root, "app").unwrap_err().to_string();
        assert!(err.contains("larger than 1024 KiB"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
