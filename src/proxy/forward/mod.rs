//! An h2 request (prior-knowledge h2c, or h2 over TLS), from the client to an instance and back:
//! route, acquire a slot, rewrite headers by the same rules as HTTP/1 (`headers.rs`), send over
//! HTTP/1.1 with this worker's own pooled client or over h2c, stream the response.

mod headers;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;

use self::headers::{HOP_BY_HOP, request_host, wants_trailers};
pub(crate) use self::headers::{add_forwarded, rewrite_request_headers};
use super::Shared;
use super::access_line::{LoggedBody, PendingLine};
use super::attempt::{self, Attempt, Next, Resend, Seen};
use super::body::ProxyBody;
use super::error::ProxyError;
use super::grpc;
use super::upstream::RequestBody;
use super::upstream::client::{
    ConnectTime, UpstreamClient, source_chain, timed_out, upstream_client,
};
use super::upstream::h2::{self, H2Error, H2Upstreams, StreamSlot};
use crate::config::Protocol;
use crate::proxy::access_log::{AccessRecord, Reason};
use crate::proxy::trace::{self, ServerTiming};
use crate::service::{InFlight, Service};

/// Who sent the request, and over what.
struct Downstream {
    remote: SocketAddr,
    https: bool,
}

/// How long an h2 request waited for its slot, and whether that was a cold start; for a gRPC
/// call, its service too (its status is counted there when the call ends). With the access log
/// on: the request body's bytes as they go upstream, and the connect time of a new connection.
#[derive(Default)]
struct Timing {
    waited: Duration,
    cold: bool,
    thawed: bool,
    service: Option<Arc<Service>>,
    sent: Option<Arc<AtomicU64>>,
    connect: Option<Duration>,
}

impl Timing {
    fn acquired(&mut self, svc: &Service, arrived: Instant, guard: &InFlight) {
        let waited = arrived.elapsed();
        // The fast path takes a slot in well under a millisecond; only a real wait counts. A
        // wait for the first instance always does: a thaw can take less.
        if waited >= Duration::from_millis(1) || guard.was_cold() {
            self.waited = waited;
            self.cold = guard.was_cold();
            self.thawed = guard.was_thaw();
            svc.metrics.queue_wait.observe(waited.as_secs_f64());
        }
    }
}

/// One per worker: the client's pool and the h2c connections are the worker's alone.
#[derive(Clone)]
pub struct HyperForwarder {
    shared: Arc<Shared>,
    client: UpstreamClient,
    pub h2: Rc<H2Upstreams>,
}

/// What one attempt at an instance came to when it failed.
struct Failure {
    /// Nothing reached the instance.
    connect: bool,
    /// ... because the instance refused the connection: proof that it is gone. A connect that
    /// timed out (a busy instance) or a failed h2c handshake is only one strike.
    refused: bool,
    detail: String,
}

impl HyperForwarder {
    pub fn new(shared: Arc<Shared>) -> HyperForwarder {
        let client = upstream_client(shared.settings.connect_timeout);
        HyperForwarder {
            shared,
            client,
            h2: Rc::default(),
        }
    }

