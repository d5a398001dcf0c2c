//! Raw HTTP/1.1 on both sides of wakeway, for tests about what exactly goes over the wire.
//!
//! - [`RawUpstream`] is an upstream that records the bytes it receives and reads requests the
//!   way a lenient app does (header names folded to lower case with `_` read as `-`, the last
//!   `Content-Length` wins, any `Transfer-Encoding` mentioning `chunked` means chunked). If
//!   wakeway forwards anything ambiguous, this reader finds a request boundary wakeway did not
//!   see. Each request is answered `200` with a body `raw upstream SEQ TARGET`, so a client can
//!   tell a forwarded answer from one wakeway made itself.
//! - [`exchange`] sends raw bytes to a server and reads what comes back: responses, or a close
//!   ([`exchange_on`] does the same over any stream, e.g. TLS).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How long the upstream waits for the rest of a request before giving up on it.
const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The marker a forwarded response's body starts with.
pub const FORWARDED: &str = "raw upstream ";

/// One request as the upstream read it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// 1-based, in the order the upstream finished reading requests.
    pub seq: usize,
    pub conn: usize,
    /// The request head exactly as received, up to and including the blank line.
    pub head: Vec<u8>,
    pub method: String,
    pub target: String,
    pub version: String,
    /// (name as sent, value as sent), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Continuation lines (obs-fold) in the head.
    pub folded: bool,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Seen {
    /// All values of header `name` (ASCII case-insensitive, exact name: `_` is not `-` here).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The value of a header sent once; `None` if absent, `Err` if sent more than once.
    pub fn one(&self, name: &str) -> Result<Option<String>, String> {
        match &self.all(name)[..] {
            [] => Ok(None),
            [v] => Ok(Some(v.clone())),
            many => Err(format!("{name} sent {} times: {many:?}", many.len())),
        }
    }

    /// What is wrong with this head as a forwarded request, if anything: it must have one
    /// reading only (at most one of Content-Length and Transfer-Encoding: chunked, one Host,
    /// token header names, no control characters, no folding).
    pub fn framing_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.folded {
            problems.push("obs-fold continuation line".into());
        }
        if self.version != "HTTP/1.1" && self.version != "HTTP/1.0" {
            problems.push(format!("version {:?}", self.version));
        }
        if self.version == "HTTP/1.0" && !self.all("transfer-encoding").is_empty() {
            problems.push("Transfer-Encoding in an HTTP/1.0 request".into());
        }
        if self.target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            problems.push(format!("control or space in target {:?}", self.target));
        }
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(is_tchar) {
                problems.push(format!("header name {name:?} is not a token"));
            }
            if name.contains('_') {
                problems.push(format!("header name {name:?} contains '_'"));
            }
            if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
                problems.push(format!("control character in {name}: {value:?}"));
            }
        }
        let cl = self.all("content-length");
        let te = self.all("transfer-encoding");
        match (&cl[..], &te[..]) {
            ([], []) => {}
            ([n], []) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {}
            ([], [t]) if t == "chunked" => {}
            _ => problems.push(format!(
                "framing is not exactly one of Content-Length or chunked: content-length {cl:?}, transfer-encoding {te:?}"
            )),
        }
        match self.all("host").len() {
            1 => {}
            n => problems.push(format!("{n} Host headers")),
        }
        problems
    }
}

/// RFC 9110 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the upstream recorded.
#[derive(Default)]
struct Log {
    requests: Vec<Seen>,
    /// Every connection's received bytes, in accept order.
    connections: Vec<Vec<u8>>,
    /// Requests whose head was read but whose body never completed, and why.
    incomplete: Vec<String>,
}

/// A recording HTTP/1.1 upstream on a loopback port.
#[derive(Clone)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl RawUpstream {
    pub async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let accept_log = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = {
                    let mut log = accept_log.lock().unwrap();
                    log.connections.push(Vec::new());
                    log.connections.len() - 1
                };
                tokio::spawn(serve(stream, conn, accept_log.clone()));
            }
        });
        RawUpstream { addr, log }
    }

    /// Requests read so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().requests.len()
    }

    /// Requests that started but never completed, with why.
    pub fn incomplete(&self) -> Vec<String> {
        self.log.lock().unwrap().incomplete.clone()
    }

    /// The bytes received on each connection so far.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.log.lock().unwrap().connections.clone()
    }
}

