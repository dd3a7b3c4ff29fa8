//! The optional Prometheus endpoint (`podnet node up --metrics-addr`): the
//! switch counters of `podnet node stats` in the text exposition format, for
//! an operator's scraper. Off unless asked for; it serves GET only.

use std::fmt::Write as _;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::accept;
use super::limits::{Caps, Gate, Listener, Permit};
use crate::api::server::{Answer, Call};
use crate::api::{PortCounters, Request, Response, StatsReport};

/// Binds `addr`; the caller reports a failure before the agent starts.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, super::ListenError> {
    TcpListener::bind(addr).await.map_err(|source| super::ListenError::Metrics { addr, source })
}

/// Answers scrapes until the agent stops, at most `caps` at once.
pub async fn serve(listener: TcpListener, calls: mpsc::Sender<Call>, caps: Caps) {
    let gate = Gate::new(Listener::Metrics, caps);
    accept::serve(listener, gate, move |stream, permit| {
        let calls = calls.clone();
        async move {
            let _ = scrape(stream, permit, calls).await;
        }
    })
    .await
}

/// Longest request head read; a scraper's GET is a few hundred bytes.
const MAX_REQUEST: usize = 1024;

async fn scrape(mut stream: TcpStream, permit: Permit, calls: mpsc::Sender<Call>) -> Option<()> {
    let request = permit.within(read_head(&mut stream)).await?.ok()?;
    let (status, body) = if request.starts_with(b"GET ") {
        let (tx, rx) = oneshot::channel();
        let _ = calls.send((Request::NodeStats, tx)).await;
        match rx.await {
            Ok(Ok(Answer::Once(response))) => match *response {
                Response::Stats(report) => ("200 OK", render(&report)),
                _ => ("500 Internal Server Error", String::new()),
            },
            _ => ("503 Service Unavailable", String::new()),
        }
    } else {
        ("405 Method Not Allowed", String::new())
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    permit.within(answer).await?.ok()
}

/// The request up to its blank line, or its first [`MAX_REQUEST`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut request = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while request.len() < MAX_REQUEST && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    request.truncate(MAX_REQUEST);
    Ok(request)
}

/// A per-port counter: metric name, help text, and how to read it.
type Counter = (&'static str, &'static str, fn(&PortCounters) -> u64);

