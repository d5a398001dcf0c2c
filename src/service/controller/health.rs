//! Health once ready: periodic probes and the request path's reports come here, the controller
//! keeps the counts and decides. A refused connect proves death; a probe failure or a connect
//! timeout is one strike toward `health.unhealthy_threshold` (a busy instance with a full accept
//! backlog is not a dead one).

use std::sync::Arc;

use serde_json::json;
use tokio::time::MissedTickBehavior;

use super::{Controller, Msg};
use crate::service::instance::{Instance, InstanceState};

impl Controller {
    /// Periodic probes; each result goes to the controller, which keeps the counts and decides.
    pub(super) fn watch_health(&mut self, inst: &Arc<Instance>) {
        let health = self.svc.config.load().health.clone();
        let tx = self.tx.clone();
        let prober = self.prober.clone();
        let inst2 = inst.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(health.interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let result = prober(inst2.address, health.clone()).await;
                if tx
                    .send(Msg::Probe {
                        instance: inst2.clone(),
                        result,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        if let Some(m) = self.member_of(inst) {
            m.health = Some(task.abort_handle());
        }
    }

    /// A probe result, or a connect timeout on the request path (which counts the same).
    pub(super) fn on_probe(&mut self, inst: &Arc<Instance>, result: Result<(), String>) {
        if self.stopping {
            return;
        }
        let health = self.svc.config.load().health.clone();
        let Some(m) = self.member_of(inst) else {
            return;
        };
        match result {
            Ok(()) => {
                m.fails = 0;
                m.passes += 1;
                if m.passes >= health.healthy_threshold
                    && inst.transition(InstanceState::Unhealthy, InstanceState::Ready)
                {
                    self.svc.events.emit(
                        &self.svc.name,
                        "instance_healthy",
                        format!("instance {} is healthy again", inst.id),
                        json!({ "instance": inst.id }),
                    );
                    self.publish();
                    if let Some(lane) = self.lane_of(&inst.revision) {
                        lane.wake_waiters();
                    }
                }
            }
            Err(reason) => {
                m.passes = 0;
                m.fails += 1;
                let fails = m.fails;
                self.note_rollout_failure(
                    &inst.revision,
                    &format!("instance {} failed a probe: {reason}", inst.id),
                );
                if inst.state() == InstanceState::Ready && fails >= health.unhealthy_threshold {
                    self.unhealthy(inst, format!("{reason} ({fails} in a row)"));
                }
            }
        }
    }

    /// A connect timeout on the request path: one strike, said in the event log so an operator
    /// sees a backlog filling before the threshold takes the instance out.
    pub(super) fn on_connect_timeout(&mut self, inst: &Arc<Instance>) {
        if self.stopping || inst.state() != InstanceState::Ready {
            return;
        }
        let Some(m) = self.member_of(inst) else {
            return;
        };
        let strikes = m.fails + 1;
        let threshold = self.svc.config.load().health.unhealthy_threshold;
        self.svc.events.emit(
            &self.svc.name,
            "instance_connect_timeout",
            format!(
                "connect to instance {} timed out on the request path ({strikes} of {threshold} before it is taken out)",
                inst.id
            ),
            json!({ "instance": inst.id, "failures": strikes, "unhealthy_threshold": threshold }),
        );
        self.on_probe(inst, Err("connect timed out on the request path".into()));
    }

    /// The request path's connect was refused: the instance is gone, whatever the threshold.
    pub(super) fn on_refused(&mut self, inst: &Arc<Instance>) {
        if self.stopping || inst.state() != InstanceState::Ready || self.member_of(inst).is_none() {
            return;
        }
        self.unhealthy(inst, "connection refused on the request path".into());
    }

    fn unhealthy(&mut self, inst: &Arc<Instance>, reason: String) {
        let id = inst.id.clone();
        self.svc.events.emit(
            &self.svc.name,
            "instance_unhealthy",
            format!("instance {id} is unhealthy: {reason}"),
            json!({ "instance": id, "reason": reason }),
        );
        if self.is_green(inst) {
            self.fail_deploy(format!(
                "new instance {id} failed its health checks: {reason}"
            ));
        } else if self.managed() {
            self.drain(&id, "unhealthy");
            self.reconcile();
        } else {
            // A static upstream stays known; its probes bring it back.
            inst.set_state(InstanceState::Unhealthy);
            if let Some(m) = self.member_of(inst) {
                m.passes = 0;
            }
            self.publish();
        }
    }
}
