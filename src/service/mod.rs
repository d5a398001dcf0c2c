//! A service: its live config, its pool, the in-flight guard, and the handles its controller and
//! the request path share. The request path touches only atomics and `ArcSwap` loads here.

pub mod activator;
pub mod autoscaler;
pub mod command;
pub mod controller;
pub mod deployment;
pub mod frozen;
pub mod instance;
pub mod lane;
pub mod pool;
pub mod probe;
pub mod probe_grpc;
pub mod reconciler;
pub mod remote;
pub mod revision;
mod sample;
pub mod state;
pub mod traffic;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::ServiceConfig;
use crate::events::EventLog;
use crate::metrics::ServiceMetrics;
use command::Command;
use deployment::Deployments;
use instance::Instance;
use lane::Lane;
use revision::RevisionView;
use traffic::Traffic;

pub struct Service {
    pub name: String,
    pub runtime: crate::runtime::RuntimeKind,
    pub config: ArcSwap<ServiceConfig>,
    /// The revisions that take traffic, each with its pool. Only the controller stores a new one.
    pub traffic: ArcSwap<Traffic>,
    /// Every instance the controller knows (starting, ready, draining), for the admin API.
    pub instances: ArcSwap<Vec<Arc<Instance>>>,
    /// Desired instances, summed over the revisions that take traffic.
    pub desired: AtomicU32,
    pub metrics: ServiceMetrics,
    pub events: Arc<EventLog>,
    /// Requests waiting at any lane: `queue.max_pending` bounds the service.
    queued_total: AtomicUsize,
    /// Set when no slot will come any more (removed, or wakeway stopping), with the reason.
    closed: OnceLock<String>,
    /// Wakes the controller: demand at a lane without capacity.
    wake: Notify,
    /// Set while paused: requests are answered 503 at once instead of starting an instance.
    paused: AtomicBool,
    pub deployments: Deployments,
    /// Every revision so far, oldest first; the last is the latest.
    pub revisions: ArcSwap<Vec<RevisionView>>,
    /// The rollout in progress, or the last one's end.
    pub rollout: ArcSwap<Option<controller::RolloutView>>,
    /// The running controller's commands; a cluster replica that leads again gets a new one.
    control: arc_swap::ArcSwapOption<mpsc::UnboundedSender<Command>>,
    /// What the other replicas of a cluster report; idle in a single process.
    pub remote: remote::Remote,
    /// The last hour of figures, for the console and `wakeway history`.
    pub history: crate::history::ServiceHistory,
}

impl Service {
    /// Records an event of this service (see `EventLog::emit`).
    pub fn emit(&self, kind: &'static str, message: impl Into<String>, fields: serde_json::Value) {
        self.events.emit(&self.name, kind, message, fields);
    }

