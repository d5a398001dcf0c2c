//! The per-service control loop: the only writer of the pool and of instance state (the request
//! path and the health checks report; the controller decides). It samples demand for the
//! autoscaler, starts instances (at once for a cold request), publishes them when their startup
//! probe passes, drains and stops the ones no longer wanted, replaces the ones that die, and runs
//! blue/green deployments.
//!
//! This file holds the loop and its dispatch; the work is split by responsibility:
//! `lifecycle` (start, adopt, ready, exit, stop), `start_job` (a start's own task), `members`
//! (the books: counts, desired, publish), `health` (probes and the request path's reports),
//! `scaling` (decide, reconcile, drain), `deploy` (begin, switch, fail, rollback, auto),
//! `rollout`, `traffic`, `freeze` and `operations` (pause, resume, update, shutdown).

mod deploy;
mod freeze;
mod health;
mod lifecycle;
mod members;
mod operations;
mod rollout;
mod scaling;
mod start_job;
#[cfg(test)]
mod tests;
mod traffic;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Service;
use super::autoscaler::Autoscaler;
use super::command::{Command, Trigger};
use super::instance::Instance;
use super::lane::Lane;
use super::revision::Revision;
use super::state::{Resumed, StateFile};
use crate::config::{HealthConfig, ServiceConfig, TrafficTarget};
use crate::runtime::{BoxFuture, InstanceHandle, Runtime};
use health::Check;
use rollout::Rollout;
pub use rollout::RolloutView;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const DECIDE_EVERY: Duration = Duration::from_secs(1);
/// How often `deploy.auto` asks the runtime whether the source changed underneath.
const AUTO_DEPLOY_EVERY: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where a service's instances come from.
#[derive(Clone)]
pub enum Source {
    Managed(Arc<dyn Runtime>),
    Fixed(Vec<SocketAddr>),
}

/// Builds the instance source of a revision (a new runtime for a new command or image).
pub type SourceFactory = Arc<dyn Fn(&ServiceConfig) -> Result<Source, String> + Send + Sync>;

/// One health probe of an instance. The real one connects; unit tests swap in a fake.
pub type Prober =
    Arc<dyn Fn(SocketAddr, HealthConfig) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

fn real_prober() -> Prober {
    Arc::new(|addr, cfg| Box::pin(async move { crate::service::probe::probe(addr, &cfg).await }))
}

/// How a start attempt ended, when it did not end ready.
#[derive(Debug)]
enum StartEnd {
    /// The instance exited at once (most likely it lost its port): the same start goes on with
    /// a new one.
    Retry,
    Failed(String),
    /// Its start was cancelled (no longer wanted, or wakeway stopping); the instance is gone.
    Cancelled,
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
    /// A start ended without a ready instance. Sent after the instance (if any) is gone.
    StartEnded {
        id: String,
        instance: Option<Arc<Instance>>,
        end: StartEnd,
    },
    /// The runtime's exit notice.
    Exited {
        instance: Arc<Instance>,
        reason: String,
    },
    /// One periodic health probe's result.
    Probe {
        instance: Arc<Instance>,
        result: Result<(), String>,
    },
    /// A check the controller ran after a report from the request path (`health.rs`).
    Checked {
        instance: Arc<Instance>,
        check: Check,
        result: Result<(), String>,
    },
    /// A drained instance is gone.
    Stopped {
        instance: Arc<Instance>,
    },
    /// An instance left the pool and froze, holding this much memory (when known).
    Frozen {
        instance: Arc<Instance>,
        memory: Option<u64>,
    },
    /// A frozen instance thawed and passed its readiness check (`Ready` follows).
    Thawed {
        id: String,
        took: Duration,
    },
}

struct Member {
    instance: Arc<Instance>,
    handle: Option<Arc<dyn InstanceHandle>>,
    health: Option<tokio::task::AbortHandle>,
    /// Consecutive failed probes and request-path connect timeouts.
    fails: u32,
    /// Consecutive passed probes (counts only while unhealthy).
    passes: u32,
    /// The runtime's exit notice, kept for a thaw's readiness check.
    exited: Option<watch::Receiver<Option<String>>>,
    frozen: Option<freeze::FrozenAt>,
    /// Requests that got no first response byte in time, not yet cleared by an answer: a TCP
    /// probe's pass does not clear them (a frozen app's kernel still completes handshakes).
    stalls: u32,
    /// A check after a report is running: reports meanwhile do not start another.
    checking: bool,
}

/// A start attempt in progress: from the request to the runtime until ready or gone.
struct Start {
    revision: String,
    /// Ends it early: it stops its instance (and the instance's group) and reports once.
    cancel: CancellationToken,
}

