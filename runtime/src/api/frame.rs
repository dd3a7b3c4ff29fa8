//! Framing: `u32` little-endian length, then `u16` protocol version, then a
//! status byte and the body. The status byte keeps errors readable across
//! versions: status 1 carries plain UTF-8 text that any CLI can print, even
//! one that cannot decode this agent's postcard messages.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PROTOCOL_VERSION;

/// Largest frame either side accepts (log output is the big one).
pub const MAX_FRAME: usize = 16 << 20;

const STATUS_OK: u8 = 0;
const STATUS_ERROR: u8 = 1;

/// One decoded frame.
#[derive(Debug)]
pub struct Frame {
    /// The sender's protocol version.
    pub version: u16,
    /// Ok(postcard body) or Err(error text).
    pub body: Result<Vec<u8>, String>,
}

impl Frame {
    /// A frame carrying `message`.
    pub fn message<T: Serialize>(message: &T) -> io::Result<Frame> {
        let body = postcard::to_stdvec(message).map_err(io::Error::other)?;
        Ok(Frame { version: PROTOCOL_VERSION, body: Ok(body) })
    }

    /// A frame carrying an error text.
    pub fn error(text: impl Into<String>) -> Frame {
        Frame { version: PROTOCOL_VERSION, body: Err(text.into()) }
    }

    /// Decodes the postcard body.
    pub fn decode<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
        postcard::from_bytes(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(3..=MAX_FRAME).contains(&len) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad frame length {len}")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    let version = u16::from_le_bytes([buf[0], buf[1]]);
    let payload = buf.split_off(3);
    let body = match buf[2] {
        STATUS_OK => Ok(payload),
        STATUS_ERROR => Err(String::from_utf8_lossy(&payload).into_owned()),
        other => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad frame status {other}")));
        }
    };
    Ok(Some(Frame { version, body }))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> io::Result<()> {
    let (status, payload) = match &frame.body {
        Ok(body) => (STATUS_OK, body.as_slice()),
        Err(text) => (STATUS_ERROR, text.as_bytes()),
    };
    let len = 3 + payload.len();
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame too large"));
    }
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&frame.version.to_le_bytes());
    buf.push(status);
    buf.extend_from_slice(payload);
    w.write_all(&buf).await?;
    w.flush().await
}
