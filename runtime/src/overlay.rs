//! The overlay's UDP socket on the underlay (the VXLAN data path itself is
//! in `dataplane.rs`, the decisions in netstack's switch).

use nix::sys::socket::{setsockopt, sockopt};

/// Socket buffers for bursts: a 64 KiB GSO frame becomes ~45 datagrams at
/// once, and the data-plane thread may be busy with other ports for a while.
const BUFFER_BYTES: usize = 4 << 20;

/// Enlarges the socket's buffers (best effort: root may exceed the sysctl
/// limits with the FORCE options, others get what the limits allow).
pub fn tune(socket: &std::net::UdpSocket) {
    if setsockopt(socket, sockopt::RcvBufForce, &BUFFER_BYTES).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &BUFFER_BYTES);
    }
    if setsockopt(socket, sockopt::SndBufForce, &BUFFER_BYTES).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &BUFFER_BYTES);
    }
}
