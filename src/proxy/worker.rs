//! The data-plane workers: one thread per core, each with its own current-thread runtime, its own
//! `SO_REUSEPORT` socket per listen address (the kernel spreads connections), its own upstream
//! connections and buffers. A request never changes threads; the control plane meets the workers
//! only in `ArcSwap`ed routes and pools, instance in-flight counts and queue wakeups.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::LocalSet;
use tokio_util::task::TaskTracker;

use super::body::ProxyBody;
use super::ctx::{ConnSlot, Ctx, Open};
use super::h1::conn::{Conn, End};
use super::rewind::Rewind;
use super::{Listener, Shared};
use crate::tls::Alpn;

/// Beyond `shutdown_timeout`, how long connections get to write the answers the shutdown gave
/// their requests (a queued request's 503) before the worker closes them.
pub const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Runs one worker until `shared.shutdown`, then lets its connections finish (up to `grace`).
pub fn run(index: usize, listeners: Vec<Listener>, shared: Arc<Shared>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("worker {index}: cannot build its runtime: {e}");
            return;
        }
    };
    crate::metrics::requests::set_worker(index);
    let local = LocalSet::new();
    local.block_on(&rt, serve(index, listeners, shared));
}

async fn serve(index: usize, listeners: Vec<Listener>, shared: Arc<Shared>) {
    let ctx = Rc::new(Ctx::new(shared.clone(), index));
    let tracker = TaskTracker::new();
    for l in listeners {
        let tls = l.tls;
        let l = match TcpListener::from_std(l.socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot use a listening socket: {e}");
                continue;
            }
        };
        tokio::task::spawn_local(accept(l, tls, ctx.clone(), tracker.clone()));
    }
    let sweeper = {
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = tokio::time::Instant::now();
                ctx.upstreams.sweep(now);
                ctx.h2.h2.sweep(now);
                ctx.buffers.trim();
            }
        })
    };
    // Other workers at the limit ask this one to close idle connections it holds.
    let closer = {
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            loop {
                let n = ctx.shared.admission.asked(ctx.index).await;
                for _ in 0..n {
                    if !ctx.close_longest_idle() {
                        break;
                    }
                }
            }
        })
    };
    shared.shutdown.cancelled().await;
    ctx.stopping.set(true);
    ctx.stop.notify_waiters();
    tracker.close();
    let grace = shared.settings.shutdown_timeout + ANSWER_GRACE;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            "connections still open after {:?}; closing them",
            shared.settings.shutdown_timeout
        );
    }
    sweeper.abort();
    closer.abort();
    ctx.upstreams.clear();
    ctx.h2.h2.clear();
}

async fn accept(listener: TcpListener, tls: bool, ctx: Rc<Ctx>, tracker: TaskTracker) {
    let admission = &ctx.shared.admission;
    loop {
        // At the limit with every connection busy, new connections wait in the kernel's
        // backlog: the open ones keep their descriptors and their service. An idle keep-alive
        // connection anywhere is closed for a new client instead.
        if !admission.has_room() {
            tokio::select! {
                _ = ctx.stopping() => return,
                _ = admission.room() => {}
            }
        }
        let (stream, peer) = tokio::select! {
            _ = ctx.stopping() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let open = Open::new(ctx.clone());
        // Two task types: a plain connection's task is not sized for TLS state.
        if tls {
            tokio::task::spawn_local(
                tracker.track_future(async move { serve_tls(stream, peer, &open).await }),
            );
        } else {
            tokio::task::spawn_local(
                tracker.track_future(async move { serve_plain(stream, peer, &open).await }),
            );
        }
    }
}

async fn serve_plain(stream: TcpStream, peer: SocketAddr, open: &Open) {
    let mut conn = Conn::new(stream, &open.ctx, &open.slot, peer, false);
    let end = conn.serve().await;
    let stream = conn.finish();
    if let End::H2(preface) = end {
        // Boxed: hyper's h2 state would otherwise size every idle HTTP/1 connection's task.
        Box::pin(serve_h2(Rewind::new(preface, stream), peer, open, false)).await;
    }
}

/// A TLS connection: the handshake must finish within `header_read_timeout`; ALPN picks h2 or
/// HTTP/1.1.
async fn serve_tls(stream: TcpStream, peer: SocketAddr, open: &Open) {
    let ctx = &open.ctx;
    let Some(acceptor) = &ctx.shared.tls else {
        return;
    };
    let timeout = ctx.shared.settings.header_read_timeout;
    let (stream, alpn) = match acceptor.accept(stream, timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("TLS handshake with {peer} failed: {e}");
            return;
        }
    };
    if alpn == Alpn::H2 {
        // The preface is h2's request line: bounded by the header read timeout, as on the plain
        // listener, so a client that agrees on h2 and goes quiet does not hold a connection.
        let mut stream = stream;
        let mut preface = vec![0u8; crate::proxy::h1::conn::H2_PREFACE.len()];
        let read = tokio::io::AsyncReadExt::read_exact(&mut stream, &mut preface);
        if !matches!(tokio::time::timeout(timeout, read).await, Ok(Ok(_))) {
            return;
        }
        serve_h2(Rewind::new(preface, stream), peer, open, true).await;
        return;
    }
    // Over TLS, h2 comes through ALPN only: a preface here is not HTTP/1 and is refused.
    let mut conn = Conn::new(stream, ctx, &open.slot, peer, true);
    let _ = conn.serve().await;
    let mut stream = conn.finish();
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
}

