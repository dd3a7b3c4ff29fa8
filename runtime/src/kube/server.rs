//! HTTPS for the Kubernetes API: TLS (rustls) and HTTP/1.1 (hyper) on the
//! agent's accept loop, so the API has the same connection caps, request
//! timeout and counted refusals as the agent's other listeners. Every
//! request needs the admin token; bodies are bounded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::auth::Token;
use super::routes::{self, Route};
use super::status::Status;
use super::verbs::{Asked, Reply, Verbs};
use crate::listeners::accept;
use crate::listeners::limits::{Counters, Gate, Permit, Reason};

/// Largest request body read (Kubernetes takes 3 MB; podnet's objects are
/// a few KB, and a node may be a Pi).
pub const MAX_BODY: usize = 1 << 20;
/// Largest request head (line and headers) read.
const MAX_HEAD: usize = 64 << 10;

/// Everything a connection needs, shared by all of them.
pub struct Server {
    /// The verbs on objects.
    pub verbs: Verbs,
    /// The admin token.
    pub token: Token,
    /// TLS with the serving certificate.
    pub tls: TlsAcceptor,
    /// Where refusals are counted (the listener's counters).
    pub counters: &'static Counters,
    /// Longest a request may take to arrive.
    pub request_timeout: Duration,
}

/// Serves connections from `listener` through `gate` until the task ends.
pub async fn serve(listener: TcpListener, server: Arc<Server>, gate: Arc<Gate>) {
    accept::serve(listener, gate, move |stream, permit| {
        let server = server.clone();
        async move { server.connection(stream, permit).await }
    })
    .await
}

impl Server {
    async fn connection(self: Arc<Self>, stream: TcpStream, permit: Permit) {
        let tls = match permit.within(self.tls.accept(stream)).await {
            None => return,
            Some(Err(_)) => return permit.count(Reason::HandshakeFailed),
            Some(Ok(tls)) => tls,
        };
        let server = self.clone();
        let service = hyper::service::service_fn(move |request| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.respond(request).await) }
        });
        // The header timeout also ends a connection idle between requests.
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.request_timeout)
            .max_buf_size(MAX_HEAD)
            .serve_connection(TokioIo::new(tls), service)
            .await;
        drop(permit);
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (code, body, close) = match self.answer(request).await {
            Ok((code, body)) => (code, body, false),
            Err(status) => (status.code, status.to_json(), matches!(status.code, 413 | 504)),
        };
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() =
            hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
        headers.insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-cache, private"),
        );
        if close {
            // A body left unread, or too slow: the connection goes.
            headers.insert(CONNECTION, hyper::header::HeaderValue::from_static("close"));
        }
        response
    }

    async fn answer(&self, request: Request<Incoming>) -> Result<Reply, Status> {
        let (parts, body) = request.into_parts();
        if !self.token.admits(parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes())) {
            self.counters.count(Reason::Unauthorized);
            return Err(Status::unauthorized());
        }
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            self.counters.count(Reason::OversizedMessage);
            return Err(Status::too_large(MAX_BODY));
        }
        let bytes =
            match tokio::time::timeout(self.request_timeout, Limited::new(body, MAX_BODY).collect()).await {
                Err(_) => {
                    self.counters.count(Reason::RequestTimeout);
                    return Err(Status::timeout());
                }
                Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    self.counters.count(Reason::OversizedMessage);
                    return Err(Status::too_large(MAX_BODY));
                }
                Ok(Err(_)) => return Err(Status::bad_request("the request body could not be read")),
                Ok(Ok(collected)) => collected.to_bytes(),
            };
        let route = routes::route(parts.uri.path())?;
        if let Route::Document(document) = route {
            return match parts.method {
                Method::GET => Ok((200, document())),
                _ => Err(Status::not_allowed("discovery documents are read with GET")),
            };
        }
        let accept = parts.headers.get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !accept.is_empty() && !accept.contains("json") && !accept.contains("*/*") {
            return Err(Status::not_acceptable(format!("podnet answers in JSON, not {accept}")));
        }
        let body =
            self.body(&bytes, parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or(""))?;
        let query = parse_query(parts.uri.query().unwrap_or(""));
        let asked =
            Asked { method: &parts.method, query: &query, table: accept.contains("as=Table"), body: &body };
        self.verbs.answer(route, &asked).await
    }

    /// The body as JSON (Null when empty), from JSON or Kubernetes protobuf.
    fn body(&self, bytes: &[u8], content_type: &str) -> Result<Value, Status> {
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        if content_type.starts_with("application/vnd.kubernetes.protobuf") {
            return super::protobuf::decode(bytes)
                .inspect_err(|_| self.counters.count(Reason::MalformedMessage));
        }
        if !content_type.is_empty() && !content_type.contains("json") {
            self.counters.count(Reason::MalformedMessage);
            return Err(Status::unsupported_media(format!("podnet reads JSON bodies, not {content_type}")));
        }
        serde_json::from_slice(bytes).map_err(|e| {
            self.counters.count(Reason::MalformedMessage);
            Status::bad_request(format!("the request body is not JSON: {e}"))
        })
    }
}

/// Query parameters, percent-decoded (`labelSelector=app%3Dweb`); a
/// parameter given twice keeps its first value.
pub fn parse_query(query: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(k)).or_insert_with(|| decode(v));
    }
    out
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_decoded() {
        let q = parse_query("labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&limit=500&x&bad=%zz&end=%4");
        assert_eq!(q["labelSelector"], "app=web,tier in (a,b)");
        assert_eq!(q["limit"], "500");
        assert_eq!(q["x"], "");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["end"], "%4");
    }
}
