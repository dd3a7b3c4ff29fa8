//! HTTPS for the Kubernetes API: TLS (rustls) and HTTP/1.1 (hyper) on the
//! agent's accept loop, so the API has the same connection caps, request
//! timeout and counted refusals as the agent's other listeners. Every
//! request needs the admin token; bodies are bounded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody};
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
use super::stream::{self, Body};
use super::verbs::{Asked, Reply, Verbs};
use crate::listeners::accept;
use crate::listeners::limits::{Counters, Gate, Permit, Reason};

/// Largest request body read (Kubernetes takes 3 MB; podnet's objects are
/// a few KB, and a node may be a Pi).
pub const MAX_BODY: usize = 1 << 20;
/// What is read and thrown away of a body past [`MAX_BODY`] before the 413
/// is sent.
const MAX_DRAIN: usize = 16 << 20;

/// Why a request body was not read.
enum BodyError {
    /// Not complete by the request's deadline.
    Timeout,
    /// Past [`MAX_BODY`].
    TooLarge,
    /// The connection failed mid-body.
    Broken,
}

/// Reads a request body of at most [`MAX_BODY`] bytes by `deadline`.
///
/// A body past the limit is read on and thrown away, up to [`MAX_DRAIN`]
/// bytes and the deadline, before the 413 goes: a client still sending when
/// the connection closes gets a reset that can discard the answer before it
/// reads it (curl then reports the 100 Continue it saw last). This is
/// nginx's `lingering_close`; bounded, it costs a stranger time and
/// bandwidth, never memory.
async fn read_body(mut body: Incoming, deadline: tokio::time::Instant) -> Result<Bytes, BodyError> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) if seen > MAX_BODY => return Err(BodyError::TooLarge),
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) if seen > MAX_BODY => return Err(BodyError::TooLarge),
            Ok(None) => return Ok(Bytes::from(kept)),
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(data) = frame.data_ref() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= MAX_BODY {
            kept.extend_from_slice(data);
        } else if seen > MAX_BODY + MAX_DRAIN {
            return Err(BodyError::TooLarge);
        } else {
            kept = Vec::new();
        }
    }
}
/// Largest request head (line and headers) read.
const MAX_HEAD: usize = 64 << 10;

/// Everything a connection needs, shared by all of them.
pub struct Server {
    /// The verbs on objects.
    pub verbs: Verbs,
    /// The watch hub (`?watch=1`).
    pub watch: Arc<super::watch::Hub>,
    /// The admin token.
    pub token: Token,
    /// TLS with the serving certificate.
    pub tls: TlsAcceptor,
    /// Where refusals are counted (the listener's counters).
    pub counters: &'static Counters,
    /// Longest a request may take to arrive.
    pub request_timeout: Duration,
    /// This node's name.
    pub node: String,
    /// Streams into members' pods, on a cluster's server.
    pub streams: Option<crate::cluster::streams::Streams>,
}

/// What a request is answered with.
enum Answered {
    /// An object, list, Table or Status.
    Json(Reply),
    /// A pod's log, whole or followed.
    Text(Body),
    /// A watch: JSON lines as they come.
    Watch(tokio::sync::mpsc::Receiver<Bytes>),
    /// Bytes of another type (the OpenAPI v2 document, in protobuf).
    Bytes(Vec<u8>, &'static str),
    /// A list, its JSON made as the connection takes it.
    List(super::verbs::ListChunks),
    /// A connection upgraded for a stream: the 101, and the session the
    /// connection's task runs after it.
    Upgraded(Response<Body>, stream::Session),
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
    /// Serves one admitted connection: TLS, then HTTP/1.1 requests.
    pub async fn connection(self: Arc<Self>, stream: TcpStream, permit: Permit) {
        let client = stream.peer_addr().map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
        let tls = match permit.within(self.tls.accept(stream)).await {
            None => return,
            Some(Err(_)) => return permit.count(Reason::HandshakeFailed),
            Some(Ok(tls)) => tls,
        };
        let server = self.clone();
        // An upgraded stream's session, run here so it holds the permit.
        let upgraded: Arc<Mutex<Option<stream::Session>>> = Arc::default();
        let slot = upgraded.clone();
        let service = hyper::service::service_fn(move |request| {
            let (server, slot) = (server.clone(), slot.clone());
            async move { Ok::<_, Infallible>(server.respond(request, client, &slot).await) }
        });
        // The header timeout also ends a connection idle between requests.
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.request_timeout)
            .max_buf_size(MAX_HEAD)
            .serve_connection(TokioIo::new(tls), service)
            .with_upgrades()
            .await;
        let session = upgraded.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(session) = session {
            session.await;
        }
        drop(permit);
    }