/// An h2 connection (prior knowledge, or ALPN over TLS), served by hyper.
async fn serve_h2<S>(io: S, peer: SocketAddr, open: &Open, https: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let ctx = &open.ctx;
    let mut builder =
        hyper::server::conn::http2::Builder::new(crate::proxy::upstream::h2::LocalExec);
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(ctx.shared.settings.idle_timeout / 2))
        .max_header_list_size(ctx.shared.settings.limits.max_header_bytes as u32);
    let fwd = ctx.h2.clone();
    let activity = Rc::new(StreamActivity {
        open: Cell::new(0),
        seen: Cell::new(false),
        last: Cell::new(tokio::time::Instant::now()),
        ctx: ctx.clone(),
        slot: open.slot.clone(),
    });
    let act = activity.clone();
    let svc = service_fn(move |req| {
        let fwd = fwd.clone();
        let act = act.clone();
        act.open.set(act.open.get() + 1);
        if !act.seen.replace(true) {
            act.ctx.first_request(&act.slot);
        }
        act.ctx.idle_end(&act.slot);
        async move {
            let open = OpenStream(act);
            let resp = fwd.handle(req, peer, https).await;
            // The stream stays open until its response body is done (or dropped).
            Ok::<_, std::convert::Infallible>(resp.map(|body| TrackedBody { body, _open: open }))
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    // hyper has no idle timer for h2: a client that sends the preface (or finishes a request)
    // and then goes quiet would hold its connection for good. No request within
    // `header_read_timeout` of the preface, or none for `idle_timeout` after the last, ends it.
    let settings = &ctx.shared.settings;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let linger = loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!("h2 connection from {peer} ended: {e}");
                }
                return;
            }
            _ = ctx.stopping() => break settings.shutdown_timeout + ANSWER_GRACE,
            // Its place is needed for a new client (`max_connections`): it has no stream open.
            _ = open.slot.closing() => break IDLE_LINGER,
            _ = tick.tick() => {
                let limit = if activity.seen.get() {
                    settings.idle_timeout
                } else {
                    settings.header_read_timeout
                };
                if activity.open.get() == 0 && activity.last.get().elapsed() >= limit {
                    break IDLE_LINGER;
                }
            }
        }
    };
    // GOAWAY: streams under way (a response body still streaming) finish; a peer that does not
    // close after it is dropped when `linger` is over.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(linger, conn).await;
}

/// How long an idle h2 connection told to go away (GOAWAY) may take to close by itself.
const IDLE_LINGER: Duration = Duration::from_secs(1);

/// Whether an h2 connection is in use: streams open (request or response body under way), and
/// when the last one ended. With none open after one was, it idles as a keep-alive connection.
struct StreamActivity {
    open: Cell<usize>,
    seen: Cell<bool>,
    last: Cell<tokio::time::Instant>,
    ctx: Rc<Ctx>,
    slot: Rc<ConnSlot>,
}

/// One open h2 stream; counted until dropped.
struct OpenStream(Rc<StreamActivity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.last.set(tokio::time::Instant::now());
        if self.0.open.get() == 0 {
            self.0.ctx.idle_begin(&self.0.slot);
        }
    }
}

/// A response body that keeps its stream counted as open until it ends.
struct TrackedBody {
    body: ProxyBody,
    _open: OpenStream,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = super::body::BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Binds `count` sockets to `addr` with `SO_REUSEPORT`, so each worker accepts on its own. With
/// port 0 the first socket's port is used for the rest.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        // SO_REUSEPORT would quietly share a port another wakeway of this user listens on: a
        // plain bind first turns that into the usual "address in use".
        drop(std::net::TcpListener::bind(addr)?);
    }
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        let l: std::net::TcpListener = socket.into();
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}