async fn serve(mut stream: TcpStream, conn: usize, log: Arc<Mutex<Log>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let parsed = loop {
            match parse_request(&buf) {
                Parse::Done(seen, used) => break Some((seen, used)),
                Parse::Bad(why) => {
                    log.lock()
                        .unwrap()
                        .incomplete
                        .push(format!("conn {conn}: {why}"));
                    return;
                }
                Parse::Partial => {}
            }
            let mut chunk = [0u8; 16 << 10];
            let read = tokio::time::timeout(UPSTREAM_READ_TIMEOUT, stream.read(&mut chunk)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {
                    log.lock().unwrap().connections[conn].extend_from_slice(&chunk[..n]);
                    buf.extend_from_slice(&chunk[..n]);
                }
                outcome => {
                    if !buf.is_empty() {
                        let why = match outcome {
                            Err(_) => "timed out".to_string(),
                            Ok(Ok(_)) => "connection closed".to_string(),
                            Ok(Err(e)) => e.to_string(),
                        };
                        log.lock().unwrap().incomplete.push(format!(
                            "conn {conn}: {why} inside a request: {:?}",
                            String::from_utf8_lossy(&buf[..buf.len().min(200)])
                        ));
                    }
                    break None;
                }
            }
        };
        let Some((mut seen, used)) = parsed else {
            return;
        };
        buf.drain(..used);
        let close = seen
            .all("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("close"));
        let body = {
            let mut log = log.lock().unwrap();
            seen.seq = log.requests.len() + 1;
            seen.conn = conn;
            let body = format!("{FORWARDED}{} {}", seen.seq, seen.target);
            log.requests.push(seen);
            body
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

enum Parse {
    Done(Seen, usize),
    Partial,
    Bad(String),
}

/// Lenient request reading, as a permissive app would do it.
fn parse_request(buf: &[u8]) -> Parse {
    let Some(head_end) = find_head_end(buf) else {
        return Parse::Partial;
    };
    let head = &buf[..head_end];
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let version = parts.collect::<Vec<_>>().join(" ");
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut folded = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            folded = true;
            if let Some(last) = headers.last_mut() {
                last.1.push(b' ');
                last.1.extend_from_slice(line.trim().as_bytes());
            }
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        headers.push((name.to_string(), value.trim().as_bytes().to_vec()));
    }
    // The app's reading: `Transfer_Encoding` is `transfer-encoding` to a CGI-style app.
    let app_name = |n: &str| n.trim().to_ascii_lowercase().replace('_', "-");
    let chunked = headers.iter().any(|(n, v)| {
        app_name(n) == "transfer-encoding"
            && String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let length = headers
        .iter()
        .rev()
        .find(|(n, _)| app_name(n) == "content-length")
        .map(|(_, v)| {
            let digits: String = String::from_utf8_lossy(v)
                .chars()
                .filter(|c| c.is_ascii_digit())
                .collect();
            digits.parse::<usize>().unwrap_or(0)
        });
    let rest = &buf[head_end..];
    let (body, used) = if chunked {
        match dechunk(rest) {
            Ok(Some((body, used))) => (body, used),
            Ok(None) => return Parse::Partial,
            Err(why) => {
                return Parse::Bad(format!("bad chunked body after {request_line:?}: {why}"));
            }
        }
    } else if let Some(n) = length {
        if rest.len() < n {
            return Parse::Partial;
        }
        (rest[..n].to_vec(), n)
    } else {
        (Vec::new(), 0)
    };
    Parse::Done(
        Seen {
            seq: 0,
            conn: 0,
            head: head.to_vec(),
            method,
            target,
            version,
            headers,
            folded,
            body,
        },
        head_end + used,
    )
}

/// The end of the head: after the first empty line (CRLF or bare LF line endings).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        let after = nl + 1;
        if buf[after..].starts_with(b"\r\n") {
            return Some(after + 2);
        }
        if buf[after..].starts_with(b"\n") {
            return Some(after + 1);
        }
        i = after;
    }
    None
}

/// Decodes a chunked body; `Ok(None)` when more bytes are needed.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut i = 0;
    loop {
        let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[i..i + nl]);
        let size_text = line.trim_end_matches('\r');
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("chunk size {size_text:?}"))?;
        i += nl + 1;
        if size == 0 {
            // Trailer section up to an empty line.
            loop {
                let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') else {
                    return Ok(None);
                };
                let empty = buf[i..i + nl].iter().all(|&b| b == b'\r');
                i += nl + 1;
                if empty {
                    return Ok(Some((body, i)));
                }
            }
        }
        if buf.len() < i + size {
            return Ok(None);
        }
        body.extend_from_slice(&buf[i..i + size]);
        i += size;
        if buf.len() < i + 1 {
            return Ok(None);
        }
        if buf[i..].starts_with(b"\r\n") {
            i += 2;
        } else if buf[i..].starts_with(b"\n") {
            i += 1;
        } else if buf[i..] == *b"\r" {
            return Ok(None);
        } else {
            return Err("no line end after chunk data".into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client side
// ---------------------------------------------------------------------------------------------

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Whether the raw upstream wrote this (not wakeway itself).
    pub fn forwarded(&self) -> bool {
        self.body.starts_with(FORWARDED.as_bytes())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a client saw after sending its bytes.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Final responses (1xx skipped), in order; then the connection may have closed.
    Responses(Vec<RawResponse>),
    /// The connection closed (or was reset) before any response.
    Closed,
    /// Nothing came back and the connection stayed open until the deadline.
    Silent,
    /// Something came back that is not HTTP/1.x.
    Garbage(Vec<u8>),
}

/// How to send a case's bytes.
#[derive(Debug, Clone)]
pub enum Pace {
    /// All at once.
    AtOnce,
    /// `chunk` bytes at a time with `gap` between writes.
    Drip { chunk: usize, gap: Duration },
    /// All at once, then shut down the write side (the client has nothing more to send).
    ThenShutdown,
}

/// Connects to `addr`, sends `bytes` paced as asked, and reads up to `want` final responses
/// (stops early on close), giving up at `deadline` after the last byte was sent.
pub async fn exchange(
    addr: SocketAddr,
    bytes: &[u8],
    pace: &Pace,
    want: usize,
    deadline: Duration,
) -> Reply {
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => panic!("connect {addr}: {e}"),
    };
    let _ = stream.set_nodelay(true);
    exchange_on(stream, bytes, pace, want, deadline).await
}

/// [`exchange`] on a connection already made: a TLS stream that agreed on `http/1.1` by ALPN,
/// say ([`super::tls::connect`]), to replay the same bytes over HTTPS.
pub async fn exchange_on<S>(
    stream: S,
    bytes: &[u8],
    pace: &Pace,
    want: usize,
    deadline: Duration,
) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    let mut closed = false;
    let write_and_read = async {
        // The server may answer (and close) before all bytes are written: keep reading then.
        let write = async {
            match pace {
                Pace::AtOnce => {
                    let _ = writer.write_all(bytes).await;
                }
                Pace::ThenShutdown => {
                    let _ = writer.write_all(bytes).await;
                    let _ = writer.shutdown().await;
                }
                Pace::Drip { chunk, gap } => {
                    for piece in bytes.chunks((*chunk).max(1)) {
                        if writer.write_all(piece).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(*gap).await;
                    }
                }
            }
        };
        let read = async {
            let mut chunk = [0u8; 16 << 10];
            loop {
                while let Some((resp, used)) = parse_response(&buf) {
                    buf.drain(..used);
                    if resp.status >= 200 {
                        responses.push(resp);
                    }
                }
                if responses.len() >= want {
                    return;
                }
                match reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        closed = true;
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::pin!(read);
        tokio::select! {
            _ = &mut read => {}
            _ = async { write.await; tokio::time::sleep_until(Instant::now() + deadline).await } => {}
        }
    };
    write_and_read.await;
    // A response cut short by the close: whatever is in `buf` is unparsed.
    if !responses.is_empty() {
        return Reply::Responses(responses);
    }
    if !buf.is_empty() {
        return Reply::Garbage(buf);
    }
    if closed { Reply::Closed } else { Reply::Silent }
}

/// One HTTP/1.x response from the front of `buf`, and how many bytes it used.
pub fn parse_response(buf: &[u8]) -> Option<(RawResponse, usize)> {
    let head_end = find_head_end(buf)?;
    let text = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let rest = &buf[head_end..];
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    let (body, used) = if bodiless {
        (Vec::new(), 0)
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(rest).ok()??
    } else if let Some(n) = get("content-length").and_then(|n| n.parse::<usize>().ok()) {
        if rest.len() < n {
            return None;
        }
        (rest[..n].to_vec(), n)
    } else {
        // Delimited by close: only complete once the caller saw EOF; take what is there.
        (rest.to_vec(), rest.len())
    };
    Some((
        RawResponse {
            status,
            headers,
            body,
        },
        head_end + used,
    ))
}
