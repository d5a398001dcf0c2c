//! The hostile-input corpus: raw requests an attacker (or a broken client) sends, each with the
//! answer wakeway must give, replayed over raw TCP against wakeway in front of an upstream that
//! records exactly what it receives and reads it as a lenient app would.
//!
//! Besides each expected status, the run asserts:
//! - the upstream never reads a request wakeway did not answer with a forwarded response (no
//!   request boundary wakeway did not see: every smuggling payload hides a `/smuggled` request);
//! - every forwarded head has one reading (exactly one of Content-Length or chunked, one Host,
//!   token names without `_`, no control characters, no folding);
//! - a good request on a new connection works after every case, and gets its own answer.
//!
//! The table in [`cases`] is the spec: one row per case, with the exact bytes and the answer.

mod common;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Wakeway;
use common::h2c::{self as h2, H2Reply};
use common::raw::{self, Pace, RawUpstream, Reply, Seen};
use common::tls::{self, TestCa, certificate_toml};
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// What wakeway must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status. `200` only comes from the upstream: it means "forwarded".
    Status(u16),
    /// Any of these statuses (where the RFCs leave the choice open).
    OneOf(&'static [u16]),
    /// This status, or a close without one (e.g. once the head was already forwarded).
    StatusOrClose(u16),
    /// Pipelined requests: these statuses, in order.
    Seq(&'static [u16]),
    /// h2: a connection error, GOAWAY with an error code (the row names the one RFC 9113 gives;
    /// the h2 crate reports PROTOCOL_ERROR for several of them, and the code is not the point).
    GoAway,
    /// h2: refused one way or another: RST_STREAM, GOAWAY, or a 4xx on the stream.
    H2Refused,
}

use Expect::*;

/// A check on the head the upstream received, for cases that must be forwarded.
type Check = fn(&Seen) -> Result<(), String>;

struct Case {
    name: String,
    bytes: Vec<u8>,
    pace: Pace,
    /// Send `bytes` as frames after the h2c preface instead of as HTTP/1.
    h2: bool,
    expect: Expect,
    check: Option<Check>,
}

fn case(name: &str, bytes: impl AsRef<[u8]>, expect: Expect) -> Case {
    Case {
        name: name.to_string(),
        bytes: bytes.as_ref().to_vec(),
        pace: Pace::AtOnce,
        h2: false,
        expect,
        check: None,
    }
}

fn h2c(name: &str, frames: Vec<Vec<u8>>, expect: Expect) -> Case {
    Case {
        h2: true,
        ..case(name, frames.concat(), expect)
    }
}

impl Case {
    fn paced(mut self, pace: Pace) -> Case {
        self.pace = pace;
        self
    }

    fn check(mut self, check: Check) -> Case {
        self.check = Some(check);
        self
    }
}

/// The header read timeout the test config sets.
const HEADER_READ_TIMEOUT: &str = "1s";

/// `name: value` checks on the forwarded head.
fn header_is(seen: &Seen, name: &str, want: Option<&str>) -> Result<(), String> {
    let got = seen.one(name)?;
    if got.as_deref() == want {
        Ok(())
    } else {
        Err(format!("upstream got {name}: {got:?}, want {want:?}"))
    }
}

fn no_header(seen: &Seen, name: &str) -> Result<(), String> {
    header_is(seen, name, None)
}

fn body_is(seen: &Seen, want: &[u8]) -> Result<(), String> {
    if seen.body == want {
        Ok(())
    } else {
        Err(format!(
            "upstream got body {:?}, want {:?}",
            String::from_utf8_lossy(&seen.body),
            String::from_utf8_lossy(want)
        ))
    }
}

/// A request carrying `GET /smuggled` inside what wakeway must read as one request's body.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

fn cases() -> Vec<Case> {
    let mut c = vec![
        // --- Baseline: well-formed requests are forwarded.
        case("plain GET", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case(
            "POST with Content-Length",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
            Status(200),
        )
        .check(|s| body_is(s, b"hello")),
        case(
            "POST chunked",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Status(200),
        )
        .check(|s| body_is(s, b"hello")),
        case(
            "chunk extension",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n",
            Status(200),
        )
        .check(|s| body_is(s, b"hello")),
        case(
            "chunk size with leading zeros",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0\r\n\r\n",
            Status(200),
        ),
        case(
            "upper-case hex chunk size",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
            Status(200),
        )
        .check(|s| body_is(s, b"0123456789")),
        case(
            "chunked with trailer",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
            Status(200),
        ),
        case(
            "many one-byte chunks",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                "1\r\na\r\n".repeat(1000)
            ),
            Status(200),
        ),
        case(
            "GET with a body",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            Status(200),
        ),
        case("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", Status(200)),
        case(
            "HTTP/1.0 with Host and body",
            "POST / HTTP/1.0\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
            Status(200),
        ),
        case("IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", Status(200)),
        case("Host with port", "GET / HTTP/1.1\r\nHost: h:8080\r\n\r\n", Status(200)),
        case("extension method", "PURGE / HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case("double slash path", "GET //x HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case("dot segments", "GET /../../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case("encoded NUL", "GET /%00 HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case("obs-text in value", b"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9 \xff\r\n\r\n", Status(200)),
        case("tab in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\r\n\r\n", Status(200)),
        case("empty value", "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n\r\n", Status(200)),
        case("no space after colon", "GET / HTTP/1.1\r\nHost:h\r\nX:y\r\n\r\n", Status(200)),
        case(
            "colon in value",
            "GET / HTTP/1.1\r\nHost: h\r\nX: a: b\r\n\r\n",
            Status(200),
        ),
        case(
            "Expect: 100-continue",
            "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
            Status(200),
        ),
        case(
            "pipelined pair",
            "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
            Seq(&[200, 200]),
        ),
        case(
            "pipelined POST then GET",
            "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
            Seq(&[200, 200]),
        ),
        // --- LF-only line endings: accepted, as nginx and httparse do.
        case("LF-only lines", "GET / HTTP/1.1\nHost: h\n\n", Status(200)),
        case("mixed CRLF and LF", "GET / HTTP/1.1\r\nHost: h\nX: 1\r\n\n", Status(200)),
        case(
            "LF-only with Content-Length",
            "POST / HTTP/1.1\nHost: h\nContent-Length: 2\n\nhi",
            Status(200),
        )
        .check(|s| body_is(s, b"hi")),
        // --- Bare CR: 400.
        case("bare CR line ends", "GET / HTTP/1.1\rHost: h\r\r", StatusOrClose(400)),
        case("bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", Status(400)),
        case("CR before header name", "GET / HTTP/1.1\r\nHost: h\r\n\rX: a\r\n\r\n", Status(400)),
        case("CR in request line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        // --- CL.TE / TE.CL: both framings at once is 400.
        case(
            "CL.TE",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            Status(400),
        ),
        case(
            "TE.CL",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n",
                SMUGGLED.len()
            ),
            Status(400),
        ),
        case(
            "CL.TE with CL 0",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            Status(400),
        ),
        case(
            "TE.CL with obfuscated TE",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            OneOf(&[400, 501]),
        ),
        case(
            "TE and CL on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "CL.TE with Transfer_Encoding (underscore dropped)",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{SMUGGLED}",
                5 + SMUGGLED.len()
            ),
            Status(200),
        )
        .check(|s| no_header(s, "transfer_encoding")),
        case(
            "Content_Length beside chunked (underscore dropped)",
            "POST / HTTP/1.1\r\nHost: h\r\nContent_Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(200),
        )
        .check(|s| no_header(s, "content_length")),
        // --- Content-Length: one plain decimal number, once.
        case(
            "duplicate identical CL",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            Status(400),
        ),
        case(
            "duplicate different CL",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            Status(400),
        ),
        case(
            "CL list",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
            Status(400),
        ),
        case(
            "CL list differing",
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0, {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            Status(400),
        ),
        case(
            "CL with surrounding whitespace is OWS",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:  5 \r\n\r\nhello",
            OneOf(&[200, 400]),
        ),
        case(
            "CL name with space before colon",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello",
            Status(400),
        ),
        case(
            "CL folded",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n 5\r\n\r\nhello",
            Status(400),
        ),
        case(
            "huge CL then close",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\nhello",
            StatusOrClose(400),
        )
        .paced(Pace::ThenShutdown),
        case(
            "body shorter than CL then close",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello",
            StatusOrClose(400),
        )
        .paced(Pace::ThenShutdown),
        // --- Transfer-Encoding other than exactly chunked: 501.
        case(
            "TE gzip, chunked",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            Status(501),
        ),
        case(
            "TE chunked, chunked",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            Status(501),
        ),
        case(
            "TE split over two lines",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(501),
        ),
        case(
            "TE chunked twice",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            OneOf(&[400, 501]),
        ),
        case(
            "TE chunked then identity",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            OneOf(&[400, 501]),
        ),
        case(
            "TE name with space before colon",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE folded",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE after a folded line",
            "POST / HTTP/1.1\r\nHost: h\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE tab before value is OWS",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Status(200),
        ),
        case(
            "TE trailing space is OWS",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Status(200),
        ),
        case(
            "TE vertical tab before value",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
            OneOf(&[400, 501]),
        ),
        case(
            "TE form feed after value",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x0c\r\n\r\n0\r\n\r\n",
            OneOf(&[400, 501]),
        ),
        case(
            "TE NUL in value",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        case(
            "TE NUL in name",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\x00: chunked\r\n\r\n0\r\n\r\n",
            Status(400),
        ),
        // --- Bad chunking: 400, or a close once the head went upstream.
        case(
            "chunk data longer than its size",
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
            StatusOrClose(400),
        ),
        case(
            "no CRLF after chunk data",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "chunked body without last chunk then close",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            StatusOrClose(400),
        )
        .paced(Pace::ThenShutdown),
        case(
            "NUL in chunk extension",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x00\r\nhello\r\n0\r\n\r\n",
            StatusOrClose(400),
        ),
        case(
            "bad trailer name",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: 1\r\n\r\n",
            OneOf(&[200, 400]),
        ),
        // --- Host: exactly one.
        case("no Host on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", Status(400)),
        case("two Host headers", "GET / HTTP/1.1\r\nHost: h\r\nHost: other\r\n\r\n", Status(400)),
        case("two identical Host headers", "GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", Status(400)),
        case("Host and host", "GET / HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n", Status(400)),
        case("Host list", "GET / HTTP/1.1\r\nHost: h, other\r\n\r\n", Status(400)),
        case("Host with space", "GET / HTTP/1.1\r\nHost: h other\r\n\r\n", Status(400)),
        case("Host with path", "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", Status(400)),
        case("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", Status(400)),
        case("Host folded", "GET / HTTP/1.1\r\nHost:\r\n h\r\n\r\n", Status(400)),
        case("Host_ is not Host", "GET / HTTP/1.1\r\nHost: h\r\nHost_: other\r\n\r\n", Status(200))
            .check(|s| header_is(s, "host", Some("h"))),
        // --- Upgrade: h2c never reaches the upstream, alone or inside a list.
        case(
            "h2c inside an Upgrade list",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "upgrade", Some("websocket"))),
        case(
            "h2c alone",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            Status(200),
        )
        .check(|s| no_header(s, "upgrade")),
        // --- Absolute-form: routed by its authority, which must agree with Host.
        case("absolute-form, same Host", "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", Status(200)),
        case(
            "absolute-form, same Host with port",
            "GET http://h:80/x HTTP/1.1\r\nHost: h:80\r\n\r\n",
            Status(200),
        ),
        case(
            "absolute-form, other Host",
            "GET http://other.example/ HTTP/1.1\r\nHost: h\r\n\r\n",
            Status(400),
        ),
        case(
            "absolute-form, other port",
            "GET http://h:8081/ HTTP/1.1\r\nHost: h:8080\r\n\r\n",
            Status(400),
        ),
        case(
            "absolute-form with userinfo",
            "GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            Status(400),
        ),
        case("absolute-form, empty authority", "GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        // --- Methods.
        case("TRACE", "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", Status(405)),
        case("TRACE with body", "TRACE / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", Status(405)),
        case("CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", Status(405)),
        case("CONNECT to a path", "CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 405])),
        case("method with space", "G ET / HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("method with tab", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("method with (", "GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("method with NUL", "GE\x00T / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("method with DEL", "GE\x7fT / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("method with 8-bit byte", b"G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("two spaces after method", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("PRI on HTTP/1.1", "PRI / HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400, 405])),
        // --- Versions: HTTP/1.0 and HTTP/1.1 only.
        case("HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", Status(505)),
        case("HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", Status(505)),
        case("HTTP/3.0", "GET / HTTP/3.0\r\nHost: h\r\n\r\n", Status(505)),
        case("HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", Status(505)),
        case("HTTP/9.9", "GET / HTTP/9.9\r\nHost: h\r\n\r\n", Status(505)),
        case("lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTP/1", "GET / HTTP/1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTP/11", "GET / HTTP/11\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTP/1.10", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTP/1.1x", "GET / HTTP/1.1x\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("version HTTX/1.1", "GET / HTTX/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("trailing space after version", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("no version", "GET /\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("no version, no headers (HTTP/0.9)", "GET /\r\n\r\n", StatusOrClose(400)),
        case("garbage line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", StatusOrClose(400)),
        // --- Targets.
        case("target without slash", "GET a HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("asterisk target for GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("empty target", "GET  HTTP/1.1\r\nHost: h\r\n\r\n", Status(400)),
        case("space in target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[400, 505])),
        case("fragment in target", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400])),
        case("8-bit bytes in target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400])),
        case("backslash in target", "GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400])),
        case("quote and angle brackets in target", "GET /\"<x>\" HTTP/1.1\r\nHost: h\r\n\r\n", OneOf(&[200, 400])),
        // --- Header names: tokens only.
        case("empty header name", "GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", Status(400)),
        case("line without colon", "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", Status(400)),
        case("space inside name", "GET / HTTP/1.1\r\nHost: h\r\nX Y: 1\r\n\r\n", Status(400)),
        case("tab before colon", "GET / HTTP/1.1\r\nHost: h\r\nX\t: 1\r\n\r\n", Status(400)),
        case("8-bit byte in name", b"GET / HTTP/1.1\r\nHost: h\r\nX\xe9: 1\r\n\r\n", Status(400)),
        case("whitespace before first header", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", Status(400)),
        // --- obs-fold: 400.
        case("obs-fold with space", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", Status(400)),
        case("obs-fold with tab", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", Status(400)),
        case("obs-fold of an empty value", "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n b\r\n\r\n", Status(400)),
        // --- Underscores: dropped (the default `underscore_headers = "drop"`).
        case("X_Foo dropped", "GET / HTTP/1.1\r\nHost: h\r\nX_Foo: 1\r\n\r\n", Status(200))
            .check(|s| no_header(s, "x_foo")),
        case("lone underscore name dropped", "GET / HTTP/1.1\r\nHost: h\r\n_: 1\r\n\r\n", Status(200))
            .check(|s| no_header(s, "_")),
        case(
            "X_Forwarded_For dropped",
            "GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n",
            Status(200),
        )
        .check(|s| {
            no_header(s, "x_forwarded_for")?;
            header_is(s, "x-forwarded-for", Some("127.0.0.1"))
        }),
        // --- Client-sent forwarding headers are replaced (peer 127.0.0.1 is not trusted).
        case(
            "X-Forwarded-Host replaced",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: evil.example\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-host", Some("h"))),
        case(
            "X-Forwarded-Proto replaced",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-proto", Some("http"))),
        case(
            "X-Forwarded-For replaced",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-for", Some("127.0.0.1"))),
        case(
            "two X-Forwarded-For replaced by one",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-for", Some("127.0.0.1"))),
        case(
            "Connection names X-Forwarded-For",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For\r\n\r\n",
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-for", Some("127.0.0.1"))),
        case(
            "Connection-nominated header removed",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\r\n",
            Status(200),
        )
        .check(|s| no_header(s, "x-secret")),
        case(
            "Connection names Content-Length",
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
            OneOf(&[200, 400]),
        ),
        case(
            "Connection names Host",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Host\r\n\r\n",
            OneOf(&[200, 400]),
        ),
        case(
            "hop-by-hop headers removed",
            "GET / HTTP/1.1\r\nHost: h\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\r\n",
            Status(200),
        )
        .check(|s| {
            no_header(s, "keep-alive")?;
            no_header(s, "proxy-connection")?;
            no_header(s, "proxy-authorization")
        }),
        // httpoxy: a CGI-style app would read `Proxy` as its HTTP_PROXY.
        case(
            "Proxy header removed (httpoxy)",
            "GET / HTTP/1.1\r\nHost: h\r\nProxy: http://evil.example:8080\r\n\r\n",
            Status(200),
        )
        .check(|s| no_header(s, "proxy")),
        // --- Sizes: 8 KiB per line, 32 KiB in all, 100 headers, 8 KiB of URI.
        case(
            "header line just under 8 KiB",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(8000)),
            Status(200),
        ),
        case(
            "header line over 8 KiB",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(9000)),
            Status(431),
        ),
        case(
            "header name over 8 KiB",
            format!("GET / HTTP/1.1\r\nHost: h\r\n{}: 1\r\n\r\n", "X".repeat(9000)),
            Status(431),
        ),
        case(
            "64 KiB header line",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(64 << 10)),
            StatusOrClose(431),
        ),
        case(
            "200 KiB header line",
            format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "a".repeat(200 << 10)),
            StatusOrClose(431),
        ),
        case(
            "headers under 32 KiB in all",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..4).map(|i| format!("X-{i}: {}\r\n", "a".repeat(7000))).collect::<String>()
            ),
            Status(200),
        ),
        case(
            "headers over 32 KiB in all",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..5).map(|i| format!("X-{i}: {}\r\n", "a".repeat(7000))).collect::<String>()
            ),
            Status(431),
        ),
        case(
            "99 headers",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..98).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            Status(200),
        ),
        case(
            "100 headers",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..99).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            Status(200),
        ),
        case(
            "101 headers",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..100).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            Status(431),
        ),
        case(
            "1000 headers",
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                (0..1000).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            ),
            Status(431),
        ),
        case(
            "URI just under 8 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(8000)),
            Status(200),
        ),
        case(
            "URI over 8 KiB",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000)),
            Status(414),
        ),
        case(
            "64 KiB URI",
            format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(64 << 10)),
            StatusOrClose(414),
        ),
        case(
            "9 KiB method",
            format!("{} / HTTP/1.1\r\nHost: h\r\n\r\n", "G".repeat(9000)),
            OneOf(&[400, 414, 431, 501]),
        ),
        // --- Slow senders (bounded by the 1 s header read timeout).
        case("silent connection", "", StatusOrClose(408)),
        case("head never finished", "GET / HTTP/1.1\r\nHost: h\r\n", StatusOrClose(408)),
        case("request line never finished", "GET / HTTP/1.1", StatusOrClose(408)),
        case("h2 preface stalled", "PRI * HTTP/2.0\r\n", StatusOrClose(408)),
        case(
            "slow but in time",
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            Status(200),
        )
        .paced(Pace::Drip {
            chunk: 4,
            gap: Duration::from_millis(20),
        }),
        case(
            "drip past the header timeout",
            format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", "X: 1\r\n".repeat(40)),
            StatusOrClose(408),
        )
        .paced(Pace::Drip {
            chunk: 1,
            gap: Duration::from_millis(25),
        }),
    ];

    // --- Content-Length values other than one plain decimal number: 400.
    for (name, value) in [
        ("signed +", "+5"),
        ("signed -", "-5"),
        ("negative one", "-1"),
        ("hex", "0x5"),
        ("decimal point", "5.0"),
        ("exponent", "5e0"),
        ("empty", ""),
        ("inner space", "5 5"),
        ("letters", "five"),
        ("trailing garbage", "5x"),
        ("quoted", "\"5\""),
        ("overflow u64", "18446744073709551616"),
        ("huge", "99999999999999999999999999"),
        ("NUL after digits", "5\x00"),
        ("tab inside", "5\t5"),
    ] {
        c.push(case(
            &format!("Content-Length {name}"),
            format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {value}\r\n\r\nhello"),
            Status(400),
        ));
    }

    // Leading zeros are still one plain decimal number (RFC 9110 `1*DIGIT`): every reader
    // agrees on the length, so refusing it is allowed but not needed.
    c.push(case(
        "Content-Length leading zeros",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 005\r\n\r\nhello",
        OneOf(&[200, 400]),
    ));

    // --- Transfer-Encoding obfuscations, alone: 501 (or 400 where the value is malformed).
    for (name, value) in [
        ("xchunked", "xchunked"),
        ("chunkedx", "chunkedx"),
        ("identity", "identity"),
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("quoted", "\"chunked\""),
        ("with parameter", "chunked;q=1"),
        ("comma first", ",chunked"),
        ("chunked comma", "chunked,"),
        ("chunked, identity", "chunked, identity"),
        ("identity, chunked", "identity, chunked"),
        ("x-chunked", "x-chunked"),
        ("chunk", "chunk"),
        ("empty", ""),
        ("dotted", "chunked."),
    ] {
        c.push(case(
            &format!("Transfer-Encoding {name}"),
            format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n0\r\n\r\n"),
            OneOf(&[400, 501]),
        ));
    }
    for (name, value) in [("upper case", "CHUNKED"), ("mixed case", "Chunked")] {
        // Coding names are case-insensitive (RFC 9112 §7): the same single coding.
        c.push(case(
            &format!("Transfer-Encoding {name}"),
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
            OneOf(&[200, 501]),
        ));
    }

    // --- Bad chunk sizes: 400, or a close once the head went upstream.
    for (name, size) in [
        ("non-hex", "zz"),
        ("0x prefix", "0x5"),
        ("negative", "-5"),
        ("plus sign", "+5"),
        ("overflow", "fffffffffffffffffffff"),
        ("empty", ""),
        ("space inside", "5 5"),
        ("space before", " 5"),
        ("bare CR after", "5\r"),
    ] {
        c.push(case(
            &format!("chunk size {name}"),
            format!(
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n"
            ),
            StatusOrClose(400),
        ));
    }

    // --- Control characters in a header value (tab is allowed): 400.
    for b in (0x00u8..0x20).chain([0x7f]) {
        if matches!(b, b'\t' | b'\n' | b'\r') {
            continue;
        }
        let mut bytes = b"GET / HTTP/1.1\r\nHost: h\r\nX: a".to_vec();
        bytes.push(b);
        bytes.extend_from_slice(b"b\r\n\r\n");
        c.push(case(
            &format!("control 0x{b:02x} in a value"),
            bytes,
            Status(400),
        ));
    }

    // --- Control characters in the target: 400.
    for b in (0x00u8..0x20).chain([0x7f]) {
        if matches!(b, b'\n' | b'\r' | b' ') {
            continue;
        }
        let mut bytes = b"GET /a".to_vec();
        bytes.push(b);
        bytes.extend_from_slice(b"b HTTP/1.1\r\nHost: h\r\n\r\n");
        c.push(case(
            &format!("control 0x{b:02x} in the target"),
            bytes,
            Status(400),
        ));
    }

    // --- Separators and controls in a header name: 400.
    for b in b"\"(),/;<=>?@[\\]{}\x00\x01\x7f".iter().copied() {
        let mut bytes = b"GET / HTTP/1.1\r\nHost: h\r\nX".to_vec();
        bytes.push(b);
        bytes.extend_from_slice(b"Y: 1\r\n\r\n");
        c.push(case(
            &format!("0x{b:02x} in a header name"),
            bytes,
            Status(400),
        ));
    }

    c.extend(h2_cases());
    c
}

/// Frame abuse over h2c (prior knowledge). Connection errors get GOAWAY, stream errors
/// RST_STREAM (RFC 9113 §5.4); requests that parse are held to the same rules as HTTP/1.
fn h2_cases() -> Vec<Case> {
    use h2::*;
    let hello = || get(1, "/", &[]);
    vec![
        h2c("h2 GET", vec![hello()], Status(200)),
        h2c(
            "h2 POST with body",
            vec![
                frame(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &block(&[
                        (":method", "POST"),
                        (":scheme", "http"),
                        (":authority", "h"),
                        (":path", "/"),
                        ("content-length", "5"),
                    ]),
                ),
                frame(DATA, END_STREAM, 1, b"hello"),
            ],
            Status(200),
        )
        .check(|s| body_is(s, b"hello")),
        h2c(
            "h2 DATA longer than content-length",
            vec![
                frame(
                    HEADERS,
                    END_HEADERS,
                    1,
                    &block(&[
                        (":method", "POST"),
                        (":scheme", "http"),
                        (":authority", "h"),
                        (":path", UNANSWERED),
                        ("content-length", "1"),
                    ]),
                ),
                frame(DATA, END_STREAM, 1, SMUGGLED.as_bytes()),
            ],
            H2Refused,
        ),
        h2c(
            "h2 SETTINGS length not a multiple of 6",
            vec![frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS on a stream",
            vec![frame(SETTINGS, 0, 1, &[])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS ENABLE_PUSH = 2",
            vec![settings(&[(0x2, 2)])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS INITIAL_WINDOW_SIZE too large",
            vec![settings(&[(0x4, 0x8000_0000)])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS MAX_FRAME_SIZE too small",
            vec![settings(&[(0x5, 100)])],
            GoAway,
        ),
        h2c(
            "h2 SETTINGS ACK with payload",
            vec![frame(SETTINGS, ACK, 0, &[0; 6])],
            GoAway,
        ),
        h2c(
            "h2 PING of 7 bytes",
            vec![frame(PING, 0, 0, &[0; 7])],
            GoAway,
        ),
        h2c(
            "h2 PING on a stream",
            vec![frame(PING, 0, 1, &[0; 8])],
            GoAway,
        ),
        h2c(
            "h2 WINDOW_UPDATE of zero on the connection",
            vec![frame(WINDOW_UPDATE, 0, 0, &[0; 4])],
            GoAway,
        ),
        h2c(
            "h2 WINDOW_UPDATE overflowing the window",
            vec![
                frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
                frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
            ],
            GoAway,
        ),
        h2c(
            "h2 HEADERS on stream 0",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                0,
                &block(&[(":method", "GET")]),
            )],
            GoAway,
        ),
        h2c(
            "h2 HEADERS on an even stream",
            vec![get(2, "/", &[])],
            GoAway,
        ),
        h2c(
            "h2 stream ids going down",
            vec![get(5, UNANSWERED, &[]), get(3, "/", &[])],
            GoAway,
        ),
        h2c(
            "h2 CONTINUATION without HEADERS",
            vec![frame(CONTINUATION, END_HEADERS, 1, &block(&[("x", "1")]))],
            GoAway,
        ),
        h2c(
            "h2 other frame inside a header block",
            vec![
                frame(HEADERS, END_STREAM, 1, &block(&[(":method", "GET")])),
                frame(PING, 0, 0, &[0; 8]),
            ],
            GoAway,
        ),
        h2c(
            "h2 bad HPACK index",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0xff, 0xff, 0xff, 0x0f],
            )],
            GoAway,
        ),
        h2c(
            "h2 padding longer than the frame",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM | PADDED,
                1,
                &[200, 0x82],
            )],
            GoAway,
        ),
        h2c(
            "h2 DATA on an idle stream",
            vec![frame(DATA, END_STREAM, 3, b"x")],
            GoAway,
        ),
        h2c(
            "h2 RST_STREAM on an idle stream",
            vec![frame(RST_STREAM, 0, 3, &[0, 0, 0, 8])],
            GoAway,
        ),
        h2c(
            "h2 frame over the maximum size",
            vec![frame(DATA, 0, 1, &vec![0; 16_385])],
            GoAway,
        ),
        h2c(
            "h2 stream depends on itself",
            vec![frame(PRIORITY, 0, 1, &[0, 0, 0, 1, 16])],
            H2Refused,
        ),
        h2c(
            "h2 upper-case header name",
            vec![get(1, "/", &[("X-Upper", "1")])],
            H2Refused,
        ),
        h2c(
            "h2 connection header",
            vec![get(1, "/", &[("connection", "keep-alive")])],
            H2Refused,
        ),
        h2c(
            "h2 transfer-encoding header",
            vec![get(1, "/", &[("transfer-encoding", "chunked")])],
            H2Refused,
        ),
        h2c(
            "h2 TE other than trailers",
            vec![get(1, "/", &[("te", "gzip")])],
            H2Refused,
        ),
        h2c(
            "h2 missing :path",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &block(&[(":method", "GET"), (":scheme", "http"), (":authority", "h")]),
            )],
            H2Refused,
        ),
        h2c(
            "h2 pseudo-header after a regular one",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &block(&[
                    (":method", "GET"),
                    ("x", "1"),
                    (":path", "/"),
                    (":scheme", "http"),
                    (":authority", "h"),
                ]),
            )],
            H2Refused,
        ),
        h2c(
            "h2 NUL in a value",
            vec![get(1, "/", &[("x", "a\0b")])],
            H2Refused,
        ),
        h2c(
            "h2 CR LF in a value",
            vec![get(1, "/", &[("x", "a\r\nx-injected: 1")])],
            H2Refused,
        ),
        h2c(
            "h2 :authority and a different host",
            vec![get(1, "/", &[("host", "other.example")])],
            H2Refused,
        ),
        h2c(
            "h2 TRACE",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &block(&[
                    (":method", "TRACE"),
                    (":scheme", "http"),
                    (":authority", "h"),
                    (":path", "/"),
                ]),
            )],
            Status(405),
        ),
        h2c(
            "h2 CONNECT",
            vec![frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &block(&[(":method", "CONNECT"), (":authority", "h:443")]),
            )],
            Status(405),
        ),
        h2c(
            "h2 underscore header dropped",
            vec![get(1, "/", &[("x_foo", "1")])],
            Status(200),
        )
        .check(|s| no_header(s, "x_foo")),
        h2c(
            "h2 x-forwarded-host replaced",
            vec![get(1, "/", &[("x-forwarded-host", "evil.example")])],
            Status(200),
        )
        .check(|s| header_is(s, "x-forwarded-host", Some("h"))),
        h2c(
            "h2 Proxy header removed (httpoxy)",
            vec![get(1, "/", &[("proxy", "http://evil.example:8080")])],
            Status(200),
        )
        .check(|s| no_header(s, "proxy")),
        h2c(
            "h2 header list over 32 KiB",
            vec![get(
                1,
                "/",
                &(0..5)
                    .map(|_| ("x-big", "a".repeat(7000)))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|(n, v)| (*n, v.as_str()))
                    .collect::<Vec<_>>(),
            )],
            H2Refused,
        ),
        h2c(
            "h2 rapid reset",
            (0..500u32)
                .flat_map(|i| {
                    let id = 2 * i + 3;
                    [
                        get(id, UNANSWERED, &[]),
                        frame(RST_STREAM, 0, id, &[0, 0, 0, 8]),
                    ]
                })
                .chain([get(1001, "/", &[])])
                .collect(),
            H2Refused,
        ),
        h2c(
            "h2 PING flood then a request",
            (0..1000u64)
                .map(|i| frame(PING, 0, 0, &i.to_be_bytes()))
                .chain([hello()])
                .collect(),
            Status(200),
        ),
    ]
}

