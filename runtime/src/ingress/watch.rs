//! A client connection's byte stream as the proxy watches it: when bytes
//! last moved (for the idle timeout), and how long an HTTP/1.1 request
//! head has been arriving. Past the request timeout a head still arriving
//! is answered 408 and the connection closed; a kept-alive connection with
//! no new request is closed quietly. Hand-written because hyper's own
//! header timeout closes without an answer, and it does so from inside the
//! connection where the proxy cannot write one.
//!
//! The head clock starts with the first byte read while no request is being
//! served ([`Watch::request`] marks one from the service call until its
//! response body is dropped, that is written or abandoned). HTTP/2 (by ALPN
//! or the h2c preface) and upgraded connections are not timed this way:
//! their streams are bounded by the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What a client whose request head took too long is sent before the close.
const TIMED_OUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 54\r\nconnection: close\r\n\r\n408 Request Timeout: the request head came too slowly\n";

/// What the connection's wrapper and its requests share.
#[derive(Debug)]
pub struct Watch {
    start: Instant,
    /// When bytes last moved, in ms since `start`.
    last_ms: AtomicU64,
    /// Requests whose response is not yet written.
    in_flight: AtomicUsize,
    /// Responses finished: a new one means a new head to wait for.
    answered: AtomicU64,
    /// Upgraded (WebSocket): no more heads.
    upgraded: AtomicBool,
    /// A head took longer than the request timeout (answered 408).
    timed_out: AtomicBool,
}

impl Watch {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Returns once nothing moved for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    /// Marks a request served from now until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The connection switched protocols: no more request heads.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// Whether a head took too long (and was answered 408).
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }
}

/// One request being served; dropped with its response body.
#[derive(Debug)]
pub struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that ends its request's [`InFlight`] when dropped.
pub struct Tracked<B> {
    body: B,
    _request: InFlight,
}

impl<B> Tracked<B> {
    /// `body`, holding `request` until it is dropped.
    pub fn new(body: B, request: InFlight) -> Tracked<B> {
        Tracked { body, _request: request }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Where the connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Not timed: HTTP/2, upgraded, or a request being served.
    Off,
    /// No byte of the next head yet; past the deadline: closed quietly.
    Waiting,
    /// A head is arriving; past the deadline: 408.
    Arriving,
    /// Writing the 408 (bytes written so far).
    Answering(usize),
    /// Ended: reads see the end of the stream.
    Closed,
}

/// A connection's byte stream, watched.
pub struct Watched<I> {
    io: I,
    watch: Arc<Watch>,
    /// HTTP/1 heads are timed (not HTTP/2, not before the first bytes say which).
    timed: bool,
    first_read: bool,
    head: Head,
    /// `watch.answered` when the current wait began.
    seen: u64,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// The last write did not go through: a 408 would land inside it.
    write_blocked: bool,
}

impl<I> Watched<I> {
    /// `io` with heads timed by `timeout` (`h2`: the connection is HTTP/2
    /// by ALPN, not timed).
    pub fn new(io: I, timeout: Duration, h2: bool) -> (Watched<I>, Arc<Watch>) {
        let watch = Arc::new(Watch {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
        });
        let watched = Watched {
            io,
            watch: watch.clone(),
            timed: !h2,
            first_read: true,
            head: if h2 { Head::Off } else { Head::Waiting },
            seen: 0,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            write_blocked: false,
        };
        (watched, watch)
    }

