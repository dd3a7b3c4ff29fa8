//! A SPDY/3.1 connection's streams (the framing is `spdy`'s), and the two
//! things kubectl does with them: exec (streams named by `streamtype`:
//! error, stdin, stdout, stderr, resize) and port-forward (per forwarded
//! connection an error and a data stream, sharing a `requestid`, for a
//! `port`).
//!
//! The client opens every stream; each is answered with a SYN_REPLY.
//! Bounds: [`MAX_OPEN`] streams at once and [`MAX_STREAMS`] in all per
//! connection (more are reset as REFUSED_STREAM and counted), frames of at
//! most [`spdy::Limits`], a stream's unread input at most
//! [`STREAM_BUFFER`] frames (the connection waits on a slow reader, as
//! spdystream keeps no flow-control windows either), and the idle timeout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::Activity;
use super::channel::{self, Ended};
use super::exec::{self, Input, Process};
use super::remote::Target;
use super::spdy::{self, Decoder, Encoder, Frame, Headers, Limits};
use crate::listeners::limits::{Counters, Reason};

/// Streams open at once on one connection.
pub const MAX_OPEN: usize = 32;
/// Streams opened in all on one connection.
pub const MAX_STREAMS: u32 = 4096;
/// Frames of input a stream holds before the connection waits.
pub const STREAM_BUFFER: usize = 4;
/// Largest data frame sent.
pub const CHUNK: usize = 32 << 10;
/// How long the client has to open an exec's streams (the kubelet's).
const STREAM_CREATION: Duration = Duration::from_secs(30);
/// How long connecting to a forwarded port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream the client opened: its headers and its input (ends at FIN).
pub struct Stream {
    /// Its id.
    pub id: u32,
    /// Its SYN_STREAM's headers.
    pub headers: Headers,
    /// Its data frames' bytes.
    pub input: mpsc::Receiver<Vec<u8>>,
}

/// What a handler sends: frames to write, in order.
#[derive(Clone)]
pub struct Frames(mpsc::Sender<Frame>);

