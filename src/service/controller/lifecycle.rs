//! An instance's life: start (or adopt), startup probe, ready, exit, stop.
//!
//! A start is owned by its task from the request to the runtime until the instance is ready:
//! if it fails, times out or is cancelled, the task itself stops the instance (and its process
//! group) and reports once, after the instance is gone. The controller never stops a starting
//! instance behind its task's back, so nothing comes up untracked.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Controller, Member, Msg, Source, Start, StartEnd, backoff};
use crate::runtime::{InstanceHandle, InstanceSpec, Runtime, Started};
use crate::service::instance::{Instance, InstanceState};
use crate::service::lane::Lane;
use crate::service::revision::Revision;

use super::start_job::{PORT_RACE_WINDOW, StartJob, Thaw};

impl Controller {
    /// Where `inst` is among the members, if it still is one.
    fn member_pos(&self, inst: &Arc<Instance>) -> Option<usize> {
        self.members
            .iter()
            .position(|m| Arc::ptr_eq(&m.instance, inst))
    }

    /// Takes the member at `pos` out, stopped.
    fn take_member(&mut self, pos: usize) -> Member {
        let m = self.members.remove(pos);
        m.instance.set_state(InstanceState::Stopped);
        m
    }

    pub(super) fn add_fixed(&mut self, addrs: &[std::net::SocketAddr], revision: &str) {
        for addr in addrs {
            let inst = Arc::new(Instance::new(
                self.next_id(revision),
                revision.to_string(),
                *addr,
                None,
            ));
            inst.set_state(InstanceState::Ready);
            self.members.push(Member::new(inst.clone(), None));
            self.watch_health(&inst);
        }
    }

