//! A lane: one revision that takes traffic, with its own pool, wait queue and activity. A service
//! has one lane per revision in its traffic (one, unless traffic is split or a revision is tagged);
//! each scales on its own load. The request path picks a lane, then an instance in its pool.

use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::instance::Instance;
use super::pool::Pool;

/// How stale the last-activity mark may be (see `Lane::touch_coarse`).
const ACTIVITY_RESOLUTION_MS: u64 = 10;

pub struct Lane {
    /// The revision whose instances this lane's pool holds.
    pub revision: String,
    /// The routable instances. Only the controller stores a new one.
    pub pool: ArcSwap<Pool>,
    pub(super) queued: AtomicUsize,
    /// Woken (the head of the queue) on each released slot.
    pub(super) capacity: Notify,
    /// Woken (every waiter) when an instance turns ready, a start fails, the lane leaves the
    /// traffic, or the service is paused or closed.
    pub(super) changed: Notify,
    /// The waiting requests, oldest first.
    pub(super) queue: WaitQueue,
    epoch: Instant,
    /// Milliseconds since `epoch` (plus one, so zero means never) of the last request start or end.
    last_activity: AtomicU64,
    /// When a request first found the lane empty (same encoding), for the cold-start histogram.
    pub(super) cold_since: AtomicU64,
    /// Bumped when a start fails: waiters with nothing ready and nothing starting give up then.
    pub(super) start_failures: AtomicU64,
    pub(super) starting: AtomicU32,
    pub(super) last_failure: ArcSwap<String>,
    /// The last failed startup probe of a start in progress (empty when none failed): a request
    /// that waits in vain is told what holds the instance up.
    pub(super) probe_failure: ArcSwap<String>,
    /// Set while the controller backs off after a failed start: with nothing ready and nothing
    /// starting, a request is answered 503 at once rather than waiting out the backoff.
    pub(super) failing: AtomicBool,
    /// Set when the lane left the traffic: its waiters pick a lane again.
    retired: AtomicBool,
    /// Requests served and 5xx answers of instances that left (the controller adds them), so
    /// the revision's totals survive its instances.
    left_served: AtomicU64,
    left_errors: AtomicU64,
    /// The revision's desired instances, as its controller last set them (for the admin API).
    desired: AtomicU32,
}

impl Lane {
    pub fn new(revision: &str) -> Arc<Lane> {
        let lane = Lane {
            revision: revision.to_string(),
            pool: ArcSwap::from_pointee(Pool::default()),
            queued: AtomicUsize::new(0),
            capacity: Notify::new(),
            changed: Notify::new(),
            queue: WaitQueue::default(),
            epoch: Instant::now(),
            last_activity: AtomicU64::new(0),
            cold_since: AtomicU64::new(0),
            start_failures: AtomicU64::new(0),
            starting: AtomicU32::new(0),
            last_failure: ArcSwap::from_pointee(String::new()),
            probe_failure: ArcSwap::from_pointee(String::new()),
            failing: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            left_served: AtomicU64::new(0),
            left_errors: AtomicU64::new(0),
            desired: AtomicU32::new(0),
        };
        lane.touch();
        Arc::new(lane)
    }

    pub fn queued(&self) -> usize {
        self.queued.load(SeqCst)
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, SeqCst);
    }

    /// Why the revision's last start failed, while its controller backs off before the next.
    pub fn start_failure(&self) -> Option<String> {
        self.failing
            .load(SeqCst)
            .then(|| self.last_failure.load().as_ref().clone())
    }

    pub(super) fn now_mark(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn touch(&self) {
        self.last_activity.store(self.now_mark(), SeqCst);
    }

    /// `touch` for the request path: stores only when the mark moved by a few milliseconds, so
    /// busy workers do not write the same line per request. Idle timeouts are seconds long.
    pub(super) fn touch_coarse(&self) {
        let now = self.now_mark();
        if now.saturating_sub(self.last_activity.load(Relaxed)) >= ACTIVITY_RESOLUTION_MS {
            self.last_activity.store(now, SeqCst);
        }
    }

    /// Time since a request last started or ended here.
    pub fn quiet_for(&self) -> std::time::Duration {
        let last = self.last_activity.load(SeqCst);
        std::time::Duration::from_millis(self.now_mark().saturating_sub(last))
    }

    /// The lane left the traffic: whoever waits here picks again among the lanes that serve.
    pub(crate) fn retire(&self) {
        self.retired.store(true, SeqCst);
        self.wake_waiters();
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(SeqCst)
    }

    pub fn desired(&self) -> u32 {
        self.desired.load(SeqCst)
    }

    /// Instances of the revision starting (a cluster follower learns it from the leader).
    pub(crate) fn set_starting(&self, n: u32) {
        self.starting.store(n, SeqCst);
    }

    pub(crate) fn set_desired(&self, n: u32) {
        self.desired.store(n, SeqCst);
    }

    pub(crate) fn keep_counts(&self, inst: &Instance) {
        self.left_served.fetch_add(inst.served(), SeqCst);
        self.left_errors.fetch_add(inst.errors(), SeqCst);
    }

    /// Requests served and 5xx answers so far, by `instances` (the lane's own, current ones)
    /// and by those that left.
    pub fn totals<'a>(&self, instances: impl Iterator<Item = &'a Arc<Instance>>) -> (u64, u64) {
        let (mut served, mut errors) =
            (self.left_served.load(SeqCst), self.left_errors.load(SeqCst));
        for i in instances {
            served += i.served();
            errors += i.errors();
        }
        (served, errors)
    }

    /// Every waiter looks again (an instance turned ready, a start failed, a switch, a pause).
    pub(crate) fn wake_waiters(&self) {
        self.changed.notify_waiters();
        self.capacity.notify_waiters();
    }
}

/// The waiting requests of a service, in arrival order. Only the head tries to take a slot, so
/// a slot freed while requests wait goes to the one that waited longest; when the head leaves
/// (served, timed out, or its client gone) it hands the turn to the next. The lock is taken only
/// on the queue's own path, never by a request that finds a free slot.
#[derive(Default)]
pub(crate) struct WaitQueue {
    waiters: Mutex<VecDeque<Arc<Notify>>>,
}

impl WaitQueue {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Notify>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_head(&self, me: &Arc<Notify>) -> bool {
        self.lock().front().is_some_and(|w| Arc::ptr_eq(w, me))
    }

    /// Leaves the queue; a head that leaves passes its turn on.
    pub(super) fn leave(&self, me: &Arc<Notify>) {
        let mut q = self.lock();
        let Some(pos) = q.iter().position(|w| Arc::ptr_eq(w, me)) else {
            return;
        };
        q.remove(pos);
        if pos == 0
            && let Some(next) = q.front()
        {
            // A stored permit: the next head cannot miss it even if it is not polling yet.
            next.notify_one();
        }
    }
}
