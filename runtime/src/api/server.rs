//! The control socket: accepts CLI connections and passes each request to the
//! agent's event loop, which answers them one at a time.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::api::{Frame, PROTOCOL_VERSION, Request, Response, read_frame, write_frame};
use crate::listeners::accept;
use crate::listeners::limits::{Caps, Gate, Listener, Permit};

/// What the agent answers: one response, or a stream of them (a capture).
pub enum Answer {
    /// One response.
    Once(Box<Response>),
    /// Responses until the channel closes.
    Stream(mpsc::Receiver<Response>),
    /// A session (an exec): responses until the channel closes, while the
    /// client's [`Request::Input`] and [`Request::Resize`] frames go to
    /// `input`.
    Session {
        /// What goes to the client.
        output: mpsc::Receiver<Response>,
        /// Where its input goes.
        input: mpsc::Sender<SessionInput>,
    },
}

/// What the client of a session sends while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionInput {
    /// Bytes of its stdin; empty: no more.
    Bytes(Vec<u8>),
    /// Its terminal's size (columns, rows).
    Resize(u16, u16),
}

/// A request with the channel its answer goes back on.
pub type Call = (Request, oneshot::Sender<Result<Answer, String>>);

/// Why the control socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A live agent answers on the socket.
    #[error(
        "another podnet agent is already serving {}: stop it first, or give this one its own --socket and --data-dir",
        .0.display()
    )]
    InUse(PathBuf),
    /// A step of setting the socket up failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// The step: create, remove stale socket, listen on, restrict.
        what: &'static str,
        /// The path it was about.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Binds the control socket, refusing to steal it from a live agent. The
/// socket is root-only (0600): pods and users cannot reach the agent.
pub async fn bind(path: &Path) -> Result<UnixListener, BindError> {
    fn fail(what: &'static str, at: &Path) -> impl FnOnce(io::Error) -> BindError + use<> {
        let path = at.to_path_buf();
        move |source| BindError::Io { what, path, source }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail("create", dir))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        // A socket left by an agent that died: nobody answers on it.
        std::fs::remove_file(path).map_err(fail("remove stale socket", path))?;
    }
    let listener = UnixListener::bind(path).map_err(fail("listen on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail("restrict", path))?;
    Ok(listener)
}

/// Accepts connections until the agent stops, at most `caps.total` at once
/// (only root can connect: no per-client cap); each connection is served on
/// a task of its own.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>, caps: Caps) {
    let caps = Caps { per_client: caps.total, ..caps };
    let gate = Gate::new(Listener::Control, caps);
    accept::serve(listener, gate, move |stream, permit| {
        let calls = calls.clone();
        async move {
            let _ = connection(stream, permit, calls).await;
        }
    })
    .await
}

async fn connection(mut stream: UnixStream, permit: Permit, calls: mpsc::Sender<Call>) -> io::Result<()> {
    let timed_out = || io::Error::from(io::ErrorKind::TimedOut);
    let (read, mut write) = stream.split();
    let mut read = BufReader::new(read);
    loop {
        // A CLI may wait between requests; a frame, once started, must
        // arrive whole within the request timeout.
        if read.fill_buf().await?.is_empty() {
            return Ok(());
        }
        let Some(frame) = permit.within(read_frame(&mut read)).await.ok_or_else(timed_out)?? else {
            return Ok(());
        };
        match answer(frame, &calls).await {
            Reply::Frame(frame) => {
                permit.within(write_frame(&mut write, &frame)).await.ok_or_else(timed_out)??
            }
            Reply::Stream(mut items) => {
                // A stream ends when the agent closes it or the client goes
                // away; dropping `items` tells the producer to stop.
                while let Some(item) = items.recv().await {
                    write_frame(&mut write, &Frame::message(&item)?).await?;
                }
                return Ok(());
            }
            Reply::Session(mut items, input) => {
                let feed = async {
                    // Input frames until the client ends (or stops) sending.
                    loop {
                        let Ok(Some(frame)) = read_frame(&mut read).await else { break };
                        let item = match frame
                            .body
                            .and_then(|b| Frame::decode::<Request>(&b).map_err(|e| e.to_string()))
                        {
                            Ok(Request::Input(bytes)) => SessionInput::Bytes(bytes),
                            Ok(Request::Resize { width, height }) => SessionInput::Resize(width, height),
                            _ => break,
                        };
                        // Read on after the input's end: a terminal's
                        // resizes still come.
                        if input.send(item).await.is_err() {
                            break;
                        }
                    }
                    drop(input);
                    std::future::pending::<()>().await
                };
                let out = async {
                    while let Some(item) = items.recv().await {
                        write_frame(&mut write, &Frame::message(&item)?).await?;
                    }
                    Ok::<(), io::Error>(())
                };
                return tokio::select! {
                    written = out => written,
                    () = feed => Ok(()),
                };
            }
        }
    }
}

