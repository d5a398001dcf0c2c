//! One swarm service's [`Runtime`]: an instance is a single-replica swarm service, started
//! when its task runs and stopped by removing the service.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use tokio::sync::watch;

use super::engine::SwarmEngine;
use super::spec::{self, Blueprint, RunningTask, TaskView};
use crate::config::{ImageRuntime, ImageSource, ServiceConfig};
use crate::runtime::engine::adopt::{ensure_swept, image_source};
use crate::runtime::engine::client::status_of;
use crate::runtime::engine::labels::{InstanceLabels, env_list};
use crate::runtime::{
    Adopted, BoxFuture, InstanceHandle, InstanceSpec, Runtime, RuntimeError, Started,
};

/// The longest pause between two looks at a starting task: a task takes about a second to run,
/// and every pause is latency added to a cold start (a list of one service's tasks is cheap).
const TASK_POLL_MAX: Duration = Duration::from_millis(50);

pub struct SwarmRuntime {
    engine: Arc<SwarmEngine>,
    image: ImageSource,
    spec: String,
    stop_grace: Duration,
    /// A task that is not running by then (no node fits, the image cannot be had) fails the
    /// start; the probe's own wait starts after it.
    startup_timeout: Duration,
}

impl SwarmRuntime {
    pub fn new(engine: Arc<SwarmEngine>, svc: &ServiceConfig) -> Option<SwarmRuntime> {
        let img = image_source(svc, ImageRuntime::Swarm)?;
        Some(SwarmRuntime {
            image: img.clone(),
            spec: spec::spec_fingerprint(&engine.cfg, img, &svc.env, svc.deploy.stop_grace),
            stop_grace: svc.deploy.stop_grace,
            startup_timeout: svc.health.startup_timeout,
            engine,
        })
    }

    async fn start_task(&self, inst: InstanceSpec) -> Result<Started, RuntimeError> {
        let engine = &self.engine;
        let docker = engine.manager().await?.clone();
        ensure_swept(engine, false).await?;
        engine.ensure_network(&docker).await?;
        // Recorded so a restart can tell whether the tag still names what the task runs.
        let image_id = docker
            .inspect_image(&self.image.image)
            .await
            .ok()
            .and_then(|i| i.id);
        let env = env_list(crate::runtime::instance_env(
            &inst.env,
            &inst.service,
            &inst.revision,
            &inst.instance,
            self.image.port,
        ));
        let cfg = &engine.cfg;
        let name = spec::service_name(&cfg.scope, &inst.service, &inst.instance);
        let labels = InstanceLabels {
            scope: &cfg.scope,
            service: &inst.service,
            revision: &inst.revision,
            instance: &inst.instance,
            spec: &self.spec,
        }
        .to_map(image_id.as_deref());
        let body = spec::service_spec(&Blueprint {
            name: &name,
            image: &self.image,
            env,
            labels,
            network: &cfg.network,
            constraints: &cfg.constraints,
            stop_grace: self.stop_grace,
        });
        let created = match docker.create_service(body.clone(), None).await {
            Err(e) if status_of(&e) == Some(409) && self.clear_stale_name(&docker, &name).await => {
                docker.create_service(body, None).await
            }
            other => other,
        }
        .map_err(|e| engine.api_error(&format!("create service {name}"), e))?;
        for w in created.warnings.unwrap_or_default() {
            tracing::debug!("swarm: service {name}: {w}");
        }
        let id = created.id.ok_or_else(|| RuntimeError {
            message: format!("swarm: create service {name}: the manager returned no id"),
            retryable: false,
        })?;
        let exited = engine.core.watched.watch(&id, &name);
        // From here until the task runs, a failure or a cancelled start removes the service.
        let mut created = Created {
            engine: engine.clone(),
            docker: docker.clone(),
            id: id.clone(),
            name: name.clone(),
            armed: true,
        };
        let t0 = std::time::Instant::now();
        let task = self.wait_running(&docker, &id, &name, &exited).await?;
        tracing::debug!(
            wait_ms = t0.elapsed().as_millis() as u64,
            "swarm: task of {name} running on node {}",
            task.node
        );
        let address = engine.address(&docker, &task).await?;
        engine.core.watched.mark_running(&id);
        created.armed = false;
        let local = address.ip().is_loopback();
        Ok(Started {
            address,
            pid: task.pid.filter(|_| local),
            exited: exited.clone(),
            handle: Box::new(SwarmHandle::new(engine.clone(), id, name, exited)),
        })
    }

