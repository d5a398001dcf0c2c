//! The per-service control loop: the only writer of the pool. It samples demand for the
//! autoscaler, starts instances (at once for a cold request), publishes them when their startup
//! probe passes, drains and stops the ones no longer wanted, and replaces the ones that die.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Service;
use super::autoscaler::Autoscaler;
use super::instance::{Instance, InstanceState};
use super::pool::Pool;
use crate::health::{self, NotReady};
use crate::runtime::{InstanceHandle, InstanceSpec, Runtime};

const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const DECIDE_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An instance that exits this soon after it was spawned most likely lost its port to another
/// process: it is started again on a new port, not counted as a failure.
const PORT_RACE_WINDOW: Duration = Duration::from_secs(1);
const PORT_RACE_RETRIES: u32 = 3;

/// Where a service's instances come from.
pub enum Source {
    Managed(Arc<dyn Runtime>),
    Fixed(Vec<SocketAddr>),
}

enum Msg {
    Spawned {
        instance: Arc<Instance>,
        handle: Arc<dyn InstanceHandle>,
        exited: watch::Receiver<Option<String>>,
    },
    Ready {
        id: String,
    },
    StartFailed {
        id: String,
        reason: String,
    },
    Exited {
        id: String,
        reason: String,
    },
    Unhealthy {
        id: String,
        reason: String,
    },
    Healthy {
        id: String,
    },
    Stopped {
        id: String,
    },
}

struct Member {
    instance: Arc<Instance>,
    handle: Option<Arc<dyn InstanceHandle>>,
    health: Option<tokio::task::AbortHandle>,
}

pub struct Controller {
    svc: Arc<Service>,
    source: Source,
    revision: String,
    members: Vec<Member>,
    /// Start attempts in progress, by instance id.
    starts: HashMap<String, ()>,
    autoscaler: Autoscaler,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    next_instance: u64,
    failures: u32,
    backoff_until: Option<Instant>,
    /// Stops start attempts and probes at shutdown.
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Controller {
    pub fn new(svc: Arc<Service>, source: Source, revision: String) -> Controller {
        let (tx, rx) = mpsc::unbounded_channel();
        Controller {
            svc,
            source,
            revision,
            members: Vec::new(),
            starts: HashMap::new(),
            autoscaler: Autoscaler::new(),
            tx,
            rx,
            next_instance: 0,
            failures: 0,
            backoff_until: None,
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Runs until `shutdown`, then drains and stops every instance before returning.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if let Source::Fixed(addrs) = &self.source {
            let addrs = addrs.clone();
            for (k, addr) in addrs.iter().copied().enumerate() {
                let inst = Arc::new(Instance::new(
                    format!("{}-{k}", self.svc.name),
                    self.revision.clone(),
                    addr,
                    None,
                ));
                inst.set_state(InstanceState::Ready);
                self.members.push(Member {
                    instance: inst.clone(),
                    handle: None,
                    health: None,
                });
                self.watch_health(&inst);
            }
            self.set_desired(addrs.len() as u32);
            self.publish();
        } else {
            let min = self.svc.config.load().scaling.min_instances;
            self.set_desired(min);
            self.reconcile();
        }

        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        sample.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut decide = tokio::time::interval(DECIDE_EVERY);
        decide.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let backoff = self.backoff_until;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(msg) = self.rx.recv() => self.handle(msg),
                _ = self.svc.woken() => self.on_wake(),
                _ = sample.tick() => {
                    let load = (self.svc.in_flight() + self.svc.queued()) as f64;
                    let window = self.svc.config.load().scaling.stable_window;
                    self.autoscaler.record(Instant::now(), load, window);
                }
                _ = decide.tick() => self.decide(),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = sleep_until_opt(backoff) => {
                    self.backoff_until = None;
                    self.reconcile();
                }
            }
        }
        self.shutdown().await;
    }

    fn managed(&self) -> bool {
        matches!(self.source, Source::Managed(_))
    }

    fn ready_count(&self) -> u32 {
        self.members
            .iter()
            .filter(|m| m.instance.state() == InstanceState::Ready)
            .count() as u32
    }

    fn set_desired(&mut self, n: u32) {
        self.svc.desired.store(n, SeqCst);
        self.svc.metrics.desired.set(n as i64);
    }