enum Reply {
    Frame(Frame),
    Stream(mpsc::Receiver<Response>),
    Session(mpsc::Receiver<Response>, mpsc::Sender<SessionInput>),
}

async fn answer(frame: Frame, calls: &mpsc::Sender<Call>) -> Reply {
    if frame.version != PROTOCOL_VERSION {
        return Reply::Frame(Frame::error(format!(
            "this agent speaks control protocol v{PROTOCOL_VERSION} and the podnet CLI v{}: use the podnet binary that matches the agent",
            frame.version
        )));
    }
    let request = match frame.body.and_then(|body| Frame::decode::<Request>(&body).map_err(|e| e.to_string()))
    {
        Ok(request) => request,
        Err(e) => return Reply::Frame(Frame::error(format!("bad request: {e}"))),
    };
    let (tx, rx) = oneshot::channel();
    if calls.send((request, tx)).await.is_err() {
        return Reply::Frame(Frame::error("the agent is shutting down"));
    }
    match rx.await {
        Ok(Ok(Answer::Once(response))) => {
            Reply::Frame(Frame::message(&response).unwrap_or_else(|e| Frame::error(e.to_string())))
        }
        Ok(Ok(Answer::Stream(items))) => Reply::Stream(items),
        Ok(Ok(Answer::Session { output, input })) => Reply::Session(output, input),
        Ok(Err(text)) => Reply::Frame(Frame::error(text)),
        Err(_) => Reply::Frame(Frame::error("the agent is shutting down")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::limits::{Counters, Reason};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A control socket in a fresh directory whose agent answers every
    /// request with an error text; its counters come back too.
    async fn agent(tag: &str) -> (std::path::PathBuf, &'static Counters) {
        let dir = std::env::temp_dir().join(format!("podnet-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("podnet.sock");
        let listener = bind(&path).await.unwrap();
        let counters: &'static Counters = Box::leak(Box::new(Counters::new()));
        let caps = Caps { per_client: 4, total: 4, request_timeout: Duration::from_millis(300) };
        let gate = Gate::with_counters(Listener::Control, caps, counters);
        let (calls, mut requests) = mpsc::channel::<Call>(4);
        tokio::spawn(async move {
            while let Some((_, reply)) = requests.recv().await {
                let _ = reply.send(Err("answered".into()));
            }
        });
        tokio::spawn(accept::serve(listener, gate, move |stream, permit| {
            let calls = calls.clone();
            async move {
                let _ = connection(stream, permit, calls).await;
            }
        }));
        (path, counters)
    }

    #[tokio::test]
    async fn a_frame_left_half_way_is_cut_at_the_request_timeout() {
        let (path, counters) = agent("cut").await;
        let mut client = UnixStream::connect(&path).await.unwrap();
        // Two bytes of a four-byte length, then nothing.
        client.write_all(&[9, 0]).await.unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "closed without an answer");
        assert_eq!(counters.get(Reason::RequestTimeout), 1);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn a_client_may_wait_between_requests() {
        let (path, counters) = agent("wait").await;
        let mut client = UnixStream::connect(&path).await.unwrap();
        // Longer than the request timeout before the request starts.
        tokio::time::sleep(Duration::from_millis(600)).await;
        write_frame(&mut client, &Frame::message(&Request::NodeStats).unwrap()).await.unwrap();
        let frame = read_frame(&mut client).await.unwrap().expect("an answer");
        assert_eq!(frame.body.unwrap_err(), "answered");
        assert_eq!(counters.get(Reason::RequestTimeout), 0);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
