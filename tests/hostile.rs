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

use common::h2c::{self as h2, H2Reply};
use common::raw::{self, Pace, RawUpstream, Reply, Seen};
use common::tls::{self, TestCa, certificate_toml};
use common::{Wakeway, listen_with, static_service};
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

#[path = "hostile/framing.rs"]
mod framing;
#[path = "hostile/h2.rs"]
mod h2_frames;
#[path = "hostile/harness.rs"]
mod harness;
#[path = "hostile/heads.rs"]
mod heads;

use harness::*;

/// The whole corpus: HTTP/1 framing, HTTP/1 heads, then HTTP/2 frames.
fn cases() -> Vec<Case> {
    let mut c = framing::cases();
    c.extend(heads::cases());
    c.extend(h2_frames::cases());
    c
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
    let (_dir, _wakeway, via, https) = over_tls(&upstream).await;

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
    let (_dir, _wakeway, via, _) = over_tls(&upstream).await;
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
