//! One docker service's [`Runtime`]: creating, starting and stopping its containers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptions;
use tokio::sync::watch;

use super::*;
use crate::config::{self, ImageRuntime, ImageSource, ServiceConfig};
use crate::runtime::engine::adopt::{ensure_swept, image_source};
use crate::runtime::engine::labels::{InstanceLabels, env_list};
use crate::runtime::{
    Adopted, BoxFuture, InstanceHandle, InstanceSpec, Runtime, RuntimeError, Started,
};

/// The [`Runtime`] of one docker service.
pub struct DockerRuntime {
    pub(super) engine: Arc<DockerEngine>,
    pub(super) image: ImageSource,
    pub(super) spec: String,
    pub(super) stop_grace: Duration,
}

impl DockerRuntime {
    pub fn new(engine: Arc<DockerEngine>, svc: &ServiceConfig) -> Option<DockerRuntime> {
        let img = image_source(svc, ImageRuntime::Docker)?;
        Some(DockerRuntime {
            spec: spec_fingerprint(&engine.cfg, img, &svc.env),
            engine,
            image: img.clone(),
            stop_grace: svc.deploy.stop_grace,
        })
    }

    pub(super) fn host_network(&self) -> bool {
        self.engine.cfg.network == "host"
    }

    pub(super) async fn start_container(
        &self,
        spec: InstanceSpec,
    ) -> Result<Started, RuntimeError> {
        let engine = &self.engine;
        let docker = engine.client().await?.clone();
        // Leftovers are dealt with before the first container of this wakeway exists; when
        // adoption could not run (engine down at start), nothing is adopted any more.
        ensure_swept(engine, false).await?;

        let image_id = engine
            .image_for(&docker, &spec.service, &spec.revision, &self.image.image)
            .await?;

        let host_network = self.host_network();
        let port = if host_network {
            // Host network only; the engine picks ports otherwise.
            crate::runtime::free_port().map_err(|e| RuntimeError {
                message: format!("no free port: {e}"),
                retryable: true,
            })?
        } else {
            self.image.port
        };
        let env = env_list(crate::runtime::instance_env(
            &spec.env,
            &spec.service,
            &spec.revision,
            &spec.instance,
            port,
        ));
        let labels = InstanceLabels {
            scope: &engine.cfg.scope,
            service: &spec.service,
            revision: &spec.revision,
            instance: &spec.instance,
            spec: &self.spec,
        }
        .to_map(Some(&self.image.image));
        let container_port = format!("{}/tcp", self.image.port);
        let body = ContainerCreateBody {
            image: Some(image_id),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: (!host_network).then(|| vec![container_port.clone()]),
            stop_signal: self
                .image
                .stop_signal
                .as_deref()
                .and_then(config::canonical_signal),
            // So a `docker stop` by hand gives the same grace wakeway does.
            stop_timeout: Some(self.stop_grace.as_secs_f64().ceil() as i64),
            host_config: Some(HostConfig {
                network_mode: Some(engine.cfg.network.clone()),
                port_bindings: (!host_network).then(|| {
                    HashMap::from([(
                        container_port,
                        Some(vec![PortBinding {
                            host_ip: Some(engine.cfg.publish_address.to_string()),
                            // Empty: the engine picks a free port, so there is no race for it.
                            host_port: Some(String::new()),
                        }]),
                    )])
                }),
                nano_cpus: self.image.cpus.map(|c| (c * 1e9).round() as i64),
                memory: self.image.memory.map(|m| m as i64),
                // Equal to `memory`: the limit is hard, the container cannot spill into swap.
                memory_swap: self.image.memory.map(|m| m as i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = instance_name(&engine.cfg.scope, &spec.service, &spec.instance);
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            platform: String::new(),
        };
        let t_create = std::time::Instant::now();
        let created = match docker
            .create_container(Some(opts.clone()), body.clone())
            .await
        {
            Err(e) if status_of(&e) == Some(409) && self.clear_stale_name(&docker, &name).await => {
                docker.create_container(Some(opts), body).await
            }
            other => other,
        }
        .map_err(|e| engine.api_error(&format!("create container {name}"), e))?;
        let id = created.id;
        for w in created.warnings {
            tracing::warn!("docker: container {name}: {w}");
        }

        let exited = engine.core.watched.watch(&id, &name);
        let t_start = std::time::Instant::now();
        if let Err(e) = docker.start_container(&id, None).await {
            engine.discard(&docker, &id, &name, None).await;
            let mut err = engine.api_error(&format!("start container {name}"), e);
            // On the host network the port we picked may have been taken meanwhile.
            err.retryable = host_network && err.message.contains("address already in use");
            return Err(err);
        }
        // What the engine itself costs of a cold start.
        tracing::debug!(
            create_ms = (t_start - t_create).as_millis() as u64,
            start_ms = t_start.elapsed().as_millis() as u64,
            "docker: container {name} created and started"
        );
        self.engine.follow_logs(
            &id,
            crate::runtime::output::Source {
                service: spec.service.clone(),
                revision: spec.revision.clone(),
                instance: spec.instance.clone(),
            },
            true,
        );
        let found = match docker.inspect_container(&id, None).await {
            Ok(info) => {
                engine
                    .address_of(&info, host_network, self.image.port)
                    .await
            }
            Err(e) => Err(engine.api_error(&format!("inspect container {name}"), e)),
        };
        let (address, pid) = match found {
            Ok(found) => found,
            Err(e) => {
                engine.discard(&docker, &id, &name, None).await;
                return Err(e);
            }
        };
        Ok(Started {
            address,
            pid,
            exited: exited.clone(),
            handle: Box::new(DockerHandle {
                engine: engine.clone(),
                id,
                name,
                exited,
            }),
        })
    }

    /// A leftover container of this scope holds the name: it is removed so the name can be
    /// used.
    pub(super) async fn clear_stale_name(&self, docker: &Docker, name: &str) -> bool {
        let Ok(info) = docker.inspect_container(name, None).await else {
            return false;
        };
        let id = info.id.unwrap_or_default();
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        if !self.engine.holds_name_stale(name, &id, &labels) {
            return false;
        }
        self.engine
            .retire(docker, id, name.to_string(), Some(UNKNOWN_STOP_GRACE))
            .await;
        true
    }
}

impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    /// The id of the image behind the tag: a new build or pull of the tag changes it.
    fn source_version(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(self.engine.image_id(&self.image.image))
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        Box::pin(self.start_container(spec))
    }

    fn adopt<'a>(
        &'a self,
        service: &'a str,
        revision: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Adopted>, RuntimeError>> {
        Box::pin(
            self.engine
                .adopt(service, revision, self.host_network(), self.image.port),
        )
    }
}

pub(super) struct DockerHandle {
    pub(super) engine: Arc<DockerEngine>,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) exited: watch::Receiver<Option<String>>,
}

impl DockerHandle {
    fn client(&self, what: &str) -> Result<Docker, RuntimeError> {
        self.engine.connected().ok_or_else(|| RuntimeError {
            message: format!(
                "cannot {what} container {}: the engine is not connected",
                self.name
            ),
            retryable: true,
        })
    }

