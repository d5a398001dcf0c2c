//! A service: its live config, its pool, the in-flight guard, and the handles its controller and
//! the request path share. The request path touches only atomics and `ArcSwap` loads here.

pub mod activator;
pub mod autoscaler;
pub mod command;
pub mod controller;
pub mod deployment;
pub mod instance;
pub mod pool;
pub mod reconciler;
pub mod revision;
pub mod state;

use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::config::ServiceConfig;
use crate::events::EventLog;
use crate::metrics::ServiceMetrics;
use command::Command;
use deployment::Deployments;
use instance::Instance;
use pool::Pool;
use revision::RevisionView;

/// How stale the last-activity mark may be (see `Service::touch_coarse`).
const ACTIVITY_RESOLUTION_MS: u64 = 10;

pub struct Service {
    pub name: String,
    pub runtime: &'static str,
    pub config: ArcSwap<ServiceConfig>,
    /// The routable instances. Only the controller stores a new one.
    pub pool: ArcSwap<Pool>,
    /// Every instance the controller knows (starting, ready, draining), for the admin API.
    pub instances: ArcSwap<Vec<Arc<Instance>>>,
    pub desired: AtomicU32,
    pub metrics: ServiceMetrics,
    pub events: Arc<EventLog>,
    queued: AtomicUsize,
    /// Woken (the head of the queue) on each released slot.
    capacity: Notify,
    /// Woken (every waiter) when an instance turns ready, a start fails, or the service is
    /// paused or closed.
    changed: Notify,
    /// The waiting requests, oldest first.
    queue: activator::WaitQueue,
    /// Set when no slot will come any more (removed, or wakeway stopping), with the reason.
    closed: OnceLock<String>,
    /// Wakes the controller: demand at a service without capacity.
    wake: Notify,
    epoch: Instant,
    /// Milliseconds since `epoch` (plus one, so zero means never) of the last request start or end.
    last_activity: AtomicU64,
    /// When a request first found the service empty (same encoding), for the cold-start histogram.
    cold_since: AtomicU64,
    /// Bumped when a start fails: waiters with nothing ready and nothing starting give up then.
    start_failures: AtomicU64,
    starting: AtomicU32,
    last_failure: ArcSwap<String>,
    /// The last failed startup probe of a start in progress (empty when none failed): a request
    /// that waits in vain is told what holds the instance up.
    probe_failure: ArcSwap<String>,
    /// Set while paused: requests are answered 503 at once instead of starting an instance.
    paused: AtomicBool,
    /// Set while the controller backs off after a failed start: with nothing ready and nothing
    /// starting, a request is answered 503 at once rather than waiting out the backoff.
    failing: AtomicBool,
    pub deployments: Deployments,
    /// Every revision so far, oldest first; the last is the live one.
    pub revisions: ArcSwap<Vec<RevisionView>>,
    control: OnceLock<mpsc::UnboundedSender<Command>>,
}

