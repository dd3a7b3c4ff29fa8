//! `podnet cni config` and `podnet cni install`: the conflist that makes
//! podnet a runtime's network (podnet first, the reference `portmap`
//! chained for `-p` port mappings), and the plugin itself in the CNI bin
//! dir — a symlink to this binary, so the plugin and the agent are always
//! the same version.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::CliError;

/// Where Debian's containernetworking-plugins (and its containerd) look.
const DEBIAN_BIN_DIR: &str = "/usr/lib/cni";
/// Where upstream CNI plugins and most runtimes look.
const UPSTREAM_BIN_DIR: &str = "/opt/cni/bin";
/// Where runtimes read network configs.
pub(crate) const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// The conflist's file name: early in the directory, as runtimes that load
/// only the first config (containerd's max_conf_num = 1) need.
const CONF_FILE: &str = "10-podnet.conflist";

/// The conflist for network `name`, whose plugin asks the agent at `socket`.
pub(crate) fn conflist(name: &str, socket: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            { "type": "podnet", "socket": socket },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    })
}

/// The CNI bin dir: `/usr/lib/cni` where it exists (Debian), else
/// `/opt/cni/bin`.
pub(crate) fn default_bin_dir() -> PathBuf {
    match Path::new(DEBIAN_BIN_DIR).is_dir() {
        true => PathBuf::from(DEBIAN_BIN_DIR),
        false => PathBuf::from(UPSTREAM_BIN_DIR),
    }
}

/// Links this binary as `podnet` into `bin_dir` and writes the conflist
/// into `conf_dir`; says what it did.
pub(crate) fn install(
    bin_dir: &Path,
    conf_dir: &Path,
    name: &str,
    socket: &Path,
) -> Result<String, CliError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(CliError::Message(format!(
            "podnet cni install writes {} and {}: run it as root (sudo)",
            bin_dir.display(),
            conf_dir.display()
        )));
    }
    if !bin_dir.is_dir() {
        return Err(CliError::Message(format!(
            "CNI bin dir {} does not exist: install the reference plugins (containernetworking-plugins), or pass --bin-dir",
            bin_dir.display()
        )));
    }
    if !conf_dir.is_dir() {
        return Err(CliError::Message(format!(
            "CNI config dir {} does not exist: create it (mkdir -p {}), or pass --conf-dir",
            conf_dir.display(),
            conf_dir.display()
        )));
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| CliError::Message(format!("cannot tell where this podnet binary is: {e}")))?;
    let plugin = bin_dir.join("podnet");
    // A new link under a temporary name, renamed over the old one: a
    // runtime never finds the plugin missing.
    let temp = bin_dir.join(".podnet.new");
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(&exe, &temp).map_err(|e| step(&plugin, e))?;
    fs::rename(&temp, &plugin).map_err(|e| step(&plugin, e))?;
    let conf = conf_dir.join(CONF_FILE);
    let text = serde_json::to_string_pretty(&conflist(name, socket))? + "\n";
    write_atomically(&conf, &text).map_err(|e| step(&conf, e))?;
    Ok(format!("{} -> {}\n{}", plugin.display(), exe.display(), conf.display()))
}

fn step(path: &Path, e: std::io::Error) -> CliError {
    CliError::Step { what: format!("cannot write {}", path.display()), source: Box::new(e) }
}

/// Writes `path` through a temporary file and a rename (0644: runtimes
/// read it as themselves).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = path.with_extension("new");
    let mut file = fs::File::create(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o644))?;
    fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_chains_portmap_after_podnet() {
        let list = conflist("podnet", Path::new("/run/podnet/podnet.sock"));
        assert_eq!(list["cniVersion"], "1.0.0");
        assert_eq!(list["plugins"][0]["type"], "podnet");
        assert_eq!(list["plugins"][0]["socket"], "/run/podnet/podnet.sock");
        assert_eq!(list["plugins"][1]["type"], "portmap");
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);
    }
}
