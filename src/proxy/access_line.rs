//! An h2 request's access line, written when its response body ends or the client leaves, so it
//! carries the bytes that really went each way and the time the whole exchange took (HTTP/1
//! keeps the same figures in `h1/observe.rs`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::access_log::{AccessLog, AccessRecord};
use super::body::{BodyError, ProxyBody};

/// A line waiting for the end of its response.
pub struct PendingLine {
    log: AccessLog,
    record: AccessRecord,
    /// The request body's bytes that went upstream, counted by `RequestBody` as they pass.
    sent: Option<Arc<AtomicU64>>,
    started: Instant,
}

impl PendingLine {
    pub fn new(
        log: AccessLog,
        record: AccessRecord,
        sent: Option<Arc<AtomicU64>>,
        started: Instant,
    ) -> PendingLine {
        PendingLine {
            log,
            record,
            sent,
            started,
        }
    }

    pub fn write(self, bytes_out: u64, grpc_status: Option<u8>) {
        let mut r = self.record;
        r.duration = self.started.elapsed();
        r.bytes_out = bytes_out;
        // A body sent without a length (or longer than it said) counts as it went; one never
        // read (refused before it was forwarded) keeps its declared length.
        if let Some(sent) = &self.sent {
            r.bytes_in = r.bytes_in.max(sent.load(Ordering::Relaxed));
        }
        if grpc_status.is_some() {
            r.grpc_status = grpc_status;
        }
        self.log.record(r);
    }
}

/// A response body that counts what it carries and writes its line at the end.
pub struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    line: Option<PendingLine>,
}

impl LoggedBody {
    pub fn wrap(inner: ProxyBody, line: PendingLine) -> ProxyBody {
        ProxyBody::Watched(Box::new(LoggedBody {
            inner,
            bytes: 0,
            line: Some(line),
        }))
    }

    fn finish(&mut self) {
        if let Some(line) = self.line.take() {
            line.write(self.bytes, None);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // An empty body may never be polled, and a client may leave before the end.
        self.finish();
    }
}
