//! A container another runtime runs (podman, containerd) that podnet
//! networks as its CNI plugin: the attachment a CNI ADD makes, and the
//! checks on what the runtime hands over (container id, interface name,
//! namespace path), since a plugin must refuse rather than half-create.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Longest container id taken (runtimes use 64 hex digits).
pub const MAX_CONTAINER_ID: usize = 256;

/// What ties a pod to a container another runtime runs: the CNI
/// attachment's identity (container id and interface name), the network
/// namespace the runtime made for it, and the CNI network it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniAttachment {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME: the interface podnet makes in the namespace.
    pub ifname: String,
    /// CNI_NETNS: the path of the container's network namespace.
    pub netns: PathBuf,
    /// The CNI network's name (the config's `name`), which GC is scoped to.
    pub network: String,
}

impl CniAttachment {
    /// Checks what the runtime gave, as the CNI spec words it: a container
    /// id of letters, digits, '_', '.' and '-' starting with a letter or
    /// digit; an interface name the kernel takes; an absolute netns path.
    pub fn check(&self) -> Result<(), ModelError> {
        let id = &self.container_id;
        let id_ok = !id.is_empty()
            && id.len() <= MAX_CONTAINER_ID
            && id.as_bytes()[0].is_ascii_alphanumeric()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !id_ok {
            return Err(ModelError::ContainerId(id.chars().take(80).collect()));
        }
        check_ifname(&self.ifname)?;
        if !self.netns.is_absolute() {
            return Err(ModelError::NetnsPath(self.netns.clone()));
        }
        Ok(())
    }

    /// The pod name for this attachment when the runtime gave none
    /// (K8S_POD_NAME): `cni-` and the container id, a 64-digit one
    /// shortened to 12 as `docker ps` does (`ctr run --cni` passes
    /// NAMESPACE-ID), and the interface when it is not `eth0`.
    pub fn default_pod_name(&self) -> String {
        let id = &self.container_id;
        let short = match id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => &id[..12],
            false => id.as_str(),
        };
        let base: String = format!("cni-{short}").chars().take(63).collect();
        with_ifname(&base, &self.ifname)
    }
}

/// `name`, or `name-IFNAME` for an interface other than `eth0` (a second
/// attachment of one container is a pod of its own), lowercased and cut to
/// a pod name's 63 characters.
pub fn with_ifname(name: &str, ifname: &str) -> String {
    let full = match ifname {
        "eth0" => name.to_string(),
        other => format!("{name}-{}", other.to_ascii_lowercase()),
    };
    let cut: String = full
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(63)
        .collect();
    cut.trim_matches('-').to_string()
}

/// An interface name Linux takes: 1 to 15 bytes, not `.` or `..`, no '/',
/// ':' or whitespace (the kernel's dev_valid_name, as the CNI spec asks).
pub fn check_ifname(name: &str) -> Result<(), ModelError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok { Ok(()) } else { Err(ModelError::Ifname(name.chars().take(40).collect())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(id: &str, ifname: &str) -> CniAttachment {
        CniAttachment {
            container_id: id.into(),
            ifname: ifname.into(),
            netns: "/run/netns/x".into(),
            network: "podnet".into(),
        }
    }

    #[test]
    fn checks_what_the_runtime_gives() {
        assert!(attachment("3f6940ab5ab4", "eth0").check().is_ok());
        assert!(attachment("", "eth0").check().is_err());
        assert!(attachment("-x", "eth0").check().is_err());
        assert!(attachment("a/b", "eth0").check().is_err());
        assert!(attachment("abc", "").check().is_err());
        assert!(attachment("abc", "way-too-long-name0").check().is_err());
        assert!(attachment("abc", "a:b").check().is_err());
        assert!(attachment("abc", "..").check().is_err());
        let relative = CniAttachment { netns: "netns/x".into(), ..attachment("abc", "eth0") };
        assert!(relative.check().is_err());
    }

    #[test]
    fn names_pods_after_the_container() {
        let id = "3F6940AB5AB43bc522569d15b23f8c1bbde1d7678b080398506924fc01d72755";
        assert_eq!(attachment(id, "eth0").default_pod_name(), "cni-3f6940ab5ab4");
        assert_eq!(attachment(id, "net1").default_pod_name(), "cni-3f6940ab5ab4-net1");
        assert_eq!(attachment("default-web1", "eth0").default_pod_name(), "cni-default-web1");
        assert_eq!(attachment("a_b.c", "eth0").default_pod_name(), "cni-a-b-c");
        assert_eq!(with_ifname("Web_1", "eth0"), "web-1");
    }
}
