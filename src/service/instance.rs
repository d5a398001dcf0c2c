//! One running copy of a revision and its exact in-flight count.

use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::time::Duration;
use std::time::SystemTime;

use http::uri::Authority;
use tokio::sync::Notify;

/// Stored in an `AtomicU8` as its place in `InstanceState::ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InstanceState {
    /// Started, not yet passing its startup probe.
    Starting,
    /// Routable.
    Ready,
    /// Out of the pool, finishing its requests before it is stopped.
    Draining,
    /// Failed probes or a connect on the request path; not routable.
    Unhealthy,
    /// Gone.
    Stopped,
    /// Out of the pool with its processes frozen (`idle_action = "freeze"`): it keeps its
    /// memory, uses no CPU, takes no probe, and is thawed by the next demand.
    Frozen,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Ready => "ready",
            InstanceState::Draining => "draining",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::Stopped => "stopped",
            InstanceState::Frozen => "frozen",
        }
    }

    /// Every state, in declaration order: `ALL[s as usize] == s`.
    const ALL: [InstanceState; 6] = [
        InstanceState::Starting,
        InstanceState::Ready,
        InstanceState::Draining,
        InstanceState::Unhealthy,
        InstanceState::Stopped,
        InstanceState::Frozen,
    ];

    fn from_u8(v: u8) -> InstanceState {
        let all = InstanceState::ALL;
        all.get(v as usize)
            .copied()
            .unwrap_or(InstanceState::Stopped)
    }
}

pub struct Instance {
    pub id: String,
    pub revision: String,
    pub address: SocketAddr,
    /// Pre-built so forwarding does not format the address per request.
    pub authority: Authority,
    pub pid: Option<u32>,
    pub started_at: SystemTime,
    state: AtomicU8,
    in_flight: AtomicU32,
    /// Requests (and tunnels) ended, and 5xx answers: beside `in_flight`, whose line each
    /// request writes anyway.
    served: AtomicU64,
    errors: AtomicU64,
    /// Woken when the in-flight count reaches zero, so a drain does not poll.
    idle: Notify,
    /// Set by the runtime's exit notice (child exit, container `die`).
    exited: AtomicBool,
    exit: Notify,
    /// Woken when the instance stops being routable (the controller's decision or an exit).
    left: Notify,
    /// Bumped each time the instance is frozen: a pooled upstream connection made before is
    /// not reused after the thaw (the app's keep-alive timers ran out while it was frozen).
    generation: AtomicU32,
}

impl Instance {
    pub fn new(id: String, revision: String, address: SocketAddr, pid: Option<u32>) -> Instance {
        let authority = Authority::try_from(address.to_string().as_str())
            .expect("a socket address is a valid authority");
        Instance {
            id,
            revision,
            address,
            authority,
            pid,
            started_at: SystemTime::now(),
            state: AtomicU8::new(InstanceState::Starting as u8),
            in_flight: AtomicU32::new(0),
            served: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            idle: Notify::new(),
            exited: AtomicBool::new(false),
            exit: Notify::new(),
            left: Notify::new(),
            generation: AtomicU32::new(0),
        }
    }

    pub fn state(&self) -> InstanceState {
        InstanceState::from_u8(self.state.load(SeqCst))
    }

    pub fn set_state(&self, s: InstanceState) {
        self.state.store(s as u8, SeqCst);
        if s != InstanceState::Ready {
            // A drainer may be waiting for zero that is already reached.
            self.idle.notify_waiters();
            self.left.notify_waiters();
        }
    }

    /// Moves from `from` to `to` only if the state is still `from`.
    pub fn transition(&self, from: InstanceState, to: InstanceState) -> bool {
        let moved = self
            .state
            .compare_exchange(from as u8, to as u8, SeqCst, SeqCst)
            .is_ok();
        if moved && to != InstanceState::Ready {
            self.left.notify_waiters();
        }
        moved
    }

    /// Whether the instance stops being routable within `within`. After reporting a refused
    /// connect, the request path waits for the controller's decision (or the exit notice, which
    /// follows a crash by moments) before it retries, lest the retry pick the same instance.
    pub async fn leaves_within(&self, within: Duration) -> bool {
        let left = self.left.notified();
        tokio::pin!(left);
        left.as_mut().enable();
        if !self.is_routable() {
            return true;
        }
        tokio::time::timeout(within, left).await.is_ok()
    }

    pub fn generation(&self) -> u32 {
        self.generation.load(Relaxed)
    }

    /// Called before the instance is frozen; it is out of the pool by then.
    pub fn new_generation(&self) {
        self.generation.fetch_add(1, SeqCst);
    }

    /// Whether the instance was ever frozen. One that is ready again got there by a thaw (a
    /// failed freeze or thaw stops it), so a request that waited for it waited for a thaw.
    pub fn has_thawed(&self) -> bool {
        self.generation() > 0
    }

    pub fn is_routable(&self) -> bool {
        self.state.load(SeqCst) == InstanceState::Ready as u8
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(SeqCst)
    }