/// What a case produced, in the vocabulary of [`Expect`].
#[derive(Debug)]
enum Got {
    Statuses(Vec<(u16, bool)>),
    Closed,
    Silent,
    Garbage(String),
    Reset(u32),
    GoAway(u32),
    /// The connection (or its TLS handshake) could not be made.
    NoConnection(String),
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Statuses(s) => {
                let list: Vec<String> = s
                    .iter()
                    .map(|(code, fwd)| format!("{code}{}", if *fwd { " (forwarded)" } else { "" }))
                    .collect();
                write!(f, "{}", list.join(", "))
            }
            Got::Closed => f.write_str("close"),
            Got::Silent => f.write_str("nothing (connection left open)"),
            Got::Garbage(g) => write!(f, "unparseable reply {g:?}"),
            Got::Reset(code) => write!(f, "RST_STREAM 0x{code:x}"),
            Got::GoAway(code) => write!(f, "GOAWAY 0x{code:x}"),
            Got::NoConnection(e) => write!(f, "no connection: {e}"),
        }
    }
}

/// Whether `got` is what `expect` allows. A 200 must come from the upstream, and any other
/// status from wakeway itself.
fn matches(expect: Expect, got: &Got) -> bool {
    let status_ok = |want: u16, (code, fwd): (u16, bool)| code == want && fwd == (want == 200);
    match (expect, got) {
        (Status(want), Got::Statuses(s)) => s.len() == 1 && status_ok(want, s[0]),
        (OneOf(any), Got::Statuses(s)) => s.len() == 1 && any.iter().any(|w| status_ok(*w, s[0])),
        (StatusOrClose(want), Got::Statuses(s)) => s.len() == 1 && status_ok(want, s[0]),
        (StatusOrClose(_), Got::Closed) => true,
        (Seq(want), Got::Statuses(s)) => {
            s.len() == want.len() && want.iter().zip(s).all(|(w, g)| status_ok(*w, *g))
        }
        (GoAway, Got::GoAway(code)) => *code != h2::NO_ERROR,
        (H2Refused, Got::Reset(_) | Got::GoAway(_) | Got::Closed) => true,
        (H2Refused, Got::Statuses(s)) => s.len() == 1 && (400..500).contains(&s[0].0) && !s[0].1,
        _ => false,
    }
}

