//! An instance's response head: how its body is framed (RFC 9112 6.3), whether the connection
//! can be reused, and the head the client gets.

use super::request::{HeaderSpan, Span};
use crate::proxy::headers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    /// Until the instance closes the connection.
    Close,
}

#[derive(Debug, Default)]
pub struct ResponseHead {
    pub head_len: usize,
    pub status: u16,
    pub reason: Option<Span>,
    pub framing: Option<BodyFraming>,
    /// The instance will not take another request on this connection.
    pub closes: bool,
    pub upgrade: Option<Span>,
    /// The length a HEAD or 304 answer states, passed on as it is.
    pub content_length_hint: Option<u64>,
    pub headers: Vec<HeaderSpan>,
}

const SLOTS: usize = 100;

#[derive(Debug)]
pub struct BadResponse(pub &'static str);

impl ResponseHead {
    /// `Ok(false)`: need more bytes.
    pub fn parse(&mut self, buf: &[u8], request_is_head: bool) -> Result<bool, BadResponse> {
        let mut slots = [httparse::EMPTY_HEADER; SLOTS];
        let mut resp = httparse::Response::new(&mut slots);
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => return Err(BadResponse("malformed response head")),
        };
        let base = buf.as_ptr() as usize;
        let span = |s: &[u8]| Span {
            start: (s.as_ptr() as usize - base) as u32,
            len: s.len() as u32,
        };
        self.head_len = n;
        self.status = resp.code.unwrap_or(0);
        self.reason = resp.reason.map(|r| span(r.as_bytes()));
        self.headers.clear();
        self.upgrade = None;
        let http10 = resp.version == Some(0);
        let mut close = http10;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        for h in resp.headers.iter() {
            let name = h.name.as_bytes();
            let mut keep = false;
            match headers::disposition(name) {
                headers::Disposition::ContentLength => {
                    let v = headers::content_length(h.value)
                        .ok_or(BadResponse("invalid Content-Length"))?;
                    if length.is_some_and(|l| l != v) {
                        return Err(BadResponse("conflicting Content-Length headers"));
                    }
                    length = Some(v);
                }
                headers::Disposition::TransferEncoding => {
                    if !h.value.eq_ignore_ascii_case(b"chunked") || chunked {
                        return Err(BadResponse("unsupported Transfer-Encoding"));
                    }
                    chunked = true;
                }
                headers::Disposition::Connection => {
                    for t in headers::tokens(h.value) {
                        if t.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                            close = false;
                        }
                    }
                }
                headers::Disposition::Upgrade => self.upgrade = Some(span(h.value)),
                _ => keep = !headers::response_hop_by_hop(name),
            }
            self.headers.push(HeaderSpan {
                name: span(name),
                value: span(h.value),
                keep,
            });
        }
        let no_body = request_is_head
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304;
        self.framing = Some(if no_body {
            BodyFraming::None
        } else if chunked {
            BodyFraming::Chunked
        } else if let Some(n) = length {
            BodyFraming::Length(n)
        } else {
            close = true;
            BodyFraming::Close
        });
        // A HEAD or 304 answer still tells the length of the representation.
        if no_body && let Some(n) = length {
            self.content_length_hint = Some(n);
        } else {
            self.content_length_hint = None;
        }
        self.closes = close;
        Ok(true)
    }
}
