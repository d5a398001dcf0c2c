//! How many instances, and which ones go: demand and autoscaler decisions, the reconcile that
//! applies them, and the drain of an instance that leaves.

use serde_json::json;
use tokio::time::Instant;

use super::{Controller, Msg, Source};
use crate::service::instance::InstanceState;
use crate::service::reconciler::{self, Action};

impl Controller {
    /// A request waits with no capacity: start what the queue needs now, not at the next tick.
    pub(super) fn on_wake(&mut self) {
        if !self.managed() || self.svc.is_paused() || self.stopping || !self.svc.remote.acting() {
            return;
        }
        let waiting: Vec<String> = self
            .serving
            .iter()
            .filter(|s| s.lane.queued() > 0 || self.svc.remote.load_of(&s.revision.id).queued > 0)
            .map(|s| s.revision.id.clone())
            .collect();
        for revision in waiting {
            self.meet_demand(&revision);
        }
        self.reconcile();
    }

    /// Raises `revision`'s desired count to what its queued requests need.
    fn meet_demand(&mut self, revision: &str) {
        let Some(s) = self.serving_of(revision) else {
            return;
        };
        let queued = s.lane.queued() as u32 + self.svc.remote.load_of(revision).queued;
        let backing_off = s.backoff_until.is_some();
        let desired = s.desired;
        let cfg = self.svc.config.load_full();
        let starting = self.live_starts(revision);
        let ready = self.ready_count(revision);
        let frozen = self.members.iter().any(|m| {
            m.instance.revision == revision && m.instance.state() == InstanceState::Frozen
        });
        let want = if ready + starting == 0 {
            if backing_off {
                return; // the retry after the backoff starts it; waiters were told why
            }
            // With a frozen instance it is not a cold start: the reconcile thaws it, and says so.
            if !frozen {
                self.svc.metrics.cold_starts.inc();
                self.svc.emit(
                    "cold_start",
                    format!("request arrived with no instance of {revision}: starting one now"),
                    json!({ "queued": queued, "revision": revision }),
                );
            }
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
                revision,
                want,
                "demand",
                json!({ "queued": queued, "ready": ready, "starting": starting }),
            );
        }
    }

    /// Each serving revision's autoscaler decides on its own load.
    pub(super) fn decide(&mut self) {
        if !self.managed() || self.svc.is_paused() || self.stopping || !self.svc.remote.acting() {
            return;
        }
        let cfg = self.svc.config.load_full();
        let now = Instant::now();
        let revisions: Vec<String> = self.serving.iter().map(|s| s.revision.id.clone()).collect();
        for revision in revisions {
            let in_flight = self.in_flight_of(&revision);
            let ready = self.ready_count(&revision);
            let remote = self.svc.remote.load_of(&revision);
            let Some(s) = self.serving_mut(&revision) else {
                continue;
            };
            let idle = in_flight == 0
                && s.lane.queued() == 0
                && remote.in_flight + remote.queued == 0
                && s.lane.quiet_for() >= cfg.scaling.idle_timeout;
            let current = s.desired;
            let d = s.autoscaler.decide(now, &cfg.scaling, current, ready, idle);
            if d.desired != current {
                let inputs = serde_json::to_value(&d).unwrap_or_default();
                self.change_desired(&revision, d.desired, "autoscaler", inputs);
            }
        }
        self.expire_frozen();
        self.reconcile();
    }

    pub(super) fn change_desired(
        &mut self,
        revision: &str,
        to: u32,
        why: &str,
        inputs: serde_json::Value,
    ) {
        let window = self.svc.config.load().scaling.stable_window;
        let Some(s) = self.serving_mut(revision) else {
            return;
        };
        let from = s.desired;
        if to > from {
            // However it went up, the autoscaler holds it for a stable window.
            s.autoscaler.scaled_up(Instant::now(), window);
            self.svc.metrics.scale_up.inc();
        } else {
            self.svc.metrics.scale_down.inc();
        }
        let mut fields = json!({ "from": from, "to": to, "trigger": why, "revision": revision });
        if let (Some(f), serde_json::Value::Object(extra)) = (fields.as_object_mut(), inputs) {
            f.extend(extra);
        }
        let split = self.serving.len() > 1;
        self.svc.emit(
            "scale",
            if split {
                format!("desired instances of {revision} {from} -> {to} ({why})")
            } else {
                format!("desired instances {from} -> {to} ({why})")
            },
            fields,
        );
        self.set_desired(revision, to);
    }

    /// Starts, cancels or drains each serving revision's instances until their count matches
    /// its desired one (the decision is the pure reconciler's).
    pub(super) fn reconcile(&mut self) {
        // A cluster replica that does not lead starts and stops nothing: the leader does.
        if self.stopping || !self.svc.remote.acting() {
            return;
        }
        let mut work = Vec::new();
        for s in &self.serving {
            let Source::Managed(runtime) = &s.source else {
                continue;
            };
            let live = &s.revision.id;
            let mut view: Vec<reconciler::Member<'_>> = self
                .start_order
                .iter()
                .filter(|id| {
                    self.starts
                        .get(*id)
                        .is_some_and(|st| st.revision == *live && !st.cancel.is_cancelled())
                })
                .map(|id| reconciler::Member::Starting { id })
                .collect();
            view.extend(
                self.members
                    .iter()
                    .filter(|m| {
                        m.instance.state() == InstanceState::Ready && m.instance.revision == *live
                    })
                    .map(|m| reconciler::Member::Ready {
                        id: &m.instance.id,
                        in_flight: m.instance.in_flight(),
                    }),
            );
            let actions = reconciler::reconcile(&view, s.desired, s.backoff_until.is_some());
            if !actions.is_empty() {
                work.push((runtime.clone(), s.revision.clone(), actions));
            }
        }
        let freezes = self.freezes();
        for (runtime, revision, actions) in work {
            for action in actions {
                match action {
                    Action::Start(n) => {
                        for _ in 0..n {
                            // A frozen instance wakes in milliseconds: thawed before any start.
                            if !self.thaw_one(&runtime, &revision) {
                                self.start(runtime.clone(), &revision);
                            }
                        }
                    }
                    Action::CancelStart(id) => self.cancel_start(&id, "scale down"),
                    Action::Drain(id) if freezes => self.freeze(&id, "scale down"),
                    Action::Drain(id) => self.drain(&id, "scale down"),
                }
            }
        }
    }

    /// Ends a start early. Its task stops the instance (if one was spawned) and reports once it
    /// is gone.
    pub(super) fn cancel_start(&mut self, id: &str, why: &str) {
        let Some(start) = self.starts.get(id) else {
            return;
        };
        if start.cancel.is_cancelled() {
            return;
        }
        start.cancel.cancel();
        self.sync_starting();
        self.svc.emit(
            "start_cancelled",
            format!("cancelling the start of instance {id} ({why})"),
            json!({ "instance": id, "reason": why }),
        );
    }

    /// Takes the instance out of the pool first, then waits for its requests and tunnels (up to
    /// `drain_timeout`), then stops it. A starting instance has nothing to drain: its start is
    /// cancelled instead.
    pub(super) fn drain(&mut self, id: &str, why: &str) {
        if self.starts.contains_key(id) {
            self.cancel_start(id, why);
            return;
        }
        let Some(m) = self.members.iter_mut().find(|m| m.instance.id == id) else {
            return;
        };
        if matches!(
            m.instance.state(),
            InstanceState::Draining | InstanceState::Stopped
        ) {
            return;
        }
        if let Some(h) = m.health.take() {
            h.abort();
        }
        let inst = m.instance.clone();
        let handle = m.handle.clone();
        self.unfreeze_member(&inst);
        inst.set_state(InstanceState::Draining);
        self.publish();
        let cfg = self.svc.config.load_full();
        self.svc.emit(
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
            // In a cluster the other replicas drop it from their pools first, then finish
            // their own requests at it.
            let delay = svc.remote.drain_delay();
            let elsewhere = async {
                tokio::time::sleep(delay).await;
                while svc.remote.in_flight_at(&inst.id) > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                inst.wait_idle().await
            };
            if tokio::time::timeout(drain_timeout, elsewhere).await.is_err() {
                svc.emit("drain_timeout",
                    format!("instance {} still had {} in flight after drain_timeout {drain_timeout:?}; stopping it", inst.id, inst.in_flight()),
                    json!({ "instance": inst.id, "in_flight": inst.in_flight() }),
                );
            }
            if let Some(h) = handle {
                h.stop(grace).await;
            }
            let _ = tx.send(Msg::Stopped { instance: inst });
        });
    }

    /// Every instance and start of `revision` goes (static upstreams simply leave); returns the
    /// instances drained. Starts still under way would otherwise come up, and wait out their
    /// startup probe, for a revision nobody wants.
    pub(super) fn drain_revision(&mut self, revision: &str, why: &str) -> Vec<String> {
        let starts: Vec<String> = self
            .starts
            .iter()
            .filter(|(_, s)| s.revision == revision)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &starts {
            self.cancel_start(id, why);
        }
        let ids: Vec<String> = self
            .members
            .iter()
            .filter(|m| {
                m.instance.revision == revision
                    && m.handle.is_some()
                    && m.instance.state() != InstanceState::Draining
            })
            .map(|m| m.instance.id.clone())
            .collect();
        for id in &ids {
            self.drain(id, why);
        }
        self.forget_fixed(revision);
        ids
    }

    /// Every instance with something to stop (any revision), and every start, goes.
    pub(super) fn stop_all(&mut self, why: &str) {
        let starts: Vec<String> = self.start_order.clone();
        for id in starts {
            self.cancel_start(&id, why);
        }
        let ids: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.handle.is_some())
            .map(|m| m.instance.id.clone())
            .collect();
        for id in ids {
            self.drain(&id, why);
        }
    }
}
