//! A small etcd v3 client: gRPC over one h2c connection (hyper), with the messages of
//! `proto.rs`. Unary calls (KV, lease grant/revoke/keep-alive) and watch streams (`watch.rs`).
//! Several endpoints: a call that cannot reach one tries the next.
//!
//! Not the `etcd-client` crate: it generates its messages with `protoc` at build time, which a
//! plain `cargo build` on a fresh machine does not have.

pub mod proto;
mod watch;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

pub use proto::KeyValue;
use proto::*;
pub use watch::{WatchEvent, Watcher};

type Body = BoxBody<Bytes, Infallible>;

/// How long one call may take before the endpoint counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub enum Error {
    /// No endpoint answered.
    Unreachable(String),
    /// etcd answered with a gRPC error.
    Status { code: u32, message: String },
    /// The answer was not what the API says.
    Protocol(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unreachable(m) => write!(f, "etcd unreachable: {m}"),
            Error::Status { code, message } => write!(f, "etcd error {code}: {message}"),
            Error::Protocol(m) => write!(f, "etcd answered oddly: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Counts of what this replica asked of etcd, for `wakeway_cluster_etcd_*` and the docs.
#[derive(Default)]
pub struct Counters {
    /// Puts, deletes and transactions.
    pub writes: AtomicU64,
    pub keepalives: AtomicU64,
    pub reads: AtomicU64,
}

pub struct Client {
    /// `host:port` of each endpoint.
    endpoints: Vec<String>,
    /// The endpoint tried first: the last one that answered.
    current: AtomicUsize,
    conn: tokio::sync::Mutex<Option<(usize, SendRequest<Body>)>>,
    pub counters: Counters,
}

/// `http://host:port` or `host:port` → `host:port`.
pub fn authority_of(endpoint: &str) -> std::result::Result<String, String> {
    let rest = endpoint
        .strip_prefix("http://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    if endpoint.starts_with("https://") {
        return Err(format!(
            "`{endpoint}`: TLS to etcd is not supported yet; reach it over plain http"
        ));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(rest.to_string())
        }
        _ => Err(format!("`{endpoint}` is not http://host:port")),
    }
}

/// The end of the range of every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Client {
    pub fn new(endpoints: &[String]) -> std::result::Result<Client, String> {
        let endpoints = endpoints
            .iter()
            .map(|e| authority_of(e))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err("no etcd endpoint".into());
        }
        Ok(Client {
            endpoints,
            current: AtomicUsize::new(0),
            conn: tokio::sync::Mutex::new(None),
            counters: Counters::default(),
        })
    }

    /// A connection to the current endpoint, or to the next that accepts one.
    async fn sender(&self) -> Result<(usize, SendRequest<Body>)> {
        let mut conn = self.conn.lock().await;
        if let Some((i, s)) = conn.as_ref()
            && !s.is_closed()
        {
            return Ok((*i, s.clone()));
        }
        let n = self.endpoints.len();
        let first = self.current.load(Relaxed);
        let mut last = String::new();
        for k in 0..n {
            let i = (first + k) % n;
            match connect(&self.endpoints[i]).await {
                Ok(s) => {
                    self.current.store(i, Relaxed);
                    *conn = Some((i, s.clone()));
                    return Ok((i, s));
                }
                Err(e) => last = e,
            }
        }
        *conn = None;
        Err(Error::Unreachable(last))
    }

    /// Forgets the connection to endpoint `i` and moves on to the next.
    async fn failed(&self, i: usize) {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(|(c, _)| *c == i) {
            *conn = None;
        }
        let _ = self
            .current
            .compare_exchange(i, (i + 1) % self.endpoints.len(), Relaxed, Relaxed);
    }

    /// Sends `body` to `path` and returns the response body, trying each endpoint once.
    async fn exchange(&self, path: &str, body: Bytes) -> Result<Bytes> {
        let mut last = Error::Unreachable("no endpoint tried".into());
        for _ in 0..self.endpoints.len() {
            let (i, mut sender) = match self.sender().await {
                Ok(s) => s,
                Err(e) => return Err(e),
            };
            let req = grpc_request(&self.endpoints[i], path, Full::new(body.clone()).boxed());
            let answered = tokio::time::timeout(CALL_TIMEOUT, async {
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| Error::Unreachable(format!("{}: {e}", self.endpoints[i])))?;
                let head = resp.headers().clone();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| Error::Unreachable(format!("{}: {e}", self.endpoints[i])))?;
                let trailers = body.trailers().cloned().unwrap_or_default();
                check_status(&head, &trailers)?;
                Ok(body.to_bytes())
            })
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unreachable(format!(
                    "{}: no answer within {CALL_TIMEOUT:?}",
                    self.endpoints[i]
                )))
            });
            match answered {
                // 14 UNAVAILABLE: this member cannot serve (no quorum, stopping).
                Err(Error::Unreachable(_)) | Err(Error::Status { code: 14, .. }) => {
                    last = answered.expect_err("an error");
                    self.failed(i).await;
                }
                other => return other,
            }
        }
        Err(last)
    }

    async fn unary<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Resp> {
        let bytes = self.exchange(path, frame(req)).await?;
        let mut buf = BytesMut::from(&bytes[..]);
        match next_message(&mut buf)? {
            Some(m) => Ok(m),
            None => Err(Error::Protocol(format!("{path}: no message in the answer"))),
        }
    }

    /// The keys from `key` up to `range_end` (empty: `key` alone).
    async fn range(&self, key: &str, range_end: Vec<u8>) -> Result<RangeResponse> {
        self.counters.reads.fetch_add(1, Relaxed);
        let req = RangeRequest {
            key: key.as_bytes().to_vec(),
            range_end,
            ..Default::default()
        };
        self.unary("/etcdserverpb.KV/Range", &req).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.range(key, Vec::new()).await?.kvs.into_iter().next())
    }

    /// Every key under `prefix`, and the store's revision they were read at.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let r = self.range(prefix, prefix_end(prefix.as_bytes())).await?;
        let revision = r.header.map_or(0, |h| h.revision);
        Ok((r.kvs, revision))
    }

    pub async fn put(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<()> {
        self.counters.writes.fetch_add(1, Relaxed);
        let _: PutResponse = self
            .unary(
                "/etcdserverpb.KV/Put",
                &PutRequest {
                    key: key.as_bytes().to_vec(),
                    value,
                    lease,
                },
            )
            .await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.counters.writes.fetch_add(1, Relaxed);
        let _: DeleteRangeResponse = self
            .unary(
                "/etcdserverpb.KV/DeleteRange",
                &DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }

    pub async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse> {
        self.counters.writes.fetch_add(1, Relaxed);
        self.unary("/etcdserverpb.KV/Txn", &txn).await
    }

    /// A lease of `ttl` seconds: its id and the TTL etcd chose.
    pub async fn grant(&self, ttl: i64) -> Result<(i64, i64)> {
        self.counters.writes.fetch_add(1, Relaxed);
        let r: LeaseGrantResponse = self
            .unary(
                "/etcdserverpb.Lease/LeaseGrant",
                &LeaseGrantRequest { ttl, id: 0 },
            )
            .await?;
        if !r.error.is_empty() {
            return Err(Error::Protocol(r.error));
        }
        Ok((r.id, r.ttl))
    }

    /// Renews `lease`; returns its TTL again, or 0 when the lease is gone.
    pub async fn keep_alive(&self, lease: i64) -> Result<i64> {
        self.counters.keepalives.fetch_add(1, Relaxed);
        // One message on the bidirectional stream, then its end: etcd answers it first.
        let r: LeaseKeepAliveResponse = self
            .unary(
                "/etcdserverpb.Lease/LeaseKeepAlive",
                &LeaseKeepAliveRequest { id: lease },
            )
            .await?;
        Ok(r.ttl.max(0))
    }

    pub async fn revoke(&self, lease: i64) -> Result<()> {
        self.counters.writes.fetch_add(1, Relaxed);
        let _: LeaseRevokeResponse = self
            .unary(
                "/etcdserverpb.Lease/LeaseRevoke",
                &LeaseRevokeRequest { id: lease },
            )
            .await?;
        Ok(())
    }
}

async fn connect(authority: &str) -> std::result::Result<SendRequest<Body>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
        .await
        .map_err(|_| format!("{authority}: connect timed out"))?
        .map_err(|e| format!("{authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // A silent etcd (a stopped host) is noticed by the watches too, not only by calls.
        .keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{authority}: h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn grpc_request(authority: &str, path: &str, body: Body) -> http::Request<Body> {
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = format!("http://{authority}{path}")
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("http://localhost/"));
    let h = req.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    req
}

/// The gRPC status of an answer: in the trailers, or in the head of a trailers-only one.
fn check_status(head: &http::HeaderMap, trailers: &http::HeaderMap) -> Result<()> {
    let code = trailers
        .get("grpc-status")
        .or_else(|| head.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match code {
        Some(0) => Ok(()),
        Some(code) => {
            let message = trailers
                .get("grpc-message")
                .or_else(|| head.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Err(Error::Status { code, message })
        }
        None => Err(Error::Protocol("no grpc-status".into())),
    }
}

/// One gRPC message: uncompressed flag, big-endian length, the message.
fn frame<M: prost::Message>(m: &M) -> Bytes {
    let len = m.encoded_len();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(0);
    b.put_u32(len as u32);
    // Cannot fail: the buffer has room for `encoded_len`.
    let _ = m.encode(&mut b);
    b.freeze()
}

/// Takes the first whole message out of `buf`; `None` until one is whole.
fn next_message<M: prost::Message + Default>(buf: &mut BytesMut) -> Result<Option<M>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != 0 {
        return Err(Error::Protocol("compressed message".into()));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return Ok(None);
    }
    buf.advance(5);
    let msg = buf.split_to(len).freeze();
    M::decode(msg)
        .map(Some)
        .map_err(|e| Error::Protocol(e.to_string()))
}

/// Txn building blocks.
pub mod txn {
    use super::proto::*;

    /// The key does not exist.
    pub fn absent(key: &str) -> Compare {
        Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
        }
    }

    /// The key exists and is attached to `lease`.
    pub fn held_by(key: &str, lease: i64) -> Compare {
        Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Lease as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(compare::TargetUnion::Lease(lease)),
        }
    }

    pub fn put(key: &str, value: Vec<u8>, lease: i64) -> RequestOp {
        RequestOp {
            request: Some(request_op::Op::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value,
                lease,
            })),
        }
    }

    pub fn delete(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Op::DeleteRange(DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                range_end: Vec::new(),
            })),
        }
    }

    pub fn get(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Op::Range(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        }
    }

    /// The key-values a `get` among the answers read.
    pub fn read(resp: &TxnResponse) -> Vec<&KeyValue> {
        resp.responses
            .iter()
            .filter_map(|r| match &r.response {
                Some(response_op::Op::Range(r)) => Some(r.kvs.iter()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_end_past_every_key_of_the_prefix() {
        assert_eq!(prefix_end(b"/wakeway/"), b"/wakeway0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn endpoints_are_host_and_port() {
        assert_eq!(
            authority_of("http://127.0.0.1:2379").unwrap(),
            "127.0.0.1:2379"
        );
        assert_eq!(authority_of("etcd-1:2379/").unwrap(), "etcd-1:2379");
        assert!(
            authority_of("https://etcd:2379")
                .unwrap_err()
                .contains("TLS")
        );
        assert!(authority_of("etcd").unwrap_err().contains("host:port"));
    }

    #[test]
    fn messages_split_across_reads_come_out_whole() {
        let m = proto::LeaseKeepAliveResponse {
            header: None,
            id: 7,
            ttl: 5,
        };
        let framed = frame(&m);
        let mut buf = BytesMut::from(&framed[..3]);
        assert!(
            next_message::<proto::LeaseKeepAliveResponse>(&mut buf)
                .unwrap()
                .is_none()
        );
        buf.extend_from_slice(&framed[3..]);
        buf.extend_from_slice(&framed);
        let first: proto::LeaseKeepAliveResponse = next_message(&mut buf).unwrap().unwrap();
        assert_eq!(first, m);
        assert!(
            next_message::<proto::LeaseKeepAliveResponse>(&mut buf)
                .unwrap()
                .is_some()
        );
        assert!(buf.is_empty());
    }
}
