//! Cluster DNS over TCP. The switch answers UDP queries itself; TCP needs a
//! stream endpoint, so the agent listens on the gateway address in the node
//! namespace and the switch maps `cluster_dns:53/TCP` to it like a Service.
//! Each message is answered from the zone, or relayed upstream over TCP.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netstack::dns::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::accept;
use super::limits::{Caps, Gate, Listener, Permit, Reason};
use crate::dataplane::DataplaneHandle;

/// Longest a client may stay idle between two messages (RFC 7766 suggests
/// seconds, not minutes).
const IDLE: Duration = Duration::from_secs(10);

/// Binds a port on the gateway address for DNS over TCP.
pub async fn bind(gateway: Ipv4Addr) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((gateway, 0))).await
}

/// Serves connections until the agent stops, at most `caps` of them.
pub async fn serve(
    listener: TcpListener,
    switch: DataplaneHandle,
    upstream: Arc<[SocketAddr]>,
    deadline: Duration,
    caps: Caps,
) {
    let gate = Gate::new(Listener::DnsTcp, caps);
    accept::serve(listener, gate, move |stream, permit| {
        let (switch, upstream) = (switch.clone(), upstream.clone());
        async move {
            let _ = connection(stream, permit, switch, upstream, deadline).await;
        }
    })
    .await
}

async fn connection(
    mut stream: TcpStream,
    permit: Permit,
    switch: DataplaneHandle,
    upstream: Arc<[SocketAddr]>,
    deadline: Duration,
) -> Option<()> {
    loop {
        // Between messages the client may think; once a message starts it
        // must arrive whole within the request timeout, however it trickles.
        match tokio::time::timeout(IDLE, stream.peek(&mut [0u8; 1])).await {
            Ok(Ok(1..)) => {}
            Ok(_) => return None,
            Err(_) => {
                permit.count(Reason::IdleTimeout);
                return None;
            }
        }
        let query = permit.within(read_message(&mut stream)).await?.ok()?;
        let answer = answer(&switch, &upstream, query, deadline).await?;
        let mut message = (answer.len() as u16).to_be_bytes().to_vec();
        message.extend_from_slice(&answer);
        permit.within(stream.write_all(&message)).await?.ok()?;
    }
}

/// One length-prefixed DNS message.
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await? as usize;
    let mut query = vec![0u8; len];
    stream.read_exact(&mut query).await?;
    Ok(query)
}

/// The answer to one query: from the zone, else from upstream, else SERVFAIL.
pub async fn answer(
    switch: &DataplaneHandle,
    upstream: &[SocketAddr],
    query: Vec<u8>,
    deadline: Duration,
) -> Option<Vec<u8>> {
    let (outcome, answer, query) = switch
        .read(move |switch| {
            let mut out = Vec::new();
            let outcome = switch.zone().answer(&query, Transport::Tcp, &mut out);
            (outcome, out, query)
        })
        .await
        .ok()?;
    match outcome {
        netstack::dns::Outcome::Answered { .. } => Some(answer),
        netstack::dns::Outcome::Drop(_) => None,
        netstack::dns::Outcome::Forward => {
            let until = tokio::time::Instant::now() + deadline;
            match crate::listeners::upstream::resolve_tcp_first(upstream, &query, until).await {
                Some(answer) => Some(answer),
                None => {
                    let mut out = Vec::new();
                    netstack::dns::servfail(&query, &mut out).then_some(out)
                }
            }
        }
    }
}
