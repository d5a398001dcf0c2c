//! Admission: `proxy.max_connections` counted over all workers, and room made for new clients by
//! closing idle keep-alive connections (as nginx does), so idle sockets never lock anyone out.
//!
//! `SO_REUSEPORT` spreads connections unevenly: a fixed per-worker share would refuse a client
//! while another worker has room. Each worker admits against the process-wide total instead.
//! At the total, a new connection is taken on trial while some connection idles: once its first
//! request arrives, the worker closes its own longest-idle keep-alive connection, or asks a worker
//! that has one. A silent connection never displaces a working client (it is closed by the
//! header-read timeout); at most [`ON_TRIAL`] wait like that. When every open connection is busy,
//! new ones wait in the kernel's backlog. Atomics only (and `Notify`, used only at the limit).

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use tokio::sync::Notify;

/// Connections beyond `max_connections` that may wait for their first request at once: each
/// holds a descriptor until it proves itself or the header-read timeout closes it.
pub const ON_TRIAL: usize = 64;

pub struct Admission {
    max: usize,
    /// Client connections open now, over all workers.
    open: AtomicUsize,
    /// Connections taken beyond `max` whose first request has not arrived yet.
    on_trial: AtomicUsize,
    /// Workers waiting for room (every open connection busy).
    paused: AtomicUsize,
    room: Notify,
    workers: Box<[Seat]>,
}

/// One worker's published state, on a cache line of its own: written by that worker only
/// (`idle`) or, at the limit, by the others (`wanted`).
#[repr(align(128))]
#[derive(Default)]
struct Seat {
    /// Keep-alive connections idle between requests in this worker now.
    idle: AtomicUsize,
    /// Idle connections other workers asked this one to close.
    wanted: AtomicUsize,
    nudge: Notify,
}

impl Admission {
    pub fn new(max_connections: usize, workers: usize) -> Admission {
        Admission {
            max: max_connections.max(1),
            open: AtomicUsize::new(0),
            on_trial: AtomicUsize::new(0),
            paused: AtomicUsize::new(0),
            room: Notify::new(),
            workers: (0..workers.max(1)).map(|_| Seat::default()).collect(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Client connections open now, over all workers.
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Counts a new connection; `false` when it is beyond `max_connections`: it is on trial
    /// until [`proven`](Self::proven) (or released).
    pub fn admit(&self) -> bool {
        if self.open.fetch_add(1, SeqCst) < self.max {
            return true;
        }
        self.on_trial.fetch_add(1, SeqCst);
        false
    }

    /// A connection on trial sent its first request: whether room must still be made for it
    /// (no other connection closed meanwhile).
    pub fn proven(&self) -> bool {
        self.end_trial();
        self.open.load(SeqCst) > self.max
    }

    fn end_trial(&self) {
        self.on_trial.fetch_sub(1, SeqCst);
        self.wake_paused();
    }

    /// A connection closed (`on_trial`: before its first request).
    pub fn release(&self, on_trial: bool) {
        if on_trial {
            self.end_trial();
        }
        let before = self.open.fetch_sub(1, SeqCst);
        if before <= self.max {
            self.wake_paused();
        }
    }

    fn wake_paused(&self) {
        if self.paused.load(SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// Whether a new connection can be taken now: below the limit, or on trial while idle
    /// keep-alive connections somewhere could be closed for it.
    pub fn has_room(&self) -> bool {
        if self.open.load(SeqCst) < self.max {
            return true;
        }
        let trial = self.on_trial.load(SeqCst);
        let idle: usize = self.workers.iter().map(|s| s.idle.load(SeqCst)).sum();
        trial < idle.min(ON_TRIAL)
    }

    /// Waits until [`has_room`](Self::has_room).
    pub async fn room(&self) {
        self.paused.fetch_add(1, SeqCst);
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release in between is not missed.
            notified.as_mut().enable();
            if self.has_room() {
                break;
            }
            notified.await;
        }
        self.paused.fetch_sub(1, SeqCst);
    }

    /// Worker `w` has `n` idle keep-alive connections now.
    pub fn set_idle(&self, w: usize, n: usize) {
        let before = self.workers[w].idle.swap(n, SeqCst);
        if before == 0 && n > 0 {
            self.wake_paused();
        }
    }

    /// Asks the worker with the most idle connections, other than `me`, to close one. `false`
    /// when none has any.
    pub fn ask_to_close_idle(&self, me: usize) -> bool {
        let busiest = (0..self.workers.len())
            .filter(|w| *w != me)
            .map(|w| (self.workers[w].idle.load(Relaxed), w))
            .max();
        match busiest {
            Some((idle, w)) if idle > 0 => {
                self.workers[w].wanted.fetch_add(1, SeqCst);
                self.workers[w].nudge.notify_one();
                true
            }
            _ => false,
        }
    }

    /// Resolves when other workers asked `w` to close idle connections; returns how many.
    pub async fn asked(&self, w: usize) -> usize {
        let seat = &self.workers[w];
        loop {
            let n = seat.wanted.swap(0, SeqCst);
            if n > 0 {
                return n;
            }
            seat.nudge.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_total_over_all_workers() {
        let a = Admission::new(3, 2);
        assert!(a.admit() && a.admit() && a.admit());
        assert!(!a.has_room(), "at the limit, nothing idle");
        a.set_idle(1, 1);
        assert!(a.has_room(), "worker 1's idle connection can make room");
        assert!(!a.admit(), "the fourth is beyond the total: on trial");
        assert!(!a.has_room(), "one on trial per idle connection");
        assert!(a.proven(), "its first request came: room must be made");
        assert!(a.ask_to_close_idle(0));
        assert!(!a.ask_to_close_idle(1), "worker 0 has nothing idle");
        a.release(false);
        assert!(!a.admit());
        a.release(false);
        assert!(
            !a.proven(),
            "a connection closed meanwhile: nothing to close"
        );
    }

    #[tokio::test]
    async fn a_paused_worker_wakes_when_a_connection_closes_or_goes_idle() {
        let a = std::sync::Arc::new(Admission::new(1, 2));
        assert!(a.admit());
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        a.set_idle(1, 1);
        waiter.await.unwrap();

        a.set_idle(1, 0);
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.room().await }
        });
        tokio::task::yield_now().await;
        a.release(false);
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn a_request_to_close_reaches_the_worker_asked() {
        let a = Admission::new(1, 2);
        a.set_idle(1, 2);
        assert!(a.ask_to_close_idle(0));
        assert!(a.ask_to_close_idle(0));
        assert_eq!(a.asked(1).await, 2);
    }
}
