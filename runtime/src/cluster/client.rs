//! A CLI request over the cluster channel: what `podnet --kubeconfig FILE`
//! and a member's agent (for requests about cluster state) use.

use std::net::SocketAddr;

use super::proto::Hello;
use super::token::Token;
use super::{ClusterError, channel};
use crate::api::{PROTOCOL_VERSION, Request, Response};

/// Sends one request to the cluster server and returns its answer.
pub async fn call(server: SocketAddr, token: &Token, request: &Request) -> Result<Response, ClusterError> {
    let (mut tx, mut rx) = channel::connect(server, token).await.map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::UnexpectedEof => {
            ClusterError::Refused(server)
        }
        _ => ClusterError::Unreachable { server, source },
    })?;
    let io = |source: std::io::Error| ClusterError::Talk { server, source };
    tx.send_value(&Hello::Cli { version: PROTOCOL_VERSION }).await.map_err(io)?;
    tx.send_value(request).await.map_err(io)?;
    // The answer's error is text: the server rendered it at its boundary.
    rx.recv_value::<Result<Response, String>>().await.map_err(|e| io(e.into()))?.map_err(ClusterError::Remote)
}
