//! A start's own task, off the controller's loop: from the request to the runtime (or a thaw, or
//! an adoption) until the instance is ready or the start failed, and the one report it sends.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Msg, Prober, StartEnd};
use crate::config::HealthConfig;
use crate::runtime::{InstanceHandle, InstanceSpec, Runtime, Started};
use crate::service::Service;
use crate::service::instance::Instance;
use crate::service::lane::Lane;
use crate::service::probe::{self, NotReady};

/// An instance that exits this soon after it was spawned most likely lost its port to another
/// process: it is started again on a new port, not counted as a failure.
pub(super) const PORT_RACE_WINDOW: Duration = Duration::from_secs(1);
const PORT_RACE_RETRIES: u32 = 3;
/// A start that failed or was cancelled had no request to finish: a short grace is enough.
const START_STOP_GRACE: Duration = Duration::from_secs(1);

/// A frozen instance to wake: the start that thaws it.
pub(super) struct Thaw {
    pub(super) instance: Arc<Instance>,
    pub(super) handle: Arc<dyn InstanceHandle>,
    pub(super) exited: watch::Receiver<Option<String>>,
}

/// A thawed app answers at once or not at all: its readiness check does not wait as long as a
/// start's.
const THAW_READY_WITHIN: Duration = Duration::from_secs(5);

/// Everything a start task needs, moved into it.
pub(super) struct StartJob {
    pub(super) id: String,
    pub(super) revision: String,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) spec: InstanceSpec,
    /// An instance a previous wakeway left running: probed, not started.
    pub(super) adopted: Option<Started>,
    /// A frozen instance: thawed and checked, and only if that fails, a new one started.
    pub(super) thaw: Option<Thaw>,
    pub(super) health: HealthConfig,
    pub(super) prober: Prober,
    pub(super) svc: Arc<Service>,
    /// Where a request waiting for this start looks for what holds it up.
    pub(super) lane: Arc<Lane>,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    pub(super) cancel: CancellationToken,
}

impl StartJob {
    /// Thaws the instance and checks it is ready; `false` when it is gone and a new one should
    /// start in its place.
    async fn wake(&self, thaw: Thaw) -> bool {
        let began = Instant::now();
        let addr = thaw.instance.address;
        let mut health = self.health.clone();
        health.startup_timeout = health.startup_timeout.min(THAW_READY_WITHIN);
        let probe = || (self.prober)(addr, health.clone());
        let result = match thaw.handle.thaw().await {
            Ok(()) => probe::wait_ready(probe, &health, thaw.exited.clone(), &self.cancel)
                .await
                .map_err(|e| match e {
                    NotReady::Exited(r) => format!("exited: {r}"),
                    NotReady::Timeout(last) => format!(
                        "not ready within {health_t:?}: {last}",
                        health_t = health.startup_timeout
                    ),
                    NotReady::Cancelled => String::new(),
                }),
            Err(e) => Err(e.message),
        };
        let id = self.id.clone();
        let end = match result {
            Ok(()) => {
                let _ = self.tx.send(Msg::Thawed {
                    id: id.clone(),
                    took: began.elapsed(),
                });
                let _ = self.tx.send(Msg::Ready { id });
                return true;
            }
            Err(_) if self.cancel.is_cancelled() => StartEnd::Cancelled,
            Err(why) => {
                self.svc.emit(
                    "thaw_failed",
                    format!("cannot thaw instance {id}: {why}; starting a new one"),
                    json!({ "instance": id, "reason": why }),
                );
                // Removes the old instance; the start goes on with a new one.
                StartEnd::Retry
            }
        };
        thaw.handle.stop(START_STOP_GRACE).await;
        let cancelled = matches!(end, StartEnd::Cancelled);
        let instance = Some(thaw.instance);
        let _ = self.tx.send(Msg::StartEnded { id, instance, end });
        cancelled
    }