/// A deployment between its start and its switch.
struct Green {
    revision: Revision,
    source: Source,
    /// Where its instances' pool is published; it joins the traffic at the switch.
    lane: Arc<Lane>,
    deployment: String,
    trigger: Trigger,
    want: u32,
    deadline: Instant,
    /// `--no-traffic`: the revision proves itself and becomes the latest, but the traffic stays
    /// where it was (with `tag`, it is reachable on its tag's host).
    no_traffic: bool,
    tag: Option<String>,
}

/// A revision in the traffic (a share, or a tag): scaled on its own load, with its own desired
/// count, autoscaler and start backoff.
struct Serving {
    revision: Revision,
    source: Source,
    lane: Arc<Lane>,
    percent: u32,
    tags: Vec<String>,
    /// Reached through a `latest` entry.
    latest: bool,
    desired: u32,
    autoscaler: Autoscaler,
    /// Consecutive failed starts, and until when the next one waits.
    failures: u32,
    backoff_until: Option<Instant>,
}

pub struct Controller {
    svc: Arc<Service>,
    factory: SourceFactory,
    prober: Prober,
    /// The latest revision (the newest deployed; `latest` traffic goes to it) and its source.
    revision: Revision,
    source: Source,
    /// The revisions that take traffic; the first entry of `traffic` that names one comes first.
    serving: Vec<Serving>,
    /// The traffic as asked (file or API): shares of `latest` or of named revisions.
    traffic: Vec<TrafficTarget>,
    /// Boxed: a controller waits in every service's task, a rollout runs in few of them.
    rollout: Option<Box<Rollout>>,
    /// Revisions that were live, oldest first (the last is the live one): rollback goes back here.
    history: Vec<Revision>,
    next_revision: u32,
    green: Option<Green>,
    members: Vec<Member>,
    /// Start attempts in progress, by instance id.
    starts: HashMap<String, Start>,
    /// Ids of `starts` in the order they began, so excess cancels the newest.
    start_order: Vec<String>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    commands: mpsc::UnboundedReceiver<Command>,
    next_instance: u64,
    /// What the runtime said the source was when the live revision was made (`deploy.auto`).
    source_version: Option<String>,
    /// Set once the controller stops: nothing new starts, whatever comes up is stopped.
    stopping: bool,
    /// Stops start attempts and probes at shutdown.
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    /// Where the revisions persist; `None` when wakeway runs without a config file.
    store: Option<Arc<StateFile>>,
}

impl Controller {
    pub fn new(svc: Arc<Service>, source: Source, factory: SourceFactory) -> Controller {
        let (tx, rx) = mpsc::unbounded_channel();
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        svc.connect_controller(cmd_tx);
        let revision = Revision::new(&svc.name, 1, svc.config.load_full(), Vec::new());
        svc.revisions.store(Arc::new(vec![revision.view()]));
        let traffic = svc.config.load().traffic.clone();
        svc.metrics.set_revision(None, &revision.id);
        let mut controller = Controller {
            svc,
            factory,
            prober: real_prober(),
            history: vec![revision.clone()],
            revision,
            source,
            serving: Vec::new(),
            traffic,
            rollout: None,
            next_revision: 2,
            green: None,
            members: Vec::new(),
            starts: HashMap::new(),
            start_order: Vec::new(),
            tx,
            rx,
            commands,
            next_instance: 0,
            source_version: None,
            stopping: false,
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
            store: None,
        };
        // Installed where the service was made, before its controller runs, so requests that
        // come first wait at the revision's own lane.
        controller.install_traffic();
        controller
    }

    /// Starts from revisions a previous wakeway left (see `state`): the last one is live. The
    /// controller's source must be that revision's.
    pub fn resumed_from(mut self, resumed: Resumed) -> Controller {
        let Some(live) = resumed.history.last().cloned() else {
            return self;
        };
        self.svc.revisions.store(Arc::new(
            resumed.history.iter().map(Revision::view).collect(),
        ));
        self.svc
            .metrics
            .set_revision(Some(&self.revision.id), &live.id);
        self.svc
            .deployments
            .restore(resumed.last_deployment, resumed.deployments);
        self.svc.emit(
            "revision_resumed",
            format!(
                "resuming from the state file: {} live, {} revision(s) in its history",
                live.id,
                resumed.history.len()
            ),
            json!({ "revision": live.id, "revisions": resumed.history.len() }),
        );
        self.history = resumed.history;
        self.revision = live;
        self.next_revision = resumed.next_revision;
        if let Some(traffic) = resumed.traffic {
            self.traffic = traffic;
        }
        self.install_traffic();
        self
    }

