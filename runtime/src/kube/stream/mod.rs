//! The API's streaming subresources (issue #15): a pod's log followed
//! (`kubectl logs -f`, a chunked body), and exec, attach and port-forward
//! over a connection upgraded to WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`; `SPDY/3.1+portforward.k8s.io` tunnels SPDY) or to
//! SPDY/3.1 (`v4.channel.k8s.io`, `portforward.k8s.io`).
//!
//! Files: `logs` (pods/NAME/log, whole or followed), `channel` (the
//! remote-command stream ids, resize and exit Status), `exec` (the query
//! and the process: `runc exec`, on pipes or a terminal), `websocket`
//! (handshake and session), `attach` (the container's output, followed),
//! `spdy` (SPDY/3.1 framing), `spdy_session` (a SPDY connection's streams:
//! exec, attach and port-forward), `remote` (the same for a pod on a
//! member of the cluster, over a stream the member opens back to the
//! server: `cluster::streams`).
//!
//! An upgraded session holds its connection's permit of the API's
//! listener until it ends (the server awaits the [`Session`] on the
//! connection's task), so sessions count against the same caps as
//! requests; a session idle both ways for [`IDLE`] is cut.

pub mod attach;
pub mod channel;
pub mod exec;
pub mod logs;
pub mod remote;
pub mod spdy;
pub mod spdy_session;
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
use hyper_util::rt::TokioIo;

use super::agent::{Agent, AgentRefusal};
use super::status::Status;
use crate::cluster::proto::StreamRequest;
use crate::cluster::streams::Streams;
use crate::listeners::limits::Counters;

/// A response body: whole, or streamed as it comes.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// An upgraded connection's session, run on the connection's own task.
pub type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How long a session may pass with nothing sent either way (the
/// kubelet's streaming idle timeout is 4 hours; a Pi's connections are
/// fewer).
pub const IDLE: Duration = Duration::from_secs(3600);

/// When a session last moved bytes either way, for its idle timeout.
#[derive(Debug, Clone)]
pub struct Activity {
    start: tokio::time::Instant,
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity { start: tokio::time::Instant::now(), last: Default::default() }
    }
}