    /// Takes a slot if the instance is ready and below `max`. The state is checked again after the
    /// increment: a drain stores its state before reading the count, so either the drain sees this
    /// slot or this acquire sees the drain (both SeqCst), never neither.
    pub fn try_acquire(&self, max: u32) -> bool {
        let mut cur = self.in_flight.load(SeqCst);
        loop {
            if cur >= max || self.state.load(SeqCst) != InstanceState::Ready as u8 {
                return false;
            }
            match self
                .in_flight
                .compare_exchange_weak(cur, cur + 1, SeqCst, SeqCst)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if self.state.load(SeqCst) != InstanceState::Ready as u8 {
            self.release();
            return false;
        }
        true
    }

    /// Gives a slot back; returns the count left.
    pub fn release(&self) -> u32 {
        self.served.fetch_add(1, Relaxed);
        let left = self.in_flight.fetch_sub(1, SeqCst) - 1;
        if left == 0 && self.state.load(SeqCst) != InstanceState::Ready as u8 {
            self.idle.notify_waiters();
        }
        left
    }

    /// The instance (or wakeway on its behalf) answered a request with a 5xx.
    pub fn note_error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    pub fn served(&self) -> u64 {
        self.served.load(Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }

    /// The runtime saw the instance exit: it stops taking requests at once.
    pub fn mark_exited(&self) {
        self.exited.store(true, SeqCst);
        self.transition(InstanceState::Ready, InstanceState::Unhealthy);
        self.exit.notify_waiters();
    }

    /// Whether the runtime reported the instance gone.
    pub fn has_exited(&self) -> bool {
        self.exited.load(SeqCst)
    }

    /// Whether the instance exits within `within`. After a reset mid-request this tells a crash
    /// (the exit notice follows within milliseconds) from a connection the app dropped.
    pub async fn exits_within(&self, within: Duration) -> bool {
        let notified = self.exit.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.exited.load(SeqCst) {
            return true;
        }
        tokio::time::timeout(within, notified).await.is_ok()
    }

    /// Waits until nothing is in flight. The caller bounds it with a timeout.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("address", &self.address)
            .field("state", &self.state())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ready(id: &str) -> Instance {
        let i = Instance::new(id.into(), "r".into(), "127.0.0.1:1".parse().unwrap(), None);
        i.set_state(InstanceState::Ready);
        i
    }

    #[test]
    fn every_state_reads_back_as_stored() {
        let i = ready("a");
        for s in InstanceState::ALL {
            i.set_state(s);
            assert_eq!(i.state(), s);
        }
    }

    #[test]
    fn acquire_respects_max_and_state() {
        let i = ready("a");
        assert!(i.try_acquire(2));
        assert!(i.try_acquire(2));
        assert!(!i.try_acquire(2), "third slot of two");
        i.release();
        assert!(i.try_acquire(2));
        i.set_state(InstanceState::Draining);
        i.release();
        assert!(!i.try_acquire(2), "draining instance is not routable");
    }

    #[test]
    fn concurrent_acquires_never_exceed_max() {
        let i = Arc::new(ready("a"));
        let won: u32 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let i = i.clone();
                    s.spawn(move || (0..1000).filter(|_| i.try_acquire(5)).count() as u32)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(won, 5);
        assert_eq!(i.in_flight(), 5);
    }

    /// `wait` runs out while nothing happens, and a waiter wakes when `event` happens.
    async fn wakes_on<F>(
        i: &Arc<Instance>,
        wait: impl Fn(Arc<Instance>, Duration) -> F,
        event: impl FnOnce(&Instance),
    ) where
        F: Future<Output = bool> + Send + 'static,
    {
        assert!(!wait(i.clone(), Duration::from_millis(100)).await);
        let w = tokio::spawn(wait(i.clone(), Duration::from_secs(60)));
        tokio::task::yield_now().await;
        event(i);
        assert!(w.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn exit_notice_makes_it_unroutable_and_wakes_the_watcher() {
        let i = Arc::new(ready("a"));
        let wait = |i: Arc<Instance>, d| async move { i.exits_within(d).await };
        wakes_on(&i, wait, Instance::mark_exited).await;
        assert!(!i.try_acquire(10), "an exited instance takes no request");
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_the_pool_wakes_the_request_that_reported_it() {
        let i = Arc::new(ready("a"));
        let wait = |i: Arc<Instance>, d| async move { i.leaves_within(d).await };
        wakes_on(&i, wait, |i| i.set_state(InstanceState::Draining)).await;
        assert!(i.leaves_within(Duration::ZERO).await, "already gone");
    }

    #[tokio::test]
    async fn wait_idle_wakes_on_last_release() {
        let i = Arc::new(ready("a"));
        assert!(i.try_acquire(1));
        i.set_state(InstanceState::Draining);
        let w = tokio::spawn({
            let i = i.clone();
            async move { i.wait_idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!w.is_finished());
        i.release();
        tokio::time::timeout(std::time::Duration::from_secs(5), w)
            .await
            .expect("drain woke")
            .unwrap();
    }
}
