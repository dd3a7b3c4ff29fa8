//! The cluster channel: TCP with a Noise handshake
//! (`Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`, from the `snow` crate) keyed by
//! the cluster token. Both ends prove they hold the token without sending it,
//! and everything after the handshake is encrypted and authenticated. A peer
//! with another token fails the handshake and is dropped.
//!
//! Framing: each Noise message goes as `u16` length + ciphertext. An
//! application message is a `u32` length followed by its bytes, cut into as
//! many Noise messages as it takes.
//!
//! Limits: the handshake must end within 5 s; after it, a receiver can
//! give the peer an idle time to start each message, and a message once
//! started (or being sent) must pass whole within a limit, however it
//! trickles: a token holder cannot pin a connection mid-message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use snow::{Builder, TransportState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::token::Token;

const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Largest Noise message, and the room its tag takes.
const NOISE_MAX: usize = 65_535;
const TAG: usize = 16;
/// Largest application message either side accepts.
pub const MAX_MESSAGE: usize = 16 << 20;
/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

fn err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// The receiving half of a channel.
pub struct Receiver {
    read: OwnedReadHalf,
    noise: Arc<Mutex<TransportState>>,
}

/// The sending half of a channel.
pub struct Sender {
    write: OwnedWriteHalf,
    noise: Arc<Mutex<TransportState>>,
}

/// Connects to a server and runs the handshake as the initiator.
pub async fn connect(addr: std::net::SocketAddr, token: &Token) -> std::io::Result<(Sender, Receiver)> {
    let stream =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {addr} timed out"))
        })??;
    let _ = stream.set_nodelay(true);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, token, true))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// Runs the handshake as the responder on an accepted connection.
pub async fn accept(stream: TcpStream, token: &Token) -> std::io::Result<(Sender, Receiver)> {
    let _ = stream.set_nodelay(true);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, token, false))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

async fn handshake(
    mut stream: TcpStream,
    token: &Token,
    initiator: bool,
) -> std::io::Result<(Sender, Receiver)> {
    let builder = Builder::new(PATTERN.parse().map_err(err)?).psk(0, &token.0).map_err(err)?;
    let mut state =
        if initiator { builder.build_initiator() } else { builder.build_responder() }.map_err(err)?;
    let mut buf = vec![0u8; NOISE_MAX];
    let mut payload = vec![0u8; NOISE_MAX];
    // NNpsk0: -> psk, e   <- e, ee
    for step in 0..2 {
        let ours = (step == 0) == initiator;
        if ours {
            let len = state.write_message(&[], &mut buf).map_err(err)?;
            write_noise(&mut stream, &buf[..len]).await?;
        } else {
            let len = read_noise(&mut stream, &mut buf).await?;
            state.read_message(&buf[..len], &mut payload).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the peer does not hold this cluster's token",
                )
            })?;
        }
    }
    let noise = Arc::new(Mutex::new(state.into_transport_mode().map_err(err)?));
    let (read, write) = stream.into_split();
    Ok((Sender { write, noise: noise.clone() }, Receiver { read, noise }))
}

async fn write_noise<W: AsyncWriteExt + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(&(bytes.len() as u16).to_be_bytes()).await?;
    w.write_all(bytes).await
}

async fn read_noise<R: AsyncReadExt + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let len = r.read_u16().await? as usize;
    r.read_exact(&mut buf[..len]).await?;
    Ok(len)
}

/// Why a message could not be received.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The peer started no message for the idle time.
    #[error("the peer sent nothing for {0:?}")]
    Idle(Duration),
    /// A message started but did not arrive whole in time.
    #[error("a message did not arrive whole within {0:?}")]
    Timeout(Duration),
    /// The peer announced a message larger than [`MAX_MESSAGE`].
    #[error("the peer announced a message of {0} bytes, more than the {MAX_MESSAGE} allowed")]
    TooLarge(usize),
    /// Bytes followed a complete message in the same Noise message.
    #[error("the peer sent bytes after the end of a message")]
    Trailing,
    /// A Noise message failed to decrypt or authenticate.
    #[error("a message does not decrypt: {0}")]
    Undecryptable(snow::Error),
    /// The message is not the value expected.
    #[error("a message does not decode: {0}")]
    Decode(#[from] postcard::Error),
    /// The connection failed or ended.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<RecvError> for std::io::Error {
    fn from(e: RecvError) -> std::io::Error {
        match e {
            RecvError::Io(e) => e,
            e @ (RecvError::Idle(_) | RecvError::Timeout(_)) => {
                std::io::Error::new(std::io::ErrorKind::TimedOut, e.to_string())
            }
            e => err(e),
        }
    }
}

/// Puts application messages back together from decrypted Noise payloads:
/// a `u32` length, then that many bytes. A length over [`MAX_MESSAGE`] is
/// refused as soon as it is read, before anything is held for it, so what
/// it holds grows only with the bytes the peer actually sent.
#[derive(Debug, Default)]
pub struct Assembler {
    message: Vec<u8>,
    want: Option<usize>,
}

