//! One reading of a client's request head. Everything the upstream will see is decided here:
//! framing, the host, which headers pass. A head that two parsers could read two ways is refused,
//! so the app never sees a request wakeway did not route.

use std::mem::MaybeUninit;

use crate::proxy::error::ProxyError;
use crate::proxy::headers::{self, Disposition, Underscore};
use crate::proxy::trace::{self, TraceContext};

/// The longest method name taken (the registered ones are at most 17 bytes).
const MAX_METHOD_BYTES: usize = 32;

/// Header slots on the stack (the default limit is 100).
const HEADER_SLOTS: usize = 257;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Where a header sits in the connection's read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub fn get(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..(self.start + self.len) as usize]
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
    pub keep: bool,
}

/// What the head says, as offsets into the buffer it was read from.
#[derive(Default)]
pub struct RequestHead {
    pub head_len: usize,
    pub method: Option<Span>,
    /// The path and query to send upstream (origin-form), or `*`.
    pub target: Option<Span>,
    pub host: Option<Span>,
    pub http10: bool,
    pub framing: Option<Framing>,
    pub keep_alive: bool,
    /// `Upgrade` value when the client asked to switch protocols.
    pub upgrade: Option<Span>,
    pub expect_continue: bool,
    pub is_head: bool,
    /// Idempotent per RFC 9110 9.2.2: may be sent again after a reused connection failed.
    pub idempotent: bool,
    pub headers: Vec<HeaderSpan>,
    /// Client-sent `X-Forwarded-For`, kept only when the peer is a trusted proxy.
    pub forwarded_for: Option<Span>,
    /// The one valid `X-Request-Id` the client sent.
    pub request_id: Option<Span>,
    /// The one valid `traceparent`, and its `tracestate` (at most `MAX_TRACESTATE`).
    pub traceparent: Option<(Span, TraceContext)>,
    pub tracestate: Option<Span>,
}

/// A longer `tracestate` is dropped (W3C allows vendors to cap it at 512 bytes).
const MAX_TRACESTATE: u32 = 512;

pub struct Limits {
    pub max_uri_bytes: usize,
    pub max_header_line_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub underscore: Underscore,
}

/// The result of looking at the bytes read so far.
pub enum Parsed {
    Complete,
    /// Need more bytes.
    Partial,
}