/// The counters in Prometheus' text format.
pub fn render(report: &StatsReport) -> String {
    let ports = &report.ports;
    let mut out = String::new();
    let counters: [Counter; 5] = [
        ("podnet_port_rx_packets_total", "Frames received from a switch port.", |p| p.rx_packets),
        ("podnet_port_rx_bytes_total", "Bytes received from a switch port.", |p| p.rx_bytes),
        ("podnet_port_tx_packets_total", "Frames sent to a switch port.", |p| p.tx_packets),
        ("podnet_port_tx_bytes_total", "Bytes sent to a switch port.", |p| p.tx_bytes),
        ("podnet_port_tx_errors_total", "Frames that could not be written to a port.", |p| p.tx_errors),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for p in ports {
            let _ = writeln!(out, "{name}{{port=\"{}\",ip=\"{}\"}} {}", p.port, p.ip, value(p));
        }
    }
    let name = "podnet_port_drops_total";
    let _ = writeln!(
        out,
        "# HELP {name} Frames received from a port and dropped, by reason.\n# TYPE {name} counter"
    );
    for p in ports {
        for (reason, count) in &p.drops {
            let _ =
                writeln!(out, "{name}{{port=\"{}\",ip=\"{}\",reason=\"{reason}\"}} {count}", p.port, p.ip);
        }
    }
    let name = "podnet_dns_queries_total";
    let _ = writeln!(out, "# HELP {name} Cluster DNS queries, by result.\n# TYPE {name} counter");
    for (result, count) in &report.dns {
        let _ = writeln!(out, "{name}{{result=\"{result}\"}} {count}");
    }
    for (what, value) in &report.flows {
        let name = format!("podnet_flows_{what}");
        let kind = if matches!(what.as_str(), "active" | "capacity") { "gauge" } else { "counter" };
        let _ = writeln!(
            out,
            "# HELP {name} ClusterIP flow table: {what}.\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    for (what, value) in &report.images {
        let name = format!("podnet_images_{what}_total");
        let _ = writeln!(
            out,
            "# HELP {name} Images and image pods: {what}.\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let name = "podnet_ingress_requests_total";
    let _ = writeln!(out, "# HELP {name} Ingress requests, by rule and status class.\n# TYPE {name} counter");
    for (what, value) in &report.ingress {
        if let Some((rule, class)) = what.rsplit_once(' ') {
            let rule = rule.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{rule=\"{rule}\",class=\"{class}\"}} {value}");
        }
    }
    for (what, value) in report.ingress.iter().filter(|(w, _)| !w.contains(' ')) {
        let name = format!("podnet_ingress_{what}_total");
        let _ = writeln!(out, "# HELP {name} Ingress: {what}.\n# TYPE {name} counter\n{name} {value}");
    }
    for (what, value) in &report.kubernetes {
        let name = format!("podnet_kubernetes_{what}_total");
        let _ = writeln!(
            out,
            "# HELP {name} Kubernetes API watchers: {what}.\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let name = "podnet_dataplane_frames_total";
    let _ = writeln!(out, "# HELP {name} Frames each data-plane thread decided.\n# TYPE {name} counter");
    for (thread, t) in report.threads.iter().enumerate() {
        let _ = writeln!(out, "{name}{{thread=\"{thread}\"}} {}", t.frames);
    }
    let name = "podnet_dataplane_handoffs_total";
    let _ = writeln!(
        out,
        "# HELP {name} Frames a data-plane thread read for another thread's flow, by result.\n# TYPE {name} counter"
    );
    for (thread, t) in report.threads.iter().enumerate() {
        let _ = writeln!(out, "{name}{{thread=\"{thread}\",result=\"passed\"}} {}", t.handed_off);
        let _ = writeln!(out, "{name}{{thread=\"{thread}\",result=\"queue_full\"}} {}", t.handoff_full);
    }
    let name = "podnet_listener_connections";
    let _ = writeln!(out, "# HELP {name} Connections (UDP: flows) open, by listener.\n# TYPE {name} gauge");
    for l in &report.listeners {
        let _ = writeln!(out, "{name}{{listener=\"{}\"}} {}", l.listener, l.open);
    }
    let name = "podnet_listener_refusals_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections a listener refused or closed, by listener and reason.\n# TYPE {name} counter"
    );
    for l in &report.listeners {
        for (reason, count) in &l.counts {
            let _ = writeln!(out, "{name}{{listener=\"{}\",reason=\"{reason}\"}} {count}", l.listener);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::limits::{Counters, Reason};
    use std::time::Duration;

    #[tokio::test]
    async fn a_request_that_never_ends_is_cut_at_the_request_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters: &'static Counters = Box::leak(Box::new(Counters::new()));
        let caps = Caps { per_client: 4, total: 4, request_timeout: Duration::from_millis(300) };
        let gate = Gate::with_counters(Listener::Metrics, caps, counters);
        let (calls, _requests) = mpsc::channel(1);
        let server = tokio::spawn(accept::serve(listener, gate, move |stream, permit| {
            let calls = calls.clone();
            async move {
                let _ = scrape(stream, permit, calls).await;
            }
        }));
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = client.into_split();
        // A byte every 50 ms, never the blank line that ends a request.
        let trickle = tokio::spawn(async move {
            for byte in b"GET /metrics HTTP/1.0\r\nX-Slow: ".iter().cycle().take(200) {
                if write.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "closed without an answer: {}", String::from_utf8_lossy(&answer));
        assert_eq!(counters.get(Reason::RequestTimeout), 1);
        trickle.abort();
        server.abort();
    }

    #[test]
    fn counters_render_in_the_text_format() {
        let ports = [PortCounters {
            port: "default/web".into(),
            ip: "10.244.0.2".parse().unwrap(),
            rx_packets: 3,
            rx_bytes: 300,
            tx_packets: 2,
            tx_bytes: 200,
            tx_errors: 0,
            drops: vec![("spoofed_ip".into(), 5)],
        }];
        let report = StatsReport {
            ports: ports.to_vec(),
            dns: vec![("answered".into(), 4)],
            flows: vec![("active".into(), 1)],
            images: vec![("layers_unpacked".into(), 3)],
            ingress: vec![("default/shop shop.example/api 2xx".into(), 9), ("no_rule".into(), 1)],
            kubernetes: vec![("reconnects".into(), 2)],
            threads: vec![crate::api::ThreadCounters { frames: 12, ..Default::default() }],
            listeners: vec![crate::api::ListenerCounters {
                listener: "dns_tcp".into(),
                open: 2,
                counts: vec![("per_client_limit".into(), 7)],
            }],
        };
        let text = render(&report);
        assert!(text.contains(
            "podnet_ingress_requests_total{rule=\"default/shop shop.example/api\",class=\"2xx\"} 9"
        ));
        assert!(text.contains("podnet_ingress_no_rule_total 1"));
        assert!(text.contains("podnet_kubernetes_reconnects_total 2"));
        assert!(text.contains("podnet_dataplane_frames_total{thread=\"0\"} 12"), "{text}");
        assert!(text.contains("podnet_dns_queries_total{result=\"answered\"} 4"));
        assert!(text.contains("# TYPE podnet_flows_active gauge\npodnet_flows_active 1"));
        assert!(text.contains(
            "# TYPE podnet_images_layers_unpacked_total counter\npodnet_images_layers_unpacked_total 3"
        ));
        assert!(text.contains("# TYPE podnet_port_rx_packets_total counter"));
        assert!(text.contains("podnet_listener_connections{listener=\"dns_tcp\"} 2"));
        assert!(
            text.contains(
                "podnet_listener_refusals_total{listener=\"dns_tcp\",reason=\"per_client_limit\"} 7"
            )
        );
        assert!(text.contains("podnet_port_rx_packets_total{port=\"default/web\",ip=\"10.244.0.2\"} 3"));
        assert!(text.contains(
            "podnet_port_drops_total{port=\"default/web\",ip=\"10.244.0.2\",reason=\"spoofed_ip\"} 5"
        ));
    }
}
