//! Leftovers of a previous wakeway: the swarm services of a known service at its current spec
//! and image are adopted, every other one of the scope is removed.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::query_parameters::ListServicesOptions;

use super::engine::SwarmEngine;
use super::spec::{self, TaskView};
use crate::runtime::engine::client::QUICK_TIMEOUT;
use crate::runtime::engine::labels::{
    LABEL_IMAGE, LABEL_INSTANCE, LABEL_SERVICE, LABEL_SPEC, scope_filter,
};
use crate::runtime::{Adopted, RuntimeError, Started};

/// What wakeway expects of a service's instances.
pub(super) struct Expected {
    pub(super) spec: String,
    pub(super) image: String,
}

/// A swarm service left running by a previous wakeway, kept for its service's `adopt`.
pub(super) struct Candidate {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) instance: String,
}

impl SwarmEngine {
    /// Lists this scope's swarm services once. When `adopting`, those of a known service that
    /// match its spec and image are kept for `adopt`; every other one not watched is removed.
    pub(super) async fn sweep(self: &Arc<Self>, adopting: bool) -> Result<(), RuntimeError> {
        let docker = self.client().await?.clone();
        let opts = ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                scope_filter(&self.cfg.scope),
            )])),
            status: None,
        };
        let list = tokio::time::timeout(QUICK_TIMEOUT, docker.list_services(Some(opts)))
            .await
            .map_err(|_| self.unreachable(format!("no answer within {QUICK_TIMEOUT:?}")))?
            .map_err(|e| self.api_error("list services", e))?;
        let mut images: HashMap<&str, Option<String>> = HashMap::new();
        if adopting {
            for (service, exp) in &self.known {
                let id = docker
                    .inspect_image(&exp.image)
                    .await
                    .ok()
                    .and_then(|i| i.id);
                images.insert(service.as_str(), id);
            }
        }
        let watched: Vec<String> = self
            .watched
            .lock()
            .expect("watched lock")
            .keys()
            .cloned()
            .collect();
        let mut candidates: HashMap<String, Vec<Candidate>> = HashMap::new();
        for s in list {
            let Some(id) = s.id.clone() else { continue };
            if watched.contains(&id) {
                continue;
            }
            let spec = s.spec.unwrap_or_default();
            let name = spec.name.unwrap_or_else(|| id.clone());
            let labels = spec.labels.unwrap_or_default();
            let service = labels.get(LABEL_SERVICE).cloned().unwrap_or_default();
            let verdict = match self.known.get(&service) {
                None => Err(format!("service `{service}` is not in the config")),
                Some(exp) if labels.get(LABEL_SPEC) != Some(&exp.spec) => {
                    Err("its image, port, limits, env or placement differ from the config".into())
                }
                Some(exp) => match (images.get(service.as_str()), labels.get(LABEL_IMAGE)) {
                    (Some(Some(now)), Some(was)) if now != was => {
                        Err(format!("{} now names another image", exp.image))
                    }
                    _ => match labels.get(LABEL_INSTANCE) {
                        Some(instance) if adopting => Ok(instance.clone()),
                        Some(_) => Err("its service started without it".to_string()),
                        None => Err(format!("it has no {LABEL_INSTANCE} label")),
                    },
                },
            };
            match verdict {
                Ok(instance) => {
                    candidates
                        .entry(service)
                        .or_default()
                        .push(Candidate { id, name, instance })
                }
                Err(why) => {
                    tracing::info!("swarm: removing leftover service {name}: {why}");
                    self.remove_service(&docker, &id, &name, false).await;
                }
            }
        }
        *self.candidates.lock().expect("candidates lock") = candidates;
        Ok(())
    }

    pub(super) async fn adopt(
        self: &Arc<Self>,
        service: &str,
        revision: &str,
    ) -> Result<Vec<Adopted>, RuntimeError> {
        self.swept.get_or_try_init(|| self.sweep(true)).await?;
        let mine = self
            .candidates
            .lock()
            .expect("candidates lock")
            .remove(service)
            .unwrap_or_default();
        let docker = self.client().await?.clone();
        let mut adopted = Vec::new();
        for c in mine {
            // Watched before looking: an exit from here on is reported, not lost.
            let exited = self.watch(&c.id, &c.name);
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
                    self.mark_stopping(&c.id);
                    self.forget(&c.id);
                    self.remove_service(&docker, &c.id, &c.name, false).await;
                    continue;
                }
            };
            self.mark_running(&c.id);
            tracing::info!(
                "swarm: adopting service {} of {service} ({revision}) at {address}",
                c.name
            );
            let local = address.ip().is_loopback();
            adopted.push(Adopted {
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
