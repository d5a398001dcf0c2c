//! The connection to one swarm manager, shared by every swarm service: the client, the overlay
//! network, where a task is reached, the instances it watches and how their services are
//! removed. Exit notices are in `backend.rs`, leftovers of a previous wakeway in `adopt.rs`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{LocalNodeState, NetworkCreateRequest, Task};
use bollard::query_parameters::ListTasksOptions;
use tokio::sync::OnceCell;

use super::spec::{self, RunningTask};
use crate::config::{ImageRuntime, ServiceConfig, SwarmConfig};
use crate::runtime::RuntimeError;
use crate::runtime::engine::adopt::expected;
use crate::runtime::engine::client::{endpoint_or_default, status_of};
use crate::runtime::engine::connection::{EngineCore, Naming};
use crate::runtime::engine::follow::follow;
use crate::runtime::engine::labels::{LABEL_MANAGED, LABEL_SCOPE};

/// How long a removed service's task may take to stop beyond its grace before wakeway stops
/// waiting for it.
const REMOVE_SLACK: Duration = Duration::from_secs(30);

/// One per wakeway, made when the first swarm service appears.
pub struct SwarmEngine {
    pub(super) cfg: SwarmConfig,
    pub(super) core: EngineCore,
    /// The manager's own node: its tasks are reached on loopback.
    pub(super) local_node: OnceCell<String>,
    /// Set once `[swarm] network` is known to exist.
    pub(super) network: OnceCell<()>,
}

/// What every engine connection keeps and does (its client, watched instances, leftovers,
/// `begin_exit` and `close`) is the core's.
impl std::ops::Deref for SwarmEngine {
    type Target = EngineCore;

    fn deref(&self) -> &EngineCore {
        &self.core
    }
}

impl SwarmEngine {
    /// Does not contact the manager. `services` are the config's services at start.
    pub fn new(cfg: SwarmConfig, services: &[&ServiceConfig]) -> Arc<SwarmEngine> {
        let known = expected(services, ImageRuntime::Swarm, |img, svc| {
            spec::spec_fingerprint(&cfg, img, &svc.env, svc.deploy.stop_grace)
        });
        let naming = Naming {
            who: "swarm manager",
            runtime: "swarm",
            instance: "service",
        };
        let endpoint = endpoint_or_default(cfg.endpoint.as_deref());
        let core = EngineCore::new(naming, cfg.scope.clone(), endpoint, known);
        let engine = Arc::new(SwarmEngine {
            cfg,
            core,
            local_node: OnceCell::new(),
            network: OnceCell::new(),
        });
        tokio::spawn(follow(engine.clone()));
        engine
    }

    /// The client, once the engine has answered and said it is a swarm manager.
    pub(super) async fn manager(&self) -> Result<&Docker, RuntimeError> {
        let docker = self.core.client().await?;
        self.local_node
            .get_or_try_init(|| async {
                let info = self.core.quick("info", docker.info()).await?;
                let swarm = info.swarm.unwrap_or_default();
                let active = swarm.local_node_state == Some(LocalNodeState::ACTIVE);
                match swarm.node_id.filter(|id| !id.is_empty()) {
                    Some(id) if active && swarm.control_available == Some(true) => Ok(id),
                    _ => Err(RuntimeError {
                        message: format!(
                            "the docker engine at {} is not a swarm manager (swarm state {}); run `docker swarm init` there, or point [swarm] endpoint at a manager",
                            self.core.endpoint,
                            swarm
                                .local_node_state
                                .map_or("unknown".to_string(), |s| s.to_string())
                        ),
                        retryable: false,
                    }),
                }
            })
            .await?;
        Ok(docker)
    }

    /// The attachable overlay every task joins, created (labelled as wakeway's) when missing.
    pub(super) async fn ensure_network(&self, docker: &Docker) -> Result<(), RuntimeError> {
        if self.cfg.network.is_empty() {
            return Ok(());
        }
        self.network
            .get_or_try_init(|| async {
                let name = &self.cfg.network;
                match docker.inspect_network(name, None).await {
                    Ok(net) => {
                        let overlay = net.driver.as_deref() == Some("overlay")
                            && net.scope.as_deref() == Some("swarm");
                        if !overlay {
                            return Err(RuntimeError {
                                message: format!(
                                    "network {name:?} exists but is not a swarm overlay (driver {:?}); name another in [swarm] network",
                                    net.driver.unwrap_or_default()
                                ),
                                retryable: false,
                            });
                        }
                        Ok(())
                    }
                    Err(e) if status_of(&e) == Some(404) => {
                        let req = NetworkCreateRequest {
                            name: name.clone(),
                            driver: Some("overlay".into()),
                            attachable: Some(true),
                            labels: Some(HashMap::from([
                                (LABEL_MANAGED.to_string(), "true".to_string()),
                                (LABEL_SCOPE.to_string(), self.cfg.scope.clone()),
                            ])),
                            ..Default::default()
                        };
                        match docker.create_network(req).await {
                            Ok(_) => {
                                tracing::info!("swarm: created overlay network {name}");
                                Ok(())
                            }
                            // Created meanwhile by another wakeway.
                            Err(e) if status_of(&e) == Some(409) => Ok(()),
                            Err(e) => Err(self.api_error(&format!("create network {name}"), e)),
                        }
                    }
                    Err(e) => Err(self.api_error(&format!("inspect network {name}"), e)),
                }
            })
            .await
            .map(|_| ())
    }