impl Assembler {
    /// Takes one decrypted payload; the message once it is complete.
    pub fn push(&mut self, payload: &[u8]) -> Result<Option<Vec<u8>>, RecvError> {
        self.message.extend_from_slice(payload);
        if self.want.is_none() && self.message.len() >= 4 {
            let want = u32::from_be_bytes(self.message[..4].try_into().expect("4 bytes")) as usize;
            if want > MAX_MESSAGE {
                return Err(RecvError::TooLarge(want));
            }
            self.want = Some(want);
        }
        match self.want {
            Some(want) if self.message.len() > 4 + want => Err(RecvError::Trailing),
            Some(want) if self.message.len() == 4 + want => {
                self.want = None;
                let mut message = std::mem::take(&mut self.message);
                message.drain(..4);
                Ok(Some(message))
            }
            _ => Ok(None),
        }
    }
}

impl Sender {
    /// Sends one message.
    pub async fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
        let sealed = self.seal(message)?;
        self.write.write_all(&sealed).await
    }

    /// Sends one message, which must leave whole within `limit` (a peer
    /// that stops reading cannot hold the sender).
    pub async fn send_within(&mut self, message: &[u8], limit: Duration) -> std::io::Result<()> {
        let sealed = self.seal(message)?;
        tokio::time::timeout(limit, self.write.write_all(&sealed)).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("a message could not be sent whole within {limit:?}"),
            )
        })?
    }

    /// Sends only the first `bytes` of what carries `message` (tests play a
    /// peer that stalls mid-message).
    #[cfg(test)]
    pub(crate) async fn send_part(&mut self, message: &[u8], bytes: usize) -> std::io::Result<()> {
        let sealed = self.seal(message)?;
        self.write.write_all(&sealed[..bytes.min(sealed.len())]).await
    }

    /// The Noise messages that carry `message`.
    fn seal(&mut self, message: &[u8]) -> std::io::Result<Vec<u8>> {
        if message.len() > MAX_MESSAGE {
            return Err(err("message too large"));
        }
        let mut plain = (message.len() as u32).to_be_bytes().to_vec();
        plain.extend_from_slice(message);
        let mut out = Vec::with_capacity(plain.len() + plain.len() / (NOISE_MAX - TAG) * (TAG + 2) + 64);
        let mut cipher = vec![0u8; NOISE_MAX];
        for chunk in plain.chunks(NOISE_MAX - TAG) {
            let len =
                self.noise.lock().expect("noise lock").write_message(chunk, &mut cipher).map_err(err)?;
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(&cipher[..len]);
        }
        Ok(out)
    }

    /// Sends a postcard-encoded value.
    pub async fn send_value<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        self.send(&postcard::to_stdvec(value).map_err(err)?).await
    }

    /// Sends a postcard-encoded value within `limit`.
    pub async fn send_value_within<T: Serialize>(
        &mut self,
        value: &T,
        limit: Duration,
    ) -> std::io::Result<()> {
        self.send_within(&postcard::to_stdvec(value).map_err(err)?, limit).await
    }
}

impl Receiver {
    /// Receives one message, waiting as long as it takes.
    pub async fn recv(&mut self) -> Result<Vec<u8>, RecvError> {
        self.read_message().await
    }

    /// Receives one message: the peer must start it within `idle` (None:
    /// no limit), and once its first byte is here it must arrive whole
    /// within `whole`, however it trickles.
    pub async fn recv_within(
        &mut self,
        idle: Option<Duration>,
        whole: Duration,
    ) -> Result<Vec<u8>, RecvError> {
        // peek consumes nothing: the stream stays at a message boundary.
        let mut first = [0u8; 1];
        let started = self.read.peek(&mut first);
        let n = match idle {
            Some(idle) => tokio::time::timeout(idle, started).await.map_err(|_| RecvError::Idle(idle))??,
            None => started.await?,
        };
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the peer closed the channel",
            )
            .into());
        }
        tokio::time::timeout(whole, self.read_message()).await.map_err(|_| RecvError::Timeout(whole))?
    }

    async fn read_message(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut cipher = vec![0u8; NOISE_MAX];
        let mut plain = vec![0u8; NOISE_MAX];
        let mut assembler = Assembler::default();
        loop {
            let len = read_noise(&mut self.read, &mut cipher).await?;
            let n = self
                .noise
                .lock()
                .expect("noise lock")
                .read_message(&cipher[..len], &mut plain)
                .map_err(RecvError::Undecryptable)?;
            if let Some(message) = assembler.push(&plain[..n])? {
                return Ok(message);
            }
        }
    }

    /// Receives a postcard-encoded value, waiting as long as it takes.
    pub async fn recv_value<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        Ok(postcard::from_bytes(&self.recv().await?)?)
    }

    /// Receives a postcard-encoded value within the limits of [`Receiver::recv_within`].
    pub async fn recv_value_within<T: DeserializeOwned>(
        &mut self,
        idle: Option<Duration>,
        whole: Duration,
    ) -> Result<T, RecvError> {
        Ok(postcard::from_bytes(&self.recv_within(idle, whole).await?)?)
    }
}