impl RequestHead {
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.method.map_or(b"", |s| s.get(buf))
    }

    /// Parses `buf` as a request head. On `Complete`, `self` describes it; on an error the
    /// connection answers the error and closes.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        trusted_peer: bool,
    ) -> Result<Parsed, ProxyError> {
        // One slot more than the limit tells "too many" from "exactly". On the stack for any
        // sensible limit; a configured limit beyond that takes a heap array.
        let mut stack = [const { MaybeUninit::<httparse::Header>::uninit() }; HEADER_SLOTS];
        let mut heap = Vec::new();
        let slots = if limits.max_headers < HEADER_SLOTS {
            &mut stack[..limits.max_headers + 1]
        } else {
            heap.resize_with(limits.max_headers + 1, MaybeUninit::uninit);
            &mut heap[..]
        };
        let mut req = httparse::Request::new(&mut []);
        let status = match req.parse_with_uninit_headers(buf, slots) {
            Ok(s) => s,
            Err(e) => return Err(parse_error(e, &req, buf, limits)),
        };
        let head_len = match status {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                return if buf.len() > limits.max_header_bytes {
                    Err(if req.path.is_none() && buf.len() > limits.max_uri_bytes {
                        ProxyError::UriTooLong
                    } else {
                        ProxyError::HeadersTooLarge("the request head is too large")
                    })
                } else {
                    Ok(Parsed::Partial)
                };
            }
        };
        if head_len > limits.max_header_bytes {
            return Err(ProxyError::HeadersTooLarge("the request head is too large"));
        }
        if req.headers.len() > limits.max_headers {
            return Err(ProxyError::HeadersTooLarge("too many header lines"));
        }
        let base = buf.as_ptr() as usize;
        let span = |s: &[u8]| Span {
            start: (s.as_ptr() as usize - base) as u32,
            len: s.len() as u32,
        };
        let method = req.method.unwrap_or_default();
        let target = req.path.unwrap_or_default();
        if method.len() > MAX_METHOD_BYTES {
            return Err(ProxyError::BadRequest("the method is too long".into()));
        }
        self.head_len = head_len;
        self.http10 = req.version == Some(0);
        self.is_head = method == "HEAD";
        self.idempotent = matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE");
        self.method = Some(span(method.as_bytes()));
        if matches!(method, "TRACE" | "CONNECT") {
            return Err(ProxyError::MethodNotAllowed(method_name(method)));
        }
        if target.len() > limits.max_uri_bytes {
            return Err(ProxyError::UriTooLong);
        }

        // The target: origin-form, `*` for OPTIONS, or absolute-form whose authority must agree
        // with Host (RFC 9112 3.2.2 says the authority wins; a disagreement is refused instead, so
        // an app reading Host cannot be routed somewhere else).
        let mut absolute_authority = None;
        if target.starts_with('/') || (target == "*" && method == "OPTIONS") {
            self.target = Some(span(target.as_bytes()));
        } else if let Some((authority, path)) = split_absolute(target) {
            if !headers::valid_host(authority.as_bytes()) {
                return Err(ProxyError::BadRequest(
                    "the request target's authority is not a valid host".into(),
                ));
            }
            absolute_authority = Some(span(authority.as_bytes()));
            self.target = Some(if path.is_empty() {
                // `http://host` means `/`; the upstream head writer knows.
                Span {
                    start: span(path.as_bytes()).start,
                    len: 0,
                }
            } else {
                span(path.as_bytes())
            });
        } else {
            return Err(ProxyError::BadRequest(
                "the request target is not a path or an absolute URL".into(),
            ));
        }

        self.headers.clear();
        self.host = None;
        self.framing = None;
        self.upgrade = None;
        self.expect_continue = false;
        self.forwarded_for = None;
        self.request_id = None;
        self.traceparent = None;
        self.tracestate = None;
        let (mut ids, mut parents, mut states) = (0, 0, 0);
        let mut connection_close = false;
        let mut connection_keep_alive = false;
        let mut connection_upgrade = false;
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut upgrade = None;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            let value = h.value;
            if name.len() + value.len() + 2 > limits.max_header_line_bytes {
                return Err(ProxyError::HeadersTooLarge("a header line is too long"));
            }
            let mut keep = false;
            match headers::disposition(name) {
                Disposition::Host => {
                    if self.host.is_some() {
                        return Err(ProxyError::BadRequest("more than one Host header".into()));
                    }
                    if !headers::valid_host(value) {
                        return Err(ProxyError::BadRequest(
                            "the Host header is not a valid host".into(),
                        ));
                    }
                    self.host = Some(span(value));
                }
                Disposition::ContentLength => {
                    if content_length.is_some() {
                        return Err(ProxyError::BadRequest(
                            "more than one Content-Length header".into(),
                        ));
                    }
                    content_length = Some(headers::content_length(value).ok_or_else(|| {
                        ProxyError::BadRequest("the Content-Length header is not a number".into())
                    })?);
                }
                Disposition::TransferEncoding => {
                    if chunked {
                        return Err(ProxyError::BadRequest(
                            "more than one Transfer-Encoding header".into(),
                        ));
                    }
                    if !value.eq_ignore_ascii_case(b"chunked") {
                        return Err(ProxyError::NotImplemented(
                            "only `Transfer-Encoding: chunked` is supported",
                        ));
                    }
                    chunked = true;
                }
                Disposition::Connection => {
                    for token in headers::tokens(value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            connection_close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            connection_keep_alive = true;
                        } else if token.eq_ignore_ascii_case(b"upgrade") {
                            connection_upgrade = true;
                        }
                    }
                }
                Disposition::Upgrade => upgrade = Some(span(value)),
                Disposition::Expect => {
                    if value.eq_ignore_ascii_case(b"100-continue") {
                        self.expect_continue = true;
                    } else {
                        return Err(ProxyError::ExpectationFailed);
                    }
                }
                Disposition::ForwardedFor => {
                    if trusted_peer && self.forwarded_for.is_none() {
                        self.forwarded_for = Some(span(value));
                    }
                }
                Disposition::Forwarded => keep = trusted_peer,
                Disposition::RequestId => {
                    ids += 1;
                    if trace::valid_request_id(value) {
                        self.request_id = Some(span(value));
                    }
                }
                Disposition::TraceParent => {
                    parents += 1;
                    self.traceparent = std::str::from_utf8(value)
                        .ok()
                        .and_then(TraceContext::parse)
                        .map(|t| (span(value), t));
                }
                Disposition::TraceState => {
                    states += 1;
                    self.tracestate = Some(span(value));
                }
                Disposition::HopByHop | Disposition::Replaced => {}
                Disposition::Underscore => {
                    if limits.underscore == Underscore::Reject {
                        return Err(ProxyError::BadRequest(format!(
                            "header name `{}` contains `_`",
                            h.name
                        )));
                    }
                }
                Disposition::Pass => keep = true,
            }
            self.headers.push(HeaderSpan {
                name: span(name),
                value: span(value),
                keep,
            });
        }
        // Names the client listed in Connection are hop-by-hop too (RFC 9110 7.6.1), except the
        // ones wakeway itself decides: listing Host or Content-Length must not remove them.
        for i in 0..self.headers.len() {
            let listing = self.headers[i];
            if !listing.name.get(buf).eq_ignore_ascii_case(b"connection") {
                continue;
            }
            for token in headers::tokens(listing.value.get(buf)) {
                for h in self.headers.iter_mut() {
                    if h.keep && h.name.get(buf).eq_ignore_ascii_case(token) {
                        h.keep = false;
                    }
                }
            }
        }

        // Sent twice, each is ambiguous: wakeway's own replaces it.
        if ids > 1 {
            self.request_id = None;
        }
        if parents > 1 {
            self.traceparent = None;
        }
        if states > 1
            || self.traceparent.is_none()
            || self.tracestate.is_some_and(|s| s.len > MAX_TRACESTATE)
        {
            self.tracestate = None;
        }

        if let Some(auth) = absolute_authority {
            match self.host {
                Some(h) if h.get(buf).eq_ignore_ascii_case(auth.get(buf)) => {}
                Some(_) => {
                    return Err(ProxyError::BadRequest(
                        "the request target's authority differs from the Host header".into(),
                    ));
                }
                None => self.host = Some(auth),
            }
        }
        if self.host.is_none() && !self.http10 {
            return Err(ProxyError::BadRequest("missing Host header".into()));
        }
        self.framing = Some(match (content_length, chunked) {
            (Some(_), true) => {
                return Err(ProxyError::BadRequest(
                    "both Content-Length and Transfer-Encoding".into(),
                ));
            }
            (_, true) if self.http10 => {
                return Err(ProxyError::BadRequest(
                    "Transfer-Encoding in an HTTP/1.0 request".into(),
                ));
            }
            (_, true) => Framing::Chunked,
            (Some(0), false) | (None, false) => Framing::None,
            (Some(n), false) => Framing::Length(n),
        });
        self.keep_alive = if self.http10 {
            connection_keep_alive && !connection_close
        } else {
            !connection_close
        };
        if connection_upgrade
            && let Some(u) = upgrade
            && headers::upgrade_protocols(u.get(buf)).next().is_some()
        {
            self.upgrade = Some(u);
        }
        Ok(Parsed::Complete)
    }
}