    /// Where wakeway connects to a running task: the port its node published, on loopback for
    /// the manager's own node and on the node's swarm address for the others.
    pub(super) async fn address(
        &self,
        docker: &Docker,
        task: &RunningTask,
    ) -> Result<SocketAddr, RuntimeError> {
        if self.local_node.get() == Some(&task.node) {
            // The engine may publish IPv4 and IPv6 on different ports; the task's status does
            // not say which is which, the local container does.
            let ipv4 = match &task.container {
                Some(c) => docker
                    .inspect_container(c, None)
                    .await
                    .ok()
                    .and_then(|info| spec::ipv4_published_port(&info)),
                None => None,
            };
            return Ok(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                ipv4.unwrap_or(task.port),
            )));
        }
        let node = &task.node;
        let info = docker
            .inspect_node(node)
            .await
            .map_err(|e| self.api_error(&format!("inspect node {node}"), e))?;
        let addr = info
            .status
            .and_then(|s| s.addr)
            .and_then(|a| a.parse::<IpAddr>().ok())
            .ok_or_else(|| RuntimeError {
                message: format!("node {node} has no address wakeway can reach"),
                retryable: false,
            })?;
        Ok(SocketAddr::new(addr, task.port))
    }

    /// The tasks the engine's `filter` (`service`, `name`) matches with `value`.
    async fn tasks_where(
        &self,
        docker: &Docker,
        filter: &str,
        value: &str,
    ) -> Result<Vec<Task>, RuntimeError> {
        let filters = HashMap::from([(filter.to_string(), vec![value.to_string()])]);
        let opts = ListTasksOptions {
            filters: Some(filters),
        };
        docker
            .list_tasks(Some(opts))
            .await
            .map_err(|e| self.api_error("list tasks", e))
    }

    /// The tasks of one swarm service.
    pub(super) async fn tasks_of(
        &self,
        docker: &Docker,
        id: &str,
    ) -> Result<Vec<Task>, RuntimeError> {
        self.tasks_where(docker, "service", id).await
    }

    /// The tasks of a swarm service that may have been removed: the `service` filter refuses a
    /// removed service, while its tasks linger until they have stopped.
    pub(super) async fn tasks_named(
        &self,
        docker: &Docker,
        id: &str,
        name: &str,
    ) -> Result<Vec<Task>, RuntimeError> {
        let tasks = self.tasks_where(docker, "name", name).await?;
        // The name filter matches prefixes: keep this service's own.
        Ok(tasks
            .into_iter()
            .filter(|t| t.service_id.as_deref() == Some(id))
            .collect())
    }

    /// Reports the exit (first reason wins); `forget` stops tracking the service. A service
    /// whose task ended on its own is removed here: with a restart policy of none, nothing else
    /// would.
    pub(super) fn report_exit(
        self: &Arc<Self>,
        id: &str,
        reason: impl FnOnce(&str) -> String,
        forget: bool,
    ) {
        let Some(reported) = self
            .core
            .watched
            .report(id, reason, |r| forget || (r.first && !r.stopping))
        else {
            return;
        };
        let (remove, name) = (reported.first && !reported.stopping, reported.name);
        if remove && let Some(docker) = self.core.connected() {
            let engine = self.clone();
            let id = id.to_string();
            self.core.spawn_background(async move {
                engine.remove_service(&docker, &id, &name, false).await;
            });
        }
    }

    /// Removes a swarm service (the swarm stops its task with the task's grace); when `wait`,
    /// returns once its task is gone on whichever node it ran.
    pub(super) async fn remove_service(&self, docker: &Docker, id: &str, name: &str, wait: bool) {
        match docker.delete_service(id).await {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => return,
            Err(e) => {
                tracing::warn!(
                    "swarm: cannot remove service {name}: {e}; the next start of wakeway removes it"
                );
                return;
            }
        }
        if !wait {
            return;
        }
        let grace = self.stop_grace_of(docker, id, name).await;
        let deadline = tokio::time::Instant::now() + grace + REMOVE_SLACK;
        let mut pause = Duration::from_millis(20);
        loop {
            match self.tasks_named(docker, id, name).await {
                Ok(tasks) if tasks.is_empty() => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("swarm: cannot see service {name} stop: {e}");
                    return;
                }
            }
            if tokio::time::Instant::now() > deadline {
                tracing::warn!("swarm: the task of {name} is still stopping after {grace:?}");
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// A removed service is gone from the API, its task's grace is not known any more: it
    /// is read from the task, which lingers while it stops.
    pub(super) async fn stop_grace_of(&self, docker: &Docker, id: &str, name: &str) -> Duration {
        let tasks = self.tasks_named(docker, id, name).await.unwrap_or_default();
        spec::current_task(&tasks)
            .and_then(|t| t.spec.as_ref()?.container_spec.as_ref()?.stop_grace_period)
            .map_or(Duration::from_secs(10), |ns| {
                Duration::from_nanos(ns.max(0) as u64)
            })
    }
}
