//! One config under replay: each of its services is a real [`Service`] with its real
//! [`Controller`] (autoscaler, reconciler, idle timer, traffic split), on a simulated runtime.
//! A logged request goes through the same `acquire` (and queue) a proxied one does and holds its
//! slot for its service time.

use std::cell::{Cell, RefCell};
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::reader::Request;
use super::sim::SimRuntime;
use super::stats::Stats;
use crate::config::{Config, ServiceConfig};
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::service::controller::{Controller, Source, SourceFactory};
use crate::service::{InFlight, Service};

/// A replayed service of one config.
pub struct Sim {
    pub svc: Arc<Service>,
    pub runtime: SimRuntime,
    pub stats: Rc<RefCell<Stats>>,
    pub cold_start: Duration,
    /// When it first had nothing left to do after the log ended: its window ends there.
    pub settled_at: Option<Instant>,
}

impl Sim {
    fn settled(&self) -> bool {
        let min = self.svc.config.load().scaling.min_instances as usize;
        self.runtime.alive() <= min && self.svc.in_flight() == 0 && self.svc.queued() == 0
    }
}

pub struct World {
    /// The config's path as given.
    pub label: String,
    pub events: Arc<EventLog>,
    /// By the reader's service index: `None` when this config has no such service.
    by_log: Vec<Option<usize>>,
    pub sims: Vec<Sim>,
    /// Requests for services this config does not have, by the reader's index.
    pub skipped: Vec<u64>,
    /// Services of the config that replay does not scale (static upstreams).
    pub unscaled: Vec<String>,
    /// Waiters still in the queue.
    waiting: Rc<Cell<usize>>,
}

/// A request holding its slot until its service time is over.
pub struct Hold {
    pub end: Instant,
    seq: u64,
    _guard: InFlight,
}

impl PartialEq for Hold {
    fn eq(&self, other: &Self) -> bool {
        (self.end, self.seq) == (other.end, other.seq)
    }
}
impl Eq for Hold {}
impl PartialOrd for Hold {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Hold {
    /// Reversed: the heap's top is the earliest end.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.end, other.seq).cmp(&(self.end, self.seq))
    }
}

impl World {
    /// Builds the config's services and starts their controllers. `cold_start` gives each
    /// service's start time; `clock` maps virtual time to the log's.
    pub fn start(
        label: String,
        config: Config,
        only: Option<&str>,
        cold_start: &dyn Fn(&str) -> Duration,
        window_start: Instant,
        clock: impl Fn() -> SystemTime + Send + Sync + 'static,
        keep_events: bool,
    ) -> World {
        let events = Arc::new(EventLog::with_clock(
            clock,
            if keep_events { usize::MAX } else { 0 },
        ));
        let metrics = Metrics::new();
        let mut sims = Vec::new();
        let mut unscaled = Vec::new();
        for sc in &config.services {
            if only.is_some_and(|s| s != sc.name) {
                continue;
            }
            if matches!(sc.source, crate::config::Source::Upstreams(_)) {
                unscaled.push(sc.name.clone());
                continue;
            }
            let cold = cold_start(&sc.name);
            let runtime = SimRuntime::new(cold, window_start);
            let svc = Service::new(sc.clone(), metrics.service(&sc.name), events.clone());
            let source = Source::Managed(Arc::new(runtime.clone()));
            let factory: SourceFactory = {
                let source = source.clone();
                Arc::new(move |_: &ServiceConfig| Ok(source.clone()))
            };
            let controller =
                Controller::new(svc.clone(), source, factory).with_prober(runtime.prober());
            tokio::spawn(controller.run(CancellationToken::new()));
            sims.push(Sim {
                svc,
                runtime,
                stats: Rc::default(),
                cold_start: cold,
                settled_at: None,
            });
        }
        World {
            label,
            events,
            by_log: Vec::new(),
            sims,
            skipped: Vec::new(),
            unscaled,
            waiting: Rc::default(),
        }
    }

    fn sim_of(&mut self, service: u32, name: &str) -> Option<usize> {
        let k = service as usize;
        if self.by_log.len() <= k {
            self.by_log.resize(k + 1, None);
            self.skipped.resize(k + 1, 0);
        }
        if self.by_log[k].is_none() {
            self.by_log[k] = self.sims.iter().position(|s| s.svc.name == name);
        }
        if self.by_log[k].is_none() {
            self.skipped[k] += 1;
        }
        self.by_log[k]
    }

    /// The replayed service of the log's service `service`, if this config has it.
    pub fn sim_for(&self, service: u32) -> Option<&Sim> {
        self.by_log
            .get(service as usize)
            .copied()
            .flatten()
            .map(|k| &self.sims[k])
    }

    /// Sends one request through the service's real acquire path, now. It either takes a slot
    /// at once (held in `holds` until its service time ends) or waits in the queue in a task of
    /// its own; returns whether it waits.
    pub fn dispatch(
        &mut self,
        req: &Request,
        name: &str,
        holds: &mut BinaryHeap<Hold>,
        seq: u64,
    ) -> bool {
        let Some(k) = self.sim_of(req.service, name) else {
            return false;
        };
        let sim = &self.sims[k];
        let arrived = Instant::now();
        let svc = sim.svc.clone();
        let mut acquire = Box::pin(async move { svc.acquire().await });
        sim.stats.borrow_mut().requests += 1;
        match (&mut acquire).now_or_never() {
            Some(Ok(guard)) => {
                sim.stats.borrow_mut().served(Duration::ZERO, false);
                holds.push(Hold {
                    end: arrived + req.service_time,
                    seq,
                    _guard: guard,
                });
                false
            }
            Some(Err(e)) => {
                sim.stats.borrow_mut().refused(&e);
                false
            }
            None => {
                let stats = sim.stats.clone();
                let waiting = self.waiting.clone();
                let service_time = req.service_time;
                waiting.set(waiting.get() + 1);
                tokio::task::spawn_local(async move {
                    let result = acquire.await;
                    waiting.set(waiting.get() - 1);
                    match result {
                        Ok(guard) => {
                            stats
                                .borrow_mut()
                                .served(arrived.elapsed(), guard.was_cold());
                            tokio::time::sleep(service_time).await;
                            drop(guard);
                        }
                        Err(e) => stats.borrow_mut().refused(&e),
                    }
                });
                true
            }
        }
    }

    /// Marks the services that have nothing left to do; true when all have.
    pub fn settle(&mut self) -> bool {
        let now = Instant::now();
        let quiet = self.waiting.get() == 0;
        for s in &mut self.sims {
            if s.settled_at.is_none() && quiet && s.settled() {
                s.settled_at = Some(now);
            }
        }
        self.sims.iter().all(|s| s.settled_at.is_some())
    }

    /// How long after the log's end a service may still need to reach its floor: a queued
    /// request's timeout, then its idle timeout, the decision tick and the drain.
    pub fn settle_horizon(&self) -> Duration {
        self.sims
            .iter()
            .map(|s| {
                let c = s.svc.config.load();
                c.queue.timeout
                    + c.scaling.idle_timeout
                    + c.deploy.drain_timeout
                    + c.health.startup_timeout
            })
            .max()
            .unwrap_or_default()
            + Duration::from_secs(10)
    }
}
