//! The data-plane workers: one thread per core, each with its own current-thread runtime, its own
//! `SO_REUSEPORT` socket per listen address (the kernel spreads connections), its own upstream
//! connections and buffers. A request never changes threads; the control plane meets the workers
//! only in `ArcSwap`ed routes and pools, instance in-flight counts and queue wakeups.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::LocalSet;
use tokio_util::task::TaskTracker;

use super::body::ProxyBody;
use super::forward::HyperForwarder;
use super::h1::conn::{Conn, End};
use super::rewind::Rewind;
use super::upstream::Upstreams;
use super::{Listener, Shared};
use crate::tls::Alpn;

/// What one worker owns. Lives on the worker's thread only: no locks.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub upstreams: Upstreams,
    pub buffers: Buffers,
    h2: HyperForwarder,
    /// This worker's open client connections, against its share of `max_connections`.
    open: Cell<usize>,
    closed: Notify,
    /// The shutdown signal, relayed once to this thread: waiting on the shared token from every
    /// idle connection would take its lock, shared by all workers, per request.
    stopping: Cell<bool>,
    stop: Notify,
}

impl Ctx {
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves once wakeway is shutting down.
    pub async fn stopping(&self) {
        loop {
            // Registered before the check; nothing runs between them on this thread.
            let notified = self.stop.notified();
            if self.stopping.get() {
                return;
            }
            notified.await;
        }
    }
}

/// Counts one open client connection for as long as it lives.
struct Open(Rc<Ctx>);

impl Open {
    fn new(ctx: Rc<Ctx>) -> Open {
        ctx.open.set(ctx.open.get() + 1);
        ctx.shared.connections.fetch_add(1, Relaxed);
        Open(ctx)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.shared.connections.fetch_sub(1, Relaxed);
        self.0.closed.notify_one();
    }
}

/// Read and write buffers of connections between requests, so an idle keep-alive connection
/// holds none and a busy one allocates none.
#[derive(Default)]
pub struct Buffers {
    reads: RefCell<Free>,
    writes: RefCell<Free>,
}

/// Buffers kept per kind and worker: enough for the requests one core has in flight at once;
/// the rest go back to the allocator (and `trim` returns what went unused for a second).
const KEPT_BUFFERS: usize = 256;
const KEPT_SIZE: usize = 64 * 1024;

/// A stack of free buffers, used last-in first-out, with the fewest it held since the last trim:
/// that many at its bottom went unused all along.
#[derive(Default)]
struct Free {
    list: Vec<Vec<u8>>,
    low: usize,
}

impl Free {
    fn take(&mut self) -> Option<Vec<u8>> {
        let b = self.list.pop();
        self.low = self.low.min(self.list.len());
        b
    }

    fn put(&mut self, b: Vec<u8>) {
        if self.list.len() < KEPT_BUFFERS {
            self.list.push(b);
        }
    }

    fn trim(&mut self) {
        self.list.drain(..self.low);
        if self.list.capacity() > 2 * self.list.len() + 16 {
            self.list.shrink_to_fit();
        }
        self.low = self.list.len();
    }
}

impl Buffers {
    /// A read buffer: zero-filled, at least `min` long.
    pub fn read_buf(&self, min: usize) -> Vec<u8> {
        self.reads
            .borrow_mut()
            .take()
            .unwrap_or_else(|| vec![0; min])
    }

    /// A write buffer: empty, with room.
    pub fn write_buf(&self, min: usize) -> Vec<u8> {
        self.writes
            .borrow_mut()
            .take()
            .unwrap_or_else(|| Vec::with_capacity(min))
    }

    pub fn put_read(&self, b: Vec<u8>) {
        if !b.is_empty() && b.len() <= KEPT_SIZE {
            self.reads.borrow_mut().put(b);
        }
    }

    pub fn put_write(&self, mut b: Vec<u8>) {
        if b.capacity() > 0 && b.capacity() <= KEPT_SIZE {
            b.clear();
            self.writes.borrow_mut().put(b);
        }
    }

    /// Called once a second: frees the buffers no request took since the last call, so a burst
    /// does not pin its memory while a steady load keeps what it uses.
    pub fn trim(&self) {
        self.reads.borrow_mut().trim();
        self.writes.borrow_mut().trim();
    }
}

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
    local.block_on(&rt, serve(listeners, shared));
}

