//! The API's streaming subresources (issue #15): a pod's log followed
//! (`kubectl logs -f`, a chunked body), and exec over a connection
//! upgraded to WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`).
//!
//! Files: `logs` (pods/NAME/log, whole or followed), `channel` (the
//! remote-command stream ids, resize and exit Status), `exec` (the query
//! and the process: `runc exec`, on pipes or a terminal), `websocket`
//! (handshake and session).
//!
//! An upgraded session holds its connection's permit of the API's
//! listener until it ends (the server awaits the [`Session`] on the
//! connection's task), so sessions count against the same caps as
//! requests; a session idle both ways for [`IDLE`] is cut.

pub mod channel;
pub mod exec;
pub mod logs;
pub mod websocket;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Bytes;
use hyper::header::UPGRADE;
use hyper::http::request::Parts;
use hyper::upgrade::OnUpgrade;

use super::agent::{Agent, AgentRefusal};
use super::status::Status;
use crate::listeners::limits::Counters;

/// A response body: whole, or streamed as it comes.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// An upgraded connection's session, run on the connection's own task.
pub type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long a session may pass with nothing sent either way (the
/// kubelet's streaming idle timeout is 4 hours; a Pi's connections are
/// fewer).
pub const IDLE: Duration = Duration::from_secs(3600);

/// Which streaming subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `pods/NAME/exec`.
    Exec,
    /// `pods/NAME/attach`.
    Attach,
    /// `pods/NAME/portforward`.
    PortForward,
}

/// Answers an upgrade request on a streaming subresource: the 101 and the
/// session to run on the connection, or a Status (nothing started).
pub async fn upgrade(
    agent: &Agent,
    kind: Kind,
    namespace: &str,
    name: &str,
    parts: &mut Parts,
    counters: &'static Counters,
) -> Result<(hyper::Response<Body>, Session), Status> {
    let query = parts.uri.query().unwrap_or("");
    let protocol =
        parts.headers.get(UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if kind != Kind::Exec {
        return Err(Status::bad_request(format!(
            "podnet does not stream {} yet: use kubectl exec",
            if kind == Kind::Attach { "attach" } else { "port-forward" }
        )));
    }
    if protocol != "websocket" {
        return Err(upgrade_required(&protocol));
    }
    let asked = exec::Asked::parse(query, false)?;
    let handshake = websocket::handshake(&parts.headers, &channel::PROTOCOLS)?;
    let container = exec::target(agent, namespace, name).await?;
    let upgrade = on_upgrade(parts)?;
    let process = exec::spawn(&container, &asked).map_err(|e| Status::internal(e.to_string()))?;
    let session = websocket::exec(upgrade, handshake.clone(), process, asked.command, IDLE, counters);
    Ok((websocket::switching(&handshake), Box::pin(session)))
}

/// The upgrade hyper hands over once the 101 is sent.
fn on_upgrade(parts: &mut Parts) -> Result<OnUpgrade, Status> {
    parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or_else(|| Status::bad_request("this connection cannot be upgraded"))
}

/// The apiserver's answer to a streaming request without a usable upgrade.
fn upgrade_required(protocol: &str) -> Status {
    match protocol {
        "" => Status::bad_request("Upgrade request required"),
        other => Status::bad_request(format!("unable to upgrade: the protocol {other:?} is not served")),
    }
}

/// The agent's refusal of a request about pod `name`, as a Status.
fn refusal(e: AgentRefusal, name: &str) -> Status {
    match e {
        AgentRefusal::Refused(text) => Status::from_agent(&text, "Pod", "pods", name),
        AgentRefusal::Unavailable(text) => Status::unavailable(text),
    }
}
