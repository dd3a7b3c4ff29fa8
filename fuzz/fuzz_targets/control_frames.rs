//! Arbitrary bytes on the control socket: `read_frame` over a byte stream
//! until it ends or errs, postcard decoding of every frame body as a
//! `Request` (what the agent does) and as a `Response` (what the CLI does),
//! and the raw bytes as a `Request` body too.
//!
//! Checks: nothing panics, and no input makes the decoder hold more than a
//! frame's worth of memory: a counting allocator bounds the peak of live heap
//! bytes at twice `MAX_FRAME` (the frame buffer and its split-off body) plus
//! slack, whatever length prefix or postcard length the input claims.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use runtime::api::{Frame, MAX_FRAME, Request, Response, read_frame};

#[global_allocator]
static ALLOC: podnet_fuzz::Counting = podnet_fuzz::Counting;

/// Runs a future that never waits: reading from a byte slice is always ready.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a read from a byte slice waited"),
    }
}

fn decode(body: &[u8]) {
    if let Ok(request) = Frame::decode::<Request>(body) {
        // What decodes must encode again (the agent echoes names back).
        Frame::message(&request).expect("a decoded request re-encodes");
    }
    let _ = Frame::decode::<Response>(body);
}

fuzz_target!(|data: &[u8]| {
    let base = podnet_fuzz::start_measuring();

    decode(data);
    let mut stream = data;
    // Each frame consumes at least its 4-byte length, so this ends.
    while let Ok(Some(frame)) = ready(read_frame(&mut stream)) {
        if let Ok(body) = &frame.body {
            decode(body);
        }
    }

    let peak = podnet_fuzz::peak_since(base);
    assert!(peak <= 2 * MAX_FRAME + (1 << 20), "{peak} bytes live while decoding {} input bytes", data.len());
});
