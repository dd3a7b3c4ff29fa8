//! What the plugin prints: the ADD result and the error object, in the
//! shapes of the CNI spec (1.0.0 and 1.1.0; 0.4.0 adds `version` to IPs),
//! and the spec's well-known error codes.

use runtime::api::CniAttached;
use serde_json::{Value, json};

/// A CNI error: the spec's code, a short message and the details.
#[derive(Debug)]
pub(crate) struct CniError {
    /// 1–99 the spec's (`Code`), 100+ podnet's.
    pub code: u32,
    /// The short message.
    pub msg: String,
    /// What went wrong and what to do.
    pub details: String,
}

/// The spec's well-known error codes podnet uses, and its own.
pub(crate) mod code {
    /// Incompatible CNI version.
    pub(crate) const VERSION: u32 = 1;
    /// Container unknown or does not exist.
    pub(crate) const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub(crate) const ENV: u32 = 4;
    /// I/O failure.
    pub(crate) const IO: u32 = 5;
    /// Failed to decode content.
    pub(crate) const DECODE: u32 = 6;
    /// Invalid network config.
    pub(crate) const CONFIG: u32 = 7;
    /// Try again later.
    pub(crate) const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available.
    pub(crate) const NOT_AVAILABLE: u32 = 50;
    /// The agent refused the request (podnet's own code).
    pub(crate) const REFUSED: u32 = 100;
}

impl CniError {
    /// An error with the spec's short message for `code`.
    pub(crate) fn new(code: u32, details: impl Into<String>) -> CniError {
        let msg = match code {
            code::VERSION => "Incompatible CNI version",
            code::UNKNOWN_CONTAINER => "Container unknown or does not exist",
            code::ENV => "Invalid necessary environment variables",
            code::IO => "I/O failure",
            code::DECODE => "Failed to decode content",
            code::CONFIG => "Invalid network config",
            code::TRY_AGAIN => "Try again later",
            code::NOT_AVAILABLE => "Plugin not available",
            _ => "podnet refused the request",
        };
        CniError { code, msg: msg.into(), details: details.into() }
    }

    /// The error object the spec asks for on stdout.
    pub(crate) fn to_json(&self, cni_version: &str) -> Value {
        json!({ "cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details })
    }
}

/// The ADD result for an attachment: its interface (with MAC and sandbox,
/// which podman requires), its address on that interface, the default
/// route and the cluster DNS.
pub(crate) fn add_result(cni_version: &str, ifname: &str, netns: &str, attached: &CniAttached) -> Value {
    let mac = attached.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let mut interface = json!({ "name": ifname, "mac": mac, "sandbox": netns });
    if cni_version == "1.1.0" {
        interface["mtu"] = json!(attached.mtu);
    }
    let mut ip = json!({
        "address": format!("{}/{}", attached.ip, attached.prefix),
        "gateway": attached.gateway.to_string(),
        "interface": 0,
    });
    if cni_version.starts_with("0.") {
        ip["version"] = json!("4");
    }
    json!({
        "cniVersion": cni_version,
        "interfaces": [interface],
        "ips": [ip],
        "routes": [{ "dst": "0.0.0.0/0", "gw": attached.gateway.to_string() }],
        "dns": {
            "nameservers": [attached.nameserver.to_string()],
            "domain": attached.domain,
            "search": attached.search,
            "options": ["ndots:5"],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attached() -> CniAttached {
        CniAttached {
            pod: "default/web".into(),
            ip: "10.244.0.5".parse().unwrap(),
            prefix: 24,
            gateway: "10.244.0.1".parse().unwrap(),
            mac: [0x0a, 0x58, 10, 244, 0, 5],
            mtu: 1500,
            nameserver: "10.96.0.10".parse().unwrap(),
            search: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            domain: "cluster.local".into(),
        }
    }

    #[test]
    fn result_has_what_runtimes_read() {
        let r = add_result("1.0.0", "eth0", "/run/netns/x", &attached());
        assert_eq!(r["interfaces"][0]["mac"], "0a:58:0a:f4:00:05");
        assert_eq!(r["interfaces"][0]["sandbox"], "/run/netns/x");
        assert_eq!(r["ips"][0]["address"], "10.244.0.5/24");
        assert_eq!(r["ips"][0]["interface"], 0);
        assert!(r["ips"][0].get("version").is_none(), "1.0.0 has no IP version");
        assert!(r["interfaces"][0].get("mtu").is_none(), "interface mtu is 1.1.0's");
        assert_eq!(r["dns"]["nameservers"][0], "10.96.0.10");
        let old = add_result("0.4.0", "eth0", "/run/netns/x", &attached());
        assert_eq!(old["ips"][0]["version"], "4");
        let new = add_result("1.1.0", "eth0", "/run/netns/x", &attached());
        assert_eq!(new["interfaces"][0]["mtu"], 1500);
    }
}
