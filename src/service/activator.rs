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