impl Service {
    pub fn new(
        config: ServiceConfig,
        metrics: ServiceMetrics,
        events: Arc<EventLog>,
    ) -> Arc<Service> {
        let svc = Service {
            name: config.name.clone(),
            runtime: config.source.runtime_name(),
            desired: AtomicU32::new(0),
            config: ArcSwap::from_pointee(config),
            pool: ArcSwap::from_pointee(Pool::default()),
            instances: ArcSwap::from_pointee(Vec::new()),
            metrics,
            events,
            queued: AtomicUsize::new(0),
            capacity: Notify::new(),
            changed: Notify::new(),
            queue: activator::WaitQueue::default(),
            closed: OnceLock::new(),
            wake: Notify::new(),
            epoch: Instant::now(),
            last_activity: AtomicU64::new(0),
            cold_since: AtomicU64::new(0),
            start_failures: AtomicU64::new(0),
            starting: AtomicU32::new(0),
            last_failure: ArcSwap::from_pointee(String::new()),
            probe_failure: ArcSwap::from_pointee(String::new()),
            paused: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            deployments: Deployments::default(),
            revisions: ArcSwap::from_pointee(Vec::new()),
            control: OnceLock::new(),
        };
        svc.touch();
        Arc::new(svc)
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(SeqCst)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, SeqCst);
        if paused {
            self.wake_waiters();
        }
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, SeqCst);
    }

    /// The live revision's id.
    pub fn revision(&self) -> String {
        self.revisions
            .load()
            .last()
            .map(|r| r.id.clone())
            .unwrap_or_default()
    }

    /// Connects the controller's command channel; called once when it is built.
    pub(crate) fn connect_controller(&self, tx: mpsc::UnboundedSender<Command>) {
        let _ = self.control.set(tx);
    }

    /// Sends a command to the controller; `Err` when the controller is gone.
    pub fn command(&self, cmd: Command) -> Result<(), String> {
        self.control
            .get()
            .ok_or_else(|| format!("service `{}` has no controller", self.name))?
            .send(cmd)
            .map_err(|_| format!("service `{}` is shutting down", self.name))
    }

    /// The request path could not connect to `instance` because it refused: proof that it is
    /// gone. Non-blocking; the controller takes it out of the pool and replaces it.
    pub fn report_refused(&self, instance: &Arc<Instance>) {
        if let Some(tx) = self.control.get() {
            let _ = tx.send(Command::Refused(instance.clone()));
        }
    }

    /// A connect to `instance` timed out on the request path. It may only be busy (a full accept
    /// backlog under a burst), so it counts toward `health.unhealthy_threshold` like a failed
    /// probe; the controller decides. Non-blocking.
    pub fn report_timeout(&self, instance: &Arc<Instance>) {
        if let Some(tx) = self.control.get() {
            let _ = tx.send(Command::ConnectTimeout(instance.clone()));
        }
    }

    /// Sends a command that replies and waits for the reply.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(command::Reply<T>) -> Command,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.command(make(tx))?;
        rx.await
            .map_err(|_| format!("service `{}` is shutting down", self.name))?
    }

    /// Requests and tunnels at the service's instances, summed from their exact counts: the
    /// request path keeps only the per-instance count, so no service-wide line bounces.
    pub fn in_flight(&self) -> usize {
        self.instances
            .load()
            .iter()
            .map(|i| i.in_flight() as usize)
            .sum()
    }

    pub fn queued(&self) -> usize {
        self.queued.load(SeqCst)
    }

    fn now_mark(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn touch(&self) {
        self.last_activity.store(self.now_mark(), SeqCst);
    }

    /// `touch` for the request path: stores only when the mark moved by a few milliseconds, so
    /// busy workers do not write the same line per request. Idle timeouts are seconds long.
    fn touch_coarse(&self) {
        let now = self.now_mark();
        if now.saturating_sub(self.last_activity.load(Relaxed)) >= ACTIVITY_RESOLUTION_MS {
            self.last_activity.store(now, SeqCst);
        }
    }

    /// Time since a request last started or ended.
    pub fn quiet_for(&self) -> std::time::Duration {
        let last = self.last_activity.load(SeqCst);
        std::time::Duration::from_millis(self.now_mark().saturating_sub(last))
    }

    /// The request holds a slot `Pool::acquire` took on `instance`. Nothing else is written:
    /// activity is marked when the request ends, which is when idleness can begin.
    pub(crate) fn guard(self: &Arc<Self>, instance: Arc<Instance>) -> InFlight {
        InFlight {
            service: self.clone(),
            instance,
            quiet: false,
        }
    }

    /// No instance is ready to take a request.
    pub fn is_cold(&self) -> bool {
        self.pool.load().is_empty()
    }
}

/// One request (or tunnel) at one instance. Dropping it gives the slot back: at the end of the
/// response body, when the client goes away, or when a tunnel closes.
pub struct InFlight {
    service: Arc<Service>,
    instance: Arc<Instance>,
    /// A request matched `scaling.idle_ignore`: its end is not activity.
    quiet: bool,
}

impl InFlight {
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The request does not count as activity: it neither delays scale to zero nor keeps the
    /// service up (its slot is still held and released as any other).
    pub fn set_quiet(&mut self) {
        self.quiet = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.instance.release();
        let svc = &self.service;
        if !self.quiet {
            svc.touch_coarse();
        }
        // SeqCst pairs with the waiter's increment of `queued` before its acquire attempt: either
        // this sees the waiter, or the waiter's attempt sees the freed slot.
        if svc.queued.load(SeqCst) > 0 {
            svc.capacity.notify_one();
        }
    }
}
