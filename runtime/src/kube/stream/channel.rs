//! The Kubernetes remote-command stream protocol, as the kubelet speaks it
//! (`v4.channel.k8s.io`, and `v5.channel.k8s.io` which adds closing one
//! stream): stream ids and what flows on them, the resize message, and
//! the Status that ends a command (its exit code as `NonZeroExitCode`).
//! WebSocket prefixes each message with the stream id; SPDY names the
//! stream in its headers (`streamType`).

use serde_json::{Value, json};

/// The client's input.
pub const STDIN: u8 = 0;
/// The command's output.
pub const STDOUT: u8 = 1;
/// The command's error output.
pub const STDERR: u8 = 2;
/// The Status that ends the command.
pub const ERROR: u8 = 3;
/// The terminal's size, JSON.
pub const RESIZE: u8 = 4;
/// v5: the client closes a stream (the message is `[255, stream]`).
pub const CLOSE: u8 = 255;

/// The stream protocol of exec over SPDY.
pub const SPDY_EXEC: &str = "v4.channel.k8s.io";
/// The stream protocol of port-forwarding over SPDY.
pub const SPDY_PORT_FORWARD: &str = "portforward.k8s.io";

/// The WebSocket subprotocols served, best first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Largest resize message read (`{"Width":65535,"Height":65535}` is 30 bytes).
const MAX_RESIZE: usize = 256;

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// What one client message on a channel asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Bytes for the command's stdin.
    Stdin(&'a [u8]),
    /// The terminal's new size.
    Resize(Size),
    /// The client closed stream `0` (v5): for stdin, end of input.
    Close(u8),
    /// An empty message (clients send one per stream at the start).
    Nothing,
}

/// Why a client message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// A stream a client does not write to, or none at all.
    #[error("a client cannot write to stream {0}")]
    NotWritable(u8),
    /// A resize that is not `{"Width":N,"Height":N}`.
    #[error("a resize message is not {{\"Width\":N,\"Height\":N}}")]
    BadResize,
    /// A close message (v5) that does not name one stream.
    #[error("a close message names no stream")]
    BadClose,
}

/// Reads one WebSocket message: its first byte is the stream id.
pub fn decode(message: &[u8], v5: bool) -> Result<Incoming<'_>, ChannelError> {
    let Some((&id, data)) = message.split_first() else {
        return Ok(Incoming::Nothing);
    };
    match id {
        STDIN if data.is_empty() => Ok(Incoming::Nothing),
        STDIN => Ok(Incoming::Stdin(data)),
        RESIZE if data.is_empty() => Ok(Incoming::Nothing),
        RESIZE => resize(data).map(Incoming::Resize),
        CLOSE if v5 => match data {
            [stream] => Ok(Incoming::Close(*stream)),
            _ => Err(ChannelError::BadClose),
        },
        other => Err(ChannelError::NotWritable(other)),
    }
}

/// A resize message's size (`{"Width":80,"Height":24}`).
pub fn resize(data: &[u8]) -> Result<Size, ChannelError> {
    if data.len() > MAX_RESIZE {
        return Err(ChannelError::BadResize);
    }
    let value: Value = serde_json::from_slice(data).map_err(|_| ChannelError::BadResize)?;
    let dim = |key: &str| value.get(key).and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok());
    match (dim("Width"), dim("Height")) {
        (Some(width), Some(height)) => Ok(Size { width, height }),
        _ => Err(ChannelError::BadResize),
    }
}

/// One WebSocket message: `data` on stream `id`.
pub fn encode(id: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(id);
    message.extend_from_slice(data);
    message
}

/// How the command ended, for the error stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code (0: success).
    Exited(i32),
    /// It could not run, or the session failed: the message.
    Failed(String),
}

/// The Status the kubelet writes on the error stream: Success, or Failure
/// with reason `NonZeroExitCode` and an `ExitCode` cause kubectl turns
/// into its own exit code.
pub fn status(ended: &Ended, command: &[String]) -> Value {
    match ended {
        Ended::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Ended::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Ended::Failed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_stream_first() {
        assert_eq!(decode(&[0, b'h', b'i'], true), Ok(Incoming::Stdin(b"hi")));
        assert_eq!(decode(&[0], true), Ok(Incoming::Nothing));
        assert_eq!(decode(&[], true), Ok(Incoming::Nothing));
        let resize = [&[4u8][..], br#"{"Width":120,"Height":40}"#].concat();
        assert_eq!(decode(&resize, false), Ok(Incoming::Resize(Size { width: 120, height: 40 })));
        assert_eq!(decode(&[255, 0], true), Ok(Incoming::Close(0)));
        assert_eq!(decode(&[255, 0], false), Err(ChannelError::NotWritable(255)), "v4 has no close");
        assert_eq!(decode(&[255, 0, 1], true), Err(ChannelError::BadClose));
        assert_eq!(decode(&[1, b'x'], true), Err(ChannelError::NotWritable(1)));
        assert_eq!(decode(&[4, b'{'], true), Err(ChannelError::BadResize));
        let huge = [&[4u8][..], br#"{"Width":70000,"Height":1}"#].concat();
        assert_eq!(decode(&huge, true), Err(ChannelError::BadResize));
        assert_eq!(encode(STDOUT, b"out"), b"\x01out");
    }

    #[test]
    fn the_exit_code_travels_as_the_kubelet_writes_it() {
        let command = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        let failed = status(&Ended::Exited(3), &command);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        assert_eq!(status(&Ended::Exited(0), &command)["status"], "Success");
        assert_eq!(status(&Ended::Failed("no".into()), &command)["status"], "Failure");
    }
}
