//! The control API between the `podnet` CLI and its agent: postcard messages
//! in length-prefixed frames over a root-only Unix socket.

pub mod changes;
mod client;
mod frame;
mod proto;
pub mod server;

pub use client::{Client, ClientError};
pub use frame::{Frame, MAX_FRAME, read_frame, write_frame};
pub use proto::{
    CniAdd, CniAttached, ContainerExec, ExecTarget, ListenerCounters, PROTOCOL_VERSION, PortCounters,
    Request, Response, Route, StatsReport, ThreadCounters,
};

/// Where the CLI and the agent meet unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/podnet/podnet.sock";
