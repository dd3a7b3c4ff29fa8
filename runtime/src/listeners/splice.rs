//! The byte mover of proxied TCP connections: splice(2) through a pipe per
//! direction, so data goes socket → pipe → socket as page references instead
//! of being copied into user space and back. Each direction starts by copying
//! through a small buffer and takes a pipe once a read fills that buffer
//! (bulk data), so requests and answers that fit in one read (most short
//! connections) never pay for a pipe. A direction whose splice is refused
//! (EINVAL and kin on some socket types), or that gets no pipe (the node-wide
//! pipe budget is spent, or descriptors ran out), keeps copying; the
//! connection never notices.
//!
//! Semantics are those of `tokio::io::copy_bidirectional`: EOF on one side
//! shuts down the other side's write half and the other direction goes on
//! (half-close); an error in either direction ends both and is returned.
//! Each direction holds at most one pipe's or one buffer's worth of data, so
//! a slow reader stalls its writer (backpressure). A connection on which no
//! byte moved either way for the idle timeout ends with a `TimedOut` error
//! (conntrack's timeout for an idle established connection).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{Shutdown, shutdown};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes a pipe holds per direction (asked for; the kernel may round it).
pub const PIPE_SIZE: usize = 256 * 1024;
/// Bytes buffered per direction when copying instead of splicing.
pub const COPY_BUFFER: usize = 16 * 1024;
/// Pipes open at once, node-wide: each costs two descriptors, and the
/// connection cap was sized for two descriptors per connection, so past this
/// budget directions copy rather than run the agent out of descriptors.
pub const MAX_PIPES: usize = 1024;

static PIPES: AtomicUsize = AtomicUsize::new(0);

/// Relays between `a` and `b` until both directions have ended; Err when
/// either side failed or nothing moved for `idle` (`TimedOut`); the caller
/// resets both.
pub async fn relay(a: &TcpStream, b: &TcpStream, idle: Duration) -> io::Result<()> {
    relay_with(a, b, Mode::Upgrade, idle).await
}

/// When bytes last moved on a connection, either way.
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last move.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Returns once nothing moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let until = last + idle;
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }
}

/// How a direction starts.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Copying, moving to a pipe once a read fills the buffer: a request or
    /// an answer that fits one buffer never costs a pipe.
    Upgrade,
    /// Copying only (tests).
    #[cfg(test)]
    Copy,
    /// Splicing from the first byte (tests).
    #[cfg(test)]
    Splice,
}

/// [`relay`], with each direction starting as `mode` says.
async fn relay_with(a: &TcpStream, b: &TcpStream, mode: Mode, idle: Duration) -> io::Result<()> {
    let activity = Activity::new();
    let both = async {
        tokio::try_join!(one_way(a, b, mode, &activity), one_way(b, a, mode, &activity)).map(|_| ())
    };
    tokio::select! {
        result = both => result,
        () = activity.idle_for(idle) => Err(io::Error::new(io::ErrorKind::TimedOut, "idle for too long")),
    }
}

/// Moves `from`'s bytes to `to` until `from`'s EOF, then half-closes `to`.
async fn one_way(from: &TcpStream, to: &TcpStream, mode: Mode, activity: &Activity) -> io::Result<()> {
    let mut step = match mode {
        Mode::Upgrade => Step::Start(true),
        #[cfg(test)]
        Mode::Copy => Step::Start(false),
        #[cfg(test)]
        Mode::Splice => Step::Splice(Pipe::new().ok_or(io::ErrorKind::OutOfMemory)?),
    };
    loop {
        step = match step {
            Step::Done => return Ok(()),
            Step::Start(upgrade) => copied(from, to, None, upgrade, activity).await?,
            Step::Splice(pipe) => spliced(from, to, pipe, activity).await?,
            Step::Copy(pipe) => copied(from, to, Some(pipe), false, activity).await?,
        };
    }
}

/// What a direction does next.
enum Step {
    /// Copying from the start; upgrading to a pipe when set.
    Start(bool),
    /// EOF passed on.
    Done,
    /// Bulk data: splice through this pipe.
    Splice(Pipe),
    /// Splice refused: copy, starting with what this pipe holds.
    Copy(Pipe),
}

/// A pipe of the node-wide budget and the bytes it holds.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
    held: usize,
}

