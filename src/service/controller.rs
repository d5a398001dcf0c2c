//! The per-service control loop: the only writer of the pool. It samples demand for the
//! autoscaler, starts instances (at once for a cold request), publishes them when their startup
//! probe passes, drains and stops the ones no longer wanted, replaces the ones that die, and runs
//! blue/green deployments: the new revision's instances start beside the live ones, and one store
//! of the pool switches traffic once every one of them passed its probe.

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
use super::command::Command;
use super::deployment::DeployState;
use super::instance::{Instance, InstanceState};
use super::pool::Pool;
use super::revision::{Revision, source_changes};
use crate::config::ServiceConfig;
use crate::health::{self, NotReady};
use crate::runtime::{InstanceHandle, InstanceSpec, Runtime};

const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const DECIDE_EVERY: Duration = Duration::from_secs(1);
/// How often `deploy.auto` asks the runtime whether the source changed underneath.
const AUTO_DEPLOY_EVERY: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An instance that exits this soon after it was spawned most likely lost its port to another
/// process: it is started again on a new port, not counted as a failure.
const PORT_RACE_WINDOW: Duration = Duration::from_secs(1);
const PORT_RACE_RETRIES: u32 = 3;

/// Where a service's instances come from.
#[derive(Clone)]
pub enum Source {
    Managed(Arc<dyn Runtime>),
    Fixed(Vec<SocketAddr>),
}

/// Builds the instance source of a revision (a new runtime for a new command or image).
pub type SourceFactory = Arc<dyn Fn(&ServiceConfig) -> Result<Source, String> + Send + Sync>;

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

/// A start attempt in progress.
struct Start {
    revision: String,
    /// Ends its startup probe early when its revision is no longer wanted (a failed deployment)
    /// or wakeway stops.
    cancel: CancellationToken,
}

/// A deployment between its start and its switch.
struct Green {
    revision: Revision,
    source: Source,
    deployment: String,
    trigger: String,
    want: u32,
    deadline: Instant,
}

