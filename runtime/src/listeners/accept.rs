//! The one accept loop every listener of the agent runs: it admits each
//! connection through the listener's [`Gate`] (per-client and total caps),
//! turns TCP keep-alive on, runs the connection on a task of its own holding
//! its [`Permit`], and keeps going when accept(2) fails. Out of descriptors
//! (EMFILE, ENFILE), buffers (ENOBUFS) or memory, it sleeps with a growing
//! delay, logs once per burst, and tries again: the listener stays up and
//! answers once the node has room again.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use super::limits::{Client, Gate, Permit, Reason};

/// First pause after a failed accept.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// Longest pause between two accepts that keep failing.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Idle time before the first keep-alive probe (Linux's default is 2 h,
/// too long to notice a vanished peer holding a slot).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between unanswered probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel declares the peer gone: a dead peer
/// is noticed about two minutes after it went silent.
pub const KEEPALIVE_PROBES: u32 = 6;

/// A listening socket the loop can accept from.
pub trait Acceptor: Send + Sync + 'static {
    /// An accepted connection.
    type Stream: Send + 'static;

    /// Accepts one connection, and says who it comes from.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Client)>> + Send;

    /// Prepares an admitted connection (keep-alive for TCP).
    fn tune(stream: &Self::Stream);

    /// Closes a refused connection.
    fn refuse(stream: Self::Stream);
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, Client)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        Ok((stream, Client::Ip(peer.ip())))
    }

    fn tune(stream: &TcpStream) {
        // A failure leaves the connection without keep-alive: still served.
        let _ = keepalive(stream);
    }

    fn refuse(stream: TcpStream) {
        // A reset frees the slot at once, on both ends (no TIME_WAIT here).
        super::proxy::reset(stream);
    }
}

impl Acceptor for UnixListener {
    type Stream = UnixStream;

    async fn accept(&self) -> io::Result<(UnixStream, Client)> {
        let (stream, _) = UnixListener::accept(self).await?;
        let uid = stream.peer_cred()?.uid();
        Ok((stream, Client::Uid(uid)))
    }

    fn tune(_: &UnixStream) {}

    fn refuse(stream: UnixStream) {
        drop(stream);
    }
}

/// Turns TCP keep-alive on with [`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`]
/// and [`KEEPALIVE_PROBES`].
pub fn keepalive(stream: &impl AsFd) -> nix::Result<()> {
    let fd = stream.as_fd();
    setsockopt(&fd, sockopt::KeepAlive, &true)?;
    setsockopt(&fd, sockopt::TcpKeepIdle, &(KEEPALIVE_IDLE.as_secs() as u32))?;
    setsockopt(&fd, sockopt::TcpKeepInterval, &(KEEPALIVE_INTERVAL.as_secs() as u32))?;
    setsockopt(&fd, sockopt::TcpKeepCount, &KEEPALIVE_PROBES)
}

