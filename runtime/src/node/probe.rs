//! Readiness probes, run from the node's namespace against pod IPs: a TCP
//! connect, or an HTTP GET that must answer 200-399. One second apart with a
//! one-second timeout and a failure threshold of one, so an unready pod
//! leaves its Services' endpoints within about a second (Kubernetes'
//! defaults, 10 s x 3, are too slow for that promise).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::model::Probe;

/// How long one probe may take.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Time between probes of one pod.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Runs `probe` against the pod at `ip`; true when it passes.
pub async fn check(probe: &Probe, ip: IpAddr) -> bool {
    tokio::time::timeout(TIMEOUT, run(probe, ip)).await.unwrap_or(false)
}

async fn run(probe: &Probe, ip: IpAddr) -> bool {
    match probe {
        Probe::Tcp { port } => TcpStream::connect(SocketAddr::from((ip, *port))).await.is_ok(),
        Probe::Http { port, path } => {
            let Ok(mut stream) = TcpStream::connect(SocketAddr::from((ip, *port))).await else {
                return false;
            };
            let request =
                format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: podnet-probe\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_err() {
                return false;
            }
            let mut head = [0u8; 64];
            let mut len = 0;
            while len < 12 {
                match stream.read(&mut head[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
            }
            // "HTTP/1.x NNN"
            std::str::from_utf8(&head[..len])
                .ok()
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<u16>().ok())
                .is_some_and(|code| (200..400).contains(&code))
        }
    }
}
