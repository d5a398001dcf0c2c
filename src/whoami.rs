//! `wakeway whoami`: a tiny diagnostic upstream (in the spirit of traefik/whoami).
//!
//! Used by the examples and the black-box tests. Endpoints:
//!
//! - any path: `200 text/plain` describing the instance and echoing the request line and
//!   headers. `?sleep=250ms` delays the answer, `?status=503` picks the status code.
//! - `/healthz`: `200 ok`. `POST /healthz?status=503` makes later probes answer 503 (and
//!   `POST /healthz?status=200` heals it): for testing unhealthy instances.
//! - `/echo`: streams the request body back.
//! - `/stats`: `{"in_flight":N,"max_in_flight":N,"requests":N}` (excluding `/stats`, `/healthz`).
//! - `/ws`: a WebSocket echo server (text and binary messages).
//! - gRPC calls (over h2c): see `whoami_grpc`.
//!
//! Every response carries `X-Wakeway-Instance`. `WHOAMI_REQUEST_LOG=PATH` appends a line per
//! request (`request_log`).

mod request_log;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The response header naming the instance that answered.
pub const INSTANCE_HEADER: &str = "x-wakeway-instance";

mod stream;
#[cfg(test)]
mod tests;

use stream::{echo, websocket};

/// How long in-flight connections get to finish after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Options of `wakeway whoami`.
#[derive(Debug, Clone)]
pub struct WhoamiOptions {
    /// Address to bind (default `127.0.0.1`).
    pub bind: IpAddr,
    /// Port to bind; `0` lets the OS pick (the real address is printed).
    pub port: u16,
    /// Wait this long before binding (simulates a slow-starting app).
    pub startup_delay: Duration,
}

impl Default for WhoamiOptions {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            startup_delay: Duration::ZERO,
        }
    }
}

/// Runs whoami until SIGTERM/SIGINT; then finishes in-flight requests and returns `Ok(())`.
///
/// After `startup_delay` it binds and prints `whoami listening on ADDR` to stdout.
pub async fn run(opts: WhoamiOptions) -> io::Result<()> {
    if !opts.startup_delay.is_zero() {
        tokio::time::sleep(opts.startup_delay).await;
    }
    let listener = TcpListener::bind(SocketAddr::new(opts.bind, opts.port)).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "whoami listening on {addr}")?;
        out.flush()?;
    }
    serve(listener, shutdown_signal()?).await
}

