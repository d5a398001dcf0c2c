//! Health once ready: periodic probes and the request path's reports come here, the controller
//! keeps the counts and decides. A refused connect proves death; a probe failure or a connect
//! timeout is one strike toward `health.unhealthy_threshold` (a busy instance with a full accept
//! backlog is not a dead one); a reset is checked with a fresh connect; a request that got no
//! first byte in time is a strike that only an answer clears (a frozen app's kernel still
//! completes TCP handshakes, so a TCP probe's pass proves nothing about it).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::MissedTickBehavior;

use super::{Controller, Msg};
use crate::config::HealthConfig;
use crate::service::command::Report;
use crate::service::instance::{Instance, InstanceState};
use crate::service::probe;

/// A started instance's exit notice (the child's exit status, the container's `die` event)
/// follows its crash by milliseconds and says why it ended: a refusal waits this long for it
/// before the controller calls the instance unhealthy itself.
const EXIT_NOTICE_WAIT: Duration = Duration::from_millis(250);

/// A check the controller runs after a report from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// After a reset: does the instance still accept connections?
    Connects,
    /// After a request got no first byte: does the instance answer anything at all?
    Answers,
    /// The wait between two `Answers` checks is over.
    Again,
    /// A managed instance refused a connection: its exit notice had `EXIT_NOTICE_WAIT` to come.
    Refused,
}

impl Check {
    async fn run(self, addr: std::net::SocketAddr, health: &HealthConfig) -> Result<(), String> {
        match self {
            Check::Connects => probe::connects(addr, health.timeout).await,
            Check::Answers => probe::answers(addr, health).await,
            Check::Again => Ok(()),
            Check::Refused => Err("connection refused on the request path".into()),
        }
    }
}

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
                    self.svc.emit(
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

    /// What the request path saw (`proxy/attempt.rs`); the controller decides what it means.
    pub(super) fn on_report(&mut self, inst: &Arc<Instance>, seen: Report) {
        if self.stopping || inst.state() != InstanceState::Ready || self.member_of(inst).is_none() {
            return;
        }
        match seen {
            // Nothing listens there any more: gone, whatever the threshold.
            Report::Refused if self.managed() => self.check(inst, Check::Refused),
            Report::Refused => {
                self.unhealthy(inst, "connection refused on the request path".into())
            }
            Report::ConnectTimeout => self.on_connect_timeout(inst),
            // A crash or a dropped connection: a started instance's exit notice tells (it follows
            // a crash by milliseconds), a fresh connect tells for any, and the reset is a strike,
            // so an instance that resets every request (or h2 stream) leaves at the threshold.
            Report::Reset => {
                self.check(inst, Check::Connects);
                self.on_probe(inst, Err("connection reset on the request path".into()));
            }
            Report::FirstByteTimeout => {
                let threshold = self.svc.config.load().health.unhealthy_threshold;
                let Some(m) = self.member_of(inst) else {
                    return;
                };
                m.stalls += 1;
                let stalls = m.stalls;
                self.svc.emit("instance_no_answer",
                    format!(
                        "instance {} sent no response in time ({stalls} of {threshold} before it is taken out)",
                        inst.id
                    ),
                    json!({ "instance": inst.id, "failures": stalls, "unhealthy_threshold": threshold }),
                );
                if stalls >= threshold {
                    self.unhealthy(
                        inst,
                        format!("no response within response_timeout ({stalls} in a row)"),
                    );
                } else {
                    self.check(inst, Check::Answers);
                }
            }
        }
    }

    /// A connect timeout on the request path: one strike, said in the event log so an operator
    /// sees a backlog filling before the threshold takes the instance out.
    fn on_connect_timeout(&mut self, inst: &Arc<Instance>) {
        let Some(m) = self.member_of(inst) else {
            return;
        };
        let strikes = m.fails + 1;
        let threshold = self.svc.config.load().health.unhealthy_threshold;
        self.svc.emit("instance_connect_timeout",
            format!(
                "connect to instance {} timed out on the request path ({strikes} of {threshold} before it is taken out)",
                inst.id
            ),
            json!({ "instance": inst.id, "failures": strikes, "unhealthy_threshold": threshold }),
        );
        self.on_probe(inst, Err("connect timed out on the request path".into()));
    }

    /// Runs one check of `inst` off the loop, unless one is running; its result comes back as
    /// `Msg::Checked`. Never on the request path: a request reports and goes on.
    fn check(&mut self, inst: &Arc<Instance>, check: Check) {
        let health = self.svc.config.load().health.clone();
        let Some(m) = self.member_of(inst) else {
            return;
        };
        // A refusal is decided whatever else is being checked: it does not wait its turn.
        if check != Check::Refused {
            if m.checking {
                return;
            }
            m.checking = true;
        }
        let (tx, inst) = (self.tx.clone(), inst.clone());
        let cancel = self.cancel.clone();
        let managed = self.managed();
        tokio::spawn(async move {
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = check.run(inst.address, &health) => r,
            };
            if managed && result.is_err() && matches!(check, Check::Connects | Check::Refused) {
                // Gone: let its exit notice, which says why, be what removes it.
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(EXIT_NOTICE_WAIT) => {}
                }
            }
            let _ = tx.send(Msg::Checked {
                instance: inst,
                check,
                result,
            });
        });
    }

    pub(super) fn on_checked(
        &mut self,
        inst: &Arc<Instance>,
        check: Check,
        result: Result<(), String>,
    ) {
        if self.stopping {
            return;
        }
        let threshold = self.svc.config.load().health.unhealthy_threshold;
        let Some(m) = self.member_of(inst) else {
            return;
        };
        if check != Check::Refused {
            m.checking = false;
        }
        if inst.state() != InstanceState::Ready {
            return;
        }
        match (check, result) {
            (Check::Connects, Ok(())) | (Check::Refused, Ok(())) => {}
            (Check::Connects, Err(e)) => {
                self.unhealthy(inst, format!("reset on the request path, then {e}"));
            }
            (Check::Refused, Err(e)) => self.unhealthy(inst, e),
            (Check::Answers, Ok(())) => m.stalls = 0,
            (Check::Answers, Err(e)) => {
                m.stalls += 1;
                let stalls = m.stalls;
                if stalls >= threshold {
                    self.unhealthy(inst, format!("{e} ({stalls} in a row)"));
                } else {
                    // Asked again after an interval: a stall that never clears must end.
                    let (tx, inst, cancel) = (self.tx.clone(), inst.clone(), self.cancel.clone());
                    let every = self.svc.config.load().health.interval;
                    if let Some(m) = self.member_of(&inst) {
                        m.checking = true;
                    }
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = tokio::time::sleep(every) => {
                                let _ = tx.send(Msg::Checked { instance: inst, check: Check::Again, result: Ok(()) });
                            }
                        }
                    });
                }
            }
            (Check::Again, _) => {
                if m.stalls > 0 {
                    self.check(inst, Check::Answers);
                }
            }
        }
    }

    fn unhealthy(&mut self, inst: &Arc<Instance>, reason: String) {
        let id = inst.id.clone();
        self.svc.emit(
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
                m.stalls = 0;
            }
            self.publish();
        }
    }
}
