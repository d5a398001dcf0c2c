//! Leftovers of a previous wakeway: the swarm services of a known service at its current spec
//! and image are adopted, every other one of the scope is removed. The rules are the engine
//! core's (`engine/adopt.rs`).

use std::sync::Arc;

use super::engine::SwarmEngine;
use super::spec::{self, TaskView};
use crate::runtime::engine::adopt::ensure_swept;
use crate::runtime::{Adopted, RuntimeError, Started};

impl SwarmEngine {
    pub(super) async fn adopt(
        self: &Arc<Self>,
        service: &str,
        revision: &str,
    ) -> Result<Vec<Adopted>, RuntimeError> {
        ensure_swept(self, true).await?;
        let mine = self.core.take_candidates(service);
        let docker = self.manager().await?.clone();
        let mut adopted = Vec::new();
        for c in mine {
            // Watched before looking: an exit from here on is reported, not lost.
            let exited = self.core.watched.watch(&c.id, &c.name);
            let tasks = self.tasks_of(&docker, &c.id).await?;
            let found = match spec::current_task(&tasks).map(spec::read_task) {
                Some(TaskView::Running(task)) => {
                    self.address(&docker, &task).await.map(|a| (a, task))
                }
                Some(TaskView::Pending(state)) => Err(RuntimeError {
                    message: format!("its task is {state}"),
                    retryable: false,
                }),
                Some(TaskView::Ended(why)) => Err(RuntimeError {
                    message: why,
                    retryable: false,
                }),
                None => Err(RuntimeError {
                    message: "it has no task".into(),
                    retryable: false,
                }),
            };
            let (address, task) = match found {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!("swarm: not adopting service {}: {}", c.name, e.message);
                    self.core.watched.mark_stopping(&c.id);
                    self.core.watched.forget(&c.id);
                    self.remove_service(&docker, &c.id, &c.name, false).await;
                    continue;
                }
            };
            self.core.watched.mark_running(&c.id);
            tracing::info!(
                "swarm: adopting service {} of {service} ({revision}) at {address}",
                c.name
            );
            let local = address.ip().is_loopback();
            adopted.push(Adopted {
                frozen: false,
                instance: c.instance,
                started: Started {
                    address,
                    pid: task.pid.filter(|_| local),
                    exited: exited.clone(),
                    handle: Box::new(super::runtime::SwarmHandle::new(
                        self.clone(),
                        c.id,
                        c.name,
                        exited,
                    )),
                },
            });
        }
        Ok(adopted)
    }
}