    /// Pauses the container (`freeze`) or unpauses it (`thaw`).
    async fn set_paused(&self, paused: bool) -> Result<(), RuntimeError> {
        let what = if paused { "pause" } else { "unpause" };
        let docker = self.client(what)?;
        let done = if paused {
            docker.pause_container(&self.id).await
        } else {
            docker.unpause_container(&self.id).await
        };
        done.map_err(|e| RuntimeError {
            message: format!("docker {what} {}: {e}", self.name),
            retryable: false,
        })
    }
}

impl InstanceHandle for DockerHandle {
    fn freeze(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(self.set_paused(true))
    }

    fn thaw(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(self.set_paused(false))
    }

    fn memory(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move {
            use futures_util::StreamExt;
            let docker = self.engine.connected()?;
            let opts = bollard::query_parameters::StatsOptions {
                stream: false,
                one_shot: true,
            };
            let stats = docker.stats(&self.id, Some(opts)).next().await?.ok()?;
            stats.memory_stats?.usage
        })
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        let engine = &self.engine;
        let remove = async move {
            if let Some(docker) = engine.connected() {
                let gone = self.exited.borrow().is_some();
                let grace = (!gone).then_some(grace);
                DockerEngine::remove(&docker, &self.id, &self.name, grace).await;
            }
        };
        let gone = format!("container {} stopped", self.name);
        Box::pin(engine.stop_instance(engine.cfg.stop_on_exit, &self.id, &self.name, remove, gone))
    }
}
