//! Relays cluster DNS queries for names outside the zone to the node's own
//! resolvers and hands the answers back to the switch. UDP first; a
//! truncated answer is asked again over TCP. A resolver that does not answer
//! in time gets the client a SERVFAIL, not silence. Each pod may have a few
//! queries out at once; past that it gets a REFUSED at once (as CoreDNS's
//! `forward` does past `max_concurrent`), so one pod's query storm cannot
//! take the relay from the others.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, timeout_at};

use netstack::switch::PortId;

use crate::dataplane::{DataplaneHandle, UpstreamQuery};

/// Queries relayed at once; more wait in the switch's queue or are dropped.
const MAX_IN_FLIGHT: usize = 256;
/// Queries one switch port (a pod) may have relayed at once.
const MAX_IN_FLIGHT_PER_PORT: u32 = 32;

/// The IPv4 nameservers of a resolv.conf.
pub fn nameservers(resolv_conf: &Path) -> Vec<Ipv4Addr> {
    std::fs::read_to_string(resolv_conf)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()?.parse().ok()).flatten()
        })
        .collect()
}

/// Serves queries from the switch until the channel closes.
pub async fn relay(
    mut queries: mpsc::Receiver<UpstreamQuery>,
    servers: Vec<Ipv4Addr>,
    deadline: Duration,
    injector: DataplaneHandle,
) {
    let servers = addresses(&servers);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let shares = Shares::new(MAX_IN_FLIGHT_PER_PORT);
    while let Some(query) = queries.recv().await {
        let Some(share) = shares.claim(query.client.port) else {
            let mut refused = Vec::new();
            if netstack::dns::refused(&query.query, &mut refused) {
                injector.dns_answer(query.client, refused);
            }
            continue;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (servers, injector) = (servers.clone(), injector.clone());
        tokio::spawn(async move {
            let _share = share;
            let answer = match resolve(&servers, &query.query, Instant::now() + deadline).await {
                Some(answer) => answer,
                None => {
                    let mut servfail = Vec::new();
                    if !netstack::dns::servfail(&query.query, &mut servfail) {
                        return;
                    }
                    servfail
                }
            };
            injector.dns_answer(query.client, answer);
            drop(slot);
        });
    }
}

/// Counts what each port has in flight, up to a limit per port.
#[derive(Clone)]
struct Shares {
    taken: Arc<Mutex<HashMap<PortId, u32>>>,
    limit: u32,
}

/// One query's place in its port's share, given back when dropped.
struct Share {
    shares: Shares,
    port: PortId,
}

impl Shares {
    fn new(limit: u32) -> Shares {
        Shares { taken: Arc::default(), limit }
    }

    /// A place for one more query from `port`, unless it has `limit` out.
    fn claim(&self, port: PortId) -> Option<Share> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let count = taken.entry(port).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Share { shares: self.clone(), port })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut taken = self.shares.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = taken.get_mut(&self.port) {
            *count -= 1;
            if *count == 0 {
                taken.remove(&self.port);
            }
        }
    }
}

/// The servers' DNS socket addresses.
pub fn addresses(servers: &[Ipv4Addr]) -> Arc<[SocketAddr]> {
    servers.iter().map(|ip| SocketAddr::from((*ip, 53))).collect()
}

/// For clients that came over TCP: asks each server over TCP in turn.
pub async fn resolve_tcp_first(servers: &[SocketAddr], query: &[u8], deadline: Instant) -> Option<Vec<u8>> {
    let client_id: [u8; 2] = query.get(..2)?.try_into().ok()?;
    for (i, server) in servers.iter().enumerate() {
        let share = deadline.saturating_duration_since(Instant::now()) / (servers.len() - i) as u32;
        let mut ours = query.to_vec();
        let id = random_id();
        ours[..2].copy_from_slice(&id.to_be_bytes());
        if let Ok(Some(mut answer)) = timeout_at(Instant::now() + share, ask_tcp(*server, &ours, id)).await {
            answer[..2].copy_from_slice(&client_id);
            return Some(answer);
        }
    }
    None
}

/// Asks each server in turn, giving each an equal share of the time left.
pub async fn resolve(servers: &[SocketAddr], query: &[u8], deadline: Instant) -> Option<Vec<u8>> {
    for (i, server) in servers.iter().enumerate() {
        let share = deadline.saturating_duration_since(Instant::now()) / (servers.len() - i) as u32;
        let until = Instant::now() + share;
        if let Some(answer) = ask(*server, query, until).await {
            return Some(answer);
        }
    }
    None
}

/// One server: UDP, then TCP if the answer came back truncated.
async fn ask(server: SocketAddr, query: &[u8], until: Instant) -> Option<Vec<u8>> {
    // A fresh random ID upstream; the switch restores the client's own.
    let mut query = query.to_vec();
    let id = random_id();
    query.get_mut(..2)?.copy_from_slice(&id.to_be_bytes());
    let answer = timeout_at(until, ask_udp(server, &query, id)).await.ok()??;
    if answer.get(2).is_some_and(|flags| flags & 0x02 != 0) {
        return timeout_at(until, ask_tcp(server, &query, id)).await.ok()?;
    }
    Some(answer)
}

async fn ask_udp(server: SocketAddr, query: &[u8], id: u16) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await.ok()?;
    socket.connect(server).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        // Ignore anything that is not the answer to this query.
        if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 {
            buf.truncate(n);
            return Some(buf);
        }
    }
}

async fn ask_tcp(server: SocketAddr, query: &[u8], id: u16) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await.ok()?;
    let mut message = (query.len() as u16).to_be_bytes().to_vec();
    message.extend_from_slice(query);
    stream.write_all(&message).await.ok()?;
    let len = stream.read_u16().await.ok()? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.ok()?;
    (len >= 12 && buf[..2] == id.to_be_bytes()).then_some(buf)
}

fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    u16::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let path = std::env::temp_dir().join(format!("podnet-resolv-{}", std::process::id()));
        std::fs::write(
            &path,
            "# x\nsearch lan\nnameserver 192.0.2.1\nnameserver ::1\nnameserver 198.51.100.2\n",
        )
        .unwrap();
        assert_eq!(nameservers(&path), vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2)]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn each_port_gets_its_own_share_back_when_queries_finish() {
        let shares = Shares::new(2);
        let (a, b) = (PortId(1), PortId(2));
        let first = shares.claim(a).unwrap();
        let second = shares.claim(a).unwrap();
        assert!(shares.claim(a).is_none(), "a is at its limit");
        let other = shares.claim(b);
        assert!(other.is_some(), "b is not held back by a");
        drop(first);
        assert!(shares.claim(a).is_some());
        drop((second, other));
        assert!(shares.taken.lock().unwrap().is_empty(), "nothing left once all are done");
    }
}
