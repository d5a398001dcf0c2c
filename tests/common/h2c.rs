//! HTTP/2 by hand over h2c (prior knowledge) or any stream: frames built byte by byte, so
//! malformed ones can be sent, and a reader that reports what became of one stream (a
//! response, RST_STREAM, GOAWAY or a close). Used by the hostile-input corpus.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::raw::FORWARDED;

/// The client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;

pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: 9-byte header and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields without indexing and without Huffman coding, in the
/// order given (pseudo-headers included as written, so malformed blocks can be built).
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        integer(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        integer(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A whole request's HEADERS frame (END_HEADERS, END_STREAM) on `stream` with exactly `fields`.
pub fn head(stream: u32, fields: &[(&str, &str)]) -> Vec<u8> {
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &block(fields))
}

/// The HEADERS frame of `POST path` on `stream` declaring `content_length`, its DATA to follow.
pub fn post(stream: u32, path: &str, content_length: &str) -> Vec<u8> {
    let fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "h"),
        (":path", path),
        ("content-length", content_length),
    ];
    frame(HEADERS, END_HEADERS, stream, &block(&fields))
}

/// `GET path` on `stream` with `:authority` `h` and `extra` fields.
pub fn get(stream: u32, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "h"),
        (":path", path),
    ];
    fields.extend_from_slice(extra);
    head(stream, &fields)
}

/// A SETTINGS frame with (id, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// The `:status` of a response header block, for the encodings an h2 server uses for it:
/// a static-table index, or a literal whose value is plain or Huffman-coded digits.
pub fn status_of(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Dynamic table size updates come first.
    while block.get(i).is_some_and(|b| b & 0xe0 == 0x20) {
        i += 1;
    }
    let b = *block.get(i)?;
    if b & 0x80 != 0 {
        return match b & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let name_index = if b & 0xc0 == 0x40 { b & 0x3f } else { b & 0x0f };
    if !(8..=14).contains(&name_index) {
        return None;
    }
    let len_byte = *block.get(i + 1)?;
    let len = usize::from(len_byte & 0x7f);
    let value = block.get(i + 2..i + 2 + len)?;
    let digits = if len_byte & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    digits.parse().ok()
}

/// Decodes a Huffman string of decimal digits (RFC 7541 Appendix B: `0`-`2` are the
/// 5-bit codes 00000-00010, `3`-`9` the 6-bit codes 011001-011111).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let take = |at: usize, n: usize| -> Option<u8> {
        bits.get(at..at + n)
            .map(|s| s.iter().fold(0u8, |acc, b| acc << 1 | b))
    };
    let mut out = String::new();
    let mut at = 0;
    while out.len() < 3 {
        match take(at, 3)? {
            0b000 => {
                let d = take(at + 3, 2)?;
                if d > 2 {
                    return None;
                }
                out.push(char::from(b'0' + d));
                at += 5;
            }
            0b011 => {
                let d = take(at + 3, 3)?;
                if d == 0 {
                    return None;
                }
                out.push(char::from(b'0' + d + 2));
                at += 6;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// What an h2 client saw.
#[derive(Debug, Clone, PartialEq)]
pub enum H2Reply {
    /// A response on the watched stream; `forwarded` when its body came from the raw upstream.
    Response {
        status: u16,
        forwarded: bool,
    },
    /// RST_STREAM on the watched stream, with its error code.
    Reset(u32),
    /// GOAWAY with its error code, before any response on the watched stream.
    GoAway(u32),
    Closed,
    Silent,
}

/// Sends the preface, an empty SETTINGS and `frames`, then reads until the fate of `stream`
/// (or of the connection) is known, or `deadline`.
pub async fn h2_exchange(
    addr: SocketAddr,
    frames: &[u8],
    stream: u32,
    deadline: Duration,
) -> H2Reply {
    let conn = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = conn.set_nodelay(true);
    h2_exchange_on(conn, frames, stream, deadline).await
}

/// [`h2_exchange`] on a connection already made: a TLS stream that agreed on `h2` by ALPN, say
/// ([`super::tls::connect`]), to replay the same frames over HTTPS.
pub async fn h2_exchange_on<S>(
    mut conn: S,
    frames: &[u8],
    stream: u32,
    deadline: Duration,
) -> H2Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut out = H2_PREFACE.to_vec();
    out.extend(settings(&[]));
    out.extend_from_slice(frames);
    let _ = conn.write_all(&out).await;
    let until = Instant::now() + deadline;
    let mut buf = Vec::new();
    let mut status = None;
    let mut body = Vec::new();
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            let code = || {
                payload
                    .get(..4)
                    .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            };
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    let _ = conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                }
                HEADERS if id == stream && status.is_none() => {
                    let mut block = &payload[..];
                    if flags & PADDED != 0 {
                        let pad = usize::from(*block.first().unwrap_or(&0));
                        block = block.get(1..block.len().saturating_sub(pad)).unwrap_or(&[]);
                    }
                    if flags & 0x20 != 0 {
                        block = block.get(5..).unwrap_or(&[]);
                    }
                    status = Some(status_of(block).unwrap_or(0));
                    if flags & END_STREAM != 0 {
                        return H2Reply::Response {
                            status: status.unwrap_or(0),
                            forwarded: false,
                        };
                    }
                }
                DATA if id == stream => {
                    body.extend_from_slice(&payload);
                    if flags & END_STREAM != 0 {
                        return H2Reply::Response {
                            status: status.unwrap_or(0),
                            forwarded: body.starts_with(FORWARDED.as_bytes()),
                        };
                    }
                }
                RST_STREAM if id == stream => {
                    return match status {
                        Some(s) => H2Reply::Response {
                            status: s,
                            forwarded: false,
                        },
                        None => H2Reply::Reset(code()),
                    };
                }
                GOAWAY => {
                    let last = code();
                    let error = payload
                        .get(4..8)
                        .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    // A graceful GOAWAY that still covers our stream: keep reading for it.
                    if error != NO_ERROR || last < stream {
                        return match status {
                            Some(s) => H2Reply::Response {
                                status: s,
                                forwarded: false,
                            },
                            None => H2Reply::GoAway(error),
                        };
                    }
                }
                _ => {}
            }
        }
        let mut chunk = [0u8; 16 << 10];
        match tokio::time::timeout_at(until, conn.read(&mut chunk)).await {
            Err(_) => return H2Reply::Silent,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return match status {
                    Some(s) => H2Reply::Response {
                        status: s,
                        forwarded: body.starts_with(FORWARDED.as_bytes()),
                    },
                    None => H2Reply::Closed,
                };
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
