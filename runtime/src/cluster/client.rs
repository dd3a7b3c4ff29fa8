//! A CLI request over the cluster channel: what `podnet --kubeconfig FILE`
//! and a member's agent (for requests about cluster state) use. Every step
//! is bounded, so a server that accepts and then stays silent (a wedged
//! agent, another service on the port) is an error, not a hang.

use std::net::SocketAddr;
use std::time::Duration;

use super::password::NodePassword;
use super::proto::Hello;
use super::token::Token;
use super::{ClusterError, channel};
use crate::api::{PROTOCOL_VERSION, Request, Response};
use crate::cluster::channel::RecvError;

/// How long the server may take to start its answer, and then to send it
/// whole: the server's own request timeout (10 s by default) plus room for
/// a save to a slow SD card. The bound is per message, so answers that
/// keep arriving are never cut.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The admin, with the admin token.
    Admin(String),
    /// A member node for its local CLI: it may read, not change.
    Node {
        /// Its name.
        name: String,
        /// Its node password.
        password: NodePassword,
    },
}

impl Caller {
    fn hello(&self) -> Hello {
        match self {
            Caller::Admin(admin) => Hello::Cli { version: PROTOCOL_VERSION, admin: admin.clone() },
            Caller::Node { name, password } => {
                Hello::NodeCli { version: PROTOCOL_VERSION, name: name.clone(), password: password.clone() }
            }
        }
    }
}

/// Sends one request to the cluster server and returns its answer.
pub async fn call(
    server: SocketAddr,
    token: &Token,
    caller: &Caller,
    request: &Request,
) -> Result<Response, ClusterError> {
    call_within(server, token, caller, request, ANSWER_TIMEOUT).await
}

/// [`call`], with `limit` for the handshake (at most the channel's own),
/// for sending the request and for the answer.
pub async fn call_within(
    server: SocketAddr,
    token: &Token,
    caller: &Caller,
    request: &Request,
    limit: Duration,
) -> Result<Response, ClusterError> {
    let handshake = limit.min(channel::HANDSHAKE_TIMEOUT);
    let silent = |waited| ClusterError::Silent { server, waited };
    let connected = tokio::time::timeout(handshake, channel::connect(server, token))
        .await
        .map_err(|_| silent(handshake))?;
    let (mut tx, mut rx) = connected.map_err(|source| match source.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::UnexpectedEof => {
            ClusterError::Refused(server)
        }
        std::io::ErrorKind::TimedOut => silent(handshake),
        _ => ClusterError::Unreachable { server, source },
    })?;
    let sent = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::TimedOut => silent(limit),
        _ => ClusterError::Talk { server, source },
    };
    tx.send_value_within(&caller.hello(), limit).await.map_err(sent)?;
    tx.send_value_within(request, limit).await.map_err(sent)?;
    // The answer's error is text: the server rendered it at its boundary.
    let answer = rx.recv_value_within::<Result<Response, String>>(Some(limit), limit).await;
    answer
        .map_err(|e| match e {
            RecvError::Idle(_) | RecvError::Timeout(_) => silent(limit),
            e => ClusterError::Talk { server, source: e.into() },
        })?
        .map_err(ClusterError::Remote)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls a listener made by `serve` with a short limit; an outer bound
    /// turns a hang into a failure.
    async fn call_silent<F>(serve: impl FnOnce(tokio::net::TcpStream, Token) -> F + Send + 'static) -> String
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (addr, token, server) = crate::cluster::channel::serve_once(serve).await;
        let limit = Duration::from_millis(300);
        let admin = Caller::Admin("admin".into());
        let call = call_within(addr, &token, &admin, &Request::GetNodes, limit);
        let result = tokio::time::timeout(Duration::from_secs(60), call).await;
        server.abort();
        let err = result.expect("the call hung on a silent server").unwrap_err();
        assert!(matches!(err, ClusterError::Silent { .. }), "{err:?}");
        err.to_string()
    }

    #[tokio::test]
    async fn a_server_that_opens_the_channel_and_never_answers_is_an_error() {
        let err = call_silent(|stream, token| async move {
            let (_tx, mut rx) = channel::accept(stream, &token).await.unwrap();
            // Reads the hello and the request, answers nothing.
            while rx.recv().await.is_ok() {}
        })
        .await;
        assert!(err.contains("127.0.0.1") && err.contains("did not answer within 0.3 s"), "{err}");
        assert!(err.contains("podnet node up --cluster-init"), "{err}");
    }

    #[tokio::test]
    async fn a_listener_that_accepts_and_stays_silent_is_an_error() {
        let err = call_silent(|stream, _| async move {
            std::future::pending::<()>().await;
            drop(stream);
        })
        .await;
        assert!(err.contains("did not answer"), "{err}");
    }
}
