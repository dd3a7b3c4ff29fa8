//! SPDY/3.1 framing, the part of it kubectl's streams use (moby/spdystream
//! on the client side): data frames; SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS and WINDOW_UPDATE control frames; and
//! header blocks, zlib-compressed with the SPDY/3 dictionary in one stream
//! per direction for the whole connection.
//!
//! Hand-written: no kept Rust crate speaks SPDY (HTTP/2 replaced it), and
//! kubectl before 1.30 and its port-forward need it. Sizes are bounded
//! before anything is held: a frame's length, a header block's inflated
//! size and its number of headers ([`Limits`]).
//!
//! Inflating with a preset dictionary is done on miniz_oxide's core
//! decompressor, whose wrapping output buffer is the LZ window: the window
//! starts with the dictionary, so back-references into it resolve
//! (flate2's pure-Rust backend has no preset dictionaries). Deflating needs
//! none: a zlib stream that does not use the dictionary is valid to a
//! reader that has one.

use flate2::{Compress, Compression, FlushCompress, Status as FlateStatus};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

/// SPDY's version in control frames.
const VERSION: u16 = 3;
/// A frame's fixed header.
pub const HEADER_LEN: usize = 8;
/// FLAG_FIN: the sender's last frame on the stream.
const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM's FLAG_UNIDIRECTIONAL.
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The LZ window (32 KiB, a power of two as the wrapping buffer needs).
const WINDOW: usize = 32 << 10;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM's PROTOCOL_ERROR.
pub const PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM's REFUSED_STREAM.
pub const REFUSED_STREAM: u32 = 3;

/// A header block: names (lowercase) and values, in order.
pub type Headers = Vec<(String, String)>;

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes on a stream.
    Data {
        /// The stream.
        stream: u32,
        /// The sender's last frame on it.
        fin: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A stream opened.
    SynStream {
        /// The new stream (odd: the client's).
        stream: u32,
        /// The stream it belongs to (0: none).
        associated: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// The opener sends nothing more.
        fin: bool,
        /// The opener reads nothing.
        unidirectional: bool,
        /// Its headers (`streamtype`, `port`, `requestid`…).
        headers: Headers,
    },
    /// The answer to a SYN_STREAM.
    SynReply {
        /// The stream.
        stream: u32,
        /// The replier sends nothing more.
        fin: bool,
        /// Its headers.
        headers: Headers,
    },
    /// A stream aborted.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why (PROTOCOL_ERROR, REFUSED_STREAM, CANCEL…).
        status: u32,
    },
    /// Settings (read and ignored: spdystream sends none it relies on).
    Settings,
    /// A ping, answered with the same id.
    Ping {
        /// Its id.
        id: u32,
    },
    /// The connection ends.
    GoAway {
        /// The last stream the sender handled.
        last_good: u32,
        /// Why.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream: u32,
        /// The sender's last frame on it.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// Flow-control credit (spdystream sends and honours none: ignored).
    WindowUpdate {
        /// The stream (0: the connection).
        stream: u32,
        /// The credit.
        delta: u32,
    },
    /// A control frame of a type SPDY/3.1 does not define (to be ignored).
    Unknown,
}

/// The bounds of what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame (its payload).
    pub max_frame: usize,
    /// Largest header block, inflated.
    pub max_header_block: usize,
    /// Most headers in one block.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_frame: 1 << 20, max_header_block: 16 << 10, max_headers: 64 }
    }
}

/// Why a peer's bytes are not SPDY/3.1 (the connection is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdyError {
    /// A control frame of another SPDY version.
    #[error("SPDY version {0} is not 3")]
    Version(u16),
    /// A frame longer than the limit.
    #[error("a SPDY frame of {0} bytes is over the limit")]
    TooLong(usize),
    /// A control frame shorter than its fixed fields.
    #[error("a SPDY control frame of type {0} is cut short")]
    Short(u16),
    /// A header block that does not inflate, or is not name/value pairs.
    #[error("a SPDY header block is malformed: {0}")]
    HeaderBlock(&'static str),
    /// A header block past the limits.
    #[error("a SPDY header block is over the limit")]
    HeaderBlockTooLarge,
}

