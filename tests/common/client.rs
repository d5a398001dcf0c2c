//! Small HTTP clients on a fresh connection each: h1, h2c, and the admin API's JSON.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::REQUEST_TIMEOUT;

/// A buffered response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of a `Name: value` line of a whoami body (name case-insensitive).
    pub fn field(&self, name: &str) -> Option<String> {
        body_field(&self.text(), name)
    }

    /// The whoami instance that answered (`Instance:` line of the body).
    pub fn instance(&self) -> Option<String> {
        self.field("Instance")
    }

    /// The wait its `Server-Timing` names: `cold-start` or `thaw` (a frozen instance woken).
    pub fn timed_wait(&self) -> Option<&'static str> {
        let timing = self.header("server-timing")?;
        ["thaw", "cold-start"]
            .into_iter()
            .find(|m| timing.contains(&format!("{m};dur=")))
    }
}

/// The value of the first `Name: value` line in `text` (name case-insensitive).
pub fn body_field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Sends one request over a fresh HTTP/1.1 connection to `addr` and buffers the response.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Resp, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, req))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no response from {addr} within {REQUEST_TIMEOUT:?}"
            ))
        })
}

/// One request on a fresh HTTP/1.1 connection, unbounded in time: the caller bounds it.
pub(super) async fn exchange<B>(addr: SocketAddr, req: Request<B>) -> Result<Resp, String>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(conn);
    answer(sender.send_request(req).await, addr, "").await
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// The buffered answer to a request sent to `addr` over `proto` ("" for HTTP/1.1, "h2 ").
async fn answer(
    resp: hyper::Result<http::Response<Incoming>>,
    addr: SocketAddr,
    proto: &str,
) -> Result<Resp, String> {
    let resp = resp.map_err(|e| format!("{proto}request to {addr}: {e}"))?;
    buffer(resp, &format!("{proto}response body from {addr}")).await
}

/// Reads a whole response into a [`Resp`]; `what` names the body in an error.
pub async fn buffer(resp: http::Response<Incoming>, what: &str) -> Result<Resp, String> {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .to_bytes();
    Ok(Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends one request over a fresh h2c (prior knowledge) connection.
pub async fn send_h2<B>(addr: SocketAddr, req: Request<B>) -> Result<Resp, String>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let exchange = async {
        let stream = TokioIo::new(connect(addr).await?);
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), stream)
                .await
                .map_err(|e| format!("h2 handshake {addr}: {e}"))?;
        tokio::spawn(conn);
        answer(sender.send_request(req).await, addr, "h2 ").await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no h2 response from {addr} within {REQUEST_TIMEOUT:?}"
            ))
        })
}

/// Builds a request with a `Host` header.
pub fn request(
    method: Method,
    host: &str,
    path: &str,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
        .body(Full::new(body.into()))
        .expect("request")
}

/// `GET path` with `Host: host` and then `headers`.
pub fn get_with(host: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = request(Method::GET, host, path, Bytes::new());
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        let value = http::HeaderValue::from_str(value).expect("header value");
        req.headers_mut().append(name, value);
    }
    req
}

/// `GET path` with `Host: host`; `Err` only on transport failure.
pub async fn try_get(addr: SocketAddr, host: &str, path: &str) -> Result<Resp, String> {
    send(addr, request(Method::GET, host, path, Bytes::new())).await
}

/// `GET path` with `Host: host`; panics on transport failure.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    try_get(addr, host, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{host}{path} via {addr}: {e}"))
}

/// A 503 that tells the client when to try again (`Retry-After`).
pub fn assert_retry_later(resp: &Resp) {
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
}

/// Starts `n` concurrent `GET`s with `Host: host`, the i-th at `path(i)`; await them with
/// [`all_ok`].
pub fn spawn_gets(
    addr: SocketAddr,
    host: &str,
    n: usize,
    path: impl Fn(usize) -> String,
) -> Vec<JoinHandle<Result<Resp, String>>> {
    (0..n)
        .map(|i| {
            let (host, path) = (host.to_string(), path(i));
            tokio::spawn(async move { try_get(addr, &host, &path).await })
        })
        .collect()
}

/// Awaits spawned requests; each must have been answered 200. Returns the answers in order.
pub async fn all_ok(tasks: Vec<JoinHandle<Result<Resp, String>>>) -> Vec<Resp> {
    let mut answers = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        let resp = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i} completes: {e}"));
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        answers.push(resp);
    }
    answers
}

/// `GET path` on an admin listener, parsed as JSON (must answer 200).
pub async fn admin_json(admin: SocketAddr, path: &str) -> Value {
    let resp = get(admin, "localhost", path).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "admin GET {path}: {}",
        resp.text()
    );
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("admin GET {path}: not JSON ({e}): {}", resp.text()))
}

/// `METHOD path` on an admin listener with an optional JSON body and bearer token. Returns the
/// status and the body as JSON (a JSON string when the body is not JSON).
pub async fn admin_call(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::HOST, "localhost");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    // The admin refuses state-changing calls not declared JSON, even without a body.
    if method != Method::GET {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let bytes = match body {
        Some(v) => Bytes::from(v.to_string()),
        None => Bytes::new(),
    };
    let req = req.body(Full::new(bytes)).expect("request");
    let resp = send(admin, req)
        .await
        .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
    let value = serde_json::from_slice(&resp.body).unwrap_or_else(|_| Value::String(resp.text()));
    (resp.status, value)
}

/// `GET path` on an admin listener with a bearer token, parsed as JSON (must answer 200).
pub async fn admin_json_with_token(admin: SocketAddr, path: &str, token: &str) -> Value {
    let (status, value) = admin_call(admin, Method::GET, path, None, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "admin GET {path}: {value}");
    value
}

#[test]
fn body_fields() {
    let body = "Instance: abc\nX-Forwarded-For: 127.0.0.1\n";
    assert_eq!(body_field(body, "instance").as_deref(), Some("abc"));
    assert_eq!(
        body_field(body, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(body_field(body, "missing"), None);
}
