//! WebSocket for the streaming subresources (what kubectl 1.30+ tries
//! first): the handshake over hyper's upgrade (RFC 6455: version 13, a
//! key, and a subprotocol of [`channel::PROTOCOLS`] chosen from the
//! client's list), then the remote-command channel protocol: each binary
//! message is a stream id and its bytes. tokio-tungstenite does the
//! framing (masking, fragments, ping/pong, close), bounded below.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper::header::{CONNECTION, HeaderMap, HeaderValue, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode};

use super::Activity;
use super::channel::{self, ERROR, Ended, Incoming};
use super::exec::{self, Input, Process};
use crate::kube::status::Status;
use crate::listeners::limits::{Counters, Reason};

/// Largest message a client may send (stdin comes in pieces of 32 KiB).
const MAX_MESSAGE: usize = 1 << 20;
/// Largest frame of one.
const MAX_FRAME: usize = 256 << 10;

/// A WebSocket handshake the server accepts: the subprotocol chosen and
/// the key's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The subprotocol chosen (one of `offered`).
    pub protocol: &'static str,
    /// `Sec-WebSocket-Accept`.
    pub accept: String,
}

/// Checks a WebSocket upgrade request's headers; `offered` are the
/// subprotocols served, best first.
pub fn handshake(headers: &HeaderMap, offered: &[&'static str]) -> Result<Handshake, Status> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if text("sec-websocket-version") != "13" {
        return Err(Status::bad_request("a WebSocket upgrade needs Sec-WebSocket-Version: 13"));
    }
    let key = text("sec-websocket-key");
    if key.is_empty() {
        return Err(Status::bad_request("a WebSocket upgrade needs a Sec-WebSocket-Key"));
    }
    let asked: Vec<&str> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // The client's order decides, as the apiserver's handshake.
    let protocol = asked.iter().find_map(|a| offered.iter().find(|o| *o == a)).ok_or_else(|| {
        Status::bad_request(format!(
            "requested protocol(s) are not supported: {asked:?}; supports {offered:?}"
        ))
    })?;
    Ok(Handshake { protocol, accept: derive_accept_key(key.as_bytes()) })
}

/// The 101 answer to an accepted handshake.
pub fn switching(handshake: &Handshake) -> hyper::Response<super::Body> {
    use http_body_util::BodyExt;
    let mut response = hyper::Response::new(http_body_util::Empty::new().boxed_unsync());
    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert("sec-websocket-protocol", HeaderValue::from_static(handshake.protocol));
    if let Ok(accept) = HeaderValue::from_str(&handshake.accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    response
}

/// The bounds of a client's messages.
fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_FRAME))
}

/// Serves an exec (or attach) session on the upgraded connection: input
/// messages to the command, its output back, then its end on the error
/// stream and a close. A client silent for `idle` (both ways) is cut.
pub async fn exec(
    upgrade: OnUpgrade,
    handshake: Handshake,
    process: Process,
    command: Vec<String>,
    idle: Duration,
    counters: &'static Counters,
) {
    let Ok(upgraded) = upgrade.await else { return };
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config())).await;
    let (mut sink, mut stream) = ws.split();
    let v5 = handshake.protocol == channel::PROTOCOLS[0];
    let (out_tx, mut out_rx) = mpsc::channel::<exec::Output>(8);
    let (in_tx, in_rx) = mpsc::channel(8);
    let activity = Activity::default();
    let session = async {
        let write = async {
            while let Some((id, data)) = out_rx.recv().await {
                if sink.send(Message::Binary(channel::encode(id, &data).into())).await.is_err() {
                    return false;
                }
                activity.touch();
            }
            true
        };
        let (ended, written) = futures::future::join(exec::run(process, out_tx, in_rx), write).await;
        (ended, written)
    };
    let read = async {
        loop {
            let message = match stream.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(message)) => message,
            };
            activity.touch();
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => return None,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Text(_) => {
                    counters.count(Reason::MalformedMessage);
                    return Some("text messages are not part of the channel protocol");
                }
            };
            let input = match channel::decode(&bytes, v5) {
                Ok(Incoming::Stdin(data)) => Input::Stdin(data.to_vec()),
                Ok(Incoming::Resize(size)) => Input::Resize(size),
                Ok(Incoming::Close(channel::STDIN)) => Input::StdinClosed,
                Ok(Incoming::Close(_) | Incoming::Nothing) => continue,
                Err(_) => {
                    counters.count(Reason::MalformedMessage);
                    return Some("a message the channel protocol does not have");
                }
            };
            if in_tx.send(input).await.is_err() {
                return None;
            }
        }
    };
    let finished = tokio::select! {
        finished = session => Some(finished),
        // The client went, spoke garbage or idled: the command is killed.
        _ = read => None,
        () = activity.idled(idle) => {
            counters.count(Reason::IdleTimeout);
            None
        }
    };
    let Some((ended, true)) = finished else { return };
    let status = channel::status(&ended, &command).to_string();
    let _ = sink.send(Message::Binary(channel::encode(ERROR, status.as_bytes()).into())).await;
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = sink.send(Message::Close(Some(close))).await;
    let _ = sink.close().await;
    if let Ended::Failed(why) = ended {
        tracing::debug!("exec session failed: {why}");
    }
}

