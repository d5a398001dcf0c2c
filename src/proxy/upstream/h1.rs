//! HTTP/1.1 upstream connections, owned by one worker: no lock, no channel, no shared cache line. Idle
//! connections are kept per instance address, reused last-in first-out (the warmest socket), and
//! closed after their service's `upstream_idle_timeout` — below the app's own keep-alive, so
//! wakeway closes first and rarely writes into a socket the app is closing — or when their
//! instance leaves the pool.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::service::instance::{Instance, InstanceState};

/// Idle connections kept per instance and worker.
const MAX_IDLE_PER_INSTANCE: usize = 256;
const BUF: usize = 8 * 1024;

pub struct UpConn {
    pub io: TcpStream,
    pub rb: RecvBuf,
    /// Came from the idle list: the app may have closed it meanwhile.
    pub reused: bool,
}

impl UpConn {
    fn new(io: TcpStream) -> UpConn {
        UpConn {
            io,
            rb: RecvBuf::new(BUF),
            reused: false,
        }
    }
}

/// Bytes read and not used yet: `buf[start..end]`.
pub struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    pub fn new(size: usize) -> RecvBuf {
        RecvBuf {
            buf: vec![0; size],
            start: 0,
            end: 0,
        }
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more from `r` (compacting, or growing the buffer up to `max`); 0 means end of
    /// stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R, max: usize) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < max {
                self.buf.resize((self.buf.len() * 2).min(max), 0);
            } else {
                return Err(io::Error::other("response head too large"));
            }
        }
        let n = r.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

#[derive(Default)]
pub(super) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
}

struct Idle {
    /// Each with the moment it may no longer be reused.
    conns: Vec<(UpConn, Instant)>,
    instance: Weak<Instance>,
    /// The instance's generation when these were pooled: a frozen and thawed instance's old
    /// connections are dropped, not reused.
    generation: u32,
}

/// One worker's upstream connections.
#[derive(Default)]
pub struct Upstreams {
    idle: RefCell<HashMap<SocketAddr, Idle, BuildHasherDefault<AddrHasher>>>,
}

impl Upstreams {
    /// An idle connection to `instance`, if one is still open, was not idle too long, and was
    /// pooled since its last freeze.
    pub fn take(&self, instance: &Instance) -> Option<UpConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&instance.address)?;
        if list.generation != instance.generation() {
            list.conns.clear();
            return None;
        }
        let mut now = None;
        while let Some((mut c, until)) = list.conns.pop() {
            // The sweep runs once a second: a shorter `upstream_idle_timeout` is kept here.
            if until <= *now.get_or_insert_with(Instant::now) {
                continue;
            }
            // No syscall unless the reactor already saw the socket readable: an idle upstream
            // connection that is readable was closed (or sent junk) by the app.
            let mut probe = [0u8; 1];
            match c.io.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.reused = true;
                    return Some(c);
                }
                _ => continue,
            }
        }
        None
    }

    /// Keeps a connection whose exchange ended cleanly for at most `idle_for`, unless its
    /// instance is leaving.
    pub fn give_back(&self, conn: UpConn, instance: &Arc<Instance>, idle_for: Duration) {
        if instance.state() != InstanceState::Ready || !conn.rb.is_empty() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let generation = instance.generation();
        let list = idle.entry(instance.address).or_insert_with(|| Idle {
            conns: Vec::new(),
            instance: Arc::downgrade(instance),
            generation,
        });
        if list.generation != generation {
            list.conns.clear();
            list.generation = generation;
        }
        if list.conns.len() < MAX_IDLE_PER_INSTANCE {
            list.conns.push((conn, Instant::now() + idle_for));
        }
    }

    /// Closes connections idle too long and those of instances no longer routable.
    pub fn sweep(&self, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|_, list| {
            if !super::routable(&list.instance) {
                return false;
            }
            list.conns.retain(|(_, until)| *until > now);
            !list.conns.is_empty()
        });
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(|l| l.conns.len()).sum()
    }

    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}

pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<UpConn, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(UpConn::new(s))
        }
    }
}

#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Failed(io::Error),
}
