//! The API's streaming subresources (issue #15): a pod's log followed
//! (`kubectl logs -f`, a chunked body), and — over a connection upgraded
//! to WebSocket or SPDY — exec, attach and port-forward.
//!
//! Files: `logs` (pods/NAME/log, whole or followed).

pub mod logs;

use std::convert::Infallible;

use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Bytes;

use super::agent::AgentRefusal;
use super::status::Status;

/// A response body: whole, or streamed as it comes.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The agent's refusal of a request about pod `name`, as a Status.
fn refusal(e: AgentRefusal, name: &str) -> Status {
    match e {
        AgentRefusal::Refused(text) => Status::from_agent(&text, "Pod", "pods", name),
        AgentRefusal::Unavailable(text) => Status::unavailable(text),
    }
}
