//! TAP devices opened with a virtio-net header and checksum/TSO offload, the
//! combination that lets the switch move 64 KiB GSO frames instead of
//! 1500-byte ones (shared/notes/tap-performance.md measured ~5x).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use netstack::wire::vnet;

use crate::sys::tun;

/// Queue length of the TAPs (pods' `eth0`, the node's `podnet0`): frames a
/// pod's kernel can hand over while the data-plane thread is busy. At the
/// kernel's 1000, 1,000 concurrent connections (bench/load) overflowed it by
/// thousands of frames a minute, each a retransmission and a stall.
pub const QUEUE_LEN: u32 = 4096;

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

/// Makes the TAP behind `fd` outlive the fd: it stays (with its addresses
/// and routes) until its namespace goes, and [`open`] with its name attaches
/// to it again. Pods' TAPs are persistent so a pod keeps its network while
/// a killed agent restarts.
pub fn persist(fd: &OwnedFd) -> io::Result<()> {
    tun::set_persist(fd.as_fd(), true)
}

/// Opens a TAP named `name` in the calling thread's network namespace, or
/// attaches to the persistent one of that name. A device created here lives
/// as long as the returned fd unless made persistent with [`persist`].
pub fn open(name: &str) -> io::Result<OwnedFd> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let fd = file.as_fd();
    tun::set_iff(fd, name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)?;
    tun::set_vnet_hdr_size(fd, vnet::HEADER_LEN as libc::c_int)?;
    tun::set_offload(fd, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)?;
    Ok(file.into())
}

/// Frames a TAP's kernel side dropped, from the interface's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDrops {
    /// Sent by the kernel side but dropped before the agent read them: the
    /// TAP's queue was full (the interface's `tx_dropped`).
    pub queue_full: u64,
    /// Written by the agent but dropped by the kernel side (`rx_dropped`).
    pub not_taken: u64,
}

/// The drop counters of interface `name` in the calling thread's network
/// namespace (/proc/thread-self/net/dev is that namespace's view).
pub fn queue_drops(name: &str) -> Option<QueueDrops> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
    parse_net_dev(&text, name)
}

/// Reads one interface's line of /proc/net/dev: after `name:`, eight receive
/// counters (drops the fourth) and eight transmit counters (drops the fourth).
fn parse_net_dev(text: &str, name: &str) -> Option<QueueDrops> {
    let line = text.lines().find_map(|l| l.trim_start().strip_prefix(name)?.strip_prefix(':'))?;
    let fields: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    Some(QueueDrops { not_taken: *fields.get(3)?, queue_full: *fields.get(11)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_drop_columns_are_read_per_interface() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n \
             lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  \
             eth0: 5000 40 0 7 0 0 0 0 9000 60 0 1234 0 0 0 0\n";
        assert_eq!(parse_net_dev(text, "eth0"), Some(QueueDrops { queue_full: 1234, not_taken: 7 }));
        assert_eq!(parse_net_dev(text, "lo"), Some(QueueDrops::default()));
        assert_eq!(parse_net_dev(text, "eth"), None, "a prefix is not a name");
        assert_eq!(parse_net_dev(text, "wlan0"), None);
    }
}
