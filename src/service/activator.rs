//! The cold-start gate. A request that finds no free slot waits here, in a bounded queue with a
//! deadline, and is woken (never polled) when a slot frees or an instance turns ready. The first
//! waiter at an empty service wakes the controller, which starts an instance at once.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use super::{InFlight, Service};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivatorError {
    /// `queue.max_pending` requests are already waiting.
    QueueFull,
    /// No slot within `queue.timeout`.
    Timeout(Duration),
    /// Nothing is ready, nothing is starting, and the last start failed.
    Unavailable(String),
    /// The service is paused through the admin API.
    Paused,
}

impl Service {
    /// Takes a slot on the least-loaded ready instance, waiting in the queue when there is none.
    pub async fn acquire(self: &Arc<Self>) -> Result<InFlight, ActivatorError> {
        let (max, max_pending, timeout) = {
            let cfg = self.config.load();
            (
                cfg.scaling.max_concurrency,
                cfg.queue.max_pending,
                cfg.queue.timeout,
            )
        };
        if let Some(inst) = self.pool.load().acquire(max) {
            return Ok(self.guard(inst));
        }
        self.wait(max, max_pending, timeout).await
    }

    async fn wait(
        self: &Arc<Self>,
        max: u32,
        max_pending: usize,
        timeout: Duration,
    ) -> Result<InFlight, ActivatorError> {
        if self.is_paused() {
            return Err(ActivatorError::Paused);
        }
        if self.failing.load(SeqCst)
            && self.starting.load(SeqCst) == 0
            && self.pool.load().is_empty()
        {
            self.metrics.rejected_unavailable.inc();
            return Err(ActivatorError::Unavailable(
                self.last_failure.load().as_ref().clone(),
            ));
        }
        if self.queued.fetch_add(1, SeqCst) >= max_pending {
            self.queued.fetch_sub(1, SeqCst);
            self.metrics.rejected_queue_full.inc();
            return Err(ActivatorError::QueueFull);
        }
        let _queued = Queued::new(self);
        self.touch();
        if self.pool.load().is_empty() {
            let _ = self
                .cold_since
                .compare_exchange(0, self.now_mark(), SeqCst, SeqCst);
        }
        let failures_seen = self.start_failures.load(SeqCst);
        self.wake.notify_one();

        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.capacity.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(inst) = self.pool.load().acquire(max) {
                return Ok(self.guard(inst));
            }
            if self.is_paused() {
                return Err(ActivatorError::Paused);
            }
            if self.start_failures.load(SeqCst) != failures_seen
                && self.starting.load(SeqCst) == 0
                && self.pool.load().is_empty()
            {
                self.metrics.rejected_unavailable.inc();
                return Err(ActivatorError::Unavailable(
                    self.last_failure.load().as_ref().clone(),
                ));
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                self.metrics.rejected_timeout.inc();
                return Err(ActivatorError::Timeout(timeout));
            }
        }
    }

    /// Called by the controller when an instance turns ready or a start fails: every waiter
    /// looks again.
    pub(crate) fn wake_waiters(&self) {
        self.capacity.notify_waiters();
    }

    /// Resolves when a request needs the controller.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }

    /// The request path found an instance refusing connections.
    pub fn report_unreachable(&self) {
        self.wake.notify_one();
    }
}

/// Keeps the queued count and gauge exact however the wait ends (slot, error, client gone).
struct Queued<'a>(&'a Service);

impl<'a> Queued<'a> {
    fn new(svc: &'a Service) -> Self {
        svc.metrics.queued.inc();
        Queued(svc)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, SeqCst);
        self.0.metrics.queued.dec();
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

    fn service(max_concurrency: u32, max_pending: usize) -> Arc<Service> {
        let mut cfg = ServiceConfig {
            name: "svc".into(),
            hosts: vec!["svc.localhost".into()],
            source: Source::Upstreams(vec!["127.0.0.1:1".into()]),
            env: Default::default(),
            scaling: Default::default(),
            health: Default::default(),
            queue: Default::default(),
            deploy: Default::default(),
            max_body_bytes: None,
            redirect_https: false,
        };
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
        svc.pool.store(Arc::new(Pool::new(vec![i.clone()])));
        i
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_times_out_at_the_queue_deadline() {
        let svc = service(1, 10);
        let err = svc.acquire().await.err().unwrap();
        assert_eq!(err, ActivatorError::Timeout(Duration::from_secs(30)));
        assert_eq!(svc.queued(), 0, "the queued count is exact after a timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_slot_wakes_a_waiter() {
        let svc = service(1, 10);
        publish_one(&svc);
        let held = svc.acquire().await.unwrap();
        let waiter = tokio::spawn({
            let svc = svc.clone();
            async move { svc.acquire().await.map(|g| g.instance().id.clone()) }
        });
        while svc.queued() == 0 {
            tokio::task::yield_now().await;
        }
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

    #[tokio::test(start_paused = true)]
    async fn full_queue_rejects_and_pause_answers_at_once() {
        let svc = service(1, 1);
        let first = tokio::spawn({
            let svc = svc.clone();
            async move { svc.acquire().await.map(drop) }
        });
        while svc.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(svc.acquire().await.err(), Some(ActivatorError::QueueFull));
        svc.set_paused(true);
        assert_eq!(first.await.unwrap().err(), Some(ActivatorError::Paused));
        assert_eq!(svc.acquire().await.err(), Some(ActivatorError::Paused));
    }
}