/// The SPDY/3 header dictionary (SPDY/3 spec, 2.6.10.1): length-prefixed
/// header names, then status codes, dates and common values.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);
const DICTIONARY_LEN: usize = {
    let mut n = DICTIONARY_TAIL.len();
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        n += 4 + DICTIONARY_WORDS[i].len();
        i += 1;
    }
    n
};
/// The dictionary's bytes.
pub static DICTIONARY: [u8; DICTIONARY_LEN] = {
    let mut out = [0u8; DICTIONARY_LEN];
    let (mut at, mut w) = (0, 0);
    while w < DICTIONARY_WORDS.len() {
        let word = DICTIONARY_WORDS[w].as_bytes();
        let len = (word.len() as u32).to_be_bytes();
        let mut i = 0;
        while i < 4 {
            out[at + i] = len[i];
            i += 1;
        }
        at += 4;
        let mut i = 0;
        while i < word.len() {
            out[at] = word[i];
            at += 1;
            i += 1;
        }
        w += 1;
    }
    let tail = DICTIONARY_TAIL.as_bytes();
    let mut i = 0;
    while i < tail.len() {
        out[at] = tail[i];
        at += 1;
        i += 1;
    }
    out
};

/// Reads frames from a connection's bytes (one per connection: the
/// header blocks share one zlib stream).
pub struct Decoder {
    inflater: Inflater,
    limits: Limits,
}

impl Decoder {
    /// A decoder for a new connection.
    pub fn new(limits: Limits) -> Decoder {
        Decoder { inflater: Inflater::new(), limits }
    }

    /// The payload length of the frame `buf` starts with, once its header
    /// is there; refuses one over the limit before it is read.
    pub fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, SpdyError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if len > self.limits.max_frame {
            return Err(SpdyError::TooLong(len));
        }
        Ok(Some(len))
    }

    /// Decodes the frame at the start of `buf`: the frame and the bytes it
    /// took, or None while it is not whole.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, SpdyError> {
        let Some(len) = self.frame_len(buf)? else { return Ok(None) };
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let flags = buf[4];
        let payload = &buf[HEADER_LEN..HEADER_LEN + len];
        let word = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let frame = if word & 0x8000_0000 == 0 {
            Frame::Data { stream: word, fin: flags & FLAG_FIN != 0, data: payload.to_vec() }
        } else {
            let version = ((word >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(SpdyError::Version(version));
            }
            self.control(word as u16, flags, payload)?
        };
        Ok(Some((frame, HEADER_LEN + len)))
    }

    fn control(&mut self, kind: u16, flags: u8, p: &[u8]) -> Result<Frame, SpdyError> {
        let fixed = match kind {
            SYN_STREAM => 10,
            SYN_REPLY | HEADERS | PING | SETTINGS => 4,
            RST_STREAM | GOAWAY | WINDOW_UPDATE => 8,
            _ => return Ok(Frame::Unknown),
        };
        if p.len() < fixed {
            return Err(SpdyError::Short(kind));
        }
        let word = |at: usize| u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        let id = |at: usize| word(at) & 0x7fff_ffff;
        let fin = flags & FLAG_FIN != 0;
        Ok(match kind {
            SYN_STREAM => Frame::SynStream {
                stream: id(0),
                associated: id(4),
                priority: p[8] >> 5,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers: self.headers(&p[10..])?,
            },
            SYN_REPLY => Frame::SynReply { stream: id(0), fin, headers: self.headers(&p[4..])? },
            HEADERS => Frame::Headers { stream: id(0), fin, headers: self.headers(&p[4..])? },
            RST_STREAM => Frame::RstStream { stream: id(0), status: word(4) },
            SETTINGS => Frame::Settings,
            PING => Frame::Ping { id: word(0) },
            GOAWAY => Frame::GoAway { last_good: id(0), status: word(4) },
            _ => Frame::WindowUpdate { stream: id(0), delta: id(4) },
        })
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let block = self.inflater.inflate(compressed, self.limits.max_header_block)?;
        parse_headers(&block, self.limits.max_headers)
    }
}