    fn desired(&self) -> u32 {
        self.svc.desired.load(SeqCst)
    }

    /// A request waits with no capacity, or an instance failed on the request path.
    fn on_wake(&mut self) {
        for m in &self.members {
            if m.instance.state() == InstanceState::Unhealthy && self.in_pool(&m.instance) {
                let id = m.instance.id.clone();
                let _ = self.tx.send(Msg::Unhealthy {
                    id,
                    reason: "connection refused on the request path".into(),
                });
            }
        }
        if !self.managed() {
            return;
        }
        let queued = self.svc.queued() as u32;
        if queued == 0 {
            return;
        }
        let cfg = self.svc.config.load_full();
        let starting = self.starts.len() as u32;
        let ready = self.ready_count();
        let desired = self.desired();
        let want = if ready + starting == 0 {
            self.svc.metrics.cold_starts.inc();
            self.svc.events.emit(
                &self.svc.name,
                "cold_start",
                "request arrived with no instance: starting one now",
                json!({ "queued": queued }),
            );
            desired.max(1)
        } else {
            // Queued demand beyond what the starting instances will absorb starts more now.
            let absorb = starting * cfg.scaling.max_concurrency;
            let extra = queued.saturating_sub(absorb).div_ceil(cfg.scaling.max_concurrency);
            desired.max(ready + starting + extra)
        };
        let want = want.min(cfg.scaling.max_instances);
        if want > desired {
            self.change_desired(want, "demand", json!({ "queued": queued, "ready": ready, "starting": starting }));
        }
        self.reconcile();
    }

    fn decide(&mut self) {
        if !self.managed() {
            return;
        }
        let cfg = self.svc.config.load_full();
        let idle = self.svc.in_flight() == 0
            && self.svc.queued() == 0
            && self.svc.quiet_for() >= cfg.scaling.idle_timeout;
        let current = self.desired();
        let d = self.autoscaler.decide(
            Instant::now(),
            &cfg.scaling,
            current,
            self.ready_count(),
            idle,
        );
        if d.desired != current {
            let inputs = serde_json::to_value(&d).unwrap_or_default();
            self.change_desired(d.desired, "autoscaler", inputs);
        }
        self.reconcile();
    }

    fn change_desired(&mut self, to: u32, why: &str, inputs: serde_json::Value) {
        let from = self.desired();
        if to > from {
            self.svc.metrics.scale_up.inc();
        } else {
            self.svc.metrics.scale_down.inc();
        }
        let mut fields = json!({ "from": from, "to": to, "trigger": why });
        if let (Some(f), serde_json::Value::Object(extra)) = (fields.as_object_mut(), inputs) {
            f.extend(extra);
        }
        self.svc.events.emit(
            &self.svc.name,
            "scale",
            format!("desired instances {from} -> {to} ({why})"),
            fields,
        );
        self.set_desired(to);
    }

    /// Starts or drains instances until the count matches the desired one.
    fn reconcile(&mut self) {
        let Source::Managed(runtime) = &self.source else {
            return;
        };
        let runtime = runtime.clone();
        let desired = self.desired();
        let active = self.starts.len() as u32 + self.ready_count();
        if active < desired {
            if self.backoff_until.is_some() {
                return;
            }
            for _ in active..desired {
                self.start(runtime.clone());
            }
        } else if active > desired {
            // Starts in progress finish first: stopping a half-started instance could leak it.
            let mut victims: Vec<Arc<Instance>> = self
                .members
                .iter()
                .filter(|m| m.instance.state() == InstanceState::Ready)
                .map(|m| m.instance.clone())
                .collect();
            victims.sort_by_key(|i| i.in_flight());
            let excess = (active - desired) as usize;
            for v in victims.into_iter().take(excess) {
                self.drain(&v.id, "scale down");
            }
        }
    }