    pub fn new(
        config: ServiceConfig,
        metrics: ServiceMetrics,
        events: Arc<EventLog>,
    ) -> Arc<Service> {
        let svc = Service {
            name: config.name.clone(),
            runtime: crate::runtime::RuntimeKind::of(&config.source),
            desired: AtomicU32::new(0),
            config: ArcSwap::from_pointee(config),
            traffic: ArcSwap::from_pointee(Traffic::single(Lane::new(""))),
            instances: ArcSwap::from_pointee(Vec::new()),
            metrics,
            events,
            queued_total: AtomicUsize::new(0),
            closed: OnceLock::new(),
            wake: Notify::new(),
            paused: AtomicBool::new(false),
            deployments: Deployments::default(),
            revisions: ArcSwap::from_pointee(Vec::new()),
            rollout: ArcSwap::from_pointee(None),
            control: arc_swap::ArcSwapOption::empty(),
            remote: remote::Remote::default(),
            history: Default::default(),
        };
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

    /// The latest revision's id.
    pub fn revision(&self) -> String {
        self.revisions
            .load()
            .last()
            .map(|r| r.id.clone())
            .unwrap_or_default()
    }

    /// Connects the controller's command channel; called once when it is built.
    pub(crate) fn connect_controller(&self, tx: mpsc::UnboundedSender<Command>) {
        self.control.store(Some(Arc::new(tx)));
    }

    /// Wakes the controller as a waiting request does: another replica has requests waiting.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Sends a command to the controller; `Err` when the controller is gone.
    pub fn command(&self, cmd: Command) -> Result<(), String> {
        self.control
            .load()
            .as_ref()
            .ok_or_else(|| format!("service `{}` has no controller", self.name))?
            .send(cmd)
            .map_err(|_| format!("service `{}` is shutting down", self.name))
    }

    /// The request path saw `instance` fail (`attempt.rs` says what each protocol reports).
    /// Non-blocking: the controller keeps the counts and decides (a refusal proves death, a
    /// timeout is one strike toward `health.unhealthy_threshold`, a reset is checked).
    pub fn report(&self, instance: &Arc<Instance>, seen: command::Report) {
        if let Some(tx) = self.control.load().as_ref() {
            let _ = tx.send(Command::Upstream {
                instance: instance.clone(),
                seen,
            });
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

    /// Requests waiting for a slot, at every lane.
    pub fn queued(&self) -> usize {
        self.queued_total.load(SeqCst)
    }

    /// The lane most requests go to (the one with the largest share): what a single-revision
    /// service has, and where its tests look.
    pub fn lane(&self) -> Arc<Lane> {
        let t = self.traffic.load();
        t.shares
            .iter()
            .max_by_key(|s| s.percent)
            .map(|s| s.lane.clone())
            .unwrap_or_else(|| Lane::new(""))
    }

    /// A slot at `revision`'s lane now, without waiting: a static upstream's retry (nothing will
    /// start there).
    pub fn acquire_now(&self, revision: &str) -> Option<InFlight> {
        let max = self
            .remote
            .share_of(self.config.load().scaling.max_concurrency);
        let traffic = self.traffic.load();
        let lane = traffic.lane_of(revision)?;
        let inst = lane.pool.load().acquire(max)?;
        Some(InFlight::new(lane.clone(), inst))
    }

    /// Whether no lane has a ready instance: a request would wait for a cold start.
    pub fn is_cold(&self) -> bool {
        self.traffic
            .load()
            .lanes()
            .all(|l| l.pool.load().is_empty())
    }

    /// Every waiter at every lane looks again (a pause, a close).
    pub(crate) fn wake_waiters(&self) {
        for lane in self.traffic.load().lanes() {
            lane.wake_waiters();
        }
    }

    /// No slot will come any more (the service was removed, or wakeway is stopping): every
    /// waiter, and every request that would wait, is answered 503 with `why` at once.
    pub(crate) fn close(&self, why: &str) {
        let _ = self.closed.set(why.to_string());
        self.wake_waiters();
    }
}

/// One request (or tunnel) at one instance. Dropping it gives the slot back: at the end of the
/// response body, when the client goes away, or when a tunnel closes.
pub struct InFlight {
    lane: Arc<Lane>,
    instance: Arc<Instance>,
    /// A request matched `scaling.idle_ignore`: its end is not activity.
    quiet: bool,
    /// The request waited for its lane's first instance (a cold start).
    cold: bool,
}

impl InFlight {
    /// The request holds a slot `Pool::acquire` took on `instance`. Nothing else is written:
    /// activity is marked when the request ends, which is when idleness can begin.
    pub(crate) fn new(lane: Arc<Lane>, instance: Arc<Instance>) -> InFlight {
        InFlight {
            lane,
            instance,
            quiet: false,
            cold: false,
        }
    }

    /// Whether the request waited for a cold start of its revision (for `Server-Timing`).
    pub fn was_cold(&self) -> bool {
        self.cold
    }

    /// Whether that wait ended with a thaw rather than a start: the instance that served it
    /// came back from frozen.
    pub fn was_thaw(&self) -> bool {
        self.cold && self.instance.has_thawed()
    }

    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    pub fn lane(&self) -> &Arc<Lane> {
        &self.lane
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
        let lane = &self.lane;
        if !self.quiet {
            lane.touch_coarse();
        }
        // SeqCst pairs with the waiter's increment of `queued` before its acquire attempt: either
        // this sees the waiter, or the waiter's attempt sees the freed slot.
        if lane.queued.load(SeqCst) > 0 {
            lane.capacity.notify_one();
        }
    }
}