/// A header block's name/value pairs (SPDY/3: 32-bit counts and lengths).
fn parse_headers(block: &[u8], max: usize) -> Result<Headers, SpdyError> {
    let mut at = 0;
    let u32_at = |at: &mut usize| -> Result<usize, SpdyError> {
        let bytes = block.get(*at..*at + 4).ok_or(SpdyError::HeaderBlock("cut short"))?;
        *at += 4;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    };
    let count = u32_at(&mut at)?;
    if count > max {
        return Err(SpdyError::HeaderBlockTooLarge);
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let string = |at: &mut usize| -> Result<String, SpdyError> {
            let len = u32_at(at)?;
            let bytes = block.get(*at..at.saturating_add(len)).ok_or(SpdyError::HeaderBlock("cut short"))?;
            *at += len;
            String::from_utf8(bytes.to_vec()).map_err(|_| SpdyError::HeaderBlock("not UTF-8"))
        };
        let name = string(&mut at)?;
        let value = string(&mut at)?;
        if name.is_empty() {
            return Err(SpdyError::HeaderBlock("an empty header name"));
        }
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

/// The value of header `name` in `headers` (names are lowercase).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The receiving half of the header blocks' zlib stream.
struct Inflater {
    state: Box<DecompressorOxide>,
    window: Box<[u8]>,
    pos: usize,
    /// The zlib header (and dictionary id) not yet read.
    header: bool,
}

impl Inflater {
    fn new() -> Inflater {
        let mut window = vec![0u8; WINDOW].into_boxed_slice();
        window[..DICTIONARY.len()].copy_from_slice(&DICTIONARY);
        Inflater { state: Box::default(), window, pos: DICTIONARY.len(), header: true }
    }

    /// Inflates one header block (ended by a sync flush), at most `max`
    /// bytes of it.
    fn inflate(&mut self, mut input: &[u8], max: usize) -> Result<Vec<u8>, SpdyError> {
        if self.header {
            let [cmf, flg, ..] = *input else { return Err(SpdyError::HeaderBlock("no zlib header")) };
            if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
                return Err(SpdyError::HeaderBlock("not a zlib stream"));
            }
            input = &input[2..];
            if flg & 0x20 != 0 {
                let id = input.get(..4).ok_or(SpdyError::HeaderBlock("no dictionary id"))?;
                if u32::from_be_bytes([id[0], id[1], id[2], id[3]]) != adler32(&DICTIONARY) {
                    return Err(SpdyError::HeaderBlock("another dictionary"));
                }
                input = &input[4..];
            }
            self.header = false;
        }
        let mut out = Vec::new();
        loop {
            let flags = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
            let (status, used, written) =
                decompress(&mut self.state, input, &mut self.window, self.pos, flags);
            if out.len() + written > max {
                return Err(SpdyError::HeaderBlockTooLarge);
            }
            out.extend_from_slice(&self.window[self.pos..self.pos + written]);
            self.pos = (self.pos + written) & (WINDOW - 1);
            input = &input[used..];
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if input.is_empty() => return Ok(out),
                TINFLStatus::NeedsMoreInput if used > 0 || written > 0 => continue,
                _ => return Err(SpdyError::HeaderBlock("the zlib stream does not inflate")),
            }
        }
    }
}

/// Adler-32 (the dictionary's id in the zlib header).
fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for byte in bytes {
        a = (a + u32::from(*byte)) % 65521;
        b = (b + a) % 65521;
    }
    b << 16 | a
}

/// Writes frames for one connection (its header blocks share one zlib
/// stream).
pub struct Encoder {
    deflater: Compress,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder { deflater: Compress::new(Compression::fast(), true) }
    }
}

