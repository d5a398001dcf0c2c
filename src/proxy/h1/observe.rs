//! What one HTTP/1 request leaves behind for the people watching: its request id and trace
//! context (passed upstream and back to the client), `Server-Timing`, the queue-wait and
//! cold-start figures, and its access-log line. Reused buffers: nothing is allocated per request
//! unless the access log is on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Version};
use tokio::time::Instant;

use super::request::RequestHead;
use crate::config::ServerTimingMode;
use crate::proxy::access_log::{AccessLog, AccessRecord};
use crate::proxy::error::ProxyError;
use crate::proxy::trace::{self, ServerTiming, TraceContext, TraceId};
use crate::service::instance::Instance;
use crate::service::{InFlight, Service};

pub struct Observed {
    pub arrived: Instant,
    /// When the request got its slot, and whether it had to wait for it (queued) while the
    /// service had no ready instance (a cold start).
    pub acquired: Option<Instant>,
    pub cold: bool,
    /// ... and the instance it got came back from frozen: the wait was a thaw.
    pub thawed: bool,
    id: [u8; trace::MAX_REQUEST_ID_LEN],
    id_len: usize,
    pub trace_id: Option<TraceId>,
    /// Header lines for the instance: `X-Request-Id`, `traceparent`, `tracestate`.
    pub upstream_extra: Vec<u8>,
    /// Header lines for the client: `X-Request-Id`, `Server-Timing`.
    pub client_extra: Vec<u8>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub upstream_connect: Option<Duration>,
    /// The instance that answered and its revision (only with the access log on).
    pub instance: Option<Arc<str>>,
    pub revision: Option<Arc<str>>,
    /// Why wakeway answered itself (only with the access log on).
    pub reason: Option<String>,
    /// The access-log line in the making (only with the log on; boxed, so an idle connection
    /// does not carry its size).
    pub record: Option<Box<AccessRecord>>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            arrived: Instant::now(),
            acquired: None,
            cold: false,
            thawed: false,
            id: [0; trace::MAX_REQUEST_ID_LEN],
            id_len: 0,
            trace_id: None,
            upstream_extra: Vec::new(),
            client_extra: Vec::new(),
            bytes_in: 0,
            bytes_out: 0,
            upstream_connect: None,
            instance: None,
            revision: None,
            reason: None,
            record: None,
        }
    }
}

impl Observed {
    pub fn request_id(&self) -> &[u8] {
        &self.id[..self.id_len]
    }

    /// A new request: its id (the client's valid one, or a new one) and trace context (passed
    /// on, or started when `start_trace`).
    pub fn begin(&mut self, head: &RequestHead, buf: &[u8], arrived: Instant, start_trace: bool) {
        self.arrived = arrived;
        self.acquired = None;
        self.cold = false;
        self.thawed = false;
        self.bytes_in = 0;
        self.bytes_out = 0;
        self.upstream_connect = None;
        self.instance = None;
        self.revision = None;
        self.reason = None;
        self.record = None;
        match head.request_id {
            Some(s) => {
                let v = s.get(buf);
                self.id[..v.len()].copy_from_slice(v);
                self.id_len = v.len();
            }
            None => {
                let v = trace::new_request_id_bytes();
                self.id[..v.len()].copy_from_slice(&v);
                self.id_len = v.len();
            }
        }
        let out = &mut self.upstream_extra;
        out.clear();
        out.extend_from_slice(b"X-Request-Id: ");
        out.extend_from_slice(&self.id[..self.id_len]);
        out.extend_from_slice(b"\r\n");
        self.trace_id = match head.traceparent {
            Some((span, ctx)) => {
                out.extend_from_slice(b"traceparent: ");
                out.extend_from_slice(span.get(buf));
                out.extend_from_slice(b"\r\n");
                if let Some(state) = head.tracestate {
                    out.extend_from_slice(b"tracestate: ");
                    out.extend_from_slice(state.get(buf));
                    out.extend_from_slice(b"\r\n");
                }
                Some(ctx.trace_id)
            }
            None if start_trace => {
                let ctx = TraceContext::start();
                out.extend_from_slice(b"traceparent: ");
                out.extend_from_slice(&ctx.header_bytes());
                out.extend_from_slice(b"\r\n");
                Some(ctx.trace_id)
            }
            None => None,
        };
    }

    /// The slot `guard` holds was taken now. Records the wait in the queue-wait histogram.
    pub fn acquired(&mut self, svc: &Service, guard: &InFlight) {
        let now = Instant::now();
        self.acquired = Some(now);
        let waited = now - self.arrived;
        // The fast path takes a slot in well under a millisecond; only a real wait counts. A
        // wait for the first instance always does: a thaw can take less.
        if waited >= QUEUED || guard.was_cold() {
            self.cold = guard.was_cold();
            self.thawed = guard.was_thaw();
            svc.metrics.queue_wait.observe(waited.as_secs_f64());
        }
    }

