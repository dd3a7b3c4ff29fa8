//! The reverse proxy: one connection from a client (HTTP/1.1 with
//! keep-alive, HTTP/2 over TLS by ALPN or h2c by its preface, WebSocket
//! upgrades) served by hyper; each request routed by the table, sent with
//! hyper's HTTP/1.1 client to one ready endpoint of its backend (pod
//! IP:targetPort, reached from the node through `podnet0` and the overlay,
//! as node-port traffic is), balanced per request and tried on the next
//! endpoint when a connect fails. Bodies stream both ways, never buffered
//! whole. Plain HTTP to a TLS host is redirected with 308.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::IngressConfig;
use super::routing::{Decision, Table};
use super::stats::Stats;
use super::watch::{Tracked, Watched};
use crate::listeners::limits::{Client, Permit, Reason};

/// A response body: the backend's, streamed, or one of the proxy's own.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Endpoints tried for one request before it is answered 502.
const MAX_ENDPOINTS_TRIED: usize = 3;
/// Idle kept-alive connections kept per endpoint: enough for the requests
/// a busy node has in flight to one pod (32 made 200 wrk connections open
/// and close backend connections per request); the total is bounded by the
/// client connections that caused them.
const MAX_IDLE_PER_ENDPOINT: usize = 128;

/// How the client reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What every connection of the proxy shares: the table, the backend
/// connections, the limits and the counters.
pub struct Shared {
    /// The routing table now; swapped whole when Ingresses or endpoints change.
    pub table: RwLock<Arc<Table>>,
    /// Kept-alive connections to endpoints.
    pub pool: Pool,
    /// The board config's limits and ports.
    pub config: IngressConfig,
    /// Requests and failures, for `podnet node stats`.
    pub stats: Stats,
}

/// Serves one accepted connection (TLS already done for HTTPS) until it
/// closes, is idle past the idle timeout, or breaks a limit.
pub async fn serve<I>(io: I, h2: bool, permit: Permit, scheme: Scheme, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Client::Ip(client) = permit.client() else { return };
    let config = &shared.config;
    let idle = Duration::from_secs(config.idle_timeout_s);
    let (io, watch) = Watched::new(io, Duration::from_millis(config.request_timeout_ms), h2);
    let service = {
        let (shared, watch) = (shared.clone(), watch.clone());
        hyper::service::service_fn(move |request| {
            let (shared, in_flight) = (shared.clone(), watch.request());
            let watch = watch.clone();
            async move {
                let response = forward(request, client, scheme, &shared).await;
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    watch.upgraded();
                }
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // `Watched` times heads, to answer 408 (hyper's timeout just closes).
        .header_read_timeout(None)
        .max_buf_size(config.max_header_bytes as usize)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(config.max_header_bytes)
        .max_concurrent_streams(128);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::select! {
        result = connection => if let Err(e) = result {
            let reason = if watch.timed_out() { Reason::RequestTimeout } else { classify(&*e) };
            permit.count(reason);
            tracing::debug!(%client, reason = reason.name(), "ingress connection closed: {e}");
        },
        () = watch.idle_for(idle) => permit.count(Reason::IdleTimeout),
    }
}

/// Which listener reason a connection's error is.
fn classify(e: &(dyn std::error::Error + 'static)) -> Reason {
    match e.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_timeout() => Reason::RequestTimeout,
        Some(e) if e.is_parse_too_large() => Reason::OversizedMessage,
        // A client that broke the protocol (HTTP/2 framing included) or
        // hung up mid-request.
        _ => Reason::MalformedMessage,
    }
}

/// Routes and forwards one request; every failure is an answer, never an error.
async fn forward(
    mut request: Request<Incoming>,
    client: IpAddr,
    scheme: Scheme,
    shared: &Shared,
) -> Response<Body> {
    let (host, authority) = request_host(&request);
    let path = request.uri().path().to_string();
    let table = shared.table.read().expect("table lock").clone();
    let route = match table.route(&host, &path) {
        Decision::Route(route) => route.clone(),
        Decision::NotFound => {
            shared.stats.count(None, StatusCode::NOT_FOUND);
            return text(
                StatusCode::NOT_FOUND,
                "404 page not found: no ingress rule matches this host and path\n",
            );
        }
    };
    let rule = Some(&route.rule);
    if scheme == Scheme::Http && route.redirect && shared.config.https_port != 0 {
        let port = match shared.config.https_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let target = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let location = format!("https://{host}{port}{target}");
        shared.stats.count(rule, StatusCode::PERMANENT_REDIRECT);
        let mut response = text(StatusCode::PERMANENT_REDIRECT, "308 Permanent Redirect\n");
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return response;
    }
    if route.backends.addrs.is_empty() {
        shared.stats.count(rule, StatusCode::SERVICE_UNAVAILABLE);
        let message = format!("503 Service Unavailable: {} has no ready endpoint\n", route.backends.name);
        return text(StatusCode::SERVICE_UNAVAILABLE, &message);
    }

    let upgrade = upgrade_of(request.headers());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if let Some(protocol) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&authority) {
        headers.insert(header::HOST, value.clone());
        headers.insert(HeaderName::from_static("x-forwarded-host"), value);
    }
    // The client's own address only: an X-Forwarded-For a lan client sent
    // is not trusted (ingress-nginx's default, use-forwarded-headers off).
    let ip = HeaderValue::from_str(&client.to_string()).expect("an address is a header value");
    headers.insert(HeaderName::from_static("x-forwarded-for"), ip.clone());
    headers.insert(HeaderName::from_static("x-real-ip"), ip);
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(scheme.as_str()));
    let port = match scheme {
        Scheme::Http => shared.config.http_port,
        Scheme::Https => shared.config.https_port,
    };
    headers.insert(HeaderName::from_static("x-forwarded-port"), HeaderValue::from(port));
    // Origin form toward the backend: the path and query as the client sent them.
    parts.uri = hyper::Uri::from(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
    );
    parts.version = Version::HTTP_11;
    let mut outgoing = Request::from_parts(parts, body);

    let connect_timeout = Duration::from_millis(shared.config.connect_timeout_ms);
    for addr in route.backends.order().take(MAX_ENDPOINTS_TRIED) {
        // A kept-alive connection first; if it turned out closed before the
        // request went out, a fresh one to the same endpoint.
        for fresh in [false, true] {
            let sender = match shared.pool.get(addr, fresh, connect_timeout).await {
                Ok(sender) => sender,
                Err(e) => {
                    shared.stats.upstream_failed();
                    tracing::debug!(backend = %route.backends.name, %addr, "ingress: cannot connect: {e}");
                    break;
                }
            };
            let (sent, sender) = send(sender, outgoing).await;
            match sent {
                Ok(mut response) => {
                    if upgrade.is_none() {
                        shared.pool.put(addr, sender);
                    }
                    shared.stats.count(rule, response.status());
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS
                        && let Some(client_side) = client_upgrade
                    {
                        let backend_side = hyper::upgrade::on(&mut response);
                        tokio::spawn(splice_upgraded(client_side, backend_side));
                        return response.map(|b| b.boxed());
                    }
                    strip_hop_by_hop(response.headers_mut());
                    return response.map(|b| b.boxed());
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the request is whole, try again.
                    Some(request) => outgoing = request,
                    None => {
                        shared.stats.upstream_failed();
                        shared.stats.count(rule, StatusCode::BAD_GATEWAY);
                        tracing::debug!(backend = %route.backends.name, %addr, "ingress: backend failed: {}", e.error());
                        return text(
                            StatusCode::BAD_GATEWAY,
                            "502 Bad Gateway: the backend failed to answer\n",
                        );
                    }
                },
            }
        }
    }
    shared.stats.count(rule, StatusCode::BAD_GATEWAY);
    let message = format!("502 Bad Gateway: no endpoint of {} accepted a connection\n", route.backends.name);
    text(StatusCode::BAD_GATEWAY, &message)
}

type Sent = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Incoming>>>;

async fn send(
    mut sender: SendRequest<Incoming>,
    request: Request<Incoming>,
) -> (Sent, SendRequest<Incoming>) {
    let sent = sender.try_send_request(request).await;
    (sent, sender)
}

/// Moves bytes both ways between an upgraded client and backend (WebSocket).
async fn splice_upgraded(client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade) {
    let (Ok(client), Ok(backend)) = (client.await, backend.await) else { return };
    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(backend)).await;
}