/// The number of final responses to read for `expect`.
fn wanted(expect: Expect) -> usize {
    match expect {
        Seq(s) => s.len(),
        _ => 1,
    }
}

const CASE_DEADLINE: Duration = Duration::from_secs(4);

/// How the cases reach wakeway.
enum Via {
    /// Plain TCP: HTTP/1 as written, h2 by prior knowledge (h2c).
    Plain(SocketAddr),
    /// The HTTPS listener, with SNI [`TLS_NAME`]: h2 when ALPN agreed on `h2`, HTTP/1 when it
    /// agreed on `http/1.1`.
    Tls {
        addr: SocketAddr,
        h2: Arc<ClientConfig>,
        http1: Arc<ClientConfig>,
    },
}

/// The name the test certificate is for, and the `:authority` / `Host` of the cases.
const TLS_NAME: &str = "h";

impl Via {
    fn scheme(&self) -> &'static str {
        match self {
            Via::Plain(_) => "http",
            Via::Tls { .. } => "https",
        }
    }

    /// A TLS connection on which ALPN chose `h2` (or `http/1.1`).
    async fn tls(&self, want_h2: bool) -> Result<TlsStream<TcpStream>, String> {
        let Via::Tls { addr, h2, http1 } = self else {
            unreachable!("a plain listener has no TLS")
        };
        let config = if want_h2 { h2 } else { http1 }.clone();
        let stream = tls::connect(*addr, TLS_NAME, config).await?;
        let want = if want_h2 { "h2" } else { "http/1.1" };
        match tls::alpn(&stream) {
            Some(p) if p == want => Ok(stream),
            other => Err(format!("ALPN chose {other:?}, not {want}")),
        }
    }
}