/// A loopback listener whose first connection goes to `serve` with a new
/// token: the address and token to connect with, and the server's task.
#[cfg(test)]
pub(crate) async fn serve_once<F>(
    serve: impl FnOnce(tokio::net::TcpStream, Token) -> F + Send + 'static,
) -> (std::net::SocketAddr, Token, tokio::task::JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = Token::generate().unwrap();
    let server_token = token.clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, server_token).await
    });
    (addr, token, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shared_token_opens_the_channel_and_large_messages_pass() {
        let (addr, token, server) = serve_once(|stream, token| async move {
            let (mut tx, mut rx) = accept(stream, &token).await.unwrap();
            let message = rx.recv().await.unwrap();
            tx.send(&message).await.unwrap();
        })
        .await;
        let (mut tx, mut rx) = connect(addr, &token).await.unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        tx.send(&big).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), big);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused() {
        let (addr, _, server) =
            serve_once(|stream, token| async move { accept(stream, &token).await.map(|_| ()) }).await;
        let client = connect(addr, &Token::generate().unwrap()).await;
        let server = server.await.unwrap();
        assert!(server.is_err(), "the server must refuse a peer without its token");
        assert!(client.is_err() || server.is_err());
    }

    /// Both ends of an open channel over loopback: (client, server).
    async fn pair() -> ((Sender, Receiver), (Sender, Receiver)) {
        let (addr, token, server) =
            serve_once(|stream, token| async move { accept(stream, &token).await.unwrap() }).await;
        let client = connect(addr, &token).await.unwrap();
        (client, server.await.unwrap())
    }

    /// Bounds a test that would hang without the limit under test.
    async fn ends<T>(work: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), work).await.expect("the receive must not hang")
    }

    #[tokio::test]
    async fn a_message_left_half_way_is_cut_at_the_message_timeout() {
        let ((mut tx, _rx), (_stx, mut srx)) = pair().await;
        let sealed = tx.seal(&[7u8; 100_000]).unwrap();
        tx.write.write_all(&sealed[..sealed.len() / 2]).await.unwrap();
        let got = ends(srx.recv_within(None, Duration::from_millis(200))).await;
        assert!(matches!(got, Err(RecvError::Timeout(_))), "{got:?}");
    }

    #[tokio::test]
    async fn a_peer_that_starts_nothing_is_cut_at_the_idle_time_and_a_whole_message_passes() {
        let ((mut tx, _rx), (_stx, mut srx)) = pair().await;
        let got = ends(srx.recv_within(Some(Duration::from_millis(200)), Duration::from_secs(5))).await;
        assert!(matches!(got, Err(RecvError::Idle(_))), "{got:?}");
        tx.send(b"hello").await.unwrap();
        let got = srx.recv_within(Some(Duration::from_secs(5)), Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn a_length_of_4_gib_is_refused_before_anything_is_held() {
        let ((mut tx, _rx), (_stx, mut srx)) = pair().await;
        // A token holder seals its own length prefix claiming u32::MAX bytes.
        let mut cipher = vec![0u8; NOISE_MAX];
        let len = tx.noise.lock().unwrap().write_message(&u32::MAX.to_be_bytes(), &mut cipher).unwrap();
        write_noise(&mut tx.write, &cipher[..len]).await.unwrap();
        let got = ends(srx.recv_within(None, Duration::from_secs(5))).await;
        assert!(matches!(got, Err(RecvError::TooLarge(n)) if n == u32::MAX as usize), "{got:?}");
    }

    #[test]
    fn the_assembler_joins_split_payloads_and_refuses_what_does_not_add_up() {
        let mut a = Assembler::default();
        assert!(a.push(&[0, 0]).unwrap().is_none(), "half a length prefix waits");
        assert!(a.push(&[0, 3, b'a']).unwrap().is_none());
        assert_eq!(a.push(b"bc").unwrap().unwrap(), b"abc");
        assert_eq!(a.push(&[0, 0, 0, 0]).unwrap().unwrap(), b"", "an empty message is a message");
        assert!(matches!(a.push(&[0, 0, 0, 1, b'x', b'y']), Err(RecvError::Trailing)));
        let mut a = Assembler::default();
        let over = (MAX_MESSAGE as u32 + 1).to_be_bytes();
        assert!(matches!(a.push(&over), Err(RecvError::TooLarge(n)) if n == MAX_MESSAGE + 1));
    }
}
