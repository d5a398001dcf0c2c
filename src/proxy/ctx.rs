//! What one worker owns ([`Ctx`]): its shared state handle, upstream connections, buffer pool,
//! its open client connections (which of them idle between requests, to close the longest-idle
//! one when `max_connections` is reached) and the shutdown relay. Lives on the worker's thread
//! only: no locks.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

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
    /// This worker's index in `shared.admission`.
    pub(super) index: usize,
    /// This worker's open client connections.
    conns: RefCell<Vec<Rc<ConnSlot>>>,
    /// Keep-alive connections idle now, and a counter that orders them by when they went idle.
    idle: Cell<usize>,
    idle_seq: Cell<u64>,
    /// The shutdown signal, relayed once to this thread: waiting on the shared token from every
    /// idle connection would take its lock, shared by all workers, per request.
    pub(super) stopping: Cell<bool>,
    pub(super) stop: Notify,
}

impl Ctx {
    pub(super) fn new(shared: Arc<Shared>, index: usize) -> Ctx {
        Ctx {
            h2: HyperForwarder::new(shared.clone()),
            shared,
            upstreams: Upstreams::default(),
            buffers: Buffers::default(),
            index,
            conns: RefCell::new(Vec::new()),
            idle: Cell::new(0),
            idle_seq: Cell::new(0),
            stopping: Cell::new(false),
            stop: Notify::new(),
        }
    }

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

    /// `conn`'s first request arrived. Taken beyond `max_connections`, it now gets the place of
    /// the longest-idle keep-alive connection, in this worker or another.
    pub fn first_request(&self, conn: &ConnSlot) {
        if conn.on_trial.replace(false)
            && self.shared.admission.proven()
            && !self.close_longest_idle()
        {
            self.shared.admission.ask_to_close_idle(self.index);
        }
    }

    /// `conn` waits for its next request (HTTP/1), or has no stream open (h2): it may be closed
    /// to make room for a new client.
    pub fn idle_begin(&self, conn: &ConnSlot) {
        if conn.idle_since.get() == 0 {
            let seq = self.idle_seq.get() + 1;
            self.idle_seq.set(seq);
            conn.idle_since.set(seq);
            self.set_idle(self.idle.get() + 1);
        }
    }

    /// `conn` is in use again.
    pub fn idle_end(&self, conn: &ConnSlot) {
        if conn.idle_since.get() != 0 {
            conn.idle_since.set(0);
            self.set_idle(self.idle.get() - 1);
        }
    }

    fn set_idle(&self, n: usize) {
        self.idle.set(n);
        self.shared.admission.set_idle(self.index, n);
    }

    /// Tells this worker's longest-idle keep-alive connection to close. `false` when none idles.
    pub(super) fn close_longest_idle(&self) -> bool {
        if self.idle.get() == 0 {
            return false;
        }
        let victim = self
            .conns
            .borrow()
            .iter()
            .filter(|c| c.idle_since.get() != 0)
            .min_by_key(|c| c.idle_since.get())
            .cloned();
        match victim {
            Some(c) => {
                self.idle_end(&c);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// One open client connection as the worker sees it.
#[derive(Default)]
pub struct ConnSlot {
    /// 0 while in use; else when it went idle (the worker's idle counter).
    idle_since: Cell<u64>,
    /// Its place in the worker's list.
    index: Cell<usize>,
    /// Taken beyond `max_connections`: its first request makes room by closing an idle one.
    on_trial: Cell<bool>,
    close: Notify,
}

impl ConnSlot {
    /// Resolves when the worker needs this idle connection's place for a new client.
    pub async fn closing(&self) {
        self.close.notified().await
    }
}

/// Counts one open client connection for as long as it lives.
pub(super) struct Open {
    pub(super) ctx: Rc<Ctx>,
    pub(super) slot: Rc<ConnSlot>,
}

impl Open {
    /// Counts a connection just accepted; when that is beyond `max_connections`, room is made by
    /// closing the longest-idle keep-alive connection here, or one in another worker.
    pub(super) fn new(ctx: Rc<Ctx>) -> Open {
        let slot = Rc::new(ConnSlot::default());
        slot.on_trial.set(!ctx.shared.admission.admit());
        {
            let mut conns = ctx.conns.borrow_mut();
            slot.index.set(conns.len());
            conns.push(slot.clone());
        }
        Open { ctx, slot }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.ctx.idle_end(&self.slot);
        let on_trial = self.slot.on_trial.get();
        let mut conns = self.ctx.conns.borrow_mut();
        let i = self.slot.index.get();
        conns.swap_remove(i);
        if let Some(moved) = conns.get(i) {
            moved.index.set(i);
        }
        // A burst's worth of room goes back to the allocator once it is over.
        if conns.capacity() > 64 && conns.len() < conns.capacity() / 4 {
            let keep = conns.len() * 2;
            conns.shrink_to(keep);
        }
        drop(conns);
        self.ctx.shared.admission.release(on_trial);
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
