//! The cold-start gate. A request that finds no free slot waits here, in a bounded queue with a
//! deadline, and is woken (never polled) when a slot frees or an instance turns ready. The first
//! waiter at an empty service wakes the controller, which starts an instance at once.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::lane::Lane;
use super::{InFlight, Service};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivatorError {
    /// `queue.max_pending` requests are already waiting.
    QueueFull,
    /// No slot within `queue.timeout`; says why when an instance was starting.
    Timeout(Waited),
    /// No slot will come: nothing is ready, nothing is starting and the last start failed, or
    /// the service is going away (removed by a reload, or wakeway is stopping). Says which.
    Unavailable(String),
    /// The service is paused through the admin API.
    Paused,
    /// The host named a tag no revision of the service has.
    NoSuchTag(String),
    /// The lane left the traffic while the request waited; the request picks again.
    Retired,
}

/// A wait that ran out: how long, and what held up the instance that was starting, if one was
/// (its startup probe's last answer, such as `GET /healthz answered 404 Not Found`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    pub timeout: Duration,
    pub starting: Option<String>,
}

impl From<Duration> for Waited {
    fn from(timeout: Duration) -> Waited {
        Waited {
            timeout,
            starting: None,
        }
    }
}

impl std::fmt::Display for Waited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no instance had capacity within the queue timeout ({:?})",
            self.timeout
        )?;
        if let Some(why) = &self.starting {
            write!(f, "; the instance starting is not ready yet: {why}")?;
        }
        Ok(())
    }
}

impl Service {
    /// Takes a slot on the least-loaded ready instance, waiting in the queue up to
    /// `queue.timeout` when there is none.
    pub async fn acquire(self: &Arc<Self>) -> Result<InFlight, ActivatorError> {
        let timeout = self.config.load().queue.timeout;
        self.acquire_by(None, Instant::now() + timeout).await
    }

    /// Takes a slot, waiting in the queue until `deadline` at the latest. A request keeps the
    /// deadline it got on arrival for every attempt (a retry on another instance included).
    /// Without a `tag` the request goes to a revision by the traffic's weighted choice; with
    /// one, to the revision with that tag only.
    pub async fn acquire_by(
        self: &Arc<Self>,
        tag: Option<&str>,
        deadline: Instant,
    ) -> Result<InFlight, ActivatorError> {
        loop {
            let (max, max_pending, timeout) = {
                let cfg = self.config.load();
                (
                    self.remote.share_of(cfg.scaling.max_concurrency),
                    cfg.queue.max_pending,
                    cfg.queue.timeout,
                )
            };
            let lane = {
                let traffic = self.traffic.load();
                let lane = match tag {
                    None => traffic.pick(),
                    Some(t) => traffic.tagged(t),
                };
                let Some(lane) = lane else {
                    return Err(match tag {
                        Some(t) => ActivatorError::NoSuchTag(t.into()),
                        None => ActivatorError::Unavailable(
                            "the service has no revision that takes traffic".into(),
                        ),
                    });
                };
                // The common case: a free slot, and the lane's one clone is the request's.
                if lane.queued.load(SeqCst) == 0
                    && let Some(inst) = lane.pool.load().acquire(max)
                {
                    return Ok(InFlight::new(lane.clone(), inst));
                }
                lane.clone()
            };
            match lane.wait(self, max, max_pending, deadline, timeout).await {
                // The lane left the traffic while the request waited: it goes where traffic goes now.
                Err(ActivatorError::Retired) => continue,
                other => return other,
            }
        }
    }

    /// Why nothing will come at any lane, if that is already known.
    fn closed_or_paused(&self) -> Option<ActivatorError> {
        if let Some(why) = self.closed.get() {
            return Some(ActivatorError::Unavailable(why.clone()));
        }
        if self.is_paused() {
            return Some(ActivatorError::Paused);
        }
        None
    }

    /// Resolves when a request needs the controller.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }
}

impl Lane {
    /// Why nothing will come, if that is already known.
    fn hopeless(&self, svc: &Service, failures_seen: Option<u64>) -> Option<ActivatorError> {
        if let Some(e) = svc.closed_or_paused() {
            return Some(e);
        }
        if self.is_retired() {
            return Some(ActivatorError::Retired);
        }
        let failed = match failures_seen {
            None => self.failing.load(SeqCst),
            Some(seen) => self.start_failures.load(SeqCst) != seen,
        };
        if failed && self.starting.load(SeqCst) == 0 && self.pool.load().is_empty() {
            return Some(ActivatorError::Unavailable(
                self.last_failure.load().as_ref().clone(),
            ));
        }
        None
    }