impl Encoder {
    /// Appends `frame`'s bytes to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) {
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]| {
            out.extend_from_slice(&(0x8000u16 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            push_len(out, flags, payload.len());
            out.extend_from_slice(payload);
        };
        let fin = |yes: bool| if yes { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data { stream, fin: last, data } => {
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                push_len(out, fin(*last), data.len());
                out.extend_from_slice(data);
            }
            Frame::SynStream { stream, associated, priority, fin: last, unidirectional, headers } => {
                let mut p = Vec::new();
                p.extend_from_slice(&stream.to_be_bytes());
                p.extend_from_slice(&associated.to_be_bytes());
                p.extend_from_slice(&[(priority & 7) << 5, 0]);
                p.extend(self.compress(headers));
                let flags = fin(*last) | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
                control(out, SYN_STREAM, flags, &p);
            }
            Frame::SynReply { stream, fin: last, headers }
            | Frame::Headers { stream, fin: last, headers } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) { SYN_REPLY } else { HEADERS };
                let mut p = stream.to_be_bytes().to_vec();
                p.extend(self.compress(headers));
                control(out, kind, fin(*last), &p);
            }
            Frame::RstStream { stream, status } => {
                control(out, RST_STREAM, 0, &[stream.to_be_bytes(), status.to_be_bytes()].concat())
            }
            Frame::Settings => control(out, SETTINGS, 0, &0u32.to_be_bytes()),
            Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                control(out, GOAWAY, 0, &[last_good.to_be_bytes(), status.to_be_bytes()].concat())
            }
            Frame::WindowUpdate { stream, delta } => {
                control(out, WINDOW_UPDATE, 0, &[stream.to_be_bytes(), delta.to_be_bytes()].concat())
            }
            Frame::Unknown => {}
        }
    }

    /// A header block, compressed and sync-flushed.
    fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for text in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
                block.extend_from_slice(&(text.len() as u32).to_be_bytes());
                block.extend_from_slice(text);
            }
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = &block[..];
        loop {
            let before = self.deflater.total_in();
            let status = self.deflater.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflater.total_in() - before) as usize..];
            // The output was full: make room and go on flushing.
            if matches!(status, Ok(FlateStatus::Ok | FlateStatus::BufError)) && out.len() == out.capacity() {
                out.reserve(256);
                continue;
            }
            if input.is_empty() || status.is_err() {
                return out;
            }
        }
    }
}

