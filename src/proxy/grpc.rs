//! gRPC on the request path: telling a gRPC call from other h2 requests, the client's
//! `grpc-timeout`, and the answer a gRPC client can read when wakeway itself fails the call — a
//! trailers-only response (HTTP 200, `grpc-status`, `grpc-message`), never an HTML or text 5xx.

use std::time::Duration;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::access_line::PendingLine;
use super::body::{BodyError, ProxyBody};
use super::error::{Code, ProxyError, code_header};
use crate::service::Service;

/// What a call the client left is counted as.
const CANCELLED: u8 = 1;
/// A status outside 0-16, or none where one was due.
const UNKNOWN: u8 = 2;

/// How long a gRPC call's response may go without a frame (`upstream_read_timeout` for the
/// rest): a year, as good as none, and still a valid timer deadline.
pub const STREAM_SILENCE: Duration = Duration::from_secs(365 * 24 * 3600);

pub static GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");
pub static GRPC_MESSAGE: header::HeaderName = header::HeaderName::from_static("grpc-message");
static GRPC_TIMEOUT: header::HeaderName = header::HeaderName::from_static("grpc-timeout");

/// A gRPC call: `content-type: application/grpc` or one of its `+proto`, `+json`... forms.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_content_type(v.as_bytes()))
}

fn is_grpc_content_type(v: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    v.len() >= GRPC.len()
        && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(v.get(GRPC.len()), None | Some(b'+') | Some(b';'))
}

/// The client's deadline for the call (`grpc-timeout: 1S`, `250m`, ...), if it sent a valid one:
/// up to eight digits and a unit (H, M, S, m, u, n). An invalid value is ignored, as gRPC servers
/// ignore it.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A trailers-only answer: the status and message in the one HEADERS frame that ends the stream.
pub fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(GRPC_STATUS.clone(), code_header(e.grpc_status()));
    if let Ok(m) = HeaderValue::from_str(&percent_encode(&e.message())) {
        h.insert(GRPC_MESSAGE.clone(), m);
    }
    resp
}

/// The `grpc-status` a header map carries, if any (0-16; anything else reads as UNKNOWN).
fn status_of(h: &HeaderMap) -> Option<u8> {
    let v = h.get(&GRPC_STATUS)?;
    Some(
        std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u8>().ok())
            .filter(|c| *c <= 16)
            .unwrap_or(UNKNOWN),
    )
}

/// Watches a gRPC call's response to its end: counts its final `grpc-status` for its service
/// and writes its access-log line then (a streaming call's status is in its trailers). An
/// instance that breaks off mid-call is told to the client as `UNAVAILABLE` trailers rather
/// than a reset, so the client reads a status it can retry on.
pub fn watch(
    resp: Response<ProxyBody>,
    service: Option<Arc<Service>>,
    line: Option<PendingLine>,
) -> Response<ProxyBody> {
    let status = status_of(resp.headers());
    resp.map(|inner| {
        ProxyBody::Watched(Box::new(CallBody {
            inner,
            status,
            done: false,
            finished: false,
            bytes: 0,
            service,
            line,
        }))
    })
}

pub struct CallBody {
    inner: ProxyBody,
    status: Option<u8>,
    /// The stream has ended (or wakeway ended it with its own trailers).
    done: bool,
    /// Counted and logged.
    finished: bool,
    bytes: u64,
    service: Option<Arc<Service>>,
    line: Option<PendingLine>,
}

impl CallBody {
    fn finish(&mut self, client_left: bool) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let status = match self.status {
            Some(s) => s,
            None if client_left => CANCELLED,
            None => UNKNOWN,
        };
        if let Some(svc) = &self.service {
            svc.metrics.grpc_calls[status as usize].inc();
        }
        if let Some(line) = self.line.take() {
            line.write(self.bytes, Some(status));
        }
    }
}

impl Body for CallBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done {
            this.finish(false);
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(f))) => {
                if let Some(t) = f.trailers_ref() {
                    this.status = status_of(t).or(Some(UNKNOWN));
                } else if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish(false);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!("gRPC call broke off at the instance: {e}");
                this.done = true;
                this.status = Some(Code::Unavailable as u8);
                let mut t = HeaderMap::with_capacity(2);
                t.insert(GRPC_STATUS.clone(), code_header(Code::Unavailable));
                t.insert(
                    GRPC_MESSAGE.clone(),
                    HeaderValue::from_static("the instance broke off the call"),
                );
                Poll::Ready(Some(Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

impl Drop for CallBody {
    fn drop(&mut self) {
        // A trailers-only answer is never polled; otherwise the client went before the end.
        let ended = self.done || self.inner.is_end_stream();
        self.finish(!ended);
    }
}

/// `grpc-message` is percent-encoded UTF-8: bytes outside printable ASCII, and `%`, are escaped.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::activator::ActivatorError;

    #[test]
    fn grpc_content_types_and_not_lookalikes() {
        for (ct, want) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC+json", true),
            ("application/grpc;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpcx", false),
            ("application/json", false),
        ] {
            assert_eq!(is_grpc_content_type(ct.as_bytes()), want, "{ct}");
        }
    }

    #[test]
    fn grpc_timeout_units_and_bad_values() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            timeout(&h)
        };
        assert_eq!(t("1S"), Some(Duration::from_secs(1)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("2M"), Some(Duration::from_secs(120)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "S", "123456789S", "1s", "-1S", "1.5S", "10"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn wakeway_errors_answer_in_grpc_terms() {
        let cases = [
            (ProxyError::Activator(ActivatorError::QueueFull), "8"),
            (
                ProxyError::Activator(ActivatorError::Timeout(Duration::from_secs(1).into())),
                "4",
            ),
            (
                ProxyError::Activator(ActivatorError::Unavailable("wakeway is stopping".into())),
                "14",
            ),
            (ProxyError::Upstream("reset".into()), "14"),
            (ProxyError::UnknownHost("x".into()), "12"),
        ];
        for (e, code) in cases {
            let r = error_response(&e);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["content-type"], "application/grpc");
            assert_eq!(r.headers()["grpc-status"], code, "{e}");
            assert!(http_body::Body::is_end_stream(r.body()), "trailers-only");
        }
        let r = error_response(&ProxyError::Activator(ActivatorError::Unavailable(
            "100% ünicode".into(),
        )));
        assert_eq!(
            r.headers()["grpc-message"],
            "service unavailable: no instance could start: 100%25 %C3%BCnicode"
        );
    }
}