async fn serve(listeners: Vec<Listener>, shared: Arc<Shared>) {
    let ctx = Rc::new(Ctx {
        h2: HyperForwarder::new(shared.clone()),
        shared: shared.clone(),
        upstreams: Upstreams::default(),
        buffers: Buffers::default(),
        open: Cell::new(0),
        closed: Notify::new(),
        stopping: Cell::new(false),
        stop: Notify::new(),
    });
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
                ctx.upstreams.sweep(tokio::time::Instant::now());
                ctx.buffers.trim();
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
    ctx.upstreams.clear();
}

async fn accept(listener: TcpListener, tls: bool, ctx: Rc<Ctx>, tracker: TaskTracker) {
    let max = ctx.shared.settings.max_connections_per_worker;
    loop {
        // At the limit, new connections wait in the kernel's backlog: the open ones keep their
        // descriptors and their service.
        while ctx.open.get() >= max {
            tokio::select! {
                _ = ctx.stopping() => return,
                _ = ctx.closed.notified() => {}
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
                tracker.track_future(async move { serve_tls(stream, peer, &open.0).await }),
            );
        } else {
            tokio::task::spawn_local(
                tracker.track_future(async move { serve_plain(stream, peer, &open.0).await }),
            );
        }
    }
}

async fn serve_plain(stream: TcpStream, peer: SocketAddr, ctx: &Rc<Ctx>) {
    let mut conn = Conn::new(stream, ctx, peer, false);
    let end = conn.serve().await;
    let stream = conn.finish();
    if let End::H2(preface) = end {
        // Boxed: hyper's h2 state would otherwise size every idle HTTP/1 connection's task.
        Box::pin(serve_h2(
            Rewind::new(preface, stream),
            peer,
            ctx.clone(),
            false,
        ))
        .await;
    }
}

/// A TLS connection: the handshake must finish within `header_read_timeout`; ALPN picks h2 or
/// HTTP/1.1.
async fn serve_tls(stream: TcpStream, peer: SocketAddr, ctx: &Rc<Ctx>) {
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
        serve_h2(Rewind::new(preface, stream), peer, ctx.clone(), true).await;
        return;
    }
    // Over TLS, h2 comes through ALPN only: a preface here is not HTTP/1 and is refused.
    let mut conn = Conn::new(stream, ctx, peer, true);
    let _ = conn.serve().await;
    let mut stream = conn.finish();
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
}

/// An h2 connection (prior knowledge, or ALPN over TLS), served by hyper.
pub async fn serve_h2<S>(io: S, peer: SocketAddr, ctx: Rc<Ctx>, https: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(ctx.shared.settings.idle_timeout / 2))
        .max_header_list_size(ctx.shared.settings.limits.max_header_bytes as u32);
    let fwd = ctx.h2.clone();
    let activity = Rc::new(StreamActivity {
        open: Cell::new(0),
        seen: Cell::new(false),
        last: Cell::new(tokio::time::Instant::now()),
    });
    let act = activity.clone();
    let svc = service_fn(move |req| {
        let fwd = fwd.clone();
        let act = act.clone();
        act.open.set(act.open.get() + 1);
        act.seen.set(true);
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
/// when the last one ended.
struct StreamActivity {
    open: Cell<usize>,
    seen: Cell<bool>,
    last: Cell<tokio::time::Instant>,
}

/// One open h2 stream; counted until dropped.
struct OpenStream(Rc<StreamActivity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.last.set(tokio::time::Instant::now());
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

#[derive(Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_frees_only_buffers_that_went_unused() {
        let b = Buffers::default();
        for _ in 0..10 {
            b.put_read(vec![0; 16]);
        }
        b.trim();
        // A steady load takes and gives back three at a time: those three stay.
        let taken: Vec<_> = (0..3).map(|_| b.read_buf(16)).collect();
        for t in taken {
            b.put_read(t);
        }
        b.trim();
        assert_eq!(b.reads.borrow().list.len(), 3);
        // A second without requests: they go too.
        b.trim();
        assert_eq!(b.reads.borrow().list.len(), 0);
    }
}