impl Pipe {
    /// A pipe within the budget; None when the budget or descriptors ran out.
    fn new() -> Option<Pipe> {
        if PIPES.fetch_add(1, Ordering::Relaxed) >= MAX_PIPES {
            PIPES.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let Ok((read, write)) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC) else {
            PIPES.fetch_sub(1, Ordering::Relaxed);
            return None;
        };
        // Growing may be refused (pipe-max-size, per-user pipe limits): the
        // default size still works, only with more system calls.
        let capacity = fcntl(&write, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32))
            .or_else(|_| fcntl(&write, FcntlArg::F_GETPIPE_SZ))
            .map_or(64 * 1024, |n| n as usize);
        Some(Pipe { read, write, capacity, held: 0 })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Moves up to `len` bytes from `from` to `to`, without blocking.
fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    use nix::fcntl::SpliceFFlags;
    // No offsets: pipes and sockets have none.
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    nix::fcntl::splice(from, None, to, None, len, flags).map_err(io::Error::from)
}

/// Errors saying splice does not work with this descriptor, not that the
/// connection failed.
fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP))
}

async fn spliced(from: &TcpStream, to: &TcpStream, mut pipe: Pipe, activity: &Activity) -> io::Result<Step> {
    let mut eof = false;
    loop {
        if !eof && pipe.held < pipe.capacity {
            let room = pipe.capacity - pipe.held;
            let got = if pipe.held == 0 {
                // An empty pipe has room, so EAGAIN can only mean the socket
                // is drained: let tokio clear its readiness.
                from.readable().await?;
                from.try_io(Interest::READABLE, || splice(from.as_fd(), pipe.write.as_fd(), room))
            } else {
                // With data held, EAGAIN may mean the pipe's slots are full:
                // try without touching readiness, then drain.
                splice(from.as_fd(), pipe.write.as_fd(), room)
            };
            match got {
                Ok(0) => eof = true,
                Ok(n) => {
                    pipe.held += n;
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if unsupported(&e) => return Ok(Step::Copy(pipe)),
                Err(e) => return Err(e),
            }
        }
        if pipe.held > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || splice(pipe.read.as_fd(), to.as_fd(), pipe.held)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    pipe.held -= n;
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if unsupported(&e) => return Ok(Step::Copy(pipe)),
                Err(e) => return Err(e),
            }
        } else if eof {
            return half_close(to).map(|()| Step::Done);
        }
    }
}