async fn run_case(via: &Via, case: &Case) -> Got {
    if case.h2 {
        let stream = h2_stream(case);
        let reply = match via {
            Via::Plain(addr) => h2::h2_exchange(*addr, &case.bytes, stream, CASE_DEADLINE).await,
            Via::Tls { .. } => match via.tls(true).await {
                Ok(conn) => h2::h2_exchange_on(conn, &case.bytes, stream, CASE_DEADLINE).await,
                Err(e) => return Got::NoConnection(e),
            },
        };
        return match reply {
            H2Reply::Response { status, forwarded } => Got::Statuses(vec![(status, forwarded)]),
            H2Reply::Reset(code) => Got::Reset(code),
            H2Reply::GoAway(code) => Got::GoAway(code),
            H2Reply::Closed => Got::Closed,
            H2Reply::Silent => Got::Silent,
        };
    }
    let want = wanted(case.expect);
    let reply = match via {
        Via::Plain(addr) => {
            raw::exchange(*addr, &case.bytes, &case.pace, want, CASE_DEADLINE).await
        }
        Via::Tls { .. } => match via.tls(false).await {
            Ok(conn) => raw::exchange_on(conn, &case.bytes, &case.pace, want, CASE_DEADLINE).await,
            Err(e) => return Got::NoConnection(e),
        },
    };
    match reply {
        Reply::Responses(r) => Got::Statuses(r.iter().map(|r| (r.status, r.forwarded())).collect()),
        Reply::Closed => Got::Closed,
        Reply::Silent => Got::Silent,
        Reply::Garbage(g) => {
            Got::Garbage(String::from_utf8_lossy(&g[..g.len().min(120)]).into_owned())
        }
    }
}

