//! A CLI request over the cluster channel: what `podnet --kubeconfig FILE`
//! and a member's agent (for requests about cluster state) use.

use std::net::SocketAddr;

use super::channel;
use super::proto::Hello;
use super::token::Token;
use crate::api::{PROTOCOL_VERSION, Request, Response};

/// Sends one request to the cluster server and returns its answer.
pub async fn call(server: SocketAddr, token: &Token, request: &Request) -> Result<Response, String> {
    let (mut tx, mut rx) = channel::connect(server, token).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::UnexpectedEof => format!(
            "the cluster server at {server} refused the connection: check that the token is this cluster's"
        ),
        _ => format!("cannot reach the cluster server at {server}: {e}"),
    })?;
    let io = |e: std::io::Error| format!("talking to the cluster server at {server} failed: {e}");
    tx.send_value(&Hello::Cli { version: PROTOCOL_VERSION }).await.map_err(io)?;
    tx.send_value(request).await.map_err(io)?;
    rx.recv_value::<Result<Response, String>>().await.map_err(io)?
}
