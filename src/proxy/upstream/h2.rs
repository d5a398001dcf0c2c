//! h2c (HTTP/2 with prior knowledge) connections to instances, owned by one worker as the HTTP/1.1
//! ones are: a few multiplexed connections per instance, each carrying up to `STREAMS_PER_CONN`
//! streams, no lock and no channel but the one hyper's `SendRequest` is. A connection the instance
//! closes (GOAWAY) takes no new stream; the streams it accepted finish on it, and a request it
//! did not take is sent on a new one.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, Shared};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::time::Instant;

use super::RequestBody;
use super::h1::{AddrHasher, ConnectError};
use crate::service::instance::Instance;

/// Streams wakeway opens on one connection before it opens another: the least every h2 server
/// is asked to allow (RFC 9113 §6.5.2) and hyper's own starting limit. A server that allows
/// fewer gets them in turn: hyper holds a stream until the instance has room for it.
pub const STREAMS_PER_CONN: u32 = 100;
/// A connection with no stream open for this long is closed.
const H2_IDLE: Duration = Duration::from_secs(30);
/// A ping on a quiet connection that goes unanswered this long ends it (a frozen or vanished
/// instance must not hold streams for good).
const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Header block the instance may send back: larger is a protocol error that ends the stream.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// One multiplexed connection to an instance.
struct Conn {
    send: RefCell<SendRequest<RequestBody>>,
    open: Cell<u32>,
    /// Since when no stream is open.
    quiet_since: Cell<Instant>,
    /// The connection ended or refused a request: it takes no new stream.
    gone: Cell<bool>,
    /// How long the TCP connect took, until the first stream on the connection takes it for
    /// its access line.
    connect_took: Cell<Option<Duration>>,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.gone.get() && !self.send.borrow().is_closed()
    }
}

/// One stream's place on its connection, held until the response body ends.
pub struct StreamSlot(Rc<Conn>);

impl StreamSlot {
    /// The TCP connect time, to the first stream of a new connection only.
    pub fn take_connect_time(&self) -> Option<Duration> {
        self.0.connect_took.take()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let c = &self.0;
        c.open.set(c.open.get() - 1);
        if c.open.get() == 0 {
            c.quiet_since.set(Instant::now());
        }
    }
}

type Connecting = Shared<LocalBoxFuture<'static, Result<Rc<Conn>, Failed>>>;

/// A connect that failed, told to every request that waited on it.
#[derive(Debug, Clone)]
pub enum Failed {
    Timeout,
    Refused(Rc<io::Error>),
    /// TCP connected, but the instance does not speak h2c.
    Handshake(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Timeout => f.write_str("connect timed out"),
            Failed::Refused(e) => write!(f, "connect: {e}"),
            Failed::Handshake(e) => write!(f, "h2c handshake: {e}"),
        }
    }
}

/// How a request sent over h2 failed.
#[derive(Debug)]
pub enum H2Error {
    /// Nothing reached the instance: no connection, or none that took the stream.
    Connect(Failed),
    /// The stream was opened and failed (reset, the connection broke, a malformed frame).
    Stream(hyper::Error),
}

impl std::fmt::Display for H2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            H2Error::Connect(e) => e.fmt(f),
            H2Error::Stream(e) => {
                write!(f, "{e}")?;
                let mut cur = std::error::Error::source(e);
                while let Some(c) = cur {
                    write!(f, ": {c}")?;
                    cur = c.source();
                }
                Ok(())
            }
        }
    }
}

#[derive(Default)]
struct Entry {
    conns: Vec<Rc<Conn>>,
    connecting: Option<Connecting>,
    instance: Weak<Instance>,
}

type Map = HashMap<SocketAddr, Entry, BuildHasherDefault<AddrHasher>>;

/// One worker's h2c connections, by instance address.
#[derive(Default)]
pub struct H2Upstreams {
    map: Rc<RefCell<Map>>,
}

/// What to do next for one request.
enum Next {
    Use(Rc<Conn>),
    Wait(Connecting),
}

impl H2Upstreams {
    /// Sends `req` on a connection to `instance` with room for a stream, opening one if none
    /// has. A request the connection gave back unsent (it was closing) goes on a new one.
    pub async fn send(
        &self,
        instance: &Arc<Instance>,
        mut req: Request<RequestBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, StreamSlot), H2Error> {
        // A connection that closes between the pick and the send hands the request back; a
        // second such in a row is no longer a race but an instance that takes no streams.
        for _ in 0..2 {
            let conn = self
                .conn(instance, connect_timeout)
                .await
                .map_err(H2Error::Connect)?;
            conn.open.set(conn.open.get() + 1);
            let slot = StreamSlot(conn);
            let sent = slot.0.send.borrow_mut().try_send_request(req);
            match sent.await {
                Ok(resp) => return Ok((resp, slot)),
                Err(mut e) => match e.take_message() {
                    Some(back) => {
                        slot.0.gone.set(true);
                        req = back;
                    }
                    None => return Err(H2Error::Stream(e.into_error())),
                },
            }
        }
        Err(H2Error::Connect(Failed::Handshake(
            "the instance closed two new connections before taking a stream".into(),
        )))
    }

