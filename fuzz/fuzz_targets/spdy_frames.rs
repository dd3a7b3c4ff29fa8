//! Arbitrary bytes as what a client sends on an upgraded streaming
//! connection of the Kubernetes API (issue #15: exec, port-forward): the
//! first byte picks the shape, the rest is
//! - a SPDY/3.1 connection's bytes, decoded frame by frame as the server
//!   does (one zlib stream for the header blocks), each frame re-encoded
//!   and decoded again by a fresh pair;
//! - a WebSocket channel message (stream id, then bytes) for v4 and v5,
//!   and a resize message.
//!
//! Checks: nothing panics; a decoded frame is within the limits (data at
//! most `max_frame`, at most `max_headers` headers) and round-trips; the
//! counting allocator bounds what decoding may hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::kube::stream::channel;
use runtime::kube::stream::spdy::{Decoder, Encoder, Frame, Limits};

#[global_allocator]
static ALLOC: podnet_fuzz::Counting = podnet_fuzz::Counting;

/// What one input may cost to decode: the buffered frame, its inflated
/// header block, the re-encoded copy and the inflater's window.
const BUDGET: usize = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else { return };
    let base = podnet_fuzz::start_measuring();
    if shape % 2 == 0 {
        let limits = Limits { max_frame: 64 << 10, ..Limits::default() };
        let mut decoder = Decoder::new(limits);
        let (mut encoder, mut again) = (Encoder::default(), Decoder::new(Limits::default()));
        let mut at = 0;
        while let Ok(Some((frame, used))) = decoder.decode(&rest[at..]) {
            assert!(used > 0 && at + used <= rest.len());
            at += used;
            match &frame {
                Frame::Data { data, .. } => assert!(data.len() <= limits.max_frame),
                Frame::SynStream { headers, .. } | Frame::SynReply { headers, .. } | Frame::Headers { headers, .. } => {
                    assert!(headers.len() <= limits.max_headers)
                }
                _ => {}
            }
            let mut bytes = Vec::new();
            encoder.encode(&frame, &mut bytes);
            if frame != Frame::Unknown {
                let decoded = again.decode(&bytes).expect("what was encoded decodes");
                assert_eq!(decoded, Some((frame, bytes.len())), "a frame round-trips");
            }
        }
    } else {
        for v5 in [false, true] {
            let _ = channel::decode(rest, v5);
        }
        let _ = channel::resize(rest);
    }
    let peak = podnet_fuzz::peak_since(base);
    assert!(peak <= BUDGET, "decoding {} bytes held {peak} bytes", data.len());
});