fn method_name(m: &str) -> &'static str {
    if m == "TRACE" { "TRACE" } else { "CONNECT" }
}

/// `http://authority/path` → (authority, /path).
fn split_absolute(target: &str) -> Option<(&str, &str)> {
    let rest = if target.len() > 7 && target[..7].eq_ignore_ascii_case("http://") {
        &target[7..]
    } else if target.len() > 8 && target[..8].eq_ignore_ascii_case("https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') || path.starts_with('?') {
        return None;
    }
    Some((authority, path))
}

fn parse_error(
    e: httparse::Error,
    req: &httparse::Request,
    buf: &[u8],
    limits: &Limits,
) -> ProxyError {
    match e {
        httparse::Error::TooManyHeaders => ProxyError::HeadersTooLarge("too many header lines"),
        httparse::Error::Version => ProxyError::VersionNotSupported,
        httparse::Error::Token if req.method.is_none() => {
            ProxyError::BadRequest("the method is not a valid token".into())
        }
        httparse::Error::Token | httparse::Error::Status if req.path.is_none() => {
            if buf.len() > limits.max_uri_bytes {
                ProxyError::UriTooLong
            } else {
                ProxyError::BadRequest("the request target is malformed".into())
            }
        }
        httparse::Error::HeaderName => {
            ProxyError::BadRequest("a header name is malformed (or a line is folded)".into())
        }
        httparse::Error::HeaderValue => {
            ProxyError::BadRequest("a header value holds a control character".into())
        }
        httparse::Error::NewLine => ProxyError::BadRequest("a line ends with a bare CR".into()),
        _ => ProxyError::BadRequest(format!("malformed request head: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_uri_bytes: 8192,
            max_header_line_bytes: 8192,
            max_header_bytes: 32768,
            max_headers: 100,
            underscore: Underscore::Drop,
        }
    }

    fn parse(raw: &str) -> Result<RequestHead, ProxyError> {
        let mut h = RequestHead::default();
        match h.parse(raw.as_bytes(), &limits(), false)? {
            Parsed::Complete => Ok(h),
            Parsed::Partial => panic!("partial: {raw:?}"),
        }
    }

    fn status(raw: &str) -> u16 {
        match parse(raw) {
            Ok(_) => 0,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn plain_get() {
        let raw = "GET /a?b HTTP/1.1\r\nHost: x.localhost\r\nX-A: 1\r\n\r\n";
        let h = parse(raw).unwrap();
        assert_eq!(h.target.unwrap().get(raw.as_bytes()), b"/a?b");
        assert_eq!(h.host.unwrap().get(raw.as_bytes()), b"x.localhost");
        assert_eq!(h.framing, Some(Framing::None));
        assert!(h.keep_alive && h.idempotent);
        assert_eq!(h.headers.iter().filter(|h| h.keep).count(), 1);
    }

    #[test]
    fn ambiguous_heads_are_refused() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
            ("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
        ];
        for (raw, want) in cases {
            assert_eq!(status(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn absolute_form_agreeing_with_host_routes_by_it() {
        let raw = "GET http://A.localhost/p HTTP/1.1\r\nHost: a.localhost\r\n\r\n";
        let h = parse(raw).unwrap();
        assert_eq!(h.target.unwrap().get(raw.as_bytes()), b"/p");
    }

    #[test]
    fn underscore_names_are_dropped_and_connection_cannot_remove_host() {
        let raw = "GET / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nConnection: host, x-a\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
        let h = parse(raw).unwrap();
        let kept: Vec<&[u8]> = h
            .headers
            .iter()
            .filter(|h| h.keep)
            .map(|h| h.name.get(raw.as_bytes()))
            .collect();
        assert_eq!(kept, vec![b"X-B".as_slice()]);
        assert!(h.host.is_some());
    }

    #[test]
    fn limits_answer_414_and_431() {
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(&long_uri), 414);
        let long_line = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(status(&long_line), 431);
        let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")),
            431
        );
    }
}