    /// Static upstreams of a revision that no longer takes traffic simply leave: there is
    /// nothing to stop, only their health checks.
    pub(super) fn forget_fixed(&mut self, revision: &str) {
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

    /// Keeps each lane's view of its starts in progress exact, for the activator.
    pub(super) fn sync_starting(&self) {
        let lanes = self
            .serving
            .iter()
            .map(|s| (&s.lane, &s.revision.id))
            .chain(self.green.iter().map(|g| (&g.lane, &g.revision.id)));
        for (lane, revision) in lanes {
            lane.starting.store(self.live_starts(revision), SeqCst);
        }
    }

    /// The lane `revision`'s instances are published in: its serving one, or its deployment's.
    pub(super) fn lane_of(&self, revision: &str) -> Option<Arc<Lane>> {
        self.serving_of(revision)
            .map(|s| s.lane.clone())
            .or_else(|| {
                self.green
                    .as_ref()
                    .filter(|g| g.revision.id == revision)
                    .map(|g| g.lane.clone())
            })
    }

    fn begin_start(&mut self, id: String, revision: &str) -> CancellationToken {
        let cancel = self.cancel.child_token();
        self.starts.insert(
            id.clone(),
            Start {
                revision: revision.to_string(),
                cancel: cancel.clone(),
            },
        );
        self.start_order.push(id);
        self.sync_starting();
        cancel
    }

    fn end_start(&mut self, id: &str) -> Option<Start> {
        self.start_order.retain(|s| s != id);
        let start = self.starts.remove(id);
        self.sync_starting();
        start
    }

    /// A thaw is a start whose instance exists: it counts as starting until it is ready.
    pub(super) fn spawn_thaw(
        &mut self,
        id: String,
        runtime: Arc<dyn Runtime>,
        revision: &Revision,
        thaw: Thaw,
    ) {
        self.spawn_start_job(id, runtime, revision, None, Some(thaw));
    }

    fn spawn_start(
        &mut self,
        id: String,
        runtime: Arc<dyn Runtime>,
        revision: &Revision,
        adopted: Option<Started>,
    ) {
        self.spawn_start_job(id, runtime, revision, adopted, None);
    }

    fn spawn_start_job(
        &mut self,
        id: String,
        runtime: Arc<dyn Runtime>,
        revision: &Revision,
        adopted: Option<Started>,
        thaw: Option<Thaw>,
    ) {
        let cancel = self.begin_start(id.clone(), &revision.id);
        let cfg = self.svc.config.load_full();
        let job = StartJob {
            spec: InstanceSpec {
                service: self.svc.name.clone(),
                revision: revision.id.clone(),
                instance: id.clone(),
                env: revision.config.env.clone(),
            },
            id,
            revision: revision.id.clone(),
            runtime,
            adopted,
            thaw,
            health: cfg.health.clone(),
            prober: self.prober.clone(),
            svc: self.svc.clone(),
            lane: self
                .lane_of(&revision.id)
                .unwrap_or_else(|| Lane::new(&revision.id)),
            tx: self.tx.clone(),
            cancel,
        };
        self.tasks.spawn(job.run());
    }

    pub(super) fn start(&mut self, runtime: Arc<dyn Runtime>, revision: &Revision) {
        let id = self.next_id(&revision.id);
        self.svc.emit(
            "instance_starting",
            format!("starting instance {id}"),
            json!({ "instance": id, "revision": revision.id, "runtime": runtime.name() }),
        );
        self.spawn_start(id, runtime, revision, None);
    }

    /// Takes in the instances a previous wakeway left running (docker containers). They count as
    /// starting until their probe passes, like new ones, so none is started twice; returns how
    /// many there are. Frozen ones are kept frozen, or thawed first (`adopt_frozen`).
    pub(super) async fn adopt(&mut self) -> u32 {
        let Source::Managed(runtime) = &self.source else {
            return 0;
        };
        let runtime = runtime.clone();
        let adopted = match runtime.adopt(&self.svc.name, &self.revision.id).await {
            Ok(adopted) => adopted,
            Err(e) => {
                self.svc.emit(
                    "adopt_failed",
                    format!("cannot look for instances left running: {}", e.message),
                    json!({ "reason": e.message, "runtime": runtime.name() }),
                );
                return 0;
            }
        };
        let mut count = 0;
        let revision = self.revision.clone();
        for a in adopted {
            self.svc.emit("instance_adopted",
                format!(
                    "adopting instance {}, left {} at {}",
                    a.instance,
                    if a.frozen { "frozen" } else { "running" },
                    a.started.address
                ),
                json!({ "instance": a.instance, "address": a.started.address.to_string(), "runtime": runtime.name(), "frozen": a.frozen }),
            );
            let started = if a.frozen {
                match self.adopt_frozen(a.instance.clone(), a.started).await {
                    Some(thawed) => thawed,
                    None => continue,
                }
            } else {
                a.started
            };
            count += 1;
            self.spawn_start(a.instance, runtime.clone(), &revision, Some(started));
        }
        count
    }

    pub(super) fn on_spawned(
        &mut self,
        instance: Arc<Instance>,
        handle: Arc<dyn InstanceHandle>,
        mut exited: watch::Receiver<Option<String>>,
    ) {
        let tx = self.tx.clone();
        let inst = instance.clone();
        let exited_keep = exited.clone();
        tokio::spawn(async move {
            let reason = match exited.wait_for(|e| e.is_some()).await {
                Ok(r) => r.clone().unwrap_or_default(),
                Err(_) => return,
            };
            // Unroutable now, before the controller gets to it: a request picking an instance
            // in between would reach a dead one.
            inst.mark_exited();
            let _ = tx.send(Msg::Exited {
                instance: inst,
                reason,
            });
        });
        let mut member = Member::new(instance, Some(handle));
        member.exited = Some(exited_keep);
        self.members.push(member);
        self.publish();
    }

    pub(super) fn on_ready(&mut self, id: &str) {
        let Some(start) = self.end_start(id) else {
            return;
        };
        if let Some(lane) = self.lane_of(&start.revision) {
            lane.probe_failure.store(Arc::new(String::new()));
        }
        if let Some(s) = self.serving_mut(&start.revision) {
            s.failures = 0;
        }
        let Some(inst) = self.member(id).map(|m| m.instance.clone()) else {
            return;
        };
        if inst.has_exited() {
            // Its exit notice came while it was starting (and was left to the start); it is
            // gone now, so it is handled as an exit.
            self.on_exited(&inst, "exited as it became ready".into());
            return;
        }
        if !inst.transition(InstanceState::Starting, InstanceState::Ready) {
            return;
        }
        self.svc.emit("instance_ready",
            format!("instance {id} is ready at {}", inst.address),
            json!({ "instance": id, "revision": inst.revision, "address": inst.address.to_string(), "pid": inst.pid }),
        );
        if self.stopping {
            self.drain(id, "wakeway is stopping");
            return;
        }
        if self.is_green(&inst) {
            self.watch_health(&inst);
            self.publish();
            self.check_green();
            return;
        }
        let Some(lane) = self.serving_of(&inst.revision).map(|s| s.lane.clone()) else {
            // Started for a revision that left the traffic meanwhile.
            self.drain(id, "its revision takes no traffic");
            return;
        };
        let cold = lane.cold_since.swap(0, SeqCst);
        if cold != 0 {
            let waited = lane.now_mark().saturating_sub(cold);
            self.svc
                .metrics
                .cold_start_duration
                .observe(waited as f64 / 1000.0);
        }
        self.watch_health(&inst);
        self.publish();
        lane.wake_waiters();
        // A start cancelled as excess that came up anyway is weighed again with the others.
        self.reconcile();
    }

    pub(super) fn on_start_ended(
        &mut self,
        id: &str,
        instance: Option<Arc<Instance>>,
        end: StartEnd,
    ) {
        let spawned = instance.is_some();
        if let Some(inst) = instance
            && let Some(pos) = self.member_pos(&inst)
        {
            self.take_member(pos);
        }
        if matches!(end, StartEnd::Retry) {
            self.publish();
            return;
        }
        let revision = self.end_start(id).map(|s| s.revision);
        if let Some(lane) = revision.as_deref().and_then(|r| self.lane_of(r)) {
            lane.probe_failure.store(Arc::new(String::new()));
        }
        let reason = match end {
            StartEnd::Retry => unreachable!("handled above"),
            StartEnd::Cancelled => {
                if spawned {
                    self.svc.emit(
                        "instance_stopped",
                        format!("instance {id} stopped before it was ready"),
                        json!({ "instance": id }),
                    );
                }
                self.publish();
                return;
            }
            StartEnd::Failed(reason) => reason,
        };
        if self.stopping {
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
        let Some(s) = revision.as_deref().and_then(|r| self.serving_mut(r)) else {
            // A start for a revision that is no longer wanted (a failed or replaced
            // deployment): nothing to retry, and no reason to back off a serving one.
            self.publish();
            return;
        };
        s.failures += 1;
        let failures = s.failures;
        let backoff = backoff(failures);
        s.backoff_until = Some(Instant::now() + backoff);
        let lane = s.lane.clone();
        let revision = s.revision.id.clone();
        self.note_rollout_failure(
            &revision,
            &format!("instance {id} failed to start: {reason}"),
        );
        self.svc.emit("start_failed",
            format!("instance {id} failed to start: {reason}; next try in {backoff:?}"),
            json!({ "instance": id, "revision": revision, "reason": reason, "failures": failures, "retry_in_ms": backoff.as_millis() as u64 }),
        );
        lane.last_failure.store(Arc::new(reason));
        lane.set_failing(true);
        lane.start_failures.fetch_add(1, SeqCst);
        self.publish();
        lane.wake_waiters();
    }

    pub(super) fn on_exited(&mut self, inst: &Arc<Instance>, reason: String) {
        let Some(pos) = self.member_pos(inst) else {
            return;
        };
        let state = inst.state();
        if state == InstanceState::Starting && self.starts.contains_key(&inst.id) {
            return; // its start task saw it too, and reports it
        }
        if matches!(state, InstanceState::Draining | InstanceState::Stopped) {
            return; // its drain task reports Stopped
        }
        self.unfreeze_member(inst);
        let m = self.take_member(pos);
        if let Some(h) = m.health {
            h.abort();
        }
        self.keep_counts(inst);
        let id = &inst.id;
        self.back_off_early_exit(inst, &reason);
        self.note_rollout_failure(&inst.revision, &format!("instance {id} exited: {reason}"));
        self.svc.emit(
            "instance_exited",
            format!("instance {id} exited: {reason}"),
            json!({ "instance": id, "revision": inst.revision, "reason": reason }),
        );
        self.publish();
        if self.is_green(inst) {
            self.fail_deploy(format!(
                "new instance {id} exited before the switch: {reason}"
            ));
        }
        self.reconcile();
    }

    /// A drained instance is gone; reported once, after it is.
    pub(super) fn on_stopped(&mut self, inst: &Arc<Instance>) {
        let Some(pos) = self.member_pos(inst) else {
            return;
        };
        let id = &inst.id;
        self.unfreeze_member(inst);
        self.take_member(pos);
        self.keep_counts(inst);
        self.svc.emit(
            "instance_stopped",
            format!("instance {id} stopped"),
            json!({ "instance": id }),
        );
        self.publish();
    }
}

impl Controller {
    /// An instance that dies within moments of its start is a failed start, even when it was
    /// ready at once (socket activation publishes it before the app has run a line): the next
    /// start waits out a backoff instead of looping.
    fn back_off_early_exit(&mut self, inst: &Instance, reason: &str) {
        let early = inst
            .started_at
            .elapsed()
            .is_ok_and(|d| d < PORT_RACE_WINDOW);
        let Some(s) = self.serving_mut(&inst.revision).filter(|_| early) else {
            return;
        };
        s.failures += 1;
        let (failures, wait) = (s.failures, backoff(s.failures));
        s.backoff_until = Some(Instant::now() + wait);
        s.lane.last_failure.store(Arc::new(reason.to_string()));
        self.svc.emit("start_failed",
            format!(
                "instance {} exited {reason} right after it started; next try in {wait:?}",
                inst.id
            ),
            json!({ "instance": inst.id, "reason": reason, "failures": failures, "retry_in_ms": wait.as_millis() as u64 }),
        );
    }

    /// An instance leaves: its lane keeps the requests it served, so the revision's counts
    /// only grow.
    pub(super) fn keep_counts(&self, inst: &Instance) {
        if let Some(lane) = self.lane_of(&inst.revision) {
            lane.keep_counts(inst);
        }
    }
}

impl Member {
    pub(super) fn new(instance: Arc<Instance>, handle: Option<Arc<dyn InstanceHandle>>) -> Member {
        Member {
            instance,
            handle,
            health: None,
            fails: 0,
            passes: 0,
            exited: None,
            frozen: None,
            stalls: 0,
            checking: false,
        }
    }
}