    async fn wait(
        self: &Arc<Self>,
        svc: &Service,
        max: u32,
        max_pending: usize,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<InFlight, ActivatorError> {
        if let Some(e) = self.hopeless(svc, None) {
            if matches!(e, ActivatorError::Unavailable(_)) {
                svc.metrics.rejected_unavailable.inc();
            }
            return Err(e);
        }
        if svc.queued_total.fetch_add(1, SeqCst) >= max_pending {
            svc.queued_total.fetch_sub(1, SeqCst);
            svc.metrics.rejected_queue_full.inc();
            return Err(ActivatorError::QueueFull);
        }
        self.queued.fetch_add(1, SeqCst);
        let me = Arc::new(Notify::new());
        self.queue.lock().push_back(me.clone());
        let _queued = Queued::new(svc, self, me.clone());
        self.touch();
        let cold = self.pool.load().is_empty();
        if cold {
            let _ = self
                .cold_since
                .compare_exchange(0, self.now_mark(), SeqCst, SeqCst);
        }
        let failures_seen = self.start_failures.load(SeqCst);
        svc.wake.notify_one();

        loop {
            // Registered before the checks, so a change or a freed slot in between wakes this.
            let changed = self.changed.notified();
            let capacity = self.capacity.notified();
            let turn = me.notified();
            tokio::pin!(changed, capacity, turn);
            changed.as_mut().enable();
            let head = self.queue.is_head(&me);
            if head {
                capacity.as_mut().enable();
                if let Some(inst) = self.pool.load().acquire(max) {
                    let mut guard = InFlight::new(self.clone(), inst);
                    guard.cold = cold;
                    return Ok(guard);
                }
            }
            if let Some(e) = self.hopeless(svc, Some(failures_seen)) {
                if matches!(e, ActivatorError::Unavailable(_)) {
                    svc.metrics.rejected_unavailable.inc();
                }
                return Err(e);
            }
            let woken = async {
                if head {
                    tokio::select! {
                        _ = changed => {}
                        _ = capacity => {}
                    }
                } else {
                    tokio::select! {
                        _ = changed => {}
                        _ = turn => {}
                    }
                }
            };
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                svc.metrics.rejected_timeout.inc();
                let starting = (self.starting.load(SeqCst) > 0)
                    .then(|| self.probe_failure.load().as_ref().clone())
                    .filter(|why| !why.is_empty());
                return Err(ActivatorError::Timeout(Waited { timeout, starting }));
            }
        }
    }
}

/// Keeps the queued counts, the gauge and the wait queue exact however the wait ends (slot,
/// error, client gone).
struct Queued<'a> {
    svc: &'a Service,
    lane: &'a Lane,
    me: Arc<Notify>,
}

impl<'a> Queued<'a> {
    fn new(svc: &'a Service, lane: &'a Lane, me: Arc<Notify>) -> Self {
        svc.metrics.queued.inc();
        Queued { svc, lane, me }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.lane.queue.leave(&self.me);
        self.lane.queued.fetch_sub(1, SeqCst);
        self.svc.queued_total.fetch_sub(1, SeqCst);
        self.svc.metrics.queued.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServiceConfig, Source};
    use crate::events::EventLog;
    use crate::metrics::Metrics;
    use crate::service::instance::{Instance, InstanceState};
    use crate::service::pool::Pool;
    use std::future::Future;

    /// A request that waits in `svc`'s queue, once it does; `then` is what it makes of its slot.
    async fn queued<T: Send + 'static>(
        svc: &Arc<Service>,
        then: impl FnOnce(InFlight) -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T, ActivatorError>> {
        let w = tokio::spawn({
            let svc = svc.clone();
            async move { svc.acquire().await.map(then) }
        });
        while svc.queued() == 0 {
            tokio::task::yield_now().await;
        }
        w
    }

    fn service(max_concurrency: u32, max_pending: usize) -> Arc<Service> {
        let mut cfg = ServiceConfig::new(
            "svc",
            vec!["svc.localhost".into()],
            Source::Upstreams(vec!["127.0.0.1:1".into()]),
        );
        cfg.scaling.max_concurrency = max_concurrency;
        cfg.queue.max_pending = max_pending;
        cfg.queue.timeout = Duration::from_secs(30);
        Service::new(
            cfg,
            Metrics::new().service("svc"),
            Arc::new(EventLog::default()),
        )
    }