impl Activity {
    /// Bytes moved now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns once nothing moved for `idle`.
    pub async fn idled(&self, idle: Duration) {
        loop {
            let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
            let deadline = self.start + Duration::from_millis(last) + idle;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

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

/// Where a stream is served: the agent, this node's name, the counters.
pub struct Here<'a> {
    /// The agent.
    pub agent: &'a Agent,
    /// This node's name.
    pub node: &'a str,
    /// The listener's counters.
    pub counters: &'static Counters,
    /// Streams into members' pods, on a cluster's server.
    pub streams: Option<&'a Streams>,
}

/// Answers an upgrade request on a streaming subresource: the 101 and the
/// session to run on the connection, or a Status (nothing started).
pub async fn upgrade(
    here: &Here<'_>,
    kind: Kind,
    namespace: &str,
    name: &str,
    parts: &mut Parts,
) -> Result<(hyper::Response<Body>, Session), Status> {
    let (agent, counters) = (here.agent, here.counters);
    // None: the pod runs here; else the member node that runs it.
    let remote = pod_node(here, namespace, name).await?;
    let query = parts.uri.query().unwrap_or("").to_string();
    let protocol =
        parts.headers.get(UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let spdy = match protocol.as_str() {
        "websocket" => false,
        "spdy/3.1" => true,
        other => return Err(upgrade_required(other)),
    };
    let (namespace, name) = (namespace.to_string(), name.to_string());
    match kind {
        Kind::Exec | Kind::Attach => {
            let attach = kind == Kind::Attach;
            let asked = exec::Asked::parse(&query, attach)?;
            let spdy_chosen =
                if spdy { Some(spdy_protocol(&parts.headers, &[channel::SPDY_EXEC])?) } else { None };
            let handshake =
                if spdy { None } else { Some(websocket::handshake(&parts.headers, &channel::PROTOCOLS)?) };
            // The process starts before the 101, so a refusal is a Status.
            let process = match (&remote, attach) {
                (Some((streams, node)), _) => {
                    let request = if attach {
                        StreamRequest::Attach { namespace, name, asked: asked.clone() }
                    } else {
                        StreamRequest::Exec { namespace, name, asked: asked.clone() }
                    };
                    remote::process(streams, node, request).await?
                }
                (None, true) => attach::process(agent, &namespace, &name, &asked).await?,
                (None, false) => {
                    let container = exec::target(agent, &namespace, &name).await?;
                    exec::spawn(&container, &asked).map_err(|e| Status::internal(e.to_string()))?
                }
            };
            let upgrade = on_upgrade(parts)?;
            if let Some(chosen) = spdy_chosen {
                let session = async move {
                    let Ok(upgraded) = upgrade.await else { return };
                    spdy_session::serve(TokioIo::new(upgraded), IDLE, counters, |streams, frames| {
                        spdy_session::exec(streams, frames, asked, |_: &exec::Asked| Ok(process))
                    })
                    .await
                };
                return Ok((spdy_switching(chosen), Box::pin(session)));
            }
            let handshake = handshake.expect("WebSocket when not SPDY");
            let session = websocket::exec(upgrade, handshake.clone(), process, asked.command, IDLE, counters);
            Ok((websocket::switching(&handshake), Box::pin(session)))
        }
        Kind::PortForward => {
            let target = match remote {
                Some((streams, node)) => remote::Target::Remote {
                    streams: streams.clone(),
                    node,
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
                None => remote::Target::Local(port_forward_target(agent, &namespace, &name).await?),
            };
            let pod = format!("{namespace}/{name}");
            let forward = move |streams, frames| spdy_session::port_forward(streams, frames, target, pod);
            if spdy {
                let chosen = spdy_protocol(&parts.headers, &[channel::SPDY_PORT_FORWARD])?;
                let upgrade = on_upgrade(parts)?;
                let session = async move {
                    let Ok(upgraded) = upgrade.await else { return };
                    spdy_session::serve(TokioIo::new(upgraded), IDLE, counters, forward).await
                };
                return Ok((spdy_switching(chosen), Box::pin(session)));
            }
            let handshake = websocket::handshake(&parts.headers, &[websocket::SPDY_TUNNEL])?;
            let upgrade = on_upgrade(parts)?;
            let session = websocket::tunnel(upgrade, IDLE, counters, forward);
            Ok((websocket::switching(&handshake), Box::pin(session)))
        }
    }
}

/// The network namespace of pod `namespace/name`, which must run here.
pub async fn port_forward_target(
    agent: &Agent,
    namespace: &str,
    name: &str,
) -> Result<std::path::PathBuf, Status> {
    use crate::api::{Request, Response};
    let request = Request::ExecTarget { namespace: namespace.into(), name: name.into() };
    match agent.call(request).await.map_err(|e| refusal(e, name))? {
        Response::Exec(target) if target.pid.is_some() => Ok(target.netns),
        Response::Exec(_) => Err(Status::bad_request(format!(
            "unable to forward port because pod {namespace}/{name} is not running"
        ))),
        _ => Err(Status::unavailable("the agent answered with something else than asked for")),
    }
}

/// The stream protocol a SPDY client offers (`X-Stream-Protocol-Version`,
/// one header per version) that is served.
fn spdy_protocol(headers: &hyper::HeaderMap, served: &[&'static str]) -> Result<&'static str, Status> {
    let offered: Vec<&str> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    offered.iter().find_map(|o| served.iter().find(|s| *s == o).copied()).ok_or_else(|| {
        Status::refused(format!(
            "unable to upgrade: none of the stream protocols {offered:?} is served: {served:?}"
        ))
    })
}

/// The 101 to a SPDY upgrade.
fn spdy_switching(protocol: &'static str) -> hyper::Response<Body> {
    use http_body_util::BodyExt;
    use hyper::header::{CONNECTION, HeaderValue};
    let mut response = hyper::Response::new(http_body_util::Empty::new().boxed_unsync());
    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    headers.insert("x-stream-protocol-version", HeaderValue::from_static(protocol));
    response
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
        // A member forwarded a stream to the cluster's server.
        AgentRefusal::Refused(text) if text.contains("streams work only on the pod's node") => {
            Status::bad_request(format!(
                "pod {name} runs on another node: stream its log through that node's API ({text})"
            ))
        }
        AgentRefusal::Refused(text) => Status::from_agent(&text, "Pod", "pods", name),
        AgentRefusal::Unavailable(text) => Status::unavailable(text),
    }
}

/// Where pod `namespace/name` runs: here (None), or on a member whose
/// stream the server opens (the server's streams and the node). Without
/// streams (a member's API, never served) a pod elsewhere is refused: a
/// member would otherwise get the server's answer about a pod of its own.
async fn pod_node<'a>(
    here: &Here<'a>,
    namespace: &str,
    name: &str,
) -> Result<Option<(&'a Streams, String)>, Status> {
    use crate::api::{Request, Response};
    let request = Request::GetPods { namespace: Some(namespace.into()) };
    let pods = match here.agent.call(request).await.map_err(|e| refusal(e, name))? {
        Response::Pods(pods) => pods,
        _ => return Err(Status::unavailable("the agent answered with something else than asked for")),
    };
    match pods.into_iter().find(|p| p.spec.name == name) {
        None => Err(Status::not_found("pods", name)),
        Some(pod) if pod.node_name == here.node || pod.node_name.is_empty() => Ok(None),
        Some(pod) => match here.streams {
            Some(streams) => Ok(Some((streams, pod.node_name))),
            None => Err(Status::bad_request(format!(
                "pod {namespace}/{name} runs on node {}: run kubectl against the cluster server's API",
                pod.node_name
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_idle_only_once_nothing_moves() {
        let activity = Activity::default();
        let idle = Duration::from_secs(1);
        let mover = activity.clone();
        let moving = async {
            for _ in 0..30 {
                mover.touch();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            () = activity.idled(idle) => panic!("idle while bytes moved"),
            () = moving => {}
        }
        tokio::time::timeout(Duration::from_secs(10), activity.idled(idle))
            .await
            .expect("idle once nothing moves");
    }
}