    /// Probes instances with `prober` instead of connecting: `wakeway replay` asks its simulated
    /// runtime whether an instance is up yet.
    pub fn with_prober(mut self, prober: Prober) -> Controller {
        self.prober = prober;
        self
    }

    /// Persists the revisions to `store` from now on, beginning with the current ones.
    pub fn persist_to(mut self, store: Arc<StateFile>) -> Controller {
        self.store = Some(store);
        self.persist();
        self
    }

    fn persist(&self) {
        if let Some(store) = &self.store {
            store.save_revisions(
                &self.svc.name,
                &self.history,
                self.next_revision,
                &self.svc.deployments,
                &self.traffic,
            );
        }
    }

    pub fn service_name(&self) -> &str {
        &self.svc.name
    }

    /// Runs until `shutdown` (or a `Remove` command), then drains and stops every instance.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if let Source::Fixed(addrs) = self.source.clone() {
            self.add_fixed(&addrs, &self.revision.id.clone());
            let latest = self.revision.id.clone();
            self.set_desired(&latest, addrs.len() as u32);
            self.publish();
        } else {
            let adopted = self.adopt().await;
            let scaling = self.svc.config.load().scaling.clone();
            let min = scaling.min_instances;
            // Adopted instances run the latest revision; they count toward its desired count.
            let latest = self.revision.id.clone();
            let now = Instant::now();
            for s in &mut self.serving {
                s.desired = if s.revision.id == latest {
                    min.max(adopted)
                } else {
                    min
                };
                if s.revision.id == latest && adopted > min {
                    // The fleet is taken as it is (a new cluster leader, a restart): an empty
                    // window would scale it down, then up again, before it saw the load.
                    s.autoscaler.scaled_up(now, scaling.stable_window);
                }
            }
            self.sync_desired();
            self.reconcile();
        }
        self.source_version = self.runtime_version().await;

        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        sample.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut decide = tokio::time::interval(DECIDE_EVERY);
        decide.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut auto = tokio::time::interval(AUTO_DEPLOY_EVERY);
        auto.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let why = loop {
            let backoff = self.serving.iter().filter_map(|s| s.backoff_until).min();
            let green_deadline = self.green.as_ref().map(|g| g.deadline);
            tokio::select! {
                _ = shutdown.cancelled() => break "wakeway is stopping",
                Some(msg) = self.rx.recv() => self.handle(msg),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Remove) | None => break "the service was removed from the config",
                    Some(cmd) => self.command(cmd),
                },
                _ = self.svc.woken() => self.on_wake(),
                _ = sample.tick() => self.sample(),
                _ = decide.tick() => {
                    self.decide();
                    self.check_rollout();
                }
                _ = auto.tick(), if self.svc.config.load().deploy.auto && self.svc.remote.acting() => self.auto_deploy().await,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = sleep_until_opt(backoff) => {
                    let now = Instant::now();
                    for s in &mut self.serving {
                        if s.backoff_until.is_some_and(|t| t <= now) {
                            s.backoff_until = None;
                            s.lane.set_failing(false);
                        }
                    }
                    self.reconcile();
                }
                _ = sleep_until_opt(green_deadline) => {
                    let timeout = self.svc.config.load().deploy.timeout;
                    self.fail_deploy(format!(
                        "the new instances were not all healthy within deploy.timeout {timeout:?}"
                    ));
                }
            }
        };
        self.shutdown(why).await;
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Spawned {
                instance,
                handle,
                exited,
            } => self.on_spawned(instance, handle, exited),
            Msg::Ready { id } => self.on_ready(&id),
            Msg::StartEnded { id, instance, end } => self.on_start_ended(&id, instance, end),
            Msg::Exited { instance, reason } => self.on_exited(&instance, reason),
            Msg::Probe { instance, result } => self.on_probe(&instance, result),
            Msg::Checked {
                instance,
                check,
                result,
            } => self.on_checked(&instance, check, result),
            Msg::Stopped { instance } => self.on_stopped(&instance),
            Msg::Frozen { instance, memory } => self.on_frozen(&instance, memory),
            Msg::Thawed { id, took } => self.on_thawed(&id, took),
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Deploy {
                config,
                trigger,
                options,
                reply,
            } => {
                let _ = reply.send(self.begin_deploy(*config, trigger, None, options));
            }
            Command::SetTraffic {
                traffic,
                trigger,
                reply,
            } => {
                let _ = reply.send(self.set_traffic(traffic, trigger));
            }
            Command::Promote { plan, reply } => {
                let _ = reply.send(self.begin_rollout(plan));
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
            Command::Update { config, reply } => {
                let _ = reply.send(Ok(self.update(*config)));
            }
            Command::Upstream { instance, seen } => self.on_report(&instance, seen),
            Command::Remove => {}
        }
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
