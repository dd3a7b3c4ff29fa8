//! The cluster channel: TCP with a Noise handshake
//! (`Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`, from the `snow` crate) keyed by
//! the cluster token. Both ends prove they hold the token without sending it,
//! and everything after the handshake is encrypted and authenticated. A peer
//! with another token fails the handshake and is dropped.
//!
//! Framing: each Noise message goes as `u16` length + ciphertext. An
//! application message is a `u32` length followed by its bytes, cut into as
//! many Noise messages as it takes.

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
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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

impl Sender {
    /// Sends one message.
    pub async fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
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
        self.write.write_all(&out).await
    }

    /// Sends a postcard-encoded value.
    pub async fn send_value<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        self.send(&postcard::to_stdvec(value).map_err(err)?).await
    }
}

impl Receiver {
    /// Receives one message.
    pub async fn recv(&mut self) -> std::io::Result<Vec<u8>> {
        let mut cipher = vec![0u8; NOISE_MAX];
        let mut plain = vec![0u8; NOISE_MAX];
        let mut message = Vec::new();
        let mut total = None;
        loop {
            let len = read_noise(&mut self.read, &mut cipher).await?;
            let n = self
                .noise
                .lock()
                .expect("noise lock")
                .read_message(&cipher[..len], &mut plain)
                .map_err(err)?;
            message.extend_from_slice(&plain[..n]);
            if total.is_none() && message.len() >= 4 {
                let want = u32::from_be_bytes(message[..4].try_into().expect("4 bytes")) as usize;
                if want > MAX_MESSAGE {
                    return Err(err("message too large"));
                }
                total = Some(want);
            }
            if let Some(want) = total
                && message.len() >= 4 + want
            {
                message.drain(..4);
                message.truncate(want);
                return Ok(message);
            }
        }
    }

    /// Receives a postcard-encoded value.
    pub async fn recv_value<T: DeserializeOwned>(&mut self) -> std::io::Result<T> {
        postcard::from_bytes(&self.recv().await?).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shared_token_opens_the_channel_and_large_messages_pass() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = Token::generate().unwrap();
        let server_token = token.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (mut tx, mut rx) = accept(stream, &server_token).await.unwrap();
            let message = rx.recv().await.unwrap();
            tx.send(&message).await.unwrap();
        });
        let (mut tx, mut rx) = connect(addr, &token).await.unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        tx.send(&big).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), big);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            accept(stream, &Token::generate().unwrap()).await.map(|_| ())
        });
        let client = connect(addr, &Token::generate().unwrap()).await;
        let server = server.await.unwrap();
        assert!(server.is_err(), "the server must refuse a peer without its token");
        assert!(client.is_err() || server.is_err());
    }
}