    /// Brings `head` in line with the requests served since the last look.
    fn follow_requests(&mut self) {
        if !self.timed || matches!(self.head, Head::Answering(_) | Head::Closed) {
            return;
        }
        if self.watch.upgraded.load(Ordering::Relaxed) {
            self.timed = false;
            self.head = Head::Off;
            return;
        }
        if self.watch.in_flight.load(Ordering::Relaxed) > 0 {
            self.head = Head::Off;
            return;
        }
        let answered = self.watch.answered.load(Ordering::Relaxed);
        if answered != self.seen || self.head == Head::Off {
            // A response was written: the wait for the next head starts now.
            self.seen = answered;
            self.head = Head::Waiting;
            self.deadline.as_mut().reset((Instant::now() + self.timeout).into());
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Watched<I> {
    /// Writes the 408, then reads end.
    fn answer(&mut self, cx: &mut Context<'_>, mut written: usize) -> Poll<io::Result<()>> {
        while written < TIMED_OUT.len() {
            match Pin::new(&mut self.io).poll_write(cx, &TIMED_OUT[written..]) {
                Poll::Ready(Ok(0)) => break,
                Poll::Ready(Ok(n)) => {
                    written += n;
                    self.head = Head::Answering(written);
                }
                Poll::Ready(Err(e)) => {
                    self.head = Head::Closed;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => Poll::Pending,
            _ => {
                self.head = Head::Closed;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.follow_requests();
        match this.head {
            Head::Answering(written) => return this.answer(cx, written),
            Head::Closed => return Poll::Ready(Ok(())),
            _ => {}
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if !got.is_empty() {
            this.watch.touch();
            if std::mem::take(&mut this.first_read) {
                // The h2c preface ("PRI * HTTP/2.0..."): HTTP/2, not timed.
                let n = got.len().min(4);
                if got[..n] == b"PRI "[..n] {
                    this.timed = false;
                    this.head = Head::Off;
                }
            }
            if this.head == Head::Waiting {
                // Bytes of a head: from now on it must be whole within the timeout.
                this.head = Head::Arriving;
                this.deadline.as_mut().reset((Instant::now() + this.timeout).into());
            }
        }
        if polled.is_pending()
            && matches!(this.head, Head::Waiting | Head::Arriving)
            && this.deadline.as_mut().poll(cx).is_ready()
        {
            if this.head == Head::Arriving {
                this.watch.timed_out.store(true, Ordering::Relaxed);
            }
            if this.head == Head::Arriving && !this.write_blocked {
                this.head = Head::Answering(0);
                return this.answer(cx, 0);
            }
            this.head = Head::Closed;
            return Poll::Ready(Ok(()));
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> Watched<I> {
    fn note_write(&mut self, polled: &Poll<io::Result<usize>>) {
        self.write_blocked = polled.is_pending();
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.watch.touch();
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.write_blocked = polled.is_pending();
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CLOCK: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_head_past_the_clock_is_answered_408_and_reads_end() {
        let (mut client, server) = tokio::io::duplex(4096);
        let (mut watched, watch) = Watched::new(server, CLOCK, false);
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n";
        client.write_all(head).await.unwrap();
        let mut buf = [0u8; 1024];
        assert_eq!(watched.read(&mut buf).await.unwrap(), head.len());
        // Nothing more comes: the next read waits out the clock, answers, ends.
        assert_eq!(watched.read(&mut buf).await.unwrap(), 0);
        assert!(watch.timed_out());
        let mut answer = vec![0u8; TIMED_OUT.len()];
        client.read_exact(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
        let body = &TIMED_OUT[TIMED_OUT.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        let text = String::from_utf8_lossy(TIMED_OUT);
        let length = text.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len(), "content-length is the body's");
    }

    #[tokio::test]
    async fn a_request_in_flight_is_not_timed_and_the_wait_after_it_ends_quietly() {
        let (mut client, server) = tokio::io::duplex(4096);
        let (mut watched, watch) = Watched::new(server, CLOCK, false);
        client.write_all(b"POST / HTTP/1.1\r\ncontent-length: 9\r\n\r\nbody").await.unwrap();
        let mut buf = [0u8; 128];
        assert!(watched.read(&mut buf).await.unwrap() > 0);
        let request = watch.request();
        // In flight (a slow body or backend): reads wait past the clock.
        let waited = tokio::time::timeout(CLOCK * 6, watched.read(&mut buf)).await;
        assert!(waited.is_err(), "not timed while a request is in flight: {waited:?}");
        drop(request);
        // Answered: no next head by the clock is a quiet end, not a 408.
        assert_eq!(watched.read(&mut buf).await.unwrap(), 0);
        assert!(!watch.timed_out());
        drop(watched);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }

    #[tokio::test]
    async fn http2_by_its_preface_or_alpn_and_upgrades_are_left_to_the_idle_watchdog() {
        for (first, h2) in [(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], false), (&b"\0\0\x12\x04"[..], true)] {
            let (mut client, server) = tokio::io::duplex(4096);
            let (mut watched, _) = Watched::new(server, CLOCK, h2);
            client.write_all(first).await.unwrap();
            let mut buf = [0u8; 64];
            assert!(watched.read(&mut buf).await.unwrap() > 0);
            let waited = tokio::time::timeout(CLOCK * 6, watched.read(&mut buf)).await;
            assert!(waited.is_err(), "HTTP/2 is not timed: {waited:?}");
        }
        let (mut client, server) = tokio::io::duplex(4096);
        let (mut watched, watch) = Watched::new(server, CLOCK, false);
        client.write_all(b"GET / HTTP/1.1\r\nupgrade: websocket\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(watched.read(&mut buf).await.unwrap() > 0);
        drop(watch.request());
        watch.upgraded();
        let waited = tokio::time::timeout(CLOCK * 6, watched.read(&mut buf)).await;
        assert!(waited.is_err(), "an upgraded connection is not timed: {waited:?}");
    }
}
