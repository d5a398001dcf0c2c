//! What the swarm runtime supplies to the engine core. Exits are noticed from the local
//! engine's container events (a task killed on the manager's own node leaves the pool at once)
//! and a poll of every task (exits on other nodes, a node that died, events missed while the
//! stream was down); leftovers are this scope's swarm services (`adopt.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{EventMessage, Task};
use bollard::query_parameters::{ListServicesOptions, ListTasksOptions};

use super::engine::SwarmEngine;
use super::spec::{self, TaskView};
use crate::runtime::RuntimeError;
use crate::runtime::engine::backend::Backend;
use crate::runtime::engine::follow::{Exit, out_of_memory, read_event};
use crate::runtime::engine::labels::{
    LABEL_IMAGE, SWARM_SERVICE_ID_LABEL, exit_reason, scope_filter,
};
use crate::runtime::engine::leftovers::{Leftover, Stale};

/// How often tasks are listed to notice exits the local event stream cannot show (tasks on
/// other nodes, a node that died).
const TASK_POLL: Duration = Duration::from_secs(1);

impl Backend for SwarmEngine {
    /// `destroy` is not needed: a task's container goes with its swarm service, which
    /// wakeway removes itself.
    const EVENTS: &'static [&'static str] = &["die", "oom"];
    const RECHECK_EVERY: Option<Duration> = Some(TASK_POLL);
    const SPEC_COVERS: &'static str = "image, port, limits, env or placement";

    async fn ready_client(&self) -> Result<Docker, RuntimeError> {
        self.manager().await.cloned()
    }

    /// This scope's swarm services.
    async fn leftovers(&self, docker: &Docker) -> Result<Vec<Leftover>, RuntimeError> {
        let opts = ListServicesOptions {
            filters: Some(scope_filter(&self.cfg.scope)),
            status: None,
        };
        let services = self
            .quick("list services", docker.list_services(Some(opts)))
            .await?;
        let leftovers = services.into_iter().filter_map(|service| {
            let spec = service.spec.unwrap_or_default();
            let labels = spec.labels.unwrap_or_default();
            let id = service.id?;
            Some(Leftover {
                name: spec.name.unwrap_or_else(|| id.clone()),
                // Recorded at creation: what the tag named then.
                image: labels.get(LABEL_IMAGE).cloned(),
                // Its task's state is the poll's business.
                running: true,
                paused: false,
                id,
                labels,
            })
        });
        Ok(leftovers.collect())
    }

    /// The swarm stops its task with the grace its spec carries.
    async fn remove_leftover(self: &Arc<Self>, docker: &Docker, stale: Stale) {
        self.remove_service(docker, &stale.id, &stale.name, false)
            .await;
    }

    fn on_event(self: &Arc<Self>, ev: EventMessage) {
        let Some((_, attrs, exit)) = read_event(ev) else {
            return;
        };
        let Some(service_id) = attrs.get(SWARM_SERVICE_ID_LABEL) else {
            return;
        };
        let container = attrs.get("name").cloned().unwrap_or_default();
        match exit {
            Exit::OutOfMemory => self.report_exit(service_id, |_| out_of_memory(&container), false),
            Exit::Died(code) => {
                self.report_exit(service_id, |_| exit_reason(&container, code), false)
            }
            Exit::Destroyed => {}
        }
    }

    /// Reports every running instance whose task is no longer running.
    async fn recheck(self: &Arc<Self>, docker: &Docker) -> Result<(), RuntimeError> {
        let ids = self.core.watched.running_ids();
        if ids.is_empty() {
            return Ok(());
        }
        let opts = ListTasksOptions {
            filters: Some(scope_filter(&self.cfg.scope)),
        };
        let tasks = self
            .core
            .quick("list tasks", docker.list_tasks(Some(opts)))
            .await?;
        let mut by_service: HashMap<&str, Vec<Task>> = HashMap::new();
        for t in &tasks {
            if let Some(s) = t.service_id.as_deref() {
                by_service.entry(s).or_default().push(t.clone());
            }
        }
        for id in ids {
            let mine = by_service
                .get(id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match spec::current_task(mine) {
                None => {
                    self.report_exit(&id, |name| format!("swarm service {name} is gone"), false)
                }
                Some(task) => {
                    if let TaskView::Ended(why) = spec::read_task(task) {
                        self.report_exit(&id, |name| format!("swarm service {name}: {why}"), false);
                    }
                }
            }
        }
        Ok(())
    }
}
