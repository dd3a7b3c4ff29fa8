//! A pod's sandbox: a named network namespace whose `eth0` is a TAP the agent
//! holds, with the pod's address, MAC, MTU and default route, `lo` up, IPv6
//! off (the switch carries IPv4 only), and the pod's resolv.conf. The TAP is
//! persistent, so an agent restarted after a crash can take a running pod
//! back (see `pod::adopt`).

use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::dataplane::tap;
use crate::sys::netlink::{LinkSetup, Netlink};
use crate::sys::{SysError, netns};

/// Name of the pod-side interface.
pub const POD_INTERFACE: &str = "eth0";

/// What a sandbox is built from.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Named namespace to create.
    pub netns: String,
    /// Pod address.
    pub ip: Ipv4Addr,
    /// Prefix length of the node subnet.
    pub prefix: u8,
    /// Gateway (the node's port).
    pub gateway: Ipv4Addr,
    /// MAC of `eth0`.
    pub mac: [u8; 6],
    /// MTU of `eth0`.
    pub mtu: u32,
    /// Contents of the pod's resolv.conf.
    pub resolv_conf: String,
    /// Queues of `eth0`: one per data-plane thread.
    pub queues: usize,
}

/// Directory holding a pod's resolv.conf, where `ip netns exec` looks too.
pub fn etc_dir(netns: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(netns)
}

/// Builds the sandbox and returns the fd of the pod's TAP. On error nothing
/// is left behind.
pub fn create(spec: &SandboxSpec) -> Result<Vec<OwnedFd>, SysError> {
    let etc = etc_dir(&spec.netns);
    fs::create_dir_all(&etc)?;
    fs::write(etc.join("resolv.conf"), &spec.resolv_conf)?;
    let inside = spec.clone();
    netns::create(&spec.netns, move || {
        let fd = tap::open(POD_INTERFACE, inside.queues)?;
        tap::persist(&fd)?;
        // Per-namespace sysctls are resolved against the writer's namespace.
        let _ = fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
        let _ = fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let netlink = Netlink::open()?;
            netlink.up("lo").await?;
            netlink
                .configure(&LinkSetup {
                    name: POD_INTERFACE.into(),
                    mac: inside.mac,
                    mtu: inside.mtu,
                    txqueuelen: tap::QUEUE_LEN,
                    address: (inside.ip, inside.prefix),
                    gateway: Some(inside.gateway),
                })
                .await
        })?;
        Ok(fd)
    })
    .inspect_err(|_| {
        let _ = fs::remove_dir_all(&etc);
    })
}

/// Attaches to the TAP of an existing sandbox again; its addresses and
/// routes are as they were.
pub fn reopen(netns_name: &str, queues: usize) -> Result<Vec<OwnedFd>, SysError> {
    netns::run_in(&netns::path(netns_name), move || Ok(tap::open(POD_INTERFACE, queues)?))
}

/// Removes a sandbox's namespace and files. The TAP goes with the namespace.
pub fn remove(netns_name: &str) -> Result<(), SysError> {
    let _ = fs::remove_dir_all(etc_dir(netns_name));
    netns::remove(netns_name)
}