/// A good request on a new connection: forwarded, with its own answer.
async fn probe(via: &Via) -> Result<(), String> {
    let bytes = b"GET /probe HTTP/1.1\r\nHost: h\r\n\r\n";
    let reply = match via {
        Via::Plain(addr) => raw::exchange(*addr, bytes, &Pace::AtOnce, 1, CASE_DEADLINE).await,
        Via::Tls { .. } => {
            let conn = via.tls(false).await?;
            raw::exchange_on(conn, bytes, &Pace::AtOnce, 1, CASE_DEADLINE).await
        }
    };
    match &reply {
        Reply::Responses(r) if r[0].forwarded() && r[0].body.ends_with(b" /probe") => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// The stream whose fate decides an h2 case: the last HEADERS frame's stream.
fn h2_stream(case: &Case) -> u32 {
    let mut i = 0;
    let mut last = 1;
    let b = &case.bytes;
    while i + 9 <= b.len() {
        let len = (usize::from(b[i]) << 16) | (usize::from(b[i + 1]) << 8) | usize::from(b[i + 2]);
        let id = u32::from_be_bytes([b[i + 5], b[i + 6], b[i + 7], b[i + 8]]) & 0x7fff_ffff;
        if b[i + 3] == h2::HEADERS && id != 0 {
            last = id;
        }
        i += 9 + len;
    }
    last
}

/// wakeway in front of `upstream` for every host, with `extra_proxy` added to `[proxy]`.
fn config(upstream: &RawUpstream, extra_proxy: &str) -> String {
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
header_read_timeout = "{HEADER_READ_TIMEOUT}"
{extra_proxy}

[admin]
listen = "127.0.0.1:0"

[[service]]
name = "raw"
hosts = ["*"]
upstreams = ["{}"]

[service.health]
kind = "tcp"
"#,
        upstream.addr
    )
}

fn assert_unique_names(cases: &[Case]) {
    let mut names = std::collections::HashSet::new();
    for c in cases {
        assert!(
            names.insert(c.name.as_str()),
            "case name {:?} is used twice",
            c.name
        );
    }
}

/// Replays `cases` through `via`, each followed by a good request, and returns what went wrong:
/// a wrong answer, a request boundary the upstream saw that wakeway did not, or a forwarded head
/// with more than one reading.
async fn replay(via: &Via, upstream: &RawUpstream, cases: &[Case]) -> Vec<String> {
    let mut failures: Vec<String> = Vec::new();
    let mut forwarded_total = counted(upstream);
    for case in cases {
        let before = upstream.count();
        let before_counted = counted(upstream);
        let got = run_case(via, case).await;
        if !matches(case.expect, &got) {
            failures.push(format!(
                "{}: expected {:?}, got {got}",
                case.name, case.expect
            ));
        }
        let forwarded = match &got {
            Got::Statuses(s) => s.iter().filter(|(_, fwd)| *fwd).count(),
            _ => 0,
        };
        forwarded_total += forwarded;

        // A good request on a new connection still works, and gets its own answer.
        match probe(via).await {
            Ok(()) => forwarded_total += 1,
            Err(e) => failures.push(format!("{}: the next good request failed: {e}", case.name)),
        }

        // The upstream read exactly the requests wakeway answered with a forwarded response.
        let settled = wait_until_count(upstream, forwarded_total).await;
        if settled != forwarded_total {
            let seen: Vec<String> = upstream.requests()[before..]
                .iter()
                .map(|s| format!("{} {}", s.method, s.target))
                .collect();
            failures.push(format!(
                "{}: the upstream read {} requests but the client got {} forwarded answers (upstream saw: {seen:?})",
                case.name,
                settled - before_counted,
                forwarded_total - before_counted,
            ));
            forwarded_total = settled;
        }
        // The head wakeway forwarded for this case has one reading, and the case's own check.
        for seen in &upstream.requests()[before..] {
            if seen.target.contains("smuggled") {
                failures.push(format!(
                    "{}: the upstream read a smuggled request: {:?}",
                    case.name,
                    String::from_utf8_lossy(&seen.head)
                ));
            }
            let mut problems = Vec::new();
            // The instance learns which listener the client used.
            if let Err(e) = header_is(seen, "x-forwarded-proto", Some(via.scheme())) {
                problems.push(e);
            }
            if seen.target != "/probe" {
                problems.extend(seen.framing_problems());
            }
            if let Some(check) = case.check
                && seen.target != "/probe"
                && let Err(e) = check(seen)
            {
                problems.push(e);
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{}: forwarded head is wrong: {}\n    head: {:?}",
                    case.name,
                    problems.join("; "),
                    String::from_utf8_lossy(&seen.head)
                ));
            }
        }
    }
    failures
}

