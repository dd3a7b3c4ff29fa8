//! The CLI's side of the control socket.

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use super::{Frame, PROTOCOL_VERSION, Request, Response, read_frame, write_frame};

/// Why a request did not get an answer.
#[derive(Debug)]
pub enum ClientError {
    /// No agent listens on the socket.
    NoAgent(PathBuf, io::Error),
    /// The agent answered with an error.
    Agent(String),
    /// The agent speaks another protocol version.
    Version {
        /// The agent's version.
        agent: u16,
    },
    /// The connection broke.
    Io(io::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoAgent(path, e) if e.kind() == io::ErrorKind::PermissionDenied => write!(
                f,
                "permission denied on the agent socket {}: run podnet as root (sudo)",
                path.display()
            ),
            ClientError::NoAgent(path, _) => write!(
                f,
                "no podnet agent at {}: start one with `podnet node up`, or point --socket/PODNET_SOCKET at a running agent",
                path.display()
            ),
            ClientError::Agent(text) => f.write_str(text),
            ClientError::Version { agent } => write!(
                f,
                "the agent speaks control protocol v{agent} and this podnet v{PROTOCOL_VERSION}: use the podnet binary that matches the agent"
            ),
            ClientError::Io(e) => write!(f, "talking to the agent failed: {e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::NoAgent(_, e) | ClientError::Io(e) => Some(e),
            ClientError::Agent(_) | ClientError::Version { .. } => None,
        }
    }
}

/// A connection to an agent.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to the agent at `socket`.
    pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
        let stream =
            UnixStream::connect(socket).await.map_err(|e| ClientError::NoAgent(socket.to_path_buf(), e))?;
        Ok(Client { stream })
    }

    /// Sends a request whose answer is a stream; read it with [`Client::next`].
    pub async fn start(&mut self, request: &Request) -> Result<(), ClientError> {
        write_frame(&mut self.stream, &Frame::message(request).map_err(ClientError::Io)?)
            .await
            .map_err(ClientError::Io)
    }

    /// The next item of a stream; None when the agent ends it.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        let Some(frame) = read_frame(&mut self.stream).await.map_err(ClientError::Io)? else {
            return Ok(None);
        };
        match frame.body {
            Err(text) => Err(ClientError::Agent(text)),
            Ok(_) if frame.version != PROTOCOL_VERSION => Err(ClientError::Version { agent: frame.version }),
            Ok(body) => Frame::decode(&body).map(Some).map_err(ClientError::Io),
        }
    }

    /// Sends a request and waits for its answer.
    pub async fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        write_frame(&mut self.stream, &Frame::message(request).map_err(ClientError::Io)?)
            .await
            .map_err(ClientError::Io)?;
        let frame = read_frame(&mut self.stream).await.map_err(ClientError::Io)?.ok_or_else(|| {
            ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "agent closed the connection"))
        })?;
        match frame.body {
            Err(text) => Err(ClientError::Agent(text)),
            Ok(_) if frame.version != PROTOCOL_VERSION => Err(ClientError::Version { agent: frame.version }),
            Ok(body) => Frame::decode(&body).map_err(ClientError::Io),
        }
    }
}