    fn queue_wait(&self) -> Duration {
        match self.acquired {
            Some(a) if a - self.arrived >= QUEUED || self.cold => a - self.arrived,
            _ => Duration::ZERO,
        }
    }

    /// The response head arrived: the client's extra header lines.
    pub fn response_head(&mut self, mode: ServerTimingMode) {
        let queue = self.queue_wait();
        let out = &mut self.client_extra;
        out.clear();
        out.extend_from_slice(b"X-Request-Id: ");
        out.extend_from_slice(&self.id[..self.id_len]);
        out.extend_from_slice(b"\r\n");
        if ServerTiming::applies(mode, self.cold) {
            let timing = ServerTiming {
                total: self.arrived.elapsed(),
                queue: (!queue.is_zero() && !self.cold).then_some(queue),
                cold_start: self.cold.then_some(queue),
                thawed: self.thawed,
            };
            out.extend_from_slice(b"Server-Timing: ");
            out.extend_from_slice(timing.header_value().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// With the access log on: what only the head tells, taken before a streamed body reuses
    /// the buffer.
    pub fn start_record(
        &mut self,
        head: &RequestHead,
        buf: &[u8],
        svc: Option<&Service>,
        client: SocketAddr,
    ) {
        let header = |name: &[u8]| {
            head.headers
                .iter()
                .find(|h| h.name.get(buf).eq_ignore_ascii_case(name))
                .and_then(|h| HeaderValue::from_bytes(h.value.get(buf)).ok())
        };
        let target = head.target.map_or(&b"/"[..], |t| t.get(buf));
        self.record = Some(Box::new(AccessRecord {
            time: SystemTime::now() - self.arrived.elapsed(),
            service: svc.map(|s| Arc::from(s.name.as_str())),
            // The revision that serves it, once an instance is taken.
            revision: None,
            instance: None,
            method: Method::from_bytes(head.method(buf)).unwrap_or(Method::GET),
            // `http://host` is forwarded as `/`.
            target: if target.is_empty() { &b"/"[..] } else { target }.into(),
            version: if head.http10 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            },
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            queue_wait: Duration::ZERO,
            cold_start: false,
            upstream_connect: None,
            client,
            user_agent: header(b"user-agent"),
            referer: header(b"referer"),
            request_id: HeaderValue::from_bytes(self.request_id())
                .unwrap_or_else(|_| HeaderValue::from_static("-")),
            trace_id: self.trace_id,
            grpc_status: None,
            reason: None,
        }));
    }

    /// The instance that serves the request (with the access log on).
    pub fn served_by(&mut self, inst: &Instance) {
        self.instance = Some(Arc::from(inst.id.as_str()));
        self.revision = Some(Arc::from(inst.revision.as_str()));
    }

    /// Wakeway answers the request itself with `e` (with the access log on).
    pub fn answered_with(&mut self, e: &ProxyError) {
        self.reason = Some(e.message());
    }

    /// A request refused before its head could be read whole (malformed, too large, too slow):
    /// its line says what its request line did, as far as it arrived.
    pub fn refused(
        &self,
        log: &AccessLog,
        got: &[u8],
        e: &ProxyError,
        client: SocketAddr,
        arrived: Instant,
    ) {
        let line = &got[..got.iter().position(|b| *b == b'\n').unwrap_or(got.len())];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut words = line.splitn(3, |b| *b == b' ');
        let method = words.next().unwrap_or_default();
        let target = words.next().unwrap_or_default();
        log.record(AccessRecord {
            time: SystemTime::now() - arrived.elapsed(),
            service: None,
            revision: None,
            instance: None,
            method: Method::from_bytes(method).unwrap_or(Method::GET),
            target: target.into(),
            version: match words.next() {
                Some(b"HTTP/1.0") => Version::HTTP_10,
                _ => Version::HTTP_11,
            },
            status: e.status().as_u16(),
            bytes_in: 0,
            bytes_out: 0,
            duration: arrived.elapsed(),
            queue_wait: Duration::ZERO,
            cold_start: false,
            upstream_connect: None,
            client,
            user_agent: None,
            referer: None,
            request_id: HeaderValue::from_static("-"),
            trace_id: None,
            reason: Some(e.message()),
            grpc_status: None,
        });
    }

    /// The request's one exit: its access-log line goes to the writer.
    pub fn finish(&mut self, log: &AccessLog, status: u16) {
        let Some(mut r) = self.record.take() else {
            return;
        };
        r.status = status;
        r.instance = self.instance.take();
        r.revision = self.revision.take();
        r.reason = self.reason.take();
        r.bytes_in = self.bytes_in;
        r.bytes_out = self.bytes_out;
        r.duration = self.arrived.elapsed();
        r.queue_wait = self.queue_wait();
        r.cold_start = self.cold;
        r.upstream_connect = self.upstream_connect;
        log.record(*r);
    }
}

/// A slot taken later than this after arrival means the request waited in the queue.
const QUEUED: Duration = Duration::from_millis(1);