    async fn respond(
        &self,
        request: Request<Incoming>,
        client: std::net::IpAddr,
        upgraded: &Mutex<Option<stream::Session>>,
    ) -> Response<Body> {
        let whole = |bytes: Vec<u8>| Full::new(Bytes::from(bytes)).boxed_unsync();
        let (code, body, content_type, close) = match self.answer(request, client).await {
            Ok(Answered::Watch(events)) => return watch_response(events),
            Ok(Answered::Upgraded(response, session)) => {
                *upgraded.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
                return response;
            }
            Ok(Answered::Json((code, body))) => {
                (code, whole(body.to_string().into_bytes()), "application/json", false)
            }
            Ok(Answered::Text(text)) => (200, text, "text/plain", false),
            Ok(Answered::List(chunks)) => {
                let frames =
                    futures::StreamExt::map(chunks, |b| Ok::<_, Infallible>(hyper::body::Frame::data(b)));
                (200, BodyExt::boxed_unsync(StreamBody::new(frames)), "application/json", false)
            }
            Ok(Answered::Bytes(bytes, content_type)) => (200, whole(bytes), content_type, false),
            Err(status) => (
                status.code,
                whole(status.to_json().to_string().into_bytes()),
                "application/json",
                matches!(status.code, 413 | 504),
            ),
        };
        let mut response = Response::new(body);
        *response.status_mut() =
            hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
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

    async fn answer(&self, request: Request<Incoming>, client: std::net::IpAddr) -> Result<Answered, Status> {
        let (mut parts, body) = request.into_parts();
        if !self.token.admits(parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes())) {
            self.counters.count(Reason::Unauthorized);
            return Err(Status::unauthorized());
        }
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            self.counters.count(Reason::OversizedMessage);
            return Err(Status::too_large(MAX_BODY));
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let bytes = match read_body(body, deadline).await {
            Ok(bytes) => bytes,
            Err(BodyError::Timeout) => {
                self.counters.count(Reason::RequestTimeout);
                return Err(Status::timeout());
            }
            Err(BodyError::TooLarge) => {
                self.counters.count(Reason::OversizedMessage);
                return Err(Status::too_large(MAX_BODY));
            }
            Err(BodyError::Broken) => return Err(Status::bad_request("the request body could not be read")),
        };
        if parts.uri.path() == "/openapi/v2" && parts.method == Method::GET {
            return Ok(Answered::Bytes(super::openapi::v2(), super::openapi::V2_PROTOBUF));
        }
        let route = routes::route(parts.uri.path())?;
        if let Route::Document(document) = route {
            return match parts.method {
                Method::GET => Ok(Answered::Json((200, document()))),
                _ => Err(Status::not_allowed("discovery documents are read with GET")),
            };
        }
        if let Route::Stream { kind, namespace, name } = route {
            let path = parts.uri.path().to_string();
            let (namespace, name) = (namespace.to_string(), name.to_string());
            let counters = self.counters;
            let here = stream::Here {
                agent: self.verbs.agent(),
                node: &self.node,
                counters,
                streams: self.streams.as_ref(),
            };
            return stream::upgrade(&here, kind, &namespace, &name, &mut parts)
                .await
                .map(|(response, session)| Answered::Upgraded(response, session))
                .inspect_err(|e| tracing::debug!("{path}: {}", e.message));
        }
        if let Route::Log { namespace, name } = route {
            let query = parse_query(parts.uri.query().unwrap_or(""));
            return match parts.method {
                Method::GET => stream::logs::answer(self.verbs.agent(), namespace, name, &query)
                    .await
                    .map(Answered::Text),
                _ => Err(Status::not_allowed("a pod's log is read with GET")),
            };
        }
        let accept = parts.headers.get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !accept.is_empty() && !accept.contains("json") && !accept.contains("*/*") {
            return Err(Status::not_acceptable(format!("podnet answers in JSON, not {accept}")));
        }
        let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let body = self.body(&bytes, content_type)?;
        let query = parse_query(parts.uri.query().unwrap_or(""));
        let table = accept.contains("as=Table");
        let asked = Asked { method: &parts.method, query: &query, table, body: &body, content_type };
        if let (Route::Collection { resource, namespace }, &Method::GET) = (&route, &parts.method)
            && super::watcher::flag(query.get("watch"))
        {
            let hub = &self.watch;
            let events =
                super::watcher::start(hub, resource, *namespace, &query, asked.table, client).await?;
            return Ok(Answered::Watch(events));
        }
        if let (Route::Collection { resource, namespace }, &Method::GET) = (&route, &parts.method) {
            let chunks = self.verbs.list(resource, *namespace, &asked).await?;
            return Ok(Answered::List(chunks));
        }
        self.verbs.answer(route, &asked).await.map(Answered::Json)
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
        if content_type.starts_with("application/apply-patch+yaml") {
            // Server-side apply's body (YAML, of which JSON is a subset).
            return serde_yaml_ng::from_slice(bytes).map_err(|e| {
                self.counters.count(Reason::MalformedMessage);
                Status::bad_request(format!("the apply patch is not YAML: {e}"))
            });
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

/// A watch's 200: chunked JSON lines, one event each, until the watch ends.
fn watch_response(events: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(events, |mut events| async move {
        let chunk = events.recv().await?;
        Some((Ok::<_, Infallible>(hyper::body::Frame::data(chunk)), events))
    });
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    headers
        .insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-cache, private"));
    response
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
    use crate::api::Response as AgentResponse;
    use crate::listeners::limits::{Caps, Listener};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    /// A server on 127.0.0.1 whose agent lists no pods and refuses the rest;
    /// its address, counters, token and a TLS client trusting its CA.
    async fn start(
        tag: &str,
    ) -> (std::net::SocketAddr, &'static Counters, String, tokio_rustls::TlsConnector) {
        let dir = std::env::temp_dir().join(format!("podnet-kube-server-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tls = super::super::tls::load(&dir, "t", &[]).unwrap();
        let token = Token::load(&dir.join("token")).unwrap();
        let (calls, mut requests) = tokio::sync::mpsc::channel::<crate::api::server::Call>(4);
        tokio::spawn(async move {
            while let Some((request, reply)) = requests.recv().await {
                let answer = match request {
                    crate::api::Request::GetPods { .. } => {
                        Ok(crate::api::server::Answer::Once(Box::new(AgentResponse::Pods(Vec::new()))))
                    }
                    crate::api::Request::Objects { .. } => {
                        Ok(crate::api::server::Answer::Once(Box::new(AgentResponse::Objects {
                            revision: 1,
                            items: Vec::new(),
                        })))
                    }
                    _ => Err("refused".to_string()),
                };
                let _ = reply.send(answer);
            }
        });
        let counters: &'static Counters = Box::leak(Box::new(Counters::new()));
        let timeout = Duration::from_millis(300);
        let agent = super::super::agent::Agent::new(calls, timeout);
        let server = Arc::new(Server {
            watch: super::super::watch::Hub::new(agent.clone(), Default::default(), counters),
            verbs: Verbs::new(agent),
            token: token.clone(),
            tls: TlsAcceptor::from(tls.config),
            counters,
            request_timeout: timeout,
            node: "t".into(),
            streams: None,
        });
        let caps = Caps { per_client: 4, total: 4, request_timeout: timeout };
        let gate = Gate::with_counters(Listener::KubeApi, caps, counters);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, server, gate));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(super::super::tls::tests::rcgen_pem_der(
                &tls.ca_pem,
            )))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(super::super::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let _ = std::fs::remove_dir_all(&dir);
        (addr, counters, token.as_str().to_string(), tokio_rustls::TlsConnector::from(Arc::new(client)))
    }

    /// Sends `head` (and nothing more) over TLS; the whole answer.
    async fn request(addr: std::net::SocketAddr, tls: &tokio_rustls::TlsConnector, head: &str) -> String {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut stream = tls.connect(name, tcp).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn only_the_token_gets_in_and_strangers_are_counted() {
        let (addr, counters, token, tls) = start("auth").await;
        let get = "GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
        let answer = request(addr, &tls, &format!("{get}\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("\"reason\":\"Unauthorized\""), "{answer}");
        let wrong =
            request(addr, &tls, &format!("{get}Authorization: Bearer {}x\r\n\r\n", &token[1..])).await;
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        assert_eq!(counters.get(Reason::Unauthorized), 2);
        let answer = request(addr, &tls, &format!("{get}Authorization: Bearer {token}\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"kind\":\"PodList\""), "{answer}");
    }

    #[tokio::test]
    async fn a_declared_huge_body_is_refused_before_it_is_read() {
        let (addr, counters, token, tls) = start("huge").await;
        let head = format!(
            "POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
        );
        let answer = request(addr, &tls, &head).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert_eq!(counters.get(Reason::OversizedMessage), 1);
    }

    #[tokio::test]
    async fn a_handshake_that_never_ends_is_cut_at_the_request_timeout() {
        let (addr, counters, _, _) = start("slow").await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = tcp.into_split();
        // A byte every 50 ms: never a whole ClientHello.
        let trickle = tokio::spawn(async move {
            for byte in [0x16u8, 3, 1, 2, 0].iter().cycle().take(200) {
                if write.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "closed without an answer");
        assert_eq!(counters.get(Reason::RequestTimeout), 1);
        trickle.abort();
    }

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
