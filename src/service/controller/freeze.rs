//! `idle_action = "freeze"`: an instance the service no longer needs leaves the pool as in a
//! drain, then is frozen instead of stopped. It keeps its memory and sockets, uses no CPU, takes
//! no probe and holds no pool slot. The next demand thaws the most recently frozen one (a start
//! whose instance already exists: thaw, one readiness check, publish); a failed thaw falls back
//! to a cold start. A frozen instance is stopped after `frozen_timeout`, or when the frozen
//! instances of every service together hold more than `[scaling] max_frozen_memory`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{Controller, Msg};
use crate::config::IdleAction;
use crate::runtime::{InstanceHandle, Runtime, Started};
use crate::service::frozen::ledger;
use crate::service::instance::{Instance, InstanceState};
use crate::service::revision::Revision;

/// A frozen member: since when, and its entry in the ledger.
pub(super) struct FrozenAt {
    pub(super) since: Instant,
    pub(super) key: u64,
}

impl Controller {
    /// Whether scale-down victims of this service are frozen rather than stopped.
    pub(super) fn freezes(&self) -> bool {
        self.svc.config.load().scaling.idle_action == IdleAction::Freeze
    }

    /// Takes the instance out of the pool, waits for its requests as a drain does, then
    /// freezes it. An instance that cannot be frozen (the runtime cannot, or the freeze fails)
    /// is stopped instead, and the event log says why.
    pub(super) fn freeze(&mut self, id: &str, why: &str) {
        let Some(m) = self.members.iter_mut().find(|m| m.instance.id == id) else {
            return;
        };
        let (Some(handle), InstanceState::Ready) = (m.handle.clone(), m.instance.state()) else {
            return self.drain(id, why);
        };
        if let Some(h) = m.health.take() {
            h.abort();
        }
        let inst = m.instance.clone();
        inst.set_state(InstanceState::Draining);
        self.publish();
        let cfg = self.svc.config.load_full();
        let (drain_timeout, grace) = (cfg.deploy.drain_timeout, cfg.deploy.stop_grace);
        let (tx, svc) = (self.tx.clone(), self.svc.clone());
        self.tasks.spawn(async move {
            let idle = tokio::time::timeout(drain_timeout, inst.wait_idle())
                .await
                .is_ok();
            let why_not = if idle {
                // Its pooled upstream connections are not reused after the thaw.
                inst.new_generation();
                match handle.freeze().await {
                    Ok(()) => {
                        let memory = handle.memory().await;
                        let _ = tx.send(Msg::Frozen {
                            instance: inst,
                            memory,
                        });
                        return;
                    }
                    Err(e) => e.message,
                }
            } else {
                format!("still {} in flight after drain_timeout", inst.in_flight())
            };
            svc.emit(
                "freeze_failed",
                format!("cannot freeze instance {}: {why_not}; stopping it", inst.id),
                json!({ "instance": inst.id, "reason": why_not }),
            );
            handle.stop(grace).await;
            let _ = tx.send(Msg::Stopped { instance: inst });
        });
    }

    pub(super) fn on_frozen(&mut self, inst: &Arc<Instance>, memory: Option<u64>) {
        let (stopping, name) = (self.stopping, self.svc.name.clone());
        let (tx, grace) = (self.tx.clone(), self.svc.config.load().deploy.stop_grace);
        let Some(m) = self.member_of(inst) else {
            return;
        };
        let id = inst.id.clone();
        if inst.has_exited() || stopping {
            // It exited while it was being frozen (its exit was left to this), or wakeway is
            // stopping: either way it goes now, still out of the pool.
            let handle = m.handle.clone();
            let inst = inst.clone();
            self.tasks.spawn(async move {
                if let Some(h) = handle {
                    h.stop(grace).await;
                }
                let _ = tx.send(Msg::Stopped { instance: inst });
            });
            return;
        }
        if !inst.transition(InstanceState::Draining, InstanceState::Frozen) {
            return;
        }
        let key = ledger().insert(&name, memory.unwrap_or(0));
        m.frozen = Some(FrozenAt {
            since: Instant::now(),
            key,
        });
        self.svc.emit(
            "instance_frozen",
            format!(
                "instance {id} frozen{}",
                memory.map_or(String::new(), |b| format!(
                    ", holding {}",
                    crate::config::format_size(b)
                ))
            ),
            json!({ "instance": id, "revision": inst.revision, "memory_bytes": memory }),
        );
        self.publish();
    }