    fn publish_one(svc: &Service) -> Arc<Instance> {
        let i = Arc::new(Instance::new(
            "svc-a".into(),
            "svc-00001".into(),
            "127.0.0.1:1".parse().unwrap(),
            None,
        ));
        i.set_state(InstanceState::Ready);
        svc.lane().pool.store(Arc::new(Pool::new(vec![i.clone()])));
        i
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_times_out_at_the_queue_deadline() {
        let svc = service(1, 10);
        let err = svc.acquire().await.err().unwrap();
        assert_eq!(err, ActivatorError::Timeout(Duration::from_secs(30).into()));
        assert_eq!(svc.queued(), 0, "the queued count is exact after a timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_slot_wakes_a_waiter() {
        let svc = service(1, 10);
        publish_one(&svc);
        let held = svc.acquire().await.unwrap();
        let waiter = queued(&svc, |g| g.instance().id.clone()).await;
        drop(held);
        assert_eq!(waiter.await.unwrap().unwrap(), "svc-a");
        assert_eq!(svc.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_turning_ready_wakes_every_waiter() {
        let svc = service(10, 10);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.acquire().await.map(drop) })
            })
            .collect();
        while svc.queued() < 3 {
            tokio::task::yield_now().await;
        }
        publish_one(&svc);
        svc.wake_waiters();
        for w in waiters {
            w.await.unwrap().unwrap();
        }
    }

    /// Issue 9, defect 5: a slot freed while a request waits goes to that request, not to one
    /// that arrives in between (it used to take the slot on its fast path).
    #[tokio::test(start_paused = true)]
    async fn a_newcomer_queues_behind_a_waiter_instead_of_barging() {
        let svc = service(1, 10);
        publish_one(&svc);
        let held = svc.acquire().await.unwrap();
        let waiter = queued(&svc, |g| g).await;
        drop(held);
        // The newcomer is polled before the woken waiter gets to run.
        let mut newcomer = Box::pin(svc.acquire());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            newcomer.as_mut().poll(&mut cx).is_pending(),
            "the newcomer took the slot ahead of the waiter"
        );
        let first = waiter.await.unwrap().expect("the waiter is served first");
        assert_eq!(svc.queued(), 1, "the newcomer waits its turn");
        drop(first);
        newcomer.await.expect("then the newcomer");
        assert_eq!(svc.queued(), 0);
    }

    /// Waiters are served in arrival order, one freed slot at a time.
    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let svc = service(1, 10);
        publish_one(&svc);
        let held = svc.acquire().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for k in 0..5 {
            let (s, tx) = (svc.clone(), tx.clone());
            tokio::spawn(async move {
                let g = s.acquire().await.unwrap();
                tx.send(k).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(g);
            });
            while svc.queued() <= k {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        let mut order = Vec::new();
        for _ in 0..5 {
            order.push(rx.recv().await.unwrap());
        }
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }

    /// A retry waits only for what is left of the request's deadline, not a fresh queue.timeout.
    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_the_request_one() {
        let svc = service(1, 10);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let w = tokio::spawn({
            let svc = svc.clone();
            async move { svc.acquire_by(None, deadline).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(w.is_finished(), "still waiting past the request's deadline");
        assert_eq!(
            w.await.unwrap().err(),
            Some(ActivatorError::Timeout(Duration::from_secs(30).into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closing_answers_waiters_and_newcomers_with_the_reason() {
        let svc = service(1, 10);
        let w = queued(&svc, drop).await;
        svc.close("wakeway is stopping");
        let why = ActivatorError::Unavailable("wakeway is stopping".into());
        assert_eq!(w.await.unwrap().err(), Some(why.clone()));
        assert_eq!(svc.acquire().await.err(), Some(why));
        assert_eq!(svc.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_rejects_and_pause_answers_at_once() {
        let svc = service(1, 1);
        let first = queued(&svc, drop).await;
        assert_eq!(svc.acquire().await.err(), Some(ActivatorError::QueueFull));
        svc.set_paused(true);
        assert_eq!(first.await.unwrap().err(), Some(ActivatorError::Paused));
        assert_eq!(svc.acquire().await.err(), Some(ActivatorError::Paused));
    }
}
