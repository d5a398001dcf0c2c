//! What the docker runtime supplies to the engine core. Exits are noticed from `die`, `oom`
//! and `destroy` events of this scope's containers and, on each (re)connection, from an
//! inspection of every watched one; leftovers are this scope's containers (`adopt.rs`).

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum, EventMessage};
use bollard::query_parameters::ListContainersOptions;

use super::*;
use crate::runtime::RuntimeError;
use crate::runtime::engine::backend::Backend;
use crate::runtime::engine::follow::{Exit, out_of_memory, read_event};
use crate::runtime::engine::leftovers::{Leftover, Stale};

/// A container of the scope as a leftover; `None` for a swarm task's.
fn leftover(c: ContainerSummary) -> Option<Leftover> {
    let labels = c.labels.unwrap_or_default();
    if labels.contains_key(SWARM_SERVICE_ID_LABEL) {
        return None;
    }
    let id = c.id?;
    let name = c
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.clone());
    Some(Leftover {
        running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
        paused: c.state == Some(ContainerSummaryStateEnum::PAUSED),
        image: c.image_id,
        id,
        name,
        labels,
    })
}

impl Backend for DockerEngine {
    const EVENTS: &'static [&'static str] = &["die", "oom", "destroy"];
    const RECHECK_EVERY: Option<Duration> = None;
    const SPEC_COVERS: &'static str = "image, port, limits or env";

    async fn ready_client(&self) -> Result<Docker, RuntimeError> {
        self.client().await.cloned()
    }

    /// This scope's containers, but for swarm tasks' (the swarm runtime owns those, through
    /// their swarm services).
    async fn leftovers(&self, docker: &Docker) -> Result<Vec<Leftover>, RuntimeError> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(scope_filter(&self.cfg.scope)),
            ..Default::default()
        };
        let list = self.quick("list containers", docker.list_containers(Some(opts)));
        Ok(list.await?.into_iter().filter_map(leftover).collect())
    }

    fn pinned(&self, service: &str, revision: &str) -> Option<String> {
        self.stored(service, revision)
    }

    /// Renamed at once, so its name is free, and removed in the background: a stale
    /// container's stop grace must not delay anything.
    async fn remove_leftover(self: &Arc<Self>, docker: &Docker, stale: Stale) {
        self.retire(docker, stale.id, stale.name, stale.grace).await;
    }

    fn on_event(self: &Arc<Self>, ev: EventMessage) {
        let Some((id, _, exit)) = read_event(ev) else {
            return;
        };
        match exit {
            Exit::OutOfMemory => self.report_exit(&id, out_of_memory, false),
            Exit::Died(code) => {
                self.report_exit(&id, |name| exit_reason(name, code), false);
                // A container that died on its own is removed here: nothing else would, and
                // stopped containers must not pile up.
                let stopping = self.core.watched.stopping(&id);
                if let (Some((false, name)), Some(docker)) = (stopping, self.core.connected()) {
                    self.core.spawn_background(async move {
                        DockerEngine::remove(&docker, &id, &name, None).await;
                    });
                }
            }
            Exit::Destroyed => {
                self.report_exit(&id, |name| format!("container {name} was removed"), true)
            }
        }
    }

    /// Inspects every watched container: reports the ones that stopped or vanished.
    async fn recheck(self: &Arc<Self>, docker: &Docker) -> Result<(), RuntimeError> {
        for (id, stopping) in self.core.watched.stopping_by_id() {
            match docker.inspect_container(&id, None).await {
                Ok(c) => {
                    let state = c.state.unwrap_or_default();
                    if state.running != Some(true) {
                        let code = state.exit_code;
                        self.report_exit(&id, |name| exit_reason(name, code), false);
                        if !stopping {
                            let name = c.name.unwrap_or_default();
                            let docker = docker.clone();
                            self.core.spawn_background(async move {
                                DockerEngine::remove(&docker, &id, &name, None).await;
                            });
                        }
                    }
                }
                Err(e) if status_of(&e) == Some(404) => {
                    self.report_exit(&id, |name| format!("container {name} is gone"), true)
                }
                Err(e) => return Err(self.api_error("inspect", e)),
            }
        }
        Ok(())
    }
}