    /// The ledger forgets a member that leaves the frozen state (thawed, stopped or exited).
    pub(super) fn unfreeze_member(&mut self, inst: &Arc<Instance>) {
        if let Some(f) = self.member_of(inst).and_then(|m| m.frozen.take()) {
            ledger().remove(f.key);
        }
    }

    /// Thaws the most recently frozen instance of `revision` as a start; false when it has
    /// none. Scale-out and cold requests come here before they start a new instance.
    pub(super) fn thaw_one(&mut self, runtime: &Arc<dyn Runtime>, revision: &Revision) -> bool {
        let Some(m) = self
            .members
            .iter()
            .filter(|m| {
                m.instance.revision == revision.id && m.instance.state() == InstanceState::Frozen
            })
            .max_by_key(|m| m.frozen.as_ref().map_or(0, |f| f.key))
        else {
            return false;
        };
        let (Some(handle), Some(exited)) = (m.handle.clone(), m.exited.clone()) else {
            return false;
        };
        let inst = m.instance.clone();
        self.unfreeze_member(&inst);
        inst.set_state(InstanceState::Starting);
        let thaw = super::start_job::Thaw {
            instance: inst.clone(),
            handle,
            exited,
        };
        self.spawn_thaw(inst.id.clone(), runtime.clone(), revision, thaw);
        self.publish();
        true
    }

    /// An instance a previous wakeway froze (a paused container), found at start. With
    /// `idle_action = "freeze"` it stays frozen, counted from now for `frozen_timeout` and in
    /// the memory budget, and the next demand thaws it; `None` then. Otherwise it is thawed
    /// and returned, to be adopted as a running one (probed, then idle as any other); one that
    /// cannot be thawed is stopped (`None`).
    pub(super) async fn adopt_frozen(&mut self, id: String, started: Started) -> Option<Started> {
        if !self.freezes() {
            let Err(e) = started.handle.thaw().await else {
                return Some(started);
            };
            self.svc.events.emit(
                &self.svc.name,
                "thaw_failed",
                format!(
                    "cannot thaw adopted instance {id}: {}; stopping it",
                    e.message
                ),
                json!({ "instance": id, "reason": e.message }),
            );
            let grace = self.svc.config.load().deploy.stop_grace;
            started.handle.stop(grace).await;
            return None;
        }
        let inst = Arc::new(Instance::new(
            id,
            self.revision.id.clone(),
            started.address,
            started.pid,
        ));
        // It was frozen: a request that waits for it waits for a thaw.
        inst.new_generation();
        inst.set_state(InstanceState::Frozen);
        let handle: Arc<dyn InstanceHandle> = Arc::from(started.handle);
        let memory = handle.memory().await;
        self.on_spawned(inst.clone(), handle, started.exited);
        let key = ledger().insert(&self.svc.name, memory.unwrap_or(0));
        if let Some(m) = self.member_of(&inst) {
            m.frozen = Some(FrozenAt {
                since: Instant::now(),
                key,
            });
        }
        None
    }

    pub(super) fn on_thawed(&mut self, id: &str, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        self.svc.metrics.thaws.inc();
        self.svc.emit(
            "instance_thawed",
            format!("instance {id} thawed and ready in {ms:.1} ms"),
            json!({ "instance": id, "thaw_ms": ms }),
        );
    }

    /// At each decision tick: frozen instances past `frozen_timeout`, and those over the
    /// memory budget (longest-frozen first, over every service), are stopped.
    pub(super) fn expire_frozen(&mut self) {
        let timeout = self.svc.config.load().scaling.frozen_timeout;
        let over = ledger().over_limit();
        let expired: Vec<(String, &'static str)> = self
            .members
            .iter()
            .filter(|m| m.instance.state() == InstanceState::Frozen)
            .filter_map(|m| {
                let f = m.frozen.as_ref()?;
                if f.since.elapsed() >= timeout {
                    Some((m.instance.id.clone(), "frozen_timeout"))
                } else if over.contains(&f.key) {
                    Some((m.instance.id.clone(), "max_frozen_memory"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in expired {
            self.drain(&id, why);
        }
        self.svc
            .metrics
            .frozen_memory
            .set(ledger().held_by(&self.svc.name) as i64);
    }
}
