//! `podnet capture`: what the switch sees on a pod's port, as pcap (readable
//! by tcpdump, tshark and Wireshark) or as one line per frame. The virtual
//! switch has no interface a user could sniff otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use netstack::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use runtime::api::{Client, Request, Response};

use crate::error::{CliError, step};

/// Room for a 64 KiB GSO super-frame plus its Ethernet header.
const SNAPLEN: u32 = 262_144;

pub(crate) async fn run(
    socket: &Path,
    namespace: &str,
    pod: &str,
    write: Option<PathBuf>,
    count: Option<u64>,
) -> Result<ExitCode, CliError> {
    let mut client = Client::connect(socket).await?;
    client.start(&Request::Capture { namespace: namespace.into(), name: pod.into() }).await?;
    let mut pcap = match &write {
        None => None,
        Some(path) => {
            let out: Box<dyn Write> = if path.as_os_str() == "-" {
                Box::new(Flushing(std::io::stdout()))
            } else {
                Box::new(
                    std::fs::File::create(path).map_err(step(format!("cannot create {}", path.display())))?,
                )
            };
            let header =
                PcapHeader { snaplen: SNAPLEN, datalink: DataLink::ETHERNET, ..PcapHeader::default() };
            Some(PcapWriter::with_header(out, header)?)
        }
    };
    if write.as_deref().is_some_and(|p| p.as_os_str() != "-") || write.is_none() {
        eprintln!("capturing on {namespace}/{pod}; Ctrl-C to stop");
    }
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        let next = tokio::select! {
            next = client.next() => next?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(Response::Captured { micros, frame, dropped }) = next else { break };
        seen += 1;
        let at = Duration::from_micros(micros);
        match &mut pcap {
            Some(writer) => {
                let packet = PcapPacket::new(at, frame.len() as u32, &frame);
                writer.write_packet(&packet).map_err(step("cannot write the capture"))?;
            }
            None => match dropped {
                Some(reason) => println!("{} DROPPED {reason}", summary(at, &frame)),
                None => println!("{}", summary(at, &frame)),
            },
        }
    }
    if write.as_deref().is_some_and(|p| p.as_os_str() != "-") || write.is_none() {
        eprintln!("{seen} frames captured");
    }
    Ok(ExitCode::SUCCESS)
}

/// Flushes after every write, so `podnet capture -w - | tcpdump -r -` shows
/// frames as they come.
struct Flushing<W: Write>(W);

impl<W: Write> Write for Flushing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.0.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// One line per frame: time, length, and addresses.
fn summary(at: Duration, frame: &[u8]) -> String {
    let secs = at.as_secs() % 86_400;
    let time = format!("{:02}:{:02}:{:02}.{:06}", secs / 3600, secs / 60 % 60, secs % 60, at.subsec_micros());
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("{time} {} bytes (truncated)", frame.len());
    };
    let what = match eth.ethertype() {
        EthernetProtocol::Ipv4 => match Ipv4Packet::new_checked(eth.payload()) {
            Ok(ip) => format!("IP {} > {}: {}", ip.src_addr(), ip.dst_addr(), ip.next_header()),
            Err(_) => "IP (malformed)".into(),
        },
        EthernetProtocol::Arp => "ARP".into(),
        other => format!("{other}"),
    };
    format!("{time} {} > {} {what}, length {}", eth.src_addr(), eth.dst_addr(), frame.len())
}