    /// Polls the service's task until it runs (the API has no task events), ends, or
    /// `startup_timeout` passes.
    async fn wait_running(
        &self,
        docker: &Docker,
        id: &str,
        name: &str,
        exited: &watch::Receiver<Option<String>>,
    ) -> Result<RunningTask, RuntimeError> {
        let fail = |message: String| RuntimeError {
            message,
            retryable: false,
        };
        let deadline = tokio::time::Instant::now() + self.startup_timeout;
        let mut pause = Duration::from_millis(10);
        let mut last = "not created yet".to_string();
        loop {
            if let Some(reason) = exited.borrow().clone() {
                return Err(fail(reason));
            }
            let tasks = self.engine.tasks_of(docker, id).await?;
            match spec::current_task(&tasks).map(spec::read_task) {
                Some(TaskView::Running(task)) => return Ok(task),
                Some(TaskView::Ended(why)) => {
                    return Err(fail(format!("swarm service {name}: {why}")));
                }
                Some(TaskView::Pending(state)) => last = state,
                None => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(fail(format!(
                    "swarm service {name}: its task is still {last} after startup_timeout {:?}",
                    self.startup_timeout
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(TASK_POLL_MAX);
        }
    }

    /// A leftover service of this scope holds the name: it is removed (and its task waited
    /// for) so the name can be used.
    async fn clear_stale_name(&self, docker: &Docker, name: &str) -> bool {
        let Ok(svc) = docker.inspect_service(name, None).await else {
            return false;
        };
        let labels = svc.spec.and_then(|s| s.labels).unwrap_or_default();
        let Some(id) = svc.id else { return false };
        if !self.engine.holds_name_stale(name, &id, &labels) {
            return false;
        }
        self.engine.remove_service(docker, &id, name, true).await;
        true
    }
}

/// A service whose start did not complete: removed unless disarmed.
struct Created {
    engine: Arc<SwarmEngine>,
    docker: Docker,
    id: String,
    name: String,
    armed: bool,
}

impl Drop for Created {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.engine.core.watched.mark_stopping(&self.id);
        self.engine.core.watched.forget(&self.id);
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (engine, docker) = (self.engine.clone(), self.docker.clone());
        let (id, name) = (self.id.clone(), self.name.clone());
        self.engine.core.spawn_background(async move {
            engine.remove_service(&docker, &id, &name, false).await;
        });
    }
}

impl Runtime for SwarmRuntime {
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        Box::pin(self.start_task(spec))
    }

    fn name(&self) -> &'static str {
        "swarm"
    }

    /// The id of the image behind the tag on the manager's engine.
    fn source_version(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(self.engine.image_id(&self.image.image))
    }

    fn adopt<'a>(
        &'a self,
        service: &'a str,
        revision: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Adopted>, RuntimeError>> {
        Box::pin(self.engine.adopt(service, revision))
    }
}

pub(super) struct SwarmHandle {
    engine: Arc<SwarmEngine>,
    id: String,
    name: String,
    exited: watch::Receiver<Option<String>>,
}

impl SwarmHandle {
    pub(super) fn new(
        engine: Arc<SwarmEngine>,
        id: String,
        name: String,
        exited: watch::Receiver<Option<String>>,
    ) -> SwarmHandle {
        SwarmHandle {
            engine,
            id,
            name,
            exited,
        }
    }
}

impl InstanceHandle for SwarmHandle {
    /// Removes the instance's service: the swarm sends the stop signal and kills the task after
    /// the grace its spec carries (`deploy.stop_grace`); returns once the task is gone.
    fn stop(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        let engine = &self.engine;
        // Waits for the task to stop unless it already ended.
        let remove = async move {
            if let Ok(docker) = engine.manager().await {
                let wait = self.exited.borrow().is_none();
                engine
                    .remove_service(docker, &self.id, &self.name, wait)
                    .await;
            }
        };
        let gone = format!("swarm service {} removed", self.name);
        Box::pin(engine.stop_instance(engine.cfg.stop_on_exit, &self.id, &self.name, remove, gone))
    }
}