    async fn conn(&self, instance: &Arc<Instance>, timeout: Duration) -> Result<Rc<Conn>, Failed> {
        loop {
            let next = {
                let mut map = self.map.borrow_mut();
                let entry = map.entry(instance.address).or_default();
                entry.instance = Arc::downgrade(instance);
                entry.conns.retain(|c| c.usable());
                if let Some(c) = entry.conns.iter().find(|c| c.open.get() < STREAMS_PER_CONN) {
                    Next::Use(c.clone())
                } else if let Some(w) = &entry.connecting {
                    Next::Wait(w.clone())
                } else {
                    let w = open(self.map.clone(), instance.address, timeout)
                        .boxed_local()
                        .shared();
                    entry.connecting = Some(w.clone());
                    Next::Wait(w)
                }
            };
            match next {
                Next::Use(c) => return Ok(c),
                // Whoever drives the shared connect files the connection; everyone who waited
                // picks again (it may already be full).
                Next::Wait(w) => {
                    w.await?;
                }
            }
        }
    }

    /// Closes connections quiet for too long, and those of instances no longer routable (their
    /// open streams finish first: a stream holds its connection).
    pub fn sweep(&self, now: Instant) {
        self.map.borrow_mut().retain(|_, e| {
            if !super::routable(&e.instance) {
                return false;
            }
            e.conns.retain(|c| {
                c.usable()
                    && (c.open.get() > 0 || now.duration_since(c.quiet_since.get()) < H2_IDLE)
            });
            !e.conns.is_empty() || e.connecting.is_some()
        });
    }

    pub fn clear(&self) {
        self.map.borrow_mut().clear();
    }

    /// Open connections to `addr` (for tests).
    pub fn conn_count(&self, addr: SocketAddr) -> usize {
        self.map.borrow().get(&addr).map_or(0, |e| e.conns.len())
    }
}

/// Connects and handshakes; files the connection (or forgets the attempt) in `map`.
async fn open(
    map: Rc<RefCell<Map>>,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Rc<Conn>, Failed> {
    let r = handshake(addr, timeout).await;
    let mut map = map.borrow_mut();
    let entry = map.entry(addr).or_default();
    entry.connecting = None;
    if let Ok(c) = &r {
        entry.conns.push(c.clone());
    }
    r
}

async fn handshake(addr: SocketAddr, timeout: Duration) -> Result<Rc<Conn>, Failed> {
    let connecting = Instant::now();
    let up = super::h1::connect(addr, timeout)
        .await
        .map_err(|e| match e {
            ConnectError::Timeout => Failed::Timeout,
            ConnectError::Failed(e) => Failed::Refused(Rc::new(e)),
        })?;
    let connect_took = connecting.elapsed();
    let mut b = http2::Builder::new(LocalExec);
    b.timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        .max_header_list_size(MAX_HEADER_LIST)
        .initial_max_send_streams(STREAMS_PER_CONN as usize)
        .adaptive_window(true);
    // The handshake is a write and the instance's SETTINGS: bounded by the connect timeout too.
    let hs = tokio::time::timeout(timeout, b.handshake(TokioIo::new(up.io))).await;
    let (send, conn) = match hs {
        Err(_) => return Err(Failed::Timeout),
        Ok(Err(e)) => return Err(Failed::Handshake(e.to_string())),
        Ok(Ok(x)) => x,
    };
    let c = Rc::new(Conn {
        send: RefCell::new(send),
        open: Cell::new(0),
        quiet_since: Cell::new(Instant::now()),
        gone: Cell::new(false),
        connect_took: Cell::new(Some(connect_took)),
    });
    let weak = Rc::downgrade(&c);
    tokio::task::spawn_local(async move {
        // A protocol error (a malformed frame, a header block too large) fails the streams on
        // the connection; each request that had one reports it to its service.
        if let Err(e) = conn.await {
            tracing::debug!("h2c connection to {addr} ended: {e}");
        }
        if let Some(c) = weak.upgrade() {
            c.gone.set(true);
        }
    });
    Ok(c)
}

/// Runs hyper's h2 connection tasks on this worker's thread (the server's, and these clients').
#[derive(Clone, Copy)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