fn push_len(out: &mut Vec<u8>, flags: u8, len: usize) {
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&[flags, len[1], len[2], len[3]]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_specs() {
        assert_eq!(DICTIONARY.len(), 1423);
        // Its id as SPDY/3 clients put it in their first zlib header.
        assert_eq!(adler32(&DICTIONARY), 0xe3c6_a7c2);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
    }

    #[test]
    fn data_and_fixed_control_frames_are_byte_exact() {
        let mut enc = Encoder::default();
        let mut out = Vec::new();
        enc.encode(&Frame::Data { stream: 3, fin: true, data: b"hi".to_vec() }, &mut out);
        assert_eq!(out, [0, 0, 0, 3, 1, 0, 0, 2, b'h', b'i']);
        out.clear();
        enc.encode(&Frame::Ping { id: 7 }, &mut out);
        assert_eq!(out, [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
        out.clear();
        enc.encode(&Frame::RstStream { stream: 5, status: REFUSED_STREAM }, &mut out);
        assert_eq!(out, [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 3]);
        out.clear();
        enc.encode(&Frame::GoAway { last_good: 9, status: 0 }, &mut out);
        assert_eq!(out, [0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0]);

        let mut dec = Decoder::new(Limits::default());
        let window = [0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 1, 0, 0, 0xff];
        assert_eq!(
            dec.decode(&window).unwrap(),
            Some((Frame::WindowUpdate { stream: 0, delta: 65536 }, 16)),
            "one frame, the next byte left"
        );
        assert_eq!(dec.decode(&window[..12]).unwrap(), None, "not whole yet");
        let settings = [0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0];
        assert_eq!(dec.decode(&settings).unwrap(), Some((Frame::Settings, 20)));
        assert_eq!(dec.decode(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]), Err(SpdyError::Version(2)));
        assert_eq!(dec.decode(&[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0]), Err(SpdyError::Short(PING)));
        assert_eq!(dec.decode(&[0x80, 3, 0, 0x2a, 0, 0, 0, 0]).unwrap(), Some((Frame::Unknown, 8)));
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header() {
        let dec = Decoder::new(Limits { max_frame: 1024, ..Limits::default() });
        assert_eq!(dec.frame_len(&[0, 0, 0, 1, 0, 0, 4, 1]), Err(SpdyError::TooLong(1025)));
        assert_eq!(dec.frame_len(&[0, 0, 0, 1, 0, 0, 4, 0]), Ok(Some(1024)));
    }

    /// A SYN_STREAM as spdystream writes it: its header block deflated by a
    /// zlib that has the dictionary (so it starts with the dictionary id).
    #[test]
    fn a_syn_stream_compressed_with_the_dictionary_decodes() {
        let block = deflate_with_dictionary(&[("streamtype", "error")]);
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes(), "FDICT and the dictionary id");
        let mut frame = vec![0x80, 3, 0, 1, 0x01, 0, 0, 0];
        let payload = [&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0][..], &block].concat();
        frame[5..8].copy_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        frame.extend(payload);
        let mut dec = Decoder::new(Limits::default());
        let (decoded, used) = dec.decode(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(
            decoded,
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                fin: true,
                unidirectional: false,
                headers: vec![("streamtype".into(), "error".into())],
            }
        );
    }

    /// A header block as SPDY/3 clients write it: deflated with the
    /// dictionary by zlib itself (Python's binding, as Go's compress/zlib
    /// would), sync-flushed.
    fn deflate_with_dictionary(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (n, v) in headers {
            for t in [n, v] {
                block.extend_from_slice(&(t.len() as u32).to_be_bytes());
                block.extend_from_slice(t.as_bytes());
            }
        }
        let dict = std::env::temp_dir().join(format!("podnet-spdy-dict-{}", std::process::id()));
        std::fs::write(&dict, DICTIONARY).unwrap();
        let script = "import sys,zlib\nd=open(sys.argv[1],'rb').read()\nb=sys.stdin.buffer.read()\nc=zlib.compressobj(9,zlib.DEFLATED,15,8,zlib.Z_DEFAULT_STRATEGY,d)\nsys.stdout.buffer.write(c.compress(b)+c.flush(zlib.Z_SYNC_FLUSH))";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&dict)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&block).unwrap();
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_file(&dict);
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn header_blocks_round_trip_through_one_zlib_stream_per_direction() {
        let mut enc = Encoder::default();
        let mut dec = Decoder::new(Limits::default());
        let mut wire = Vec::new();
        let first: Headers = vec![("streamtype".into(), "data".into()), ("port".into(), "8080".into())];
        let second: Headers = vec![("streamtype".into(), "error".into()), ("requestid".into(), "0".into())];
        enc.encode(&Frame::SynReply { stream: 1, fin: false, headers: first.clone() }, &mut wire);
        enc.encode(&Frame::Headers { stream: 3, fin: true, headers: second.clone() }, &mut wire);
        let (a, used) = dec.decode(&wire).unwrap().unwrap();
        assert_eq!(a, Frame::SynReply { stream: 1, fin: false, headers: first });
        let (b, _) = dec.decode(&wire[used..]).unwrap().unwrap();
        assert_eq!(b, Frame::Headers { stream: 3, fin: true, headers: second });
    }

    #[test]
    fn header_blocks_past_the_limits_are_refused() {
        let many: Vec<(String, String)> = (0..70).map(|i| (format!("h{i}"), "v".to_string())).collect();
        let mut enc = Encoder::default();
        let mut wire = Vec::new();
        enc.encode(&Frame::SynReply { stream: 1, fin: false, headers: many }, &mut wire);
        let mut dec = Decoder::new(Limits::default());
        assert_eq!(dec.decode(&wire), Err(SpdyError::HeaderBlockTooLarge), "71 headers");

        // A small block that inflates past the limit (a zip bomb).
        let big: Headers = vec![("x".into(), "a".repeat(20 << 10))];
        let mut enc = Encoder::default();
        let mut wire = Vec::new();
        enc.encode(&Frame::SynReply { stream: 1, fin: false, headers: big }, &mut wire);
        assert!(wire.len() < 1024, "it compresses");
        let mut dec = Decoder::new(Limits::default());
        assert_eq!(dec.decode(&wire), Err(SpdyError::HeaderBlockTooLarge));

        assert!(matches!(parse_headers(&[0, 0, 0, 1, 0, 0, 0, 9, b'a'], 64), Err(SpdyError::HeaderBlock(_))));
        assert!(matches!(parse_headers(&[0, 0], 64), Err(SpdyError::HeaderBlock(_))));
        let mut dec = Decoder::new(Limits::default());
        let garbage = [0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 0x78, 0x9c, 0xff, 0xff];
        assert!(matches!(dec.decode(&garbage), Err(SpdyError::HeaderBlock(_))));
    }
}