pub struct Controller {
    svc: Arc<Service>,
    factory: SourceFactory,
    /// The live revision and its source.
    revision: Revision,
    source: Source,
    /// Revisions that were live, oldest first (the last is the live one): rollback goes back here.
    history: Vec<Revision>,
    next_revision: u32,
    green: Option<Green>,
    members: Vec<Member>,
    /// Start attempts in progress, by instance id.
    starts: HashMap<String, Start>,
    autoscaler: Autoscaler,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    commands: mpsc::UnboundedReceiver<Command>,
    next_instance: u64,
    failures: u32,
    backoff_until: Option<Instant>,
    /// What the runtime said the source was when the live revision was made (`deploy.auto`).
    source_version: Option<String>,
    /// Stops start attempts and probes at shutdown.
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Controller {
    pub fn new(svc: Arc<Service>, source: Source, factory: SourceFactory) -> Controller {
        let (tx, rx) = mpsc::unbounded_channel();
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        svc.connect_controller(cmd_tx);
        let revision = Revision::new(&svc.name, 1, svc.config.load_full(), Vec::new());
        svc.revisions.store(Arc::new(vec![revision.view()]));
        svc.metrics.set_revision(None, &revision.id);
        Controller {
            svc,
            factory,
            history: vec![revision.clone()],
            revision,
            source,
            next_revision: 2,
            green: None,
            members: Vec::new(),
            starts: HashMap::new(),
            autoscaler: Autoscaler::new(),
            tx,
            rx,
            commands,
            next_instance: 0,
            failures: 0,
            backoff_until: None,
            source_version: None,
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
        }
    }

    pub fn service_name(&self) -> &str {
        &self.svc.name
    }

    /// Runs until `shutdown` (or a `Remove` command), then drains and stops every instance.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if let Source::Fixed(addrs) = self.source.clone() {
            self.add_fixed(&addrs, &self.revision.id.clone());
            self.set_desired(addrs.len() as u32);
            self.publish();
        } else {
            let adopted = self.adopt().await;
            let min = self.svc.config.load().scaling.min_instances;
            self.set_desired(min.max(adopted));
            self.reconcile();
        }
        self.source_version = self.runtime_version().await;

        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        sample.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut decide = tokio::time::interval(DECIDE_EVERY);
        decide.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut auto = tokio::time::interval(AUTO_DEPLOY_EVERY);
        auto.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let backoff = self.backoff_until;
            let green_deadline = self.green.as_ref().map(|g| g.deadline);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(msg) = self.rx.recv() => self.handle(msg),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Remove) | None => {
                        // Requests still queued for it get a 503 that says why once its
                        // instances drained, instead of waiting out the queue timeout.
                        self.svc
                            .last_failure
                            .store(Arc::new("the service was removed from the config".into()));
                        self.svc.set_failing(true);
                        self.svc.start_failures.fetch_add(1, SeqCst);
                        break;
                    }
                    Some(cmd) => self.command(cmd),
                },
                _ = self.svc.woken() => self.on_wake(),
                _ = sample.tick() => {
                    let load = (self.svc.in_flight() + self.svc.queued()) as f64;
                    let window = self.svc.config.load().scaling.stable_window;
                    self.autoscaler.record(Instant::now(), load, window);
                }
                _ = decide.tick() => self.decide(),
                _ = auto.tick(), if self.svc.config.load().deploy.auto => self.auto_deploy().await,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = sleep_until_opt(backoff) => {
                    self.backoff_until = None;
                    self.svc.set_failing(false);
                    self.reconcile();
                }
                _ = sleep_until_opt(green_deadline) => {
                    let timeout = self.svc.config.load().deploy.timeout;
                    self.fail_deploy(format!(
                        "the new instances were not all healthy within deploy.timeout {timeout:?}"
                    ));
                }
            }
        }
        self.shutdown().await;
    }

    fn add_fixed(&mut self, addrs: &[SocketAddr], revision: &str) {
        for addr in addrs {
            let inst = Arc::new(Instance::new(
                self.next_id(revision),
                revision.to_string(),
                *addr,
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
    }

    /// Static upstreams of a revision that no longer takes traffic simply leave: there is
    /// nothing to stop, only their health checks.
    fn forget_fixed(&mut self, revision: &str) {
        self.members.retain(|m| {
            let keep = m.handle.is_some() || m.instance.revision != revision;
            if !keep {
                m.instance.set_state(InstanceState::Stopped);
                if let Some(h) = &m.health {
                    h.abort();
                }
            }
            keep
        });
    }

    fn managed(&self) -> bool {
        matches!(self.source, Source::Managed(_))
    }

    fn is_live(&self, inst: &Instance) -> bool {
        inst.revision == self.revision.id
    }

    fn is_green(&self, inst: &Instance) -> bool {
        self.green
            .as_ref()
            .is_some_and(|g| g.revision.id == inst.revision)
    }

    /// Ready instances of the live revision.
    fn ready_count(&self) -> u32 {
        self.members
            .iter()
            .filter(|m| m.instance.state() == InstanceState::Ready && self.is_live(&m.instance))
            .count() as u32
    }

    fn live_starts(&self) -> u32 {
        self.starts
            .values()
            .filter(|s| s.revision == self.revision.id)
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
        if !self.managed() || self.svc.is_paused() {
            return;
        }
        let queued = self.svc.queued() as u32;
        if queued == 0 {
            return;
        }
        let cfg = self.svc.config.load_full();
        let starting = self.live_starts();
        let ready = self.ready_count();
        let desired = self.desired();
        let want = if ready + starting == 0 {
            if self.backoff_until.is_some() {
                return; // the retry after the backoff starts it; waiters were told why
            }
            self.svc.metrics.cold_starts.inc();
            self.svc.events.emit(
                &self.svc.name,
                "cold_start",
                "request arrived with no instance: starting one now",
                json!({ "queued": queued, "revision": self.revision.id }),
            );
            desired.max(1)
        } else {
            // Queued demand beyond what the starting instances will absorb starts more now.
            let absorb = starting * cfg.scaling.max_concurrency;
            let extra = queued
                .saturating_sub(absorb)
                .div_ceil(cfg.scaling.max_concurrency);
            desired.max(ready + starting + extra)
        };
        let want = want.min(cfg.scaling.max_instances);
        if want > desired {
            self.change_desired(
                want,
                "demand",
                json!({ "queued": queued, "ready": ready, "starting": starting }),
            );
        }
        self.reconcile();
    }

    fn decide(&mut self) {
        if !self.managed() || self.svc.is_paused() {
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

    /// Starts or drains live instances until their count matches the desired one.
    fn reconcile(&mut self) {
        let Source::Managed(runtime) = &self.source else {
            return;
        };
        let runtime = runtime.clone();
        let desired = self.desired();
        let active = self.live_starts() + self.ready_count();
        if active < desired {
            if self.backoff_until.is_some() {
                return;
            }
            let revision = self.revision.clone();
            for _ in active..desired {
                self.start(runtime.clone(), &revision);
            }
        } else if active > desired {
            // Starts in progress finish first: stopping a half-started instance could leak it.
            let mut victims: Vec<Arc<Instance>> = self
                .members
                .iter()
                .filter(|m| m.instance.state() == InstanceState::Ready && self.is_live(&m.instance))
                .map(|m| m.instance.clone())
                .collect();
            victims.sort_by_key(|i| i.in_flight());
            let excess = (active - desired) as usize;
            for v in victims.into_iter().take(excess) {
                self.drain(&v.id, "scale down");
            }
        }
    }

    fn next_id(&mut self, revision: &str) -> String {
        loop {
            let id = format!("{revision}-{}", suffix(self.next_instance));
            self.next_instance += 1;
            // Adopted instances keep their ids: a new one must not take one.
            if self.member(&id).is_none() && !self.starts.contains_key(&id) {
                return id;
            }
        }
    }

    fn start(&mut self, runtime: Arc<dyn Runtime>, revision: &Revision) {
        let id = self.next_id(&revision.id);
        let cancel = self.cancel.child_token();
        self.starts.insert(
            id.clone(),
            Start {
                revision: revision.id.clone(),
                cancel: cancel.clone(),
            },
        );
        self.svc.starting.store(self.starts.len() as u32, SeqCst);
        let spec = InstanceSpec {
            service: self.svc.name.clone(),
            revision: revision.id.clone(),
            instance: id.clone(),
            env: revision.config.env.clone(),
        };
        self.svc.events.emit(
            &self.svc.name,
            "instance_starting",
            format!("starting instance {id}"),
            json!({ "instance": id, "revision": revision.id, "runtime": runtime.name() }),
        );
        let tx = self.tx.clone();
        let health = self.svc.config.load().health.clone();
        self.tasks.spawn(async move {
            for attempt in 1..=PORT_RACE_RETRIES {
                let started = match runtime.start(spec.clone()).await {
                    Ok(s) => s,
                    Err(e) if e.retryable && attempt < PORT_RACE_RETRIES => continue,
                    Err(e) => {
                        let _ = tx.send(Msg::StartFailed {
                            id,
                            reason: e.message,
                        });
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

    /// Takes in the instances a previous wakeway left running (docker containers). They count as
    /// starting until their probe passes, like new ones, so none is started twice; returns how
    /// many there are.
    async fn adopt(&mut self) -> u32 {
        let Source::Managed(runtime) = &self.source else {
            return 0;
        };
        let runtime = runtime.clone();
        let adopted = match runtime.adopt(&self.svc.name, &self.revision.id).await {
            Ok(adopted) => adopted,
            Err(e) => {
                self.svc.events.emit(
                    &self.svc.name,
                    "adopt_failed",
                    format!("cannot look for instances left running: {}", e.message),
                    json!({ "reason": e.message, "runtime": runtime.name() }),
                );
                return 0;
            }
        };
        let count = adopted.len() as u32;
        for a in adopted {
            let id = a.instance;
            let address = a.started.address;
            let cancel = self.cancel.child_token();
            self.starts.insert(
                id.clone(),
                Start {
                    revision: self.revision.id.clone(),
                    cancel: cancel.clone(),
                },
            );
            self.svc.starting.store(self.starts.len() as u32, SeqCst);
            let inst = Arc::new(Instance::new(
                id.clone(),
                self.revision.id.clone(),
                address,
                a.started.pid,
            ));
            let handle: Arc<dyn InstanceHandle> = Arc::from(a.started.handle);
            self.svc.events.emit(
                &self.svc.name,
                "instance_adopted",
                format!("adopting instance {id}, left running at {address}"),
                json!({ "instance": id, "address": address.to_string(), "runtime": runtime.name() }),
            );
            self.handle(Msg::Spawned {
                instance: inst,
                handle: handle.clone(),
                exited: a.started.exited.clone(),
            });
            let tx = self.tx.clone();
            let health = self.svc.config.load().health.clone();
            let exited = a.started.exited;
            self.tasks.spawn(async move {
                let reason = match health::wait_ready(address, &health, exited, &cancel).await {
                    Ok(()) => {
                        let _ = tx.send(Msg::Ready { id });
                        return;
                    }
                    Err(NotReady::Exited(r)) => format!("exited before it was ready: {r}"),
                    Err(NotReady::Timeout(last)) => {
                        handle.stop(Duration::from_secs(1)).await;
                        format!("not ready within startup_timeout: {last}")
                    }
                    Err(NotReady::Cancelled) => "cancelled: wakeway is stopping".into(),
                };
                let _ = tx.send(Msg::StartFailed {
                    id,
                    reason: format!("adopted instance {reason}"),
                });
            });
        }
        count
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Spawned {
                instance,
                handle,
                mut exited,
            } => {
                let tx = self.tx.clone();
                let inst = instance.clone();
                tokio::spawn(async move {
                    let reason = match exited.wait_for(|e| e.is_some()).await {
                        Ok(r) => r.clone().unwrap_or_default(),
                        Err(_) => return,
                    };
                    // Unroutable now, before the controller gets to it: a request picking an
                    // instance in between would reach a dead one.
                    inst.mark_exited();
                    let _ = tx.send(Msg::Exited {
                        id: inst.id.clone(),
                        reason,
                    });
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
                self.svc.events.emit(
                    &self.svc.name,
                    "instance_ready",
                    format!("instance {id} is ready at {}", inst.address),
                    json!({ "instance": id, "revision": inst.revision, "address": inst.address.to_string(), "pid": inst.pid }),
                );
                if self.is_green(&inst) {
                    self.watch_health(&inst);
                    self.publish();
                    self.check_green();
                    return;
                }
                if !self.is_live(&inst) {
                    // Started for a revision that was replaced meanwhile.
                    self.drain(&id, "its revision is no longer live");
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
                self.watch_health(&inst);
                self.publish();
                self.svc.wake_waiters();
                self.reconcile();
            }
            Msg::StartFailed { id, reason } => {
                let revision = self.starts.remove(&id).map(|s| s.revision);
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
                if let Some(g) = &self.green
                    && revision.as_deref() == Some(g.revision.id.as_str())
                {
                    self.publish();
                    self.fail_deploy(format!("instance {id} failed to start: {reason}"));
                    return;
                }
                if revision.as_ref().is_some_and(|r| *r != self.revision.id) {
                    // A start for a revision that is no longer wanted (a failed or replaced
                    // deployment): nothing to retry, and no reason to back off the live one.
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
                self.svc.set_failing(true);
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
                if state != InstanceState::Starting && self.is_green(&m.instance) {
                    self.fail_deploy(format!(
                        "new instance {id} exited before the switch: {reason}"
                    ));
                }
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
                if self.is_green(&inst) {
                    self.fail_deploy(format!(
                        "new instance {id} failed its health checks: {reason}"
                    ));
                } else if self.managed() {
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

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Deploy {
                config,
                trigger,
                reply,
            } => {
                let _ = reply.send(self.begin_deploy(*config, trigger, None));
            }
            Command::Rollback { reply } => {
                let _ = reply.send(self.rollback());
            }
            Command::Pause { reply } => {
                self.pause();
                let _ = reply.send(Ok(()));
            }
            Command::Resume { reply } => {
                let _ = reply.send(self.resume());
            }
            Command::Update { config } => self.update(*config),
            Command::Remove => {}
        }
    }

    /// Starts a blue/green deployment of `config`'s source as a new revision (or, for a
    /// rollback, as the earlier revision `reuse`). Returns the deployment id.
    fn begin_deploy(
        &mut self,
        config: ServiceConfig,
        trigger: &str,
        reuse: Option<Revision>,
    ) -> Result<String, String> {
        if let Some(g) = &self.green {
            return Err(format!(
                "deployment {} of {} is in progress",
                g.deployment, g.revision.id
            ));
        }
        if self.svc.is_paused() {
            return Err(format!(
                "service `{}` is paused; resume it first",
                self.svc.name
            ));
        }
        let mut config = config;
        // Settings outside the source stay the live ones; only the source and env deploy.
        let live = self.svc.config.load_full();
        config.scaling = live.scaling.clone();
        config.health = live.health.clone();
        config.queue = live.queue.clone();
        config.deploy = live.deploy.clone();
        config.hosts = live.hosts.clone();
        let source = (self.factory)(&config)?;
        let revision = match reuse {
            Some(r) => r,
            None => {
                let mut changes = source_changes(&self.revision.config, &config);
                if changes.is_empty() && trigger == "auto" {
                    changes.push("source changed underneath".into());
                }
                let r = Revision::new(
                    &self.svc.name,
                    self.next_revision,
                    Arc::new(config),
                    changes,
                );
                self.next_revision += 1;
                r
            }
        };
        let min = live.scaling.min_instances;
        let ready = self.ready_count();
        // At zero the switch is immediate and the next request cold-starts the new revision.
        let want = match &source {
            // Every fixed address of the new revision is an instance of it.
            Source::Fixed(addrs) => addrs.len() as u32,
            Source::Managed(_) if ready == 0 && self.desired() == 0 => min,
            Source::Managed(_) => ready
                .max(min)
                .max(1)
                .min(live.scaling.max_instances.max(min)),
        };
        let deployment = self.svc.deployments.begin(
            &self.svc.name,
            &revision.id,
            &self.revision.id,
            trigger,
            revision.changes.clone(),
            want,
        );
        self.svc.events.emit(
            &self.svc.name,
            "deploy_started",
            format!(
                "deployment {deployment}: {} -> {} ({trigger}), starting {want} instance(s)",
                self.revision.id, revision.id
            ),
            json!({ "deployment": deployment, "from": self.revision.id, "to": revision.id, "changes": revision.changes, "instances": want, "trigger": trigger }),
        );
        self.green = Some(Green {
            revision: revision.clone(),
            source: source.clone(),
            deployment: deployment.clone(),
            trigger: trigger.to_string(),
            want,
            deadline: Instant::now() + live.deploy.timeout,
        });
        match source {
            Source::Managed(runtime) => {
                for _ in 0..want {
                    self.start(runtime.clone(), &revision);
                }
            }
            Source::Fixed(addrs) => self.add_fixed(&addrs, &revision.id),
        }
        self.check_green();
        Ok(deployment)
    }

    /// Switches when every new instance is ready.
    fn check_green(&mut self) {
        let Some(g) = &self.green else {
            return;
        };
        let ready = self
            .members
            .iter()
            .filter(|m| {
                m.instance.revision == g.revision.id && m.instance.state() == InstanceState::Ready
            })
            .count() as u32;
        if ready >= g.want {
            self.switch();
        }
    }

    /// The blue/green switch: one store of the pool moves all new requests to the new revision,
    /// then the old instances drain.
    fn switch(&mut self) {
        let Some(g) = self.green.take() else {
            return;
        };
        let old = std::mem::replace(&mut self.revision, g.revision.clone());
        self.source = g.source;
        if !self.history.iter().any(|r| r.id == g.revision.id) {
            self.history.push(g.revision.clone());
        } else {
            // A rollback: the revision becomes the newest live one again.
            self.history.retain(|r| r.id != g.revision.id);
            self.history.push(g.revision.clone());
        }
        let mut revisions: Vec<_> = self.svc.revisions.load().as_ref().clone();
        revisions.retain(|r| r.id != g.revision.id);
        revisions.push(g.revision.view());
        self.svc.revisions.store(Arc::new(revisions));
        let mut cfg = self.svc.config.load().as_ref().clone();
        cfg.source = g.revision.config.source.clone();
        cfg.env = g.revision.config.env.clone();
        self.svc.config.store(Arc::new(cfg));
        self.publish();
        self.svc.deployments.switched(&g.deployment);
        self.svc.metrics.set_revision(Some(&old.id), &g.revision.id);
        self.svc.wake_waiters();
        let old_ids: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.instance.revision == old.id && m.handle.is_some())
            .map(|m| m.instance.id.clone())
            .collect();
        for id in &old_ids {
            self.drain(id, "replaced by a deployment");
        }
        // Static upstreams of the old revision simply leave.
        self.forget_fixed(&old.id);
        self.publish();
        self.svc
            .deployments
            .finish(&g.deployment, DeployState::Succeeded, None);
        if g.trigger == "rollback" {
            self.svc.deployments.mark_rolled_back(&old.id);
        }
        self.svc.metrics.deployments_succeeded.inc();
        self.svc.events.emit(
            &self.svc.name,
            "deploy_switched",
            format!(
                "deployment {}: traffic switched {} -> {}; draining {} old instance(s)",
                g.deployment,
                old.id,
                g.revision.id,
                old_ids.len()
            ),
            json!({ "deployment": g.deployment, "from": old.id, "to": g.revision.id, "draining": old_ids }),
        );
        if self.desired() < g.want {
            self.set_desired(g.want);
        }
        self.failures = 0;
        self.backoff_until = None;
        self.svc.set_failing(false);
        if g.revision.config.source != old.config.source {
            // A new executable or image: its version is read afresh. An automatic deployment
            // keeps the version it was made from, so a change during it is not missed.
            self.source_version = None;
        }
        self.reconcile();
    }

    /// Gives up a deployment before its switch: the new instances stop, the old pool never
    /// stopped serving.
    fn fail_deploy(&mut self, reason: String) {
        let Some(g) = self.green.take() else {
            return;
        };
        // Starts still under way would otherwise come up (and wait out their startup probe)
        // for a revision nobody wants any more.
        for start in self.starts.values() {
            if start.revision == g.revision.id {
                start.cancel.cancel();
            }
        }
        let ids: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.instance.revision == g.revision.id)
            .map(|m| m.instance.id.clone())
            .collect();
        for id in &ids {
            self.drain(id, "its deployment failed");
        }
        self.forget_fixed(&g.revision.id);
        self.publish();
        self.svc
            .deployments
            .finish(&g.deployment, DeployState::Failed, Some(reason.clone()));
        self.svc.metrics.deployments_failed.inc();
        self.svc.events.emit(
            &self.svc.name,
            "deploy_failed",
            format!(
                "deployment {} of {} failed: {reason}; {} stays live",
                g.deployment, g.revision.id, self.revision.id
            ),
            json!({ "deployment": g.deployment, "revision": g.revision.id, "reason": reason, "live": self.revision.id }),
        );
    }

    fn rollback(&mut self) -> Result<String, String> {
        let Some(previous) = self.history.iter().rev().nth(1).cloned() else {
            return Err(format!(
                "service `{}` has no earlier revision to roll back to",
                self.svc.name
            ));
        };
        self.begin_deploy(previous.config.as_ref().clone(), "rollback", Some(previous))
    }

    fn pause(&mut self) {
        if self.svc.is_paused() {
            return;
        }
        self.svc.set_paused(true);
        self.fail_deploy("the service was paused".into());
        let ids: Vec<String> = self
            .members
            .iter()
            .filter(|m| {
                m.handle.is_some()
                    && matches!(
                        m.instance.state(),
                        InstanceState::Ready | InstanceState::Unhealthy
                    )
            })
            .map(|m| m.instance.id.clone())
            .collect();
        self.set_desired(0);
        for id in ids {
            self.drain(&id, "paused");
        }
        // Static upstreams are not stopped, only taken out of the pool.
        self.publish();
        self.svc.events.emit(
            &self.svc.name,
            "paused",
            "paused: every instance drains; requests get 503 until resumed",
            json!({}),
        );
    }

    fn resume(&mut self) -> Result<(), String> {
        if !self.svc.is_paused() {
            return Err(format!("service `{}` is not paused", self.svc.name));
        }
        self.svc.set_paused(false);
        self.publish();
        let min = match &self.source {
            Source::Fixed(addrs) => addrs.len() as u32,
            Source::Managed(_) => self.svc.config.load().scaling.min_instances,
        };
        self.set_desired(min);
        self.autoscaler = Autoscaler::new();
        self.svc.events.emit(
            &self.svc.name,
            "resumed",
            format!("resumed at {min} instance(s)"),
            json!({ "min_instances": min }),
        );
        self.reconcile();
        Ok(())
    }

    /// Applies settings that are not part of a revision, live.
    fn update(&mut self, mut config: ServiceConfig) {
        let live = self.svc.config.load_full();
        config.source = live.source.clone();
        config.env = live.env.clone();
        self.svc.config.store(Arc::new(config.clone()));
        self.svc.events.emit(
            &self.svc.name,
            "config_updated",
            "scaling, health, queue, deploy or hosts settings applied",
            json!({}),
        );
        if self.managed() && !self.svc.is_paused() {
            let d = self
                .desired()
                .clamp(config.scaling.min_instances, config.scaling.max_instances);
            if d != self.desired() {
                self.change_desired(d, "config", json!({}));
            }
            self.reconcile();
        }
    }

    async fn runtime_version(&self) -> Option<String> {
        match &self.source {
            Source::Managed(rt) => rt.source_version().await,
            Source::Fixed(_) => None,
        }
    }

    /// `deploy.auto`: a new image behind the tag, or a changed executable, deploys by itself.
    async fn auto_deploy(&mut self) {
        if self.green.is_some() || self.svc.is_paused() {
            return;
        }
        let now = self.runtime_version().await;
        if self.source_version.is_none() {
            // First look since a switch: this is the live revision's version.
            self.source_version = now;
            return;
        }
        if now.is_none() || now == self.source_version {
            return;
        }
        let was = std::mem::replace(&mut self.source_version, now.clone());
        let config = self.revision.config.as_ref().clone();
        self.svc.events.emit(
            &self.svc.name,
            "source_changed",
            format!(
                "the source changed underneath ({} -> {}): deploying",
                was.as_deref().unwrap_or("?"),
                now.as_deref().unwrap_or("?")
            ),
            json!({ "from": was, "to": now }),
        );
        if let Err(e) = self.begin_deploy(config, "auto", None) {
            self.svc.events.emit(
                &self.svc.name,
                "deploy_failed",
                format!("automatic deployment not started: {e}"),
                json!({ "reason": e }),
            );
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
            format!(
                "draining instance {id} ({why}), {} in flight",
                inst.in_flight()
            ),
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
        if let Some(m) = self
            .members
            .iter_mut()
            .find(|m| Arc::ptr_eq(&m.instance, inst))
        {
            m.health = Some(task.abort_handle());
        }
    }

    /// Stores the pool (ready instances) and the admin snapshot, and updates the state gauges.
    fn publish(&self) {
        let all: Vec<Arc<Instance>> = self.members.iter().map(|m| m.instance.clone()).collect();
        // Only the live revision takes traffic; a deployment's instances wait for the switch.
        let paused = self.svc.is_paused();
        let ready: Vec<Arc<Instance>> = all
            .iter()
            .filter(|i| i.state() == InstanceState::Ready && self.is_live(i) && !paused)
            .cloned()
            .collect();
        let count = |s: InstanceState| all.iter().filter(|i| i.state() == s).count() as i64;
        let m = &self.svc.metrics;
        m.starting.set(count(InstanceState::Starting));
        m.ready.set(count(InstanceState::Ready));
        m.draining.set(count(InstanceState::Draining));
        self.svc.pool.store(Arc::new(Pool::new(ready)));
        self.svc.instances.store(Arc::new(all));
    }

    async fn shutdown(mut self) {
        self.cancel.cancel();
        self.fail_deploy("wakeway is stopping".into());
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
        self.svc.wake_waiters();
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