/// Accepts connections from `listener` until the task is aborted; each one
/// admitted by `gate` runs `handle(stream, permit)` on a task of its own.
pub async fn serve<A, H, F>(listener: A, gate: Arc<Gate>, mut handle: H)
where
    A: Acceptor,
    H: FnMut(A::Stream, Permit) -> F + Send,
    F: Future<Output = ()> + Send + 'static,
{
    let mut backoff = Backoff::default();
    loop {
        match listener.accept().await {
            Ok((stream, client)) => {
                backoff.recovered(&gate);
                match gate.admit(client) {
                    Ok(permit) => {
                        A::tune(&stream);
                        tokio::spawn(handle(stream, permit));
                    }
                    Err(reason) => {
                        tracing::debug!(listener = %gate.listener(), %client, reason = reason.name(), "refused a connection");
                        A::refuse(stream);
                    }
                }
            }
            // The client gave up before we took its connection: nothing
            // about the listener, take the next one.
            Err(e) if gone_before_accept(&e) => {}
            Err(e) => {
                gate.counters().count(Reason::AcceptFailed);
                let pause = backoff.failed(&gate, &e);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Errors of one connection that died in the queue, not of the listener.
fn gone_before_accept(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR))
        || e.kind() == io::ErrorKind::ConnectionAborted
}

/// The growing pause of an accept loop whose accepts fail, and its one log
/// line per burst.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u64,
    next: Option<Duration>,
}

impl Backoff {
    /// Records a failed accept; returns how long to pause.
    pub fn failed(&mut self, gate: &Gate, e: &io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(
                listener = %gate.listener(),
                "accept failed: {e}; retrying with a growing pause until it works again"
            );
        }
        self.failures += 1;
        let pause = self.next.unwrap_or(BACKOFF_FIRST);
        self.next = Some((pause * 2).min(BACKOFF_MAX));
        pause
    }

    /// Records a successful accept, ending a burst of failures.
    pub fn recovered(&mut self, gate: &Gate) {
        if self.failures > 0 {
            tracing::info!(listener = %gate.listener(), failed = self.failures, "accepting again");
        }
        self.failures = 0;
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::limits::{Caps, Counters, Listener};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    fn counters() -> &'static Counters {
        Box::leak(Box::new(Counters::new()))
    }

    fn caps(per_client: u32, total: u32) -> Caps {
        Caps { per_client, total, request_timeout: Duration::from_secs(5) }
    }

    /// An acceptor that fails as told before each real accept.
    struct Failing {
        inner: TcpListener,
        errors: Mutex<VecDeque<i32>>,
    }

    impl Acceptor for Failing {
        type Stream = TcpStream;

        async fn accept(&self) -> io::Result<(TcpStream, Client)> {
            let next = self.errors.lock().unwrap().pop_front();
            if let Some(errno) = next {
                return Err(io::Error::from_raw_os_error(errno));
            }
            Acceptor::accept(&self.inner).await
        }

        fn tune(stream: &TcpStream) {
            <TcpListener as Acceptor>::tune(stream);
        }

        fn refuse(stream: TcpStream) {
            <TcpListener as Acceptor>::refuse(stream);
        }
    }

    /// Echoes one line, then closes.
    async fn echo(mut stream: TcpStream, _permit: Permit) {
        let mut buf = [0u8; 64];
        if let Ok(n) = stream.read(&mut buf).await {
            let _ = stream.write_all(&buf[..n]).await;
        }
    }

    #[tokio::test]
    async fn the_loop_keeps_accepting_after_descriptors_ran_out() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let errors = [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::ECONNABORTED];
        let listener = Failing { inner, errors: Mutex::new(errors.into_iter().collect()) };
        let counters = counters();
        let gate = Gate::with_counters(Listener::Metrics, caps(4, 4), counters);
        let server = tokio::spawn(serve(listener, gate, echo));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"still here").await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"still here");
        // ECONNABORTED is one connection's failure, not the listener's.
        assert_eq!(counters.get(Reason::AcceptFailed), 4);
        server.abort();
    }

    #[test]
    fn the_pause_grows_to_its_cap_and_resets_on_success() {
        let gate = Gate::with_counters(Listener::Metrics, caps(1, 1), counters());
        let mut backoff = Backoff::default();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<Duration> = (0..12).map(|_| backoff.failed(&gate, &e)).collect();
        assert_eq!(pauses[0], BACKOFF_FIRST);
        assert_eq!(pauses[1], BACKOFF_FIRST * 2);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert_eq!(*pauses.last().unwrap(), BACKOFF_MAX);
        backoff.recovered(&gate);
        assert_eq!(backoff.failed(&gate, &e), BACKOFF_FIRST);
    }

    #[tokio::test]
    async fn a_client_past_its_cap_is_reset_and_another_is_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = counters();
        let gate = Gate::with_counters(Listener::ProxyTcp, caps(2, 10), counters);
        let (opened_tx, mut opened) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, gate, move |stream: TcpStream, permit: Permit| {
            let opened = opened_tx.clone();
            async move {
                let _ = opened.send(permit.client());
                // Held open until the client goes.
                let mut stream = stream;
                let _ = stream.read(&mut [0u8; 1]).await;
            }
        }));
        // Two idle connections from 127.0.0.1 are admitted...
        let held = [TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
        for _ in 0..2 {
            opened.recv().await.unwrap();
        }
        // ...the third is reset...
        let mut third = TcpStream::connect(addr).await.unwrap();
        let refused = third.read(&mut [0u8; 1]).await;
        assert!(matches!(&refused, Err(e) if e.kind() == io::ErrorKind::ConnectionReset), "{refused:?}");
        assert_eq!(counters.get(Reason::PerClientLimit), 1);
        // ...while 127.0.0.2 is another client.
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let _other = other.connect(addr).await.unwrap();
        let who = opened.recv().await.unwrap();
        assert_eq!(who, Client::Ip("127.0.0.2".parse().unwrap()));
        assert_eq!(counters.open(), 3);
        drop(held);
        server.abort();
    }

    #[tokio::test]
    async fn accepted_connections_have_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Gate::with_counters(Listener::DnsTcp, caps(1, 1), counters());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, gate, move |stream: TcpStream, permit: Permit| {
            let tx = tx.clone();
            async move {
                let fd = stream.as_fd();
                let on = nix::sys::socket::getsockopt(&fd, sockopt::KeepAlive).unwrap();
                let idle = nix::sys::socket::getsockopt(&fd, sockopt::TcpKeepIdle).unwrap();
                let _ = tx.send((on, idle));
                drop(permit);
            }
        }));
        let _client = TcpStream::connect(addr).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), (true, KEEPALIVE_IDLE.as_secs() as u32));
        server.abort();
    }

    #[tokio::test]
    async fn unix_peers_are_told_apart_by_uid() {
        let dir = std::env::temp_dir().join(format!("podnet-accept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let counters = counters();
        let gate = Gate::with_counters(Listener::Control, caps(1, 1), counters);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, gate, move |mut stream: UnixStream, permit: Permit| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(permit.client());
                let _ = stream.read(&mut [0u8; 1]).await;
            }
        }));
        let _first = UnixStream::connect(&path).await.unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        assert_eq!(rx.recv().await.unwrap(), Client::Uid(uid));
        let mut second = UnixStream::connect(&path).await.unwrap();
        assert_eq!(second.read(&mut [0u8; 1]).await.unwrap(), 0, "refused: closed at once");
        assert_eq!(counters.get(Reason::PerClientLimit), 1);
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
