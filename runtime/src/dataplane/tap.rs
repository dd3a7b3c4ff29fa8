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
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

/// Makes the TAP behind `queues` outlive them: it stays (with its
/// addresses and routes) until its namespace goes, and [`open`] with its
/// name attaches to it again. Pods' TAPs are persistent so a pod keeps its
/// network while a killed agent restarts.
pub fn persist(queues: &[OwnedFd]) -> io::Result<()> {
    let first = queues.first().ok_or_else(|| io::Error::other("no TAP queue to make persistent"))?;
    tun::set_persist(first.as_fd(), true)
}

/// Opens a TAP named `name` in the calling thread's network namespace, or
/// attaches to the persistent one of that name, with `queues` queues: one
/// fd each, one per data-plane thread. One queue is a plain TAP (today's
/// path); more make it multi-queue (`IFF_MULTI_QUEUE`), and the kernel
/// spreads the frames the pod sends over them by flow. A persistent TAP made
/// by an agent with another thread count keeps its kind: a single-queue one
/// is attached with one fd (the data plane then reads it on one thread), a
/// multi-queue one with as many as asked. A device created here lives as
/// long as the returned fds unless made persistent with [`persist`].
pub fn open(name: &str, queues: usize) -> io::Result<Vec<OwnedFd>> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    let multi = queues > 1;
    let first = match open_queue(name, multi) {
        // EINVAL: a persistent TAP of the other kind (or not a TAP at all,
        // which the second try refuses the same way).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return open_other_kind(name, multi, e),
        other => other?,
    };
    let mut fds = vec![first];
    for _ in 1..queues {
        fds.push(open_queue(name, true)?);
    }
    Ok(fds)
}

/// [`open`] of a persistent TAP whose kind (multi-queue or not) is not the
/// one asked for: one queue of it, whichever kind it is.
fn open_other_kind(name: &str, multi: bool, first_error: io::Error) -> io::Result<Vec<OwnedFd>> {
    open_queue(name, !multi).map(|fd| vec![fd]).map_err(|_| first_error)
}

/// One queue of the TAP `name`: a fresh `/dev/net/tun` fd attached to it.
fn open_queue(name: &str, multi: bool) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let fd = file.as_fd();
    let kind = if multi { IFF_MULTI_QUEUE } else { 0 };
    tun::set_iff(fd, name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | kind)?;
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