/// The subprotocol of port-forwarding tunnelled in WebSocket (kubectl
/// 1.31+): the messages carry a SPDY connection's bytes.
pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// Serves a SPDY connection tunnelled in the upgraded WebSocket: binary
/// messages in are its bytes in, its bytes out go as binary messages.
pub async fn tunnel<Fut>(
    upgrade: OnUpgrade,
    idle: Duration,
    counters: &'static Counters,
    handler: impl FnOnce(mpsc::Receiver<super::spdy_session::Stream>, super::spdy_session::Frames) -> Fut,
) where
    Fut: std::future::Future<Output = ()>,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(upgraded) = upgrade.await else { return };
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config())).await;
    let (mut sink, mut stream) = ws.split();
    let (inner, outer) = tokio::io::duplex(64 << 10);
    let (mut from_spdy, mut to_spdy) = tokio::io::split(outer);
    let inbound = async {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(bytes) => {
                    if to_spdy.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                Message::Text(_) => {
                    counters.count(Reason::MalformedMessage);
                    break;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    };
    let outbound = async {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match from_spdy.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ =
            sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
        let _ = sink.close().await;
    };
    let serve = async {
        super::spdy_session::serve(inner, idle, counters, handler).await;
        // Dropping the inner end ends `outbound`, which closes the socket.
    };
    tokio::select! {
        () = inbound => {}
        _ = futures::future::join(serve, outbound) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn the_handshake_checks_version_key_and_subprotocol() {
        let ok = headers(&[
            ("sec-websocket-version", "13"),
            // RFC 6455's example key and answer.
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "v4.channel.k8s.io, v5.channel.k8s.io"),
        ]);
        let hs = handshake(&ok, &channel::PROTOCOLS).unwrap();
        assert_eq!(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(hs.protocol, "v4.channel.k8s.io", "the client's first choice that is served");
        let v5 = headers(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "x"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
            ("sec-websocket-protocol", "v4.channel.k8s.io"),
        ]);
        assert_eq!(handshake(&v5, &channel::PROTOCOLS).unwrap().protocol, "v5.channel.k8s.io");
        let none = headers(&[("sec-websocket-version", "13"), ("sec-websocket-key", "x")]);
        assert!(handshake(&none, &channel::PROTOCOLS).unwrap_err().message.contains("not supported"));
        let old = headers(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "x"),
            ("sec-websocket-protocol", "channel.k8s.io, base64.channel.k8s.io"),
        ]);
        assert_eq!(handshake(&old, &channel::PROTOCOLS).unwrap_err().code, 400);
        let v8 = headers(&[
            ("sec-websocket-version", "8"),
            ("sec-websocket-key", "x"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        assert_eq!(handshake(&v8, &channel::PROTOCOLS).unwrap_err().code, 400);
    }
}