    /// The single exit point of a request: every outcome is counted and timed here.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        remote: SocketAddr,
        https: bool,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let settings = &self.shared.settings;
        let grpc = grpc::is_grpc(req.headers());
        let request_id = trace::ensure_request_id(req.headers_mut());
        let trace_id = trace::propagate(req.headers_mut(), settings.start_trace).id();
        let mut record = self.shared.access_log.as_ref().map(|_| AccessRecord {
            time: std::time::SystemTime::now(),
            service: None,
            revision: None,
            instance: None,
            method: req.method().clone(),
            target: req
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .as_bytes()
                .into(),
            version: req.version(),
            status: 0,
            bytes_out: 0,
            duration: Duration::ZERO,
            queue_wait: Duration::ZERO,
            cold_start: false,
            upstream_connect: None,
            client: remote,
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            referer: req.headers().get(header::REFERER).cloned(),
            request_id: request_id.clone(),
            trace_id,
            grpc_status: None,
            reason: None,
            bytes_in: http_body::Body::size_hint(req.body()).exact().unwrap_or(0),
        });
        let mut timing = Timing {
            sent: record.as_ref().map(|_| Arc::default()),
            ..Timing::default()
        };
        let mut resp = self
            .route(req, remote, https, started, &mut timing, &mut record, grpc)
            .await;
        resp.headers_mut()
            .insert(trace::X_REQUEST_ID, request_id.clone());
        if ServerTiming::applies(settings.server_timing, timing.cold) {
            let value = ServerTiming {
                total: started.elapsed(),
                queue: (!timing.waited.is_zero() && !timing.cold).then_some(timing.waited),
                cold_start: timing.cold.then_some(timing.waited),
                thawed: timing.thawed,
            };
            resp.headers_mut()
                .insert(trace::SERVER_TIMING, value.header_value());
        }
        let record = record.map(|mut r| {
            r.status = resp.status().as_u16();
            r.duration = started.elapsed();
            r.queue_wait = timing.waited;
            r.cold_start = timing.cold;
            r.upstream_connect = timing.connect;
            if let Some(inst) = resp.body().instance() {
                r.instance = Some(Arc::from(inst.id.as_str()));
                r.revision = Some(Arc::from(inst.revision.as_str()));
            }
            r.reason = resp.extensions_mut().remove::<Reason>().map(|r| r.0);
            r
        });
        // Logged when the body ends: the bytes each way are known then (and a gRPC call's final
        // grpc-status, counted then too).
        let line = self
            .shared
            .access_log
            .clone()
            .zip(record)
            .map(|(log, r)| PendingLine::new(log, r, timing.sent.take(), started));
        if grpc {
            return grpc::watch(resp, timing.service.take(), line);
        }
        match line {
            Some(line) => resp.map(|body| LoggedBody::wrap(body, line)),
            None => resp,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn route(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
        https: bool,
        started: Instant,
        timing: &mut Timing,
        record: &mut Option<AccessRecord>,
        grpc: bool,
    ) -> Response<ProxyBody> {
        let host = match request_host(&req) {
            Ok(h) => h,
            Err(e) => return error_response(&e, grpc),
        };
        if req.method() == Method::TRACE || req.method() == Method::CONNECT {
            let m = if req.method() == Method::TRACE {
                "TRACE"
            } else {
                "CONNECT"
            };
            return error_response(&ProxyError::MethodNotAllowed(m), grpc);
        }
        if !https
            && let Some(acme) = &self.shared.acme
            && let Some((status, body)) = acme.answer(req.uri().path().as_bytes())
        {
            let mut resp = Response::new(ProxyBody::full(body));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
            return resp;
        }
        // `request_host` checked it is a valid host.
        let name = host.to_str().unwrap_or_default();
        let routed = self
            .shared
            .routes
            .load()
            .lookup(name)
            .map(|(svc, tag)| (svc.clone(), tag));
        let Some((svc, tag)) = routed else {
            return error_response(&ProxyError::UnknownHost(name.to_string()), grpc);
        };
        if let Some(r) = record {
            r.service = Some(Arc::from(svc.name.as_str()));
        }
        if grpc {
            timing.service = Some(svc.clone());
        }
        let resp = match self
            .forward(
                &svc,
                tag.as_deref(),
                req,
                Downstream { remote, https },
                host,
                started,
                timing,
                grpc,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(service = %svc.name, error = %e, side = ?e.side(), "request failed");
                error_response(&e, grpc)
            }
        };
        svc.metrics.observe_status(resp.status().as_u16());
        svc.metrics.observe_duration(started.elapsed());
        resp
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        svc: &Arc<Service>,
        tag: Option<&str>,
        req: Request<Incoming>,
        Downstream { remote, https }: Downstream,
        host: HeaderValue,
        arrived: Instant,
        timing: &mut Timing,
        grpc: bool,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (parts, body) = req.into_parts();
        let settings = &self.shared.settings;
        let trusted = settings.is_trusted(remote.ip());
        let mut headers = parts.headers;
        let trailers = wants_trailers(&headers);
        let client_deadline = grpc.then(|| grpc::timeout(&headers)).flatten();
        rewrite_request_headers(&mut headers, settings.limits.underscore, trusted)?;
        add_forwarded(&mut headers, remote, &host, trusted, https)?;
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let cfg = svc.config.load();
        let h2 = match cfg.protocol {
            Protocol::Http1 => false,
            Protocol::H2c => true,
            Protocol::Auto => grpc,
        };
        // Over h2 the host travels as :authority, the instance's address is the connection's.
        let authority = if h2 {
            let a = Authority::try_from(host.as_bytes())
                .map_err(|_| ProxyError::BadRequest("invalid :authority".into()))?;
            headers.remove(header::HOST);
            if trailers {
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            Some(a)
        } else {
            headers.insert(header::HOST, host);
            None
        };
        // A gRPC client's own deadline bounds its wait in the queue too.
        let wait = client_deadline.map_or(cfg.queue.timeout, |t| t.min(cfg.queue.timeout));
        let deadline = arrived + wait;
        let ignore = &cfg.scaling.idle_ignore;
        let quiet = !ignore.is_empty()
            && ignore.matches(remote.ip(), parts.uri.path().as_bytes(), || {
                headers.get(header::USER_AGENT).map(HeaderValue::as_bytes)
            });
        let wake = ignore.wake;
        let retry_idempotent = cfg.retry_idempotent;
        drop(cfg);
        if quiet && !wake && svc.is_cold() {
            return Err(ProxyError::IdleIgnored);
        }
        let response_timeout = settings.response_timeout;

        let mut guard = attempt::acquire(svc, tag, deadline, quiet).await?;
        timing.acquired(svc, arrived, &guard);
        // An empty body can be sent again even after hyper read its end.
        let empty = http_body::Body::is_end_stream(&body);
        let mut body = (!empty).then_some(body);
        let mut attempt = Attempt::new(response_timeout);
        loop {
            let (rb, mut give_back) = RequestBody::new(body.take(), timing.sent.clone());
            let uri = Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(
                    authority
                        .clone()
                        .unwrap_or_else(|| guard.instance().authority.clone()),
                )
                .path_and_query(path.clone())
                .build()
                .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
            let mut up = Request::new(rb);
            *up.method_mut() = parts.method.clone();
            *up.uri_mut() = uri;
            *up.version_mut() = if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            *up.headers_mut() = headers.clone();

            let sent = tokio::time::timeout(response_timeout, self.send(h2, &guard, up)).await;
            let (seen, detail) = match sent {
                Ok(Ok((resp, stream))) => {
                    timing.connect = match &stream {
                        Some(s) => s.take_connect_time(),
                        None => resp
                            .extensions()
                            .get::<ConnectTime>()
                            .and_then(ConnectTime::take),
                    };
                    // A streaming call may be quiet for long (a watch, a bidi call waiting on its
                    // client): the connection's pings, not a silence limit, find a dead instance.
                    let silence = if grpc {
                        grpc::STREAM_SILENCE
                    } else {
                        settings.upstream_read_timeout
                    };
                    return Ok(respond(resp, guard, stream, silence));
                }
                Err(_) => (Seen::FirstByteTimeout, String::new()),
                Ok(Err(f)) => {
                    let seen = match (f.connect, f.refused) {
                        (true, true) => Seen::Refused,
                        // A connect that timed out, or an h2c handshake that failed: one strike.
                        (true, false) => Seen::ConnectTimeout,
                        // hyper's pool sends again by itself a request it never wrote to a
                        // kept-alive connection the app had closed; this one went out (or its
                        // h2 stream was reset, or a frame was malformed).
                        (false, _) => Seen::ResetAfterWrite,
                    };
                    (seen, f.detail)
                }
            };
            // A body comes back unread when nothing was sent (a failed connect).
            body = give_back.try_recv().ok();
            let resend = Resend::new(
                parts.method.as_str().as_bytes(),
                headers.contains_key(attempt::IDEMPOTENCY_KEY),
                empty || body.is_some(),
                retry_idempotent,
            );
            let next = attempt
                .failed(svc, guard, seen, false, resend, &detail)
                .await;
            let (failed, err) = match next {
                Next::Elsewhere { failed, err } if empty || body.is_some() => (failed, err),
                next => return Err(next.into_error()),
            };
            guard = attempt::reacquire(svc, &failed, tag, deadline, quiet, err).await?;
        }
    }
}

impl HyperForwarder {
    /// One attempt at the instance `guard` holds, over HTTP/1.1 or h2c.
    async fn send(
        &self,
        h2: bool,
        guard: &InFlight,
        up: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<StreamSlot>), Failure> {
        if h2 {
            let timeout = self.shared.settings.connect_timeout;
            return match self.h2.send(guard.instance(), up, timeout).await {
                Ok((resp, slot)) => Ok((resp, Some(slot))),
                Err(e) => Err(Failure {
                    connect: matches!(e, H2Error::Connect(_)),
                    refused: matches!(e, H2Error::Connect(h2::Failed::Refused(_))),
                    detail: e.to_string(),
                }),
            };
        }
        match self.client.request(up).await {
            Ok(resp) => Ok((resp, None)),
            Err(e) => Err(Failure {
                connect: e.is_connect(),
                refused: e.is_connect() && !timed_out(&e),
                detail: source_chain(&e),
            }),
        }
    }
}

fn respond(
    resp: Response<Incoming>,
    guard: InFlight,
    stream: Option<StreamSlot>,
    read_timeout: Duration,
) -> Response<ProxyBody> {
    if resp.status().is_server_error() {
        guard.instance().note_error();
    }
    let (mut parts, body) = resp.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    let body = match stream {
        Some(s) => ProxyBody::stream(body, guard, s, read_timeout),
        None => ProxyBody::upstream(body, Some(guard), read_timeout),
    };
    Response::from_parts(parts, body)
}

/// The one place a failure becomes the client's answer: in gRPC terms for a gRPC call.
pub fn error_response(e: &ProxyError, grpc: bool) -> Response<ProxyBody> {
    if grpc {
        return grpc::error_response(e);
    }
    let mut resp = Response::new(ProxyBody::full(format!("{}\n", e.message())));
    *resp.status_mut() = e.status();
    resp.extensions_mut().insert(Reason(e.message()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(ra) = e.retry_after() {
        h.insert(header::RETRY_AFTER, ra);
    }
    resp
}