fn fail_if_any(failures: &[String], total: usize) {
    if !failures.is_empty() {
        panic!(
            "{} of {} cases failed:\n  {}",
            failures.len(),
            total,
            failures.join("\n  ")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus() {
    let upstream = RawUpstream::start().await;
    let wakeway = Wakeway::start_config(&config(&upstream, "")).await;
    wakeway.wait_ready("raw").await;

    let cases = cases();
    assert!(
        cases.len() >= 200,
        "the corpus has only {} cases",
        cases.len()
    );
    assert_unique_names(&cases);
    let failures = replay(&Via::Plain(wakeway.proxy), &upstream, &cases).await;
    fail_if_any(&failures, cases.len());
}

/// The HTTP/1 cases replayed over TLS as well: every smuggling shape (framing headers, chunked
/// bodies, `_` names standing in for real ones), which must get the same answer over HTTPS.
fn also_over_tls(case: &Case) -> bool {
    let name = &case.name;
    matches!(case.pace, Pace::AtOnce)
        && (name.contains('_')
            || name.starts_with("CL")
            || name.starts_with("TE")
            || name.contains("chunk")
            || name.contains("pipelined"))
}

/// The h2 frame-abuse cases over TLS (ALPN `h2`) with the same expectations as over h2c, the
/// HTTP/1 smuggling cases over TLS (ALPN `http/1.1`) with the same answers as plain, and what
/// only TLS has: handshakes that stall or never start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_over_tls() {
    let upstream = RawUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let leaf = ca.leaf(&[TLS_NAME]);
    let tls_config = format!(
        "\n[proxy.tls]\nlisten = \"127.0.0.1:0\"\n{}",
        certificate_toml(&[TLS_NAME], &leaf.write(dir.path(), "h"), true)
    );
    let mut wakeway = Wakeway::start_config(&config(&upstream, &tls_config)).await;
    let https = wakeway.proc.listening_addr("https").await;
    wakeway.wait_ready("raw").await;
    let via = Via::Tls {
        addr: https,
        h2: ca.client(&["h2"]),
        http1: ca.client(&["http/1.1"]),
    };

    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.h2 || also_over_tls(c))
        .collect();
    let h2_count = cases.iter().filter(|c| c.h2).count();
    assert!(
        h2_count >= 40 && cases.len() - h2_count >= 30,
        "only {h2_count} h2 and {} HTTP/1 cases over TLS",
        cases.len() - h2_count
    );
    let mut failures = replay(&via, &upstream, &cases).await;

    let tls_cases = tls_cases(&via, https).await;
    for (name, result) in &tls_cases {
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
        if let Err(e) = probe(&via).await {
            failures.push(format!("{name}: the next good request failed: {e}"));
        }
    }
    fail_if_any(&failures, cases.len() + tls_cases.len());
}

/// How a connection that is sent `bytes` (or nothing) ends: the bytes that came back before
/// the close, or `Err` if it was still open at the deadline.
async fn read_to_close<S>(mut conn: S, bytes: &[u8]) -> Result<Vec<u8>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = conn.write_all(bytes).await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let until = tokio::time::Instant::now() + CASE_DEADLINE;
    loop {
        match tokio::time::timeout_at(until, conn.read(&mut chunk)).await {
            Err(_) => {
                return Err(format!(
                    "still open after {CASE_DEADLINE:?} (header_read_timeout is {HEADER_READ_TIMEOUT}); it sent {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Closed without an HTTP answer: what comes back to bytes that are not TLS is at most an alert.
fn closed_without_http(result: Result<Vec<u8>, String>) -> Result<(), String> {
    let got = result?;
    if got.windows(5).any(|w| w == b"HTTP/") {
        return Err(format!(
            "answered HTTP on the TLS port: {:?}",
            String::from_utf8_lossy(&got)
        ));
    }
    Ok(())
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// Attacks on the handshake itself, each expected to end in a close within the header read
/// timeout, wakeway serving on afterwards.
async fn tls_cases(via: &Via, https: SocketAddr) -> Vec<(&'static str, Result<(), String>)> {
    let mut out = Vec::new();
    out.push((
        "TCP connect, no ClientHello",
        closed_without_http(read_to_close(tcp(https).await, b"").await),
    ));
    // A record header announcing 512 bytes of ClientHello, then nothing.
    out.push((
        "ClientHello cut short",
        closed_without_http(read_to_close(tcp(https).await, &[0x16, 0x03, 0x01, 0x02, 0x00]).await),
    ));
    out.push((
        "plain HTTP instead of a ClientHello",
        closed_without_http(
            read_to_close(tcp(https).await, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await,
        ),
    ));
    out.push((
        "h2c preface instead of a ClientHello",
        closed_without_http(read_to_close(tcp(https).await, h2::H2_PREFACE).await),
    ));
    out.push((
        "a TLS record of garbage",
        closed_without_http(
            read_to_close(
                tcp(https).await,
                &[0x16, 0x03, 0x01, 0x00, 0x04, 1, 2, 3, 4],
            )
            .await,
        ),
    ));
    out.push((
        "binary garbage",
        closed_without_http(read_to_close(tcp(https).await, &[0u8; 64]).await),
    ));
    // After the handshake a client that says nothing is timed out like a plain one.
    out.push((
        "handshake (http/1.1) then silence",
        match via.tls(false).await {
            Ok(conn) => match raw::exchange_on(conn, b"", &Pace::AtOnce, 1, CASE_DEADLINE).await {
                Reply::Closed => Ok(()),
                Reply::Responses(r) if r.len() == 1 && r[0].status == 408 => Ok(()),
                other => Err(format!("expected 408 or a close, got {other:?}")),
            },
            Err(e) => Err(e),
        },
    ));
    out
}

/// Over TLS the h2 connection preface plays the part of the request line: a client that
/// completes the handshake, agrees on `h2` and then sends nothing (or part of the preface) is
/// closed by `header_read_timeout`, as an h2c client that stalls in its preface is on the plain
/// listener ("h2 preface stalled" in the corpus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_without_a_preface_is_closed_by_the_header_read_timeout() {
    let upstream = RawUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let leaf = ca.leaf(&[TLS_NAME]);
    let tls_config = format!(
        "\n[proxy.tls]\nlisten = \"127.0.0.1:0\"\n{}",
        certificate_toml(&[TLS_NAME], &leaf.write(dir.path(), "h"), true)
    );
    let mut wakeway = Wakeway::start_config(&config(&upstream, &tls_config)).await;
    let https = wakeway.proc.listening_addr("https").await;
    wakeway.wait_ready("raw").await;
    let via = Via::Tls {
        addr: https,
        h2: ca.client(&["h2"]),
        http1: ca.client(&["http/1.1"]),
    };
    for (name, sent) in [
        ("handshake (h2) then silence", &b""[..]),
        ("handshake (h2) then half a preface", &h2::H2_PREFACE[..10]),
    ] {
        let conn = via.tls(true).await.unwrap();
        if let Err(e) = read_to_close(conn, sent).await {
            panic!("{name}: {e}");
        }
        probe(&via).await.unwrap();
    }
}

/// Waits (bounded) until the upstream has read `want` requests; returns the count then, which
/// is larger than `want` at once if it read more than wakeway forwarded.
async fn wait_until_count(upstream: &RawUpstream, want: usize) -> usize {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while counted(upstream) < want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    counted(upstream)
}

/// Requests under this path may reach the upstream without the client seeing the answer (the
/// client reset the stream, or the body broke after the head was forwarded): they are real
/// requests the client sent, not boundaries wakeway missed.
const UNANSWERED: &str = "/unanswered";

/// The upstream's requests that must each have been answered to the client.
fn counted(upstream: &RawUpstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|s| !s.target.starts_with(UNANSWERED))
        .count()
}