/// The host a request is for, lowercase and without a port (for routing),
/// and the authority as the client wrote it (for the Host header passed on).
fn request_host<B>(request: &Request<B>) -> (String, String) {
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(String::from))
        .unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority.as_str(),
    };
    (host.trim_end_matches('.').to_ascii_lowercase(), authority)
}

/// The protocol a request asks to upgrade to (`Connection: upgrade`).
fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    asks.then(|| headers.get(header::UPGRADE).cloned()).flatten()
}

/// Removes the headers that belong to one hop (RFC 9110 7.6.1), and those
/// the Connection header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim).filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// One of the proxy's own answers.
fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response =
        Response::new(Full::new(Bytes::from(body.to_string())).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Kept-alive HTTP/1.1 connections to endpoints. A connection goes back to
/// the pool as soon as its response head arrived; it is taken again only
/// once hyper says it is ready (the response body was read to its end).
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>>,
}

impl Pool {
    async fn get(
        &self,
        addr: SocketAddr,
        fresh: bool,
        timeout: Duration,
    ) -> io::Result<SendRequest<Incoming>> {
        if !fresh && let Some(sender) = self.take(addr) {
            return Ok(sender);
        }
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        Ok(sender)
    }

    /// The most recently returned ready connection, dropping closed ones on
    /// the way; not a scan of the whole list per request (it holds the lock
    /// every proxy thread takes).
    fn take(&self, addr: SocketAddr) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(&addr)?;
        // Downwards: what swap_remove moves into `i` was already looked at.
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if list[i].is_closed() {
                list.swap_remove(i);
            } else if list[i].is_ready() {
                return Some(list.swap_remove(i));
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<Incoming>) {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(addr).or_default();
        if list.len() >= MAX_IDLE_PER_ENDPOINT {
            list.retain(|s| !s.is_closed());
        }
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(sender);
        }
    }

    /// Forgets connections to endpoints no longer in `keep`.
    pub fn retain(&self, keep: &std::collections::HashSet<SocketAddr>) {
        self.idle.lock().expect("pool lock").retain(|addr, _| keep.contains(addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(uri: &str, host: Option<&str>) -> (String, String) {
        let mut builder = Request::builder().uri(uri);
        if let Some(h) = host {
            builder = builder.header(header::HOST, h);
        }
        request_host(&builder.body(()).unwrap())
    }

    #[test]
    fn the_host_comes_from_the_authority_or_the_host_header_without_its_port() {
        assert_eq!(
            host_of("/x", Some("Shop.Example:8080")),
            ("shop.example".into(), "Shop.Example:8080".into())
        );
        assert_eq!(host_of("https://api.example/x", None), ("api.example".into(), "api.example".into()));
        assert_eq!(host_of("/x", Some("shop.example.")).0, "shop.example");
        assert_eq!(host_of("/x", None).0, "");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        let mut upgrade = HeaderMap::new();
        upgrade.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        upgrade.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_of(&upgrade).unwrap(), "websocket");
    }
}
