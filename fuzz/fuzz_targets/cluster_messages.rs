//! Arbitrary bytes as what a token holder sends on the cluster channel once
//! the Noise handshake is done: records `[len u16 BE][payload]`, each one
//! decrypted Noise payload, go through the channel's `Assembler` (the `u32`
//! length prefix and the reassembly of a message cut over Noise messages),
//! and every message it completes is decoded as each type the two ends
//! decode: `Hello`, `Request` and `Report` (the server), `ToMember` (a
//! member), `Result<Response, String>` (a remote CLI), `StreamFrame` (both
//! ends of a stream into a member's pod). The raw bytes are
//! decoded as each type too. A refused record starts a new assembler, as the
//! channel closes the connection.
//!
//! Checks: nothing panics; what decodes encodes and decodes again; a length
//! over `MAX_MESSAGE` is refused; and no input makes the decoder hold more
//! than its own bytes a few times over plus serde's capped preallocation (a
//! counting allocator): a prefix claiming 4 GiB is refused before anything
//! is allocated for it.
#![no_main]


use libfuzzer_sys::fuzz_target;
use runtime::api::{Request, Response};
use runtime::cluster::channel::{Assembler, MAX_MESSAGE, RecvError};
use runtime::cluster::proto::{Hello, Report, StreamFrame, ToMember};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[global_allocator]
static ALLOC: podnet_fuzz::Counting = podnet_fuzz::Counting;

/// serde preallocates at most 1 MiB per sequence it decodes (its
/// "cautious" size hint); a message nests a few sequences deep.
const PREALLOCATION: usize = 8 << 20;

/// Decodes `bytes` as `T` as the channel does; what decodes must encode
/// and decode again.
fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8], name: &str) {
    if let Ok(value) = postcard::from_bytes::<T>(bytes) {
        if std::env::var_os("FUZZ_DEBUG").is_some() {
            eprintln!("decoded a {name} from {} bytes", bytes.len());
        }
        let again = postcard::to_stdvec(&value).expect("a decoded message encodes");
        postcard::from_bytes::<T>(&again).expect("an encoded message decodes");
    }
}

fn decode_all(message: &[u8]) {
    decode::<Hello>(message, "Hello");
    decode::<Request>(message, "Request");
    decode::<Report>(message, "Report");
    decode::<ToMember>(message, "ToMember");
    decode::<Result<Response, String>>(message, "answer");
    decode::<StreamFrame>(message, "StreamFrame");
}

fuzz_target!(|data: &[u8]| {
    let base = podnet_fuzz::start_measuring();

    decode_all(data);
    let mut assembler = Assembler::default();
    let mut rest = data;
    while !rest.is_empty() {
        let (payload, next) = match rest {
            [hi, lo, tail @ ..] => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
                tail.split_at(len)
            }
            _ => (rest, &[][..]),
        };
        rest = next;
        match assembler.push(payload) {
            Ok(Some(message)) => decode_all(&message),
            Ok(None) => {}
            Err(e) => {
                if let RecvError::TooLarge(n) = e {
                    assert!(n > MAX_MESSAGE, "{n} bytes refused as too large");
                }
                assembler = Assembler::default();
            }
        }
    }

    let peak = podnet_fuzz::peak_since(base);
    assert!(
        peak <= 4 * data.len() + PREALLOCATION,
        "{peak} bytes live while decoding {} input bytes",
        data.len()
    );
});
