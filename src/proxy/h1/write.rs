//! The bytes wakeway writes: the head an instance receives, the head a client receives, and
//! wakeway's own error answers. Appended to reused buffers; numbers without allocating.

use super::request::{Framing, HeaderSpan, RequestHead};
use super::response::{BodyFraming, ResponseHead};
use crate::proxy::error::ProxyError;

fn put_num(out: &mut Vec<u8>, n: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

/// The headers that pass on, as they came.
fn put_kept(out: &mut Vec<u8>, headers: &[HeaderSpan], buf: &[u8]) {
    for h in headers.iter().filter(|h| h.keep) {
        out.extend_from_slice(h.name.get(buf));
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.get(buf));
        out.extend_from_slice(b"\r\n");
    }
}

/// The head the instance receives: origin-form target, the client's host, the headers that
/// pass, wakeway's framing, and forwarding headers wakeway vouches for.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    peer_ip: &[u8],
    https: bool,
    fallback_host: &[u8],
    extra: &[u8],
) {
    out.extend_from_slice(head.method(buf));
    out.push(b' ');
    match head.target {
        Some(t) if t.len > 0 => out.extend_from_slice(t.get(buf)),
        _ => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Every forwarded head has exactly one Host: an HTTP/1.0 request without one (routed to the
    // catch-all) gets the service's name.
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(head.host.map_or(fallback_host, |h| h.get(buf)));
    out.extend_from_slice(b"\r\n");
    put_kept(out, &head.headers, buf);
    match head.framing {
        Some(Framing::Length(n)) => {
            out.extend_from_slice(b"Content-Length: ");
            put_num(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Some(Framing::Chunked) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    if let Some(u) = head.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        for (i, p) in crate::proxy::headers::upgrade_protocols(u.get(buf)).enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prior) = head.forwarded_for {
        out.extend_from_slice(prior.get(buf));
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer_ip);
    out.extend_from_slice(if https {
        b"\r\nX-Forwarded-Proto: https\r\n"
    } else {
        b"\r\nX-Forwarded-Proto: http\r\n"
    });
    if let Some(h) = head.host {
        out.extend_from_slice(b"X-Forwarded-Host: ");
        out.extend_from_slice(h.get(buf));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

pub fn write_client_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    buf: &[u8],
    framing: BodyFraming,
    http10: bool,
    close: bool,
    extra: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    put_num(out, resp.status as u64);
    out.push(b' ');
    if let Some(r) = resp.reason {
        out.extend_from_slice(r.get(buf));
    }
    out.extend_from_slice(b"\r\n");
    put_kept(out, &resp.headers, buf);
    match framing {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            put_num(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked if !http10 => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyFraming::None => {
            if let Some(n) = resp.content_length_hint {
                out.extend_from_slice(b"Content-Length: ");
                put_num(out, n);
                out.extend_from_slice(b"\r\n");
            }
        }
        _ => {}
    }
    if resp.status == 101 {
        out.extend_from_slice(b"Connection: upgrade\r\n");
        if let Some(u) = resp.upgrade {
            out.extend_from_slice(b"Upgrade: ");
            out.extend_from_slice(u.get(buf));
            out.extend_from_slice(b"\r\n");
        }
    } else if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// wakeway's own answer (an error): plain text, never an internal address; with the request's
/// id (when it has one) in a header and in the body, for a support ticket to quote.
pub fn write_error(out: &mut Vec<u8>, e: &ProxyError, close: bool, request_id: &[u8]) {
    let status = e.status();
    let mut msg = e.message();
    if let Ok(id) = std::str::from_utf8(request_id)
        && !id.is_empty()
    {
        msg.push_str("\nrequest id: ");
        msg.push_str(id);
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    put_num(out, status.as_u16() as u64);
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    put_num(out, msg.len() as u64 + 1);
    out.extend_from_slice(b"\r\n");
    if let Some(ra) = e.retry_after() {
        out.extend_from_slice(b"Retry-After: ");
        out.extend_from_slice(ra.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if !request_id.is_empty() {
        out.extend_from_slice(b"X-Request-Id: ");
        out.extend_from_slice(request_id);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.as_bytes());
    out.push(b'\n');
}

/// `308` to the same host and target over HTTPS (`redirect_https`).
pub fn write_redirect(out: &mut Vec<u8>, host: &[u8], https_port: Option<u16>, target: &[u8]) {
    let name = crate::proxy::route::strip_port(std::str::from_utf8(host).unwrap_or_default());
    out.extend_from_slice(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://");
    if name.contains(':') {
        // An IPv6 literal keeps its brackets.
        out.push(b'[');
        out.extend_from_slice(name.as_bytes());
        out.push(b']');
    } else {
        out.extend_from_slice(name.as_bytes());
    }
    if let Some(port) = https_port.filter(|p| *p != 443) {
        out.push(b':');
        put_num(out, port as u64);
    }
    if target.is_empty() {
        out.push(b'/');
    } else {
        out.extend_from_slice(target);
    }
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
}