/// Copies through a buffer; `pipe` holds bytes already taken from `from`,
/// which go first. With `upgrade`, a read that fills the buffer moves the
/// direction to a pipe when one is to be had.
async fn copied(
    from: &TcpStream,
    to: &TcpStream,
    mut pipe: Option<Pipe>,
    upgrade: bool,
    activity: &Activity,
) -> io::Result<Step> {
    // Made when data first arrives: an idle direction holds no buffer.
    let mut buf = Vec::new();
    loop {
        let len = match pipe.as_mut() {
            Some(p) if p.held > 0 => {
                if buf.is_empty() {
                    buf = vec![0u8; COPY_BUFFER];
                }
                // The pipe holds data, so this read does not block.
                let n = nix::unistd::read(&p.read, &mut buf).map_err(io::Error::from)?;
                p.held -= n;
                n
            }
            _ => {
                // Drained: give the pipe back to the budget.
                pipe = None;
                from.readable().await?;
                if buf.is_empty() {
                    buf = vec![0u8; COPY_BUFFER];
                }
                match from.try_read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        if len == 0 {
            return half_close(to).map(|()| Step::Done);
        }
        let mut sent = 0;
        while sent < len {
            to.writable().await?;
            match to.try_write(&buf[sent..len]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    sent += n;
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if upgrade
            && len == buf.len()
            && pipe.is_none()
            && let Some(pipe) = Pipe::new()
        {
            return Ok(Step::Splice(pipe));
        }
    }
}

/// Passes an EOF on: the peer of `to` reads its end, and may still send.
fn half_close(to: &TcpStream) -> io::Result<()> {
    match shutdown(to.as_raw_fd(), Shutdown::Write) {
        // The peer already went away; the other direction will say how.
        Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A client connected to a relay whose other side is `server`; the relay
    /// task's result comes out of the join handle.
    async fn through_relay(mode: Mode) -> (TcpStream, TcpStream, tokio::task::JoinHandle<io::Result<()>>) {
        through_relay_idle(mode, Duration::from_secs(3600)).await
    }

    /// [`through_relay`] with an idle timeout of `idle`.
    async fn through_relay_idle(
        mode: Mode,
        idle: Duration,
    ) -> (TcpStream, TcpStream, tokio::task::JoinHandle<io::Result<()>>) {
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(front.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = front.accept().await.unwrap();
        let outgoing = TcpStream::connect(back.local_addr().unwrap()).await.unwrap();
        let (server, _) = back.accept().await.unwrap();
        let task = tokio::spawn(async move { relay_with(&accepted, &outgoing, mode, idle).await });
        (client, server, task)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    async fn bulk_both_ways_with_half_close(mode: Mode) {
        let (client, server, task) = through_relay(mode).await;
        let data = pattern(8 << 20);
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let up = data.clone();
        let sender = tokio::spawn(async move {
            client_write.write_all(&up).await.unwrap();
            // Half-close: the server reads EOF, the client can still read.
            client_write.shutdown().await.unwrap();
            client_write
        });
        let mut got = Vec::new();
        server_read.read_to_end(&mut got).await.unwrap();
        assert!(got == data, "client -> server bytes differ ({} of {})", got.len(), data.len());
        // The server answers after the client's EOF, then closes.
        let down = pattern(3 << 20);
        server_write.write_all(&down).await.unwrap();
        server_write.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_read.read_to_end(&mut got).await.unwrap();
        assert!(got == down, "server -> client bytes differ ({} of {})", got.len(), down.len());
        let _ = sender.await.unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn spliced_bulk_and_half_close() {
        bulk_both_ways_with_half_close(Mode::Splice).await;
    }

    #[tokio::test]
    async fn copied_bulk_and_half_close() {
        bulk_both_ways_with_half_close(Mode::Copy).await;
    }

    #[tokio::test]
    async fn upgraded_bulk_and_half_close() {
        bulk_both_ways_with_half_close(Mode::Upgrade).await;
    }

    #[tokio::test]
    async fn a_short_exchange_half_closed_both_ways() {
        // What stays in the copying start: a request, the client's EOF, an
        // answer, the server's EOF.
        let (mut client, mut server, task) = through_relay(Mode::Upgrade).await;
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"GET / HTTP/1.0\r\n\r\n");
        server.write_all(b"HTTP/1.0 200 OK\r\n\r\nok").await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.0 200 OK\r\n\r\nok");
        task.await.unwrap().unwrap();
    }

    async fn reset_ends_the_relay(mode: Mode) {
        let (mut client, mut server, task) = through_relay(mode).await;
        client.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        server.read_exact(&mut byte).await.unwrap();
        server.set_zero_linger().unwrap();
        drop(server);
        assert!(task.await.unwrap().is_err(), "a reset is an error, not an EOF");
    }

    #[tokio::test]
    async fn spliced_reset_is_an_error() {
        reset_ends_the_relay(Mode::Splice).await;
    }

    #[tokio::test]
    async fn copied_reset_is_an_error() {
        reset_ends_the_relay(Mode::Copy).await;
    }

    #[tokio::test]
    async fn upgraded_reset_is_an_error() {
        reset_ends_the_relay(Mode::Upgrade).await;
    }

    /// Two connected sockets on loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (far, _) = listener.accept().await.unwrap();
        (near, far)
    }

    #[tokio::test]
    async fn a_pipe_with_data_drains_by_copying() {
        // The fallback after splice was refused mid-way: bytes already in
        // the pipe go first, then the socket's.
        let (mut feeder, from) = pair().await;
        let (to, mut sink) = pair().await;
        let mut pipe = Pipe::new().expect("a pipe");
        nix::unistd::write(&pipe.write, b"held-").unwrap();
        pipe.held = 5;
        feeder.write_all(b"then-socket").await.unwrap();
        feeder.shutdown().await.unwrap();
        copied(&from, &to, Some(pipe), false, &Activity::new()).await.unwrap();
        let mut got = Vec::new();
        sink.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"held-then-socket");
    }

    async fn an_idle_connection_times_out(mode: Mode) {
        let (mut client, mut server, task) = through_relay_idle(mode, Duration::from_secs(1)).await;
        // Bytes every fifth of the idle time keep it open past it...
        for _ in 0..8 {
            client.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            server.read_exact(&mut byte).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(!task.is_finished(), "a connection in use is not idle");
        // ...silence ends it.
        let result = task.await.unwrap();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn spliced_idle_times_out() {
        an_idle_connection_times_out(Mode::Splice).await;
    }

    #[tokio::test]
    async fn copied_idle_times_out() {
        an_idle_connection_times_out(Mode::Copy).await;
    }
}
