//! podnet's data plane, sans-IO: frames and `now` go in, frames and verdicts
//! come out. Nothing here touches a syscall or a clock; the runtime owns the
//! file descriptors and the time, which keeps every decision reproducible in
//! a test byte for byte.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod checksum;
pub mod conntrack;
pub mod dns;
pub mod drop;
pub mod egress;
pub mod ipam;
pub mod mac;
pub mod offload;
pub mod overlay;
pub mod policy;
pub mod protocol;
pub mod service;
pub mod switch;
mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod wire;

pub use drop::DropReason;
pub use protocol::Protocol;

/// Time as the caller sees it; netstack never reads a clock.
pub use smoltcp::time::{Duration, Instant};