impl Frames {
    /// Sends `data` on `stream`, in chunks; false when the connection went.
    pub async fn data(&self, stream: u32, data: &[u8]) -> bool {
        for chunk in data.chunks(CHUNK) {
            if self.0.send(Frame::Data { stream, fin: false, data: chunk.to_vec() }).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Ends this side of `stream`.
    pub async fn fin(&self, stream: u32) {
        let _ = self.0.send(Frame::Data { stream, fin: true, data: Vec::new() }).await;
    }

    /// Resets `stream`.
    pub async fn reset(&self, stream: u32, status: u32) {
        let _ = self.0.send(Frame::RstStream { stream, status }).await;
    }

    /// Ends the connection (the last frame written).
    pub async fn go_away(&self) {
        let _ = self.0.send(Frame::GoAway { last_good: 0, status: 0 }).await;
    }
}

/// Serves a SPDY connection on `io`: frames in to `handler`'s streams, its
/// frames out, until the handler says GOAWAY, the client goes or speaks
/// garbage, or nothing moves for `idle`.
pub async fn serve<IO, Fut>(
    io: IO,
    idle: Duration,
    counters: &'static Counters,
    handler: impl FnOnce(mpsc::Receiver<Stream>, Frames) -> Fut,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin,
    Fut: std::future::Future<Output = ()>,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(16);
    let (streams_tx, streams_rx) = mpsc::channel::<Stream>(MAX_OPEN);
    let activity = Activity::default();
    let writer = async {
        let mut encoder = Encoder::default();
        let mut bytes = Vec::new();
        while let Some(frame) = out_rx.recv().await {
            bytes.clear();
            encoder.encode(&frame, &mut bytes);
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
            activity.touch();
            if matches!(frame, Frame::GoAway { .. }) {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let out = out_tx.clone();
    let seen = activity.clone();
    let reader = async move {
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 << 10];
        let mut open: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let (mut last_id, mut opened) = (0u32, 0u32);
        loop {
            loop {
                let (frame, used) = match decoder.decode(&buf) {
                    Ok(Some(decoded)) => decoded,
                    Ok(None) => break,
                    Err(e) => {
                        counters.count(match e {
                            spdy::SpdyError::TooLong(_) | spdy::SpdyError::HeaderBlockTooLarge => {
                                Reason::OversizedMessage
                            }
                            _ => Reason::MalformedMessage,
                        });
                        tracing::debug!("SPDY connection dropped: {e}");
                        return;
                    }
                };
                buf.drain(..used);
                match frame {
                    Frame::SynStream { stream, fin, headers, .. } => {
                        if stream % 2 == 0 || stream <= last_id {
                            counters.count(Reason::MalformedMessage);
                            return;
                        }
                        last_id = stream;
                        if open.len() >= MAX_OPEN || opened >= MAX_STREAMS {
                            counters.count(Reason::StreamLimit);
                            let _ = out.send(Frame::RstStream { stream, status: spdy::REFUSED_STREAM }).await;
                            continue;
                        }
                        opened += 1;
                        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                        if !fin {
                            open.insert(stream, tx);
                        }
                        let reply = Frame::SynReply { stream, fin: false, headers: Vec::new() };
                        if out.send(reply).await.is_err() {
                            return;
                        }
                        let _ = streams_tx.send(Stream { id: stream, headers, input: rx }).await;
                    }
                    Frame::Data { stream, fin, data } => {
                        if let Some(tx) = open.get(&stream)
                            && !data.is_empty()
                            && tx.send(data).await.is_err()
                        {
                            open.remove(&stream);
                        }
                        if fin {
                            open.remove(&stream);
                        }
                    }
                    Frame::RstStream { stream, .. } => {
                        open.remove(&stream);
                    }
                    Frame::Ping { id } => {
                        let _ = out.send(Frame::Ping { id }).await;
                    }
                    Frame::GoAway { .. } => return,
                    Frame::SynReply { .. }
                    | Frame::Headers { .. }
                    | Frame::Settings
                    | Frame::WindowUpdate { .. }
                    | Frame::Unknown => {}
                }
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    seen.touch();
                }
            }
        }
    };
    let work = futures::future::join(handler(streams_rx, Frames(out_tx)), writer);
    tokio::select! {
        _ = work => {}
        () = reader => {}
        () = activity.idled(idle) => counters.count(Reason::IdleTimeout),
    }
}

/// Runs an exec on a SPDY connection (`v4.channel.k8s.io`): waits for the
/// streams `asked` implies, starts the command, and ends with its Status on
/// the error stream.
pub async fn exec(
    mut streams: mpsc::Receiver<Stream>,
    frames: Frames,
    asked: exec::Asked,
    spawn: impl FnOnce(&exec::Asked) -> Result<Process, exec::SpawnError>,
) {
    let wanted = |kind: &str| match kind {
        "error" => true,
        "stdin" => asked.stdin,
        "stdout" => asked.stdout,
        "stderr" => asked.stderr,
        "resize" => asked.tty,
        _ => false,
    };
    let count = ["error", "stdin", "stdout", "stderr", "resize"].iter().filter(|k| wanted(k)).count();
    let mut by_kind: HashMap<String, Stream> = HashMap::new();
    let collect = async {
        while by_kind.len() < count {
            let Some(stream) = streams.recv().await else { return false };
            let kind = spdy::header(&stream.headers, "streamtype").unwrap_or("").to_string();
            if !wanted(&kind) || by_kind.contains_key(&kind) {
                frames.reset(stream.id, spdy::PROTOCOL_ERROR).await;
                continue;
            }
            by_kind.insert(kind, stream);
        }
        true
    };
    if !matches!(tokio::time::timeout(STREAM_CREATION, collect).await, Ok(true)) {
        return frames.go_away().await;
    }
    let Some(error) = by_kind.remove("error") else { return frames.go_away().await };
    let ended = match spawn(&asked) {
        Err(why) => Ended::Failed(why.to_string()),
        Ok(process) => {
            let ids = |kind: &str| by_kind.get(kind).map(|s| s.id);
            let (stdout, stderr) = (ids("stdout"), ids("stderr"));
            let (in_tx, in_rx) = mpsc::channel(4);
            let stdin = by_kind.remove("stdin");
            let resize = by_kind.remove("resize");
            let feed_stdin = {
                let in_tx = in_tx.clone();
                async move {
                    let Some(mut stdin) = stdin else { return };
                    while let Some(bytes) = stdin.input.recv().await {
                        if in_tx.send(Input::Stdin(bytes)).await.is_err() {
                            return;
                        }
                    }
                    let _ = in_tx.send(Input::StdinClosed).await;
                }
            };
            let feed_resize = async move {
                let Some(mut resize) = resize else { return };
                let mut pending = Vec::new();
                while let Some(bytes) = resize.input.recv().await {
                    pending.extend_from_slice(&bytes);
                    // The client writes JSON objects one after another.
                    let mut values =
                        serde_json::Deserializer::from_slice(&pending).into_iter::<serde_json::Value>();
                    let mut used = 0;
                    while let Some(Ok(value)) = values.next() {
                        used = values.byte_offset();
                        if let Ok(size) = channel::resize(value.to_string().as_bytes())
                            && in_tx.send(Input::Resize(size)).await.is_err()
                        {
                            return;
                        }
                    }
                    pending.drain(..used);
                    if pending.len() > 4096 {
                        return;
                    }
                }
            };
            let (out_tx, mut out_rx) = mpsc::channel::<exec::Output>(8);
            let forward = async {
                while let Some((id, data)) = out_rx.recv().await {
                    let stream = if id == channel::STDOUT { stdout } else { stderr };
                    if let Some(stream) = stream
                        && !frames.data(stream, &data).await
                    {
                        return;
                    }
                }
            };
            // The feeds end with the client's input; the command may run on.
            let feeds = async {
                futures::future::join(feed_stdin, feed_resize).await;
                futures::future::pending::<std::convert::Infallible>().await
            };
            let run = futures::future::join(exec::run(process, out_tx, in_rx), forward);
            tokio::select! {
                (ended, ()) = run => ended,
                never = feeds => match never {},
            }
        }
    };
    for kind in ["stdout", "stderr"] {
        if let Some(stream) = by_kind.get(kind) {
            frames.fin(stream.id).await;
        }
    }
    let status = channel::status(&ended, &asked.command).to_string();
    frames.data(error.id, status.as_bytes()).await;
    frames.fin(error.id).await;
    frames.go_away().await;
}

/// Runs port-forwarding on a SPDY connection (`portforward.k8s.io`): each
/// pair of an error and a data stream with one `requestid` is a TCP
/// connection to `port` on the pod's loopback, made inside its network
/// namespace `netns`, as the kubelet makes it.
pub async fn port_forward(mut streams: mpsc::Receiver<Stream>, frames: Frames, target: Target, pod: String) {
    let mut halves: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    let mut forwards = FuturesUnordered::new();
    loop {
        let stream = tokio::select! {
            stream = streams.recv() => stream,
            Some(()) = forwards.next(), if !forwards.is_empty() => continue,
        };
        let Some(stream) = stream else { return };
        let header = |name| spdy::header(&stream.headers, name).map(str::to_string);
        let (Some(kind), Some(port), Some(request)) =
            (header("streamtype"), header("port"), header("requestid"))
        else {
            frames.reset(stream.id, spdy::PROTOCOL_ERROR).await;
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            frames.reset(stream.id, spdy::PROTOCOL_ERROR).await;
            continue;
        };
        // Half-made pairs count as streams; a client cannot pile them up
        // past the connection's open-stream cap.
        let entry = halves.entry(request.clone()).or_default();
        match kind.as_str() {
            "error" if entry.0.is_none() => entry.0 = Some(stream),
            "data" if entry.1.is_none() => entry.1 = Some(stream),
            _ => {
                frames.reset(stream.id, spdy::PROTOCOL_ERROR).await;
                continue;
            }
        }
        if let Some((Some(_), Some(_))) = halves.get(&request) {
            let Some((Some(error), Some(data))) = halves.remove(&request) else { continue };
            forwards.push(forward(frames.clone(), error, data, port, target.clone(), pod.clone()));
        }
    }
}

/// One forwarded connection, both ways, until both sides are done.
async fn forward(frames: Frames, error: Stream, mut data: Stream, port: u16, target: Target, pod: String) {
    let tcp = match super::remote::connect(target, port).await {
        Ok(tcp) => tcp,
        Err(e) => {
            let message = format!("error forwarding port {port} to pod {pod}: {e}");
            frames.data(error.id, message.as_bytes()).await;
            frames.fin(error.id).await;
            frames.fin(data.id).await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tokio::io::split(tcp);
    let upstream = async {
        while let Some(bytes) = data.input.recv().await {
            if to_pod.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !frames.data(data.id, &buf[..n]).await {
                        return;
                    }
                }
            }
        }
        frames.fin(data.id).await;
    };
    futures::future::join(upstream, downstream).await;
    frames.fin(error.id).await;
}

/// A TCP connection to 127.0.0.1:`port` made inside the namespace at `netns`.
pub async fn connect(netns: PathBuf, port: u16) -> std::io::Result<TcpStream> {
    let connected = tokio::task::spawn_blocking(move || {
        crate::sys::netns::run_in(&netns, move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            Ok(std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?)
        })
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(std::io::Error::other)?;
    connected.set_nonblocking(true)?;
    TcpStream::from_std(connected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::limits::Counters;

    /// A client's side of a SPDY connection to `serve` over a pipe.
    struct Client {
        io: tokio::io::DuplexStream,
        encoder: Encoder,
        decoder: Decoder,
        buf: Vec<u8>,
    }

    impl Client {
        async fn send(&mut self, frame: Frame) {
            let mut bytes = Vec::new();
            self.encoder.encode(&frame, &mut bytes);
            self.io.write_all(&bytes).await.unwrap();
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some((frame, used)) = self.decoder.decode(&self.buf).unwrap() {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut chunk))
                    .await
                    .unwrap()
                    .ok()?;
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    fn syn(stream: u32, headers: &[(&str, &str)]) -> Frame {
        Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// An echo handler: each stream's input back on it, then FIN.
    async fn echo(mut streams: mpsc::Receiver<Stream>, frames: Frames) {
        let mut echoes = FuturesUnordered::new();
        loop {
            tokio::select! {
                Some(mut stream) = streams.recv() => {
                    let frames = frames.clone();
                    echoes.push(async move {
                        while let Some(bytes) = stream.input.recv().await {
                            frames.data(stream.id, &bytes).await;
                        }
                        frames.fin(stream.id).await;
                    });
                }
                Some(()) = echoes.next(), if !echoes.is_empty() => {}
                else => return,
            }
        }
    }

    fn start(tag: &str) -> (Client, &'static Counters) {
        let _ = tag;
        let counters: &'static Counters = Box::leak(Box::new(Counters::new()));
        let (client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(server, Duration::from_secs(30), counters, echo));
        (client_of(client), counters)
    }

    fn client_of(io: tokio::io::DuplexStream) -> Client {
        Client { io, encoder: Encoder::default(), decoder: Decoder::new(Limits::default()), buf: Vec::new() }
    }

    #[tokio::test]
    async fn streams_are_answered_and_carry_data_both_ways() {
        let (mut c, _) = start("echo");
        c.send(syn(1, &[("streamtype", "data")])).await;
        assert_eq!(c.next().await, Some(Frame::SynReply { stream: 1, fin: false, headers: vec![] }));
        c.send(Frame::Data { stream: 1, fin: false, data: b"hello".to_vec() }).await;
        assert_eq!(c.next().await, Some(Frame::Data { stream: 1, fin: false, data: b"hello".to_vec() }));
        c.send(Frame::Ping { id: 1 }).await;
        assert_eq!(c.next().await, Some(Frame::Ping { id: 1 }));
        c.send(Frame::Data { stream: 1, fin: true, data: Vec::new() }).await;
        assert_eq!(c.next().await, Some(Frame::Data { stream: 1, fin: true, data: Vec::new() }));
    }

    #[tokio::test]
    async fn streams_past_the_cap_are_refused_and_counted() {
        let (mut c, counters) = start("cap");
        for i in 0..=MAX_OPEN as u32 {
            c.send(syn(2 * i + 1, &[])).await;
        }
        for i in 0..MAX_OPEN as u32 {
            assert!(matches!(c.next().await, Some(Frame::SynReply { stream, .. }) if stream == 2 * i + 1));
        }
        let last = 2 * MAX_OPEN as u32 + 1;
        assert_eq!(c.next().await, Some(Frame::RstStream { stream: last, status: spdy::REFUSED_STREAM }));
        assert_eq!(counters.get(Reason::StreamLimit), 1);
    }

    #[tokio::test]
    async fn garbage_and_even_stream_ids_end_the_connection() {
        let (mut c, counters) = start("garbage");
        c.send(syn(2, &[])).await;
        assert_eq!(c.next().await, None, "a server-side id from the client");
        assert_eq!(counters.get(Reason::MalformedMessage), 1);
        let (mut c, counters) = start("long");
        c.io.write_all(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff]).await.unwrap();
        assert_eq!(c.next().await, None, "a 16 MiB frame announced");
        assert_eq!(counters.get(Reason::OversizedMessage), 1);
    }
}