/// Serves whoami on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve<F>(listener: TcpListener, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()>,
{
    let state = Arc::new(State::from_env());
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    eprintln!("whoami: accept error: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }

    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("whoami: connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}

fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

type RespBody = UnsyncBoxBody<Bytes, hyper::Error>;

struct State {
    instance: String,
    revision: String,
    service: String,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// The status `GET /healthz` answers.
    health_status: std::sync::atomic::AtomicU16,
    requests: AtomicU64,
}

impl State {
    fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        Self {
            instance: var("WAKEWAY_INSTANCE", "whoami"),
            revision: var("WAKEWAY_REVISION", ""),
            service: var("WAKEWAY_SERVICE", ""),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            health_status: std::sync::atomic::AtomicU16::new(200),
            requests: AtomicU64::new(0),
        }
    }

    /// Counts a request in; returns the guard and the in-flight count including this request.
    fn enter(self: &Arc<Self>) -> (InFlight, usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.max_in_flight.fetch_max(now, Ordering::AcqRel);
        (InFlight(Some(self.clone())), now)
    }
}

/// Decrements the in-flight counter once, on `release` or drop.
struct InFlight(Option<Arc<State>>);

impl InFlight {
    fn release(&mut self) {
        if let Some(state) = self.0.take() {
            state.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    if !matches!(req.uri().path(), "/healthz" | "/stats") {
        request_log::note(&state.instance, &req);
    }
    let healthy = || {
        StatusCode::from_u16(state.health_status.load(Ordering::Acquire))
            .is_ok_and(|s| s.is_success())
    };
    let grpc = crate::proxy::grpc::is_grpc(req.headers());
    let mut resp = match req.uri().path() {
        _ if grpc => crate::whoami_grpc::handle(&state.instance, healthy(), req).await,
        "/healthz" => health(&state, &req),
        "/stats" => stats(&state),
        "/echo" => echo(&state, req),
        "/ws" => websocket(&state, req),
        _ => whoami(&state, req).await,
    };
    if let Ok(v) = HeaderValue::from_str(&state.instance) {
        resp.headers_mut().insert(INSTANCE_HEADER, v);
    }
    Ok(resp)
}

fn full(body: impl Into<Bytes>) -> RespBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn health(state: &State, req: &Request<Incoming>) -> Response<RespBody> {
    if req.method() == Method::POST {
        let wanted = query_pairs(req.uri().query().unwrap_or(""))
            .find(|(k, _)| *k == "status")
            .and_then(|(_, v)| v.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok());
        let Some(status) = wanted else {
            return text(StatusCode::BAD_REQUEST, "POST /healthz?status=CODE\n");
        };
        state
            .health_status
            .store(status.as_u16(), Ordering::Release);
        return text(StatusCode::OK, format!("/healthz now answers {status}\n"));
    }
    let status =
        StatusCode::from_u16(state.health_status.load(Ordering::Acquire)).unwrap_or(StatusCode::OK);
    let body = if status.is_success() {
        "ok\n"
    } else {
        "unhealthy\n"
    };
    text(status, body)
}

fn stats(state: &State) -> Response<RespBody> {
    let body = serde_json::json!({
        "in_flight": state.in_flight.load(Ordering::Acquire),
        "max_in_flight": state.max_in_flight.load(Ordering::Acquire),
        "requests": state.requests.load(Ordering::Acquire),
    });
    let mut resp = text(StatusCode::OK, body.to_string());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The default endpoint: who answered, and what it received.
async fn whoami(state: &Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    // The guard lives until the answer is ready (or the client goes away and this future is
    // dropped); it is released before the body is written, so an upstream limit seen through
    // `/stats` is never over-counted.
    let (_guard, concurrent) = state.enter();

    // `WHOAMI_STATUS` makes a whole revision answer with one status: a bad release to try
    // rollouts and their halt on.
    let mut status = std::env::var("WHOAMI_STATUS")
        .ok()
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut sleep = Duration::ZERO;
    for (key, value) in query_pairs(req.uri().query().unwrap_or("")) {
        match key {
            "sleep" => match parse_duration(value) {
                Some(d) => sleep = d,
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("bad sleep {value:?}: want e.g. 250ms, 2s, 1m\n"),
                    );
                }
            },
            "status" => match value
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(s) => status = s,
                None => {
                    return text(StatusCode::BAD_REQUEST, format!("bad status {value:?}\n"));
                }
            },
            _ => {}
        }
    }
    if !sleep.is_zero() {
        tokio::time::sleep(sleep).await;
    }

    let mut body = String::with_capacity(512);
    let _ = writeln!(body, "Instance: {}", state.instance);
    let _ = writeln!(body, "Revision: {}", state.revision);
    let _ = writeln!(body, "Service: {}", state.service);
    let _ = writeln!(body, "Pid: {}", std::process::id());
    let _ = writeln!(body, "Concurrent: {concurrent}");
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let _ = writeln!(body, "{} {} {:?}", req.method(), target, req.version());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let _ = writeln!(body, "Host: {host}");
    for (name, value) in req.headers() {
        if name == header::HOST {
            continue;
        }
        let _ = writeln!(
            body,
            "{}: {}",
            canonical_name(name.as_str()),
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    text(status, body)
}

/// `x-forwarded-for` → `X-Forwarded-For`.
fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = c == '-';
    }
    out
}

/// Splits a query string into `(key, value)` pairs (no percent-decoding: values are simple).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Parses `250ms`, `2s`, `1.5s`, `1m`, `1h`; a bare number is milliseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}