    pub(super) async fn run(mut self) {
        if let Some(thaw) = self.thaw.take()
            && self.wake(thaw).await
        {
            return;
        }
        let tx = self.tx.clone();
        let id = self.id.clone();
        let ended = |instance, end| {
            let _ = tx.send(Msg::StartEnded {
                id: id.clone(),
                instance,
                end,
            });
        };
        for attempt in 1..=PORT_RACE_RETRIES {
            if self.cancel.is_cancelled() {
                return ended(None, StartEnd::Cancelled);
            }
            let adopted = self.adopted.is_some();
            let started = match self.adopted.take() {
                Some(s) => s,
                // Not raced against the cancel: an instance the runtime is creating would leak.
                None => match self.runtime.start(self.spec.clone()).await {
                    Ok(s) => s,
                    Err(e) if e.retryable && attempt < PORT_RACE_RETRIES => continue,
                    Err(_) if self.cancel.is_cancelled() => {
                        return ended(None, StartEnd::Cancelled);
                    }
                    Err(e) => return ended(None, StartEnd::Failed(e.message)),
                },
            };
            let spawned_at = Instant::now();
            let inst = Arc::new(Instance::new(
                self.id.clone(),
                self.revision.clone(),
                started.address,
                started.pid,
            ));
            let handle: Arc<dyn InstanceHandle> = Arc::from(started.handle);
            let _ = self.tx.send(Msg::Spawned {
                instance: inst.clone(),
                handle: handle.clone(),
                exited: started.exited.clone(),
            });
            let addr = started.address;
            let (prober, health) = (self.prober.clone(), self.health.clone());
            let said = std::sync::atomic::AtomicBool::new(false);
            let probe = || {
                let attempt = prober(addr, health.clone());
                let (svc, lane, id, revision, said, health) = (
                    &self.svc,
                    &self.lane,
                    &self.id,
                    &self.revision,
                    &said,
                    &health,
                );
                async move {
                    let result = attempt.await;
                    if let Err(e) = &result {
                        note_probe_failure(svc, lane, id, revision, health, e, said);
                    }
                    result
                }
            };
            if !adopted && self.runtime.ready_on_start() {
                // Its socket exists and accepts: requests wait in its backlog while it boots.
                let _ = self.tx.send(Msg::Ready { id: self.id });
                return;
            }
            let what = if adopted { "adopted instance " } else { "" };
            let end =
                match probe::wait_ready(probe, &self.health, started.exited, &self.cancel).await {
                    Ok(()) => {
                        let _ = self.tx.send(Msg::Ready { id: self.id });
                        return;
                    }
                    Err(NotReady::Exited(_))
                        if !adopted
                            && spawned_at.elapsed() < PORT_RACE_WINDOW
                            && attempt < PORT_RACE_RETRIES
                            && !self.cancel.is_cancelled() =>
                    {
                        StartEnd::Retry
                    }
                    Err(NotReady::Exited(reason)) if !self.cancel.is_cancelled() => {
                        StartEnd::Failed(format!("{what}exited before it was ready: {reason}"))
                    }
                    Err(NotReady::Timeout(last)) => StartEnd::Failed(format!(
                        "{what}not ready within startup_timeout {:?}: {last}",
                        self.health.startup_timeout
                    )),
                    Err(NotReady::Exited(_) | NotReady::Cancelled) => StartEnd::Cancelled,
                };
            handle.stop(START_STOP_GRACE).await;
            let retry = matches!(end, StartEnd::Retry);
            ended(Some(inst), end);
            if !retry {
                return;
            }
        }
    }
}

/// Keeps a starting instance's failed probe where a waiting request can report it, and says once
/// per start, in an event, when the instance answers but the probe does not like the answer: an
/// app without the probed route is otherwise only seen failing `startup_timeout` later.
pub(super) fn note_probe_failure(
    svc: &Service,
    lane: &Lane,
    id: &str,
    revision: &str,
    health: &HealthConfig,
    error: &str,
    said: &std::sync::atomic::AtomicBool,
) {
    lane.probe_failure.store(Arc::new(error.to_string()));
    if probe::is_http_refusal(health, error) && !said.swap(true, SeqCst) {
        svc.emit(
            "probe_failing",
            format!(
                "instance {id} answers, but its probe {error}; it takes no traffic until the probe \
                 passes (set health.path to a route that answers 2xx, or health.kind = \"tcp\")"
            ),
            json!({ "instance": id, "revision": revision, "probe": error, "path": health.path }),
        );
    }
}
