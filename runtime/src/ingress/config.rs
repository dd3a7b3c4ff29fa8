//! The board config's `[ingress]` section: the ports every node serves
//! Ingresses on, and what one client or request may cost.

use serde::{Deserialize, Serialize};

/// `[ingress]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// Plain HTTP port on every node address; 0 turns it off.
    pub http_port: u16,
    /// HTTPS port on every node address; 0 turns it off.
    pub https_port: u16,
    /// Most bytes of a request's head (request line and headers); past it: 431.
    pub max_header_bytes: u32,
    /// Longest a request's head may take to arrive (also the longest a kept-alive
    /// HTTP/1.1 connection waits for its next request); past it: 408, closed.
    pub request_timeout_ms: u64,
    /// A connection with nothing moving either way for this long is closed.
    pub idle_timeout_s: u64,
    /// Connections open at once, in total.
    pub max_connections: u32,
    /// Connections open at once from one client address.
    pub max_connections_per_client: u32,
    /// Longest a connect to a backend may take before the next endpoint is tried.
    pub connect_timeout_ms: u64,
    /// Threads the proxy runs on; 0: one per CPU.
    pub threads: u16,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            http_port: 80,
            https_port: 443,
            max_header_bytes: 16 * 1024,
            request_timeout_ms: 10_000,
            idle_timeout_s: 60,
            max_connections: 4096,
            max_connections_per_client: 256,
            connect_timeout_ms: 2_000,
            threads: 0,
        }
    }
}

impl IngressConfig {
    /// Values the types allow but the proxy does not, with their keys.
    pub fn findings(&self) -> Vec<(Vec<&'static str>, String)> {
        let mut found = Vec::new();
        if self.http_port != 0 && self.http_port == self.https_port {
            found.push((
                vec!["ingress.http_port", "ingress.https_port"],
                format!(
                    "ingress.http_port and ingress.https_port are both {}: give them different ports",
                    self.http_port
                ),
            ));
        }
        // hyper's smallest read buffer is 8 KiB.
        if !(8192..=1_048_576).contains(&self.max_header_bytes) {
            found.push((
                vec!["ingress.max_header_bytes"],
                format!(
                    "ingress.max_header_bytes {} must be between 8192 and 1048576",
                    self.max_header_bytes
                ),
            ));
        }
        for (key, value, low, high) in [
            ("ingress.request_timeout_ms", self.request_timeout_ms, 100, 600_000),
            ("ingress.idle_timeout_s", self.idle_timeout_s, 1, 86_400),
            ("ingress.connect_timeout_ms", self.connect_timeout_ms, 10, 60_000),
            ("ingress.max_connections", self.max_connections as u64, 1, 1_000_000),
            ("ingress.max_connections_per_client", self.max_connections_per_client as u64, 1, 1_000_000),
            ("ingress.threads", self.threads as u64, 0, 64),
        ] {
            if !(low..=high).contains(&value) {
                found.push((vec![key], format!("{key} {value} must be between {low} and {high}")));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use crate::config::NodeConfig;

    #[test]
    fn the_section_is_read_and_checked_with_its_lines() {
        let config = NodeConfig::parse("[ingress]\nhttp_port = 8080\nhttps_port = 0\n").unwrap();
        assert_eq!((config.ingress.http_port, config.ingress.https_port), (8080, 0));
        assert_eq!(NodeConfig::default().ingress.http_port, 80);
        let e =
            NodeConfig::parse("[ingress]\nhttp_port = 8080\nhttps_port = 8080\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("give them different ports"), "{e}");
        let e = NodeConfig::parse("[ingress]\nmax_header_bytes = 100\n").unwrap_err().to_string();
        assert!(e.contains("between 8192 and 1048576"), "{e}");
        assert!(NodeConfig::parse("[ingress]\nhttp_prot = 1\n").is_err());
    }
}
