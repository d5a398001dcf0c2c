//! What one worker owns ([`Ctx`]): its shared state handle, upstream connections, buffer pool,
//! open-connection count and shutdown relay. Lives on the worker's thread only: no locks.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::Notify;

use super::Shared;
use super::forward::HyperForwarder;
use super::upstream::Upstreams;

/// What one worker owns. Lives on the worker's thread only: no locks.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub upstreams: Upstreams,
    pub buffers: Buffers,
    pub(super) h2: HyperForwarder,
    /// This worker's open client connections, against its share of `max_connections`.
    pub(super) open: Cell<usize>,
    pub(super) closed: Notify,
    /// The shutdown signal, relayed once to this thread: waiting on the shared token from every
    /// idle connection would take its lock, shared by all workers, per request.
    pub(super) stopping: Cell<bool>,
    pub(super) stop: Notify,
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
pub(super) struct Open(pub(super) Rc<Ctx>);

impl Open {
    pub(super) fn new(ctx: Rc<Ctx>) -> Open {
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