    fn start(&mut self, runtime: Arc<dyn Runtime>) {
        let id = format!("{}-{}", self.revision, suffix(self.next_instance));
        self.next_instance += 1;
        self.starts.insert(id.clone(), ());
        self.svc.starting.store(self.starts.len() as u32, SeqCst);
        let cfg = self.svc.config.load_full();
        let spec = InstanceSpec {
            service: self.svc.name.clone(),
            revision: self.revision.clone(),
            instance: id.clone(),
            env: cfg.env.clone(),
        };
        self.svc.events.emit(
            &self.svc.name,
            "instance_starting",
            format!("starting instance {id}"),
            json!({ "instance": id, "runtime": runtime.name() }),
        );
        let tx = self.tx.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let health = cfg.health.clone();
            for attempt in 1..=PORT_RACE_RETRIES {
                let started = match runtime.start(spec.clone()).await {
                    Ok(s) => s,
                    Err(e) if e.retryable && attempt < PORT_RACE_RETRIES => continue,
                    Err(e) => {
                        let _ = tx.send(Msg::StartFailed { id, reason: e.message });
                        return;
                    }
                };
                let spawned_at = Instant::now();
                let inst = Arc::new(Instance::new(
                    id.clone(),
                    spec.revision.clone(),
                    started.address,
                    started.pid,
                ));
                let handle: Arc<dyn InstanceHandle> = Arc::from(started.handle);
                let _ = tx.send(Msg::Spawned {
                    instance: inst.clone(),
                    handle: handle.clone(),
                    exited: started.exited.clone(),
                });
                match health::wait_ready(started.address, &health, started.exited, &cancel).await {
                    Ok(()) => {
                        let _ = tx.send(Msg::Ready { id });
                        return;
                    }
                    Err(NotReady::Exited(_))
                        if spawned_at.elapsed() < PORT_RACE_WINDOW
                            && attempt < PORT_RACE_RETRIES => {}
                    Err(NotReady::Exited(reason)) => {
                        let _ = tx.send(Msg::StartFailed {
                            id,
                            reason: format!("exited before it was ready: {reason}"),
                        });
                        return;
                    }
                    Err(NotReady::Timeout(last)) => {
                        handle.stop(Duration::from_secs(1)).await;
                        let _ = tx.send(Msg::StartFailed {
                            id,
                            reason: format!(
                                "not ready within startup_timeout {:?}: {last}",
                                health.startup_timeout
                            ),
                        });
                        return;
                    }
                    Err(NotReady::Cancelled) => {
                        let _ = tx.send(Msg::StartFailed {
                            id,
                            reason: "cancelled: wakeway is stopping".into(),
                        });
                        return;
                    }
                }
            }
        });
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Spawned {
                instance,
                handle,
                mut exited,
            } => {
                let tx = self.tx.clone();
                let id = instance.id.clone();
                tokio::spawn(async move {
                    if let Ok(r) = exited.wait_for(|e| e.is_some()).await {
                        let reason = r.clone().unwrap_or_default();
                        let _ = tx.send(Msg::Exited { id, reason });
                    }
                });
                self.members.push(Member {
                    instance,
                    handle: Some(handle),
                    health: None,
                });
                self.publish();
            }
            Msg::Ready { id } => {
                self.starts.remove(&id);
                self.svc.starting.store(self.starts.len() as u32, SeqCst);
                self.failures = 0;
                let Some(inst) = self.member(&id).map(|m| m.instance.clone()) else {
                    return;
                };
                if !inst.transition(InstanceState::Starting, InstanceState::Ready) {
                    return;
                }
                let cold = self.svc.cold_since.swap(0, SeqCst);
                if cold != 0 {
                    let waited = self.svc.now_mark().saturating_sub(cold);
                    self.svc
                        .metrics
                        .cold_start_duration
                        .observe(waited as f64 / 1000.0);
                }
                self.svc.events.emit(
                    &self.svc.name,
                    "instance_ready",
                    format!("instance {id} is ready at {}", inst.address),
                    json!({ "instance": id, "address": inst.address.to_string(), "pid": inst.pid }),
                );
                self.watch_health(&inst);
                self.publish();
                self.svc.wake_waiters();
                self.reconcile();
            }
            Msg::StartFailed { id, reason } => {
                self.starts.remove(&id);
                self.svc.starting.store(self.starts.len() as u32, SeqCst);
                if let Some(pos) = self.members.iter().position(|m| m.instance.id == id) {
                    let m = self.members.remove(pos);
                    m.instance.set_state(InstanceState::Stopped);
                    if let Some(h) = m.handle {
                        self.tasks
                            .spawn(async move { h.stop(Duration::from_secs(1)).await });
                    }
                }
                if self.cancel.is_cancelled() {
                    self.publish();
                    return;
                }
                self.failures += 1;
                let backoff = backoff(self.failures);
                self.backoff_until = Some(Instant::now() + backoff);
                self.svc.events.emit(
                    &self.svc.name,
                    "start_failed",
                    format!("instance {id} failed to start: {reason}; next try in {backoff:?}"),
                    json!({ "instance": id, "reason": reason, "failures": self.failures, "retry_in_ms": backoff.as_millis() as u64 }),
                );
                self.svc.last_failure.store(Arc::new(reason));
                self.svc.start_failures.fetch_add(1, SeqCst);
                self.publish();
                self.svc.wake_waiters();
            }
            Msg::Exited { id, reason } => {
                let Some(pos) = self.members.iter().position(|m| m.instance.id == id) else {
                    return;
                };
                let state = self.members[pos].instance.state();
                if matches!(state, InstanceState::Draining | InstanceState::Stopped) {
                    return; // its drain task reports Stopped
                }
                let m = self.members.remove(pos);
                m.instance.set_state(InstanceState::Stopped);
                if let Some(h) = m.health {
                    h.abort();
                }
                if state != InstanceState::Starting {
                    self.svc.events.emit(
                        &self.svc.name,
                        "instance_exited",
                        format!("instance {id} exited: {reason}"),
                        json!({ "instance": id, "reason": reason }),
                    );
                }
                self.publish();
                self.reconcile();
            }
            Msg::Unhealthy { id, reason } => {
                let Some(inst) = self.member(&id).map(|m| m.instance.clone()) else {
                    return;
                };
                self.svc.events.emit(
                    &self.svc.name,
                    "instance_unhealthy",
                    format!("instance {id} is unhealthy: {reason}"),
                    json!({ "instance": id, "reason": reason }),
                );
                if self.managed() {
                    self.drain(&id, "unhealthy");
                    self.reconcile();
                } else {
                    inst.set_state(InstanceState::Unhealthy);
                    self.publish();
                }
            }
            Msg::Healthy { id } => {
                if let Some(inst) = self.member(&id).map(|m| m.instance.clone())
                    && inst.transition(InstanceState::Unhealthy, InstanceState::Ready)
                {
                    self.svc.events.emit(
                        &self.svc.name,
                        "instance_healthy",
                        format!("instance {id} is healthy again"),
                        json!({ "instance": id }),
                    );
                    self.publish();
                    self.svc.wake_waiters();
                }
            }
            Msg::Stopped { id } => {
                if let Some(pos) = self.members.iter().position(|m| m.instance.id == id) {
                    let m = self.members.remove(pos);
                    m.instance.set_state(InstanceState::Stopped);
                }
                self.svc.events.emit(
                    &self.svc.name,
                    "instance_stopped",
                    format!("instance {id} stopped"),
                    json!({ "instance": id }),
                );
                self.publish();
            }
        }
    }

    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.instance.id == id)
    }

    fn in_pool(&self, inst: &Arc<Instance>) -> bool {
        self.svc
            .pool
            .load()
            .instances
            .iter()
            .any(|i| Arc::ptr_eq(i, inst))
    }

    /// Takes the instance out of the pool first, then waits for its requests and tunnels (up to
    /// `drain_timeout`), then stops it.
    fn drain(&mut self, id: &str, why: &str) {
        let Some(m) = self.members.iter_mut().find(|m| m.instance.id == id) else {
            return;
        };
        if let Some(h) = m.health.take() {
            h.abort();
        }
        let inst = m.instance.clone();
        let handle = m.handle.clone();
        inst.set_state(InstanceState::Draining);
        self.publish();
        let cfg = self.svc.config.load_full();
        self.svc.events.emit(
            &self.svc.name,
            "instance_draining",
            format!("draining instance {id} ({why}), {} in flight", inst.in_flight()),
            json!({ "instance": id, "reason": why, "in_flight": inst.in_flight() }),
        );
        let tx = self.tx.clone();
        let (drain_timeout, grace) = (cfg.deploy.drain_timeout, cfg.deploy.stop_grace);
        let svc = self.svc.clone();
        self.tasks.spawn(async move {
            if tokio::time::timeout(drain_timeout, inst.wait_idle()).await.is_err() {
                svc.events.emit(
                    &svc.name,
                    "drain_timeout",
                    format!("instance {} still had {} in flight after drain_timeout {drain_timeout:?}; stopping it", inst.id, inst.in_flight()),
                    json!({ "instance": inst.id, "in_flight": inst.in_flight() }),
                );
            }
            if let Some(h) = handle {
                h.stop(grace).await;
            }
            let _ = tx.send(Msg::Stopped {
                id: inst.id.clone(),
            });
        });
    }

    fn watch_health(&mut self, inst: &Arc<Instance>) {
        let cfg = self.svc.config.load_full();
        let tx = self.tx.clone();
        let inst2 = inst.clone();
        let task = tokio::spawn(async move {
            let health = &cfg.health;
            let (mut fails, mut passes) = (0u32, 0u32);
            let mut tick = tokio::time::interval(health.interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let state = inst2.state();
                match health::probe(inst2.address, health).await {
                    Ok(()) => {
                        fails = 0;
                        passes += 1;
                        if state == InstanceState::Unhealthy && passes >= health.healthy_threshold {
                            let _ = tx.send(Msg::Healthy {
                                id: inst2.id.clone(),
                            });
                        }
                    }
                    Err(reason) => {
                        passes = 0;
                        fails += 1;
                        if state == InstanceState::Ready && fails >= health.unhealthy_threshold {
                            let _ = tx.send(Msg::Unhealthy {
                                id: inst2.id.clone(),
                                reason,
                            });
                        }
                    }
                }
            }
        });
        if let Some(m) = self.members.iter_mut().find(|m| Arc::ptr_eq(&m.instance, inst)) {
            m.health = Some(task.abort_handle());
        }
    }

    /// Stores the pool (ready instances) and the admin snapshot, and updates the state gauges.
    fn publish(&self) {
        let all: Vec<Arc<Instance>> = self.members.iter().map(|m| m.instance.clone()).collect();
        let ready: Vec<Arc<Instance>> = all
            .iter()
            .filter(|i| i.state() == InstanceState::Ready)
            .cloned()
            .collect();
        let count = |s: InstanceState| all.iter().filter(|i| i.state() == s).count() as i64;
        let m = &self.svc.metrics;
        m.starting.set(count(InstanceState::Starting));
        m.ready.set(ready.len() as i64);
        m.draining.set(count(InstanceState::Draining));
        self.svc.pool.store(Arc::new(Pool::new(ready)));
        self.svc.instances.store(Arc::new(all));
    }

    async fn shutdown(mut self) {
        self.cancel.cancel();
        let ids: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.handle.is_some() && m.instance.state() != InstanceState::Draining)
            .map(|m| m.instance.id.clone())
            .collect();
        for id in ids {
            self.drain(&id, "shutdown");
        }
        // Starts in flight end promptly (cancelled); their instances are stopped as they report.
        while !self.starts.is_empty() || self.members.iter().any(|m| m.handle.is_some()) {
            let Some(msg) = self.rx.recv().await else {
                break;
            };
            match msg {
                Msg::Spawned { .. } | Msg::StartFailed { .. } | Msg::Stopped { .. } => {
                    self.handle(msg)
                }
                Msg::Ready { id } => {
                    self.starts.remove(&id);
                    self.drain(&id, "shutdown");
                }
                Msg::Exited { id, .. } => {
                    if let Some(pos) = self.members.iter().position(|m| m.instance.id == id)
                        && self.members[pos].instance.state() != InstanceState::Draining
                    {
                        self.members.remove(pos);
                    }
                }
                Msg::Unhealthy { .. } | Msg::Healthy { .. } => {}
            }
        }
        for m in &self.members {
            if let Some(h) = &m.health {
                h.abort();
            }
        }
        self.publish();
        while self.tasks.join_next().await.is_some() {}
    }
}

fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(5);
    Duration::from_secs(secs).min(BACKOFF_MAX)
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Short, readable instance suffixes: a, b, ..., z, ba, bb, ...
fn suffix(mut n: u64) -> String {
    const DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[(n % 26) as usize]);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_distinct_and_short() {
        let v: Vec<String> = (1..=30).map(suffix).collect();
        let set: std::collections::HashSet<_> = v.iter().collect();
        assert_eq!(set.len(), 30);
        assert_eq!(v[0], "b");
        assert_eq!(suffix(0), "a");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(10), Duration::from_secs(30));
    }
}
