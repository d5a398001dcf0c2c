//! A tonic gRPC client on one h2c connection to wakeway, for whoami's gRPC methods
//! (`wakeway::whoami_grpc`): every call of a test shares the connection, as a real client's
//! channel does, and the `:authority` names the service while the socket goes to the proxy.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tonic::client::Grpc;
use tonic_prost::ProstCodec;
use wakeway::whoami_grpc::{BIDI, CLIENT_STREAM, Call, Reply, SERVER_STREAM, UNARY};

/// One h2c connection, as a tower service for tonic.
#[derive(Clone)]
pub struct H2Conn(SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for H2Conn {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// A whoami gRPC client for `host`, through the proxy at `addr`.
#[derive(Clone)]
pub struct Client(Grpc<H2Conn>);

pub fn call(message: &str, sleep_ms: u64) -> Call {
    Call {
        message: message.into(),
        count: 0,
        sleep_ms,
    }
}

/// A server-streaming call: `count` replies of `message`, `sleep_ms` apart.
pub fn replies_of(message: &str, count: u32, sleep_ms: u64) -> Call {
    Call {
        count,
        ..call(message, sleep_ms)
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr, host: &str) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect to wakeway");
        let _ = tcp.set_nodelay(true);
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(tcp))
            .await
            .expect("h2c handshake with wakeway");
        tokio::spawn(conn);
        let origin = format!("http://{host}").parse().unwrap();
        Client(Grpc::with_origin(H2Conn(send), origin))
    }

    async fn ready(&mut self) -> Result<(), tonic::Status> {
        self.0
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connection: {e}")))
    }

    pub async fn unary(&mut self, c: Call) -> Result<Reply, tonic::Status> {
        self.unary_req(tonic::Request::new(c)).await
    }

    /// A unary call with the client's deadline (`grpc-timeout`).
    pub async fn unary_within(&mut self, c: Call, t: Duration) -> Result<Reply, tonic::Status> {
        let mut req = tonic::Request::new(c);
        req.set_timeout(t);
        self.unary_req(req).await
    }

    async fn unary_req(&mut self, req: tonic::Request<Call>) -> Result<Reply, tonic::Status> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::from_static(UNARY);
        let r = self.0.unary(req, path, ProstCodec::default()).await?;
        Ok(r.into_inner())
    }

    /// The replies of a server-streaming call, as they come.
    pub async fn server_stream(
        &mut self,
        c: Call,
    ) -> Result<tonic::Streaming<Reply>, tonic::Status> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::from_static(SERVER_STREAM);
        let r = self
            .0
            .server_streaming(tonic::Request::new(c), path, ProstCodec::default())
            .await?;
        Ok(r.into_inner())
    }

    pub async fn client_stream(&mut self, calls: Vec<Call>) -> Result<Reply, tonic::Status> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::from_static(CLIENT_STREAM);
        let req = tonic::Request::new(futures_util::stream::iter(calls));
        let r = self
            .0
            .client_streaming(req, path, ProstCodec::default())
            .await?;
        Ok(r.into_inner())
    }

    /// A bidi call fed from `calls`; its replies as they come.
    pub async fn bidi(
        &mut self,
        calls: impl futures_util::Stream<Item = Call> + Send + 'static,
    ) -> Result<tonic::Streaming<Reply>, tonic::Status> {
        self.ready().await?;
        let path = http::uri::PathAndQuery::from_static(BIDI);
        let r = self
            .0
            .streaming(
                tonic::Request::new(calls.boxed()),
                path,
                ProstCodec::default(),
            )
            .await?;
        Ok(r.into_inner())
    }
}

/// How a fake h2c instance misbehaves once a request's HEADERS arrive.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// A DATA frame on stream 0: a connection error (PROTOCOL_ERROR) by RFC 9113 §6.1.
    MalformedFrame,
    /// A response header block that is not valid HPACK (COMPRESSION_ERROR).
    GarbageHeaders,
    /// RST_STREAM (INTERNAL_ERROR) for every stream.
    ResetEveryStream,
}

/// An h2c "instance" that speaks just enough HTTP/2 to take streams, then misbehaves as told.
/// Returns its address; it serves until the test ends.
pub async fn bad_h2_instance(how: Misbehaviour) -> SocketAddr {
    use super::h2c::{HEADERS, RST_STREAM, SETTINGS, frame, settings};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if s.read_exact(&mut preface).await.is_err() {
                    return;
                }
                if s.write_all(&settings(&[])).await.is_err() {
                    return;
                }
                loop {
                    let mut head = [0u8; 9];
                    if s.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let (kind, flags) = (head[3], head[4]);
                    let stream =
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & !(1 << 31);
                    let mut payload = vec![0u8; len];
                    if s.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    let reply = match (kind, how) {
                        (SETTINGS, _) if flags & 1 == 0 => frame(SETTINGS, 1, 0, &[]),
                        (HEADERS, Misbehaviour::MalformedFrame) => frame(0, 0, 0, b"junk"),
                        (HEADERS, Misbehaviour::GarbageHeaders) => {
                            frame(HEADERS, 0x4, stream, &[0xff, 0xff, 0xff, 0xff, 0xff])
                        }
                        (HEADERS, Misbehaviour::ResetEveryStream) => {
                            frame(RST_STREAM, 0, stream, &2u32.to_be_bytes())
                        }
                        _ => continue,
                    };
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A gRPC instance (whoami's methods) that ends each connection with a graceful GOAWAY after
/// `streams` calls on it, as a server does when it recycles connections. Returns its address
/// and the count of connections it accepted.
pub async fn recycling_instance(
    streams: usize,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let accepted = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let seen = Arc::new(AtomicUsize::new(0));
                let enough = Arc::new(tokio::sync::Notify::new());
                let svc = {
                    let (seen, enough) = (seen.clone(), enough.clone());
                    hyper::service::service_fn(move |req| {
                        if seen.fetch_add(1, Ordering::SeqCst) + 1 == streams {
                            enough.notify_one();
                        }
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                wakeway::whoami_grpc::handle("recycling", true, req).await,
                            )
                        }
                    })
                };
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = enough.notified() => {}
                }
                // GOAWAY: the streams it took finish; new ones go to a new connection.
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            });
        }
    });
    (addr, conns)
}
