//! The connection to one swarm manager, shared by every swarm service: the client, the overlay
//! network, where a task is reached, the instances it watches and how their services are
//! removed. Exit notices are in `events.rs`, leftovers of a previous wakeway in `adopt.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{LocalNodeState, NetworkCreateRequest, Task};
use bollard::query_parameters::ListTasksOptions;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::adopt::{Candidate, Expected};
use super::spec::{self, RunningTask};
use crate::config::{ImageRuntime, ServiceConfig, Source, SwarmConfig};
use crate::runtime::RuntimeError;
use crate::runtime::engine::client::{
    self, QUICK_TIMEOUT, connect_and_negotiate, endpoint_or_default, status_of,
};
use crate::runtime::engine::labels::{LABEL_MANAGED, LABEL_SCOPE};

/// How long a removed service's task may take to stop beyond its grace before wakeway stops
/// waiting for it.
const REMOVE_SLACK: Duration = Duration::from_secs(30);

pub(super) struct Watched {
    pub(super) name: String,
    pub(super) exited: watch::Sender<Option<String>>,
    /// Its task ran: from now on a task that is not running is an exit.
    pub(super) running: bool,
    /// wakeway is removing it: the stop path reports, not the exit handlers.
    pub(super) stopping: bool,
}

/// One per wakeway, made when the first swarm service appears.
pub struct SwarmEngine {
    pub(super) cfg: SwarmConfig,
    pub(super) endpoint: String,
    /// Set once the engine has answered; until then every use tries again, so a manager that
    /// comes up after wakeway is found.
    pub(super) client: OnceCell<Docker>,
    /// The manager's own node: its tasks are reached on loopback.
    pub(super) local_node: OnceCell<String>,
    /// Set once `[swarm] network` is known to exist.
    pub(super) network: OnceCell<()>,
    /// This wakeway's instances, by swarm service id.
    pub(super) watched: Mutex<HashMap<String, Watched>>,
    /// Per service, what its swarm services must look like to be adopted.
    pub(super) known: HashMap<String, Expected>,
    /// The one look at leftovers: adoption candidates are set aside, the rest removed.
    pub(super) swept: OnceCell<()>,
    pub(super) candidates: Mutex<HashMap<String, Vec<Candidate>>>,
    /// wakeway is exiting: with `stop_on_exit = false` services are left running.
    pub(super) exiting: AtomicBool,
    pub(super) stop_events: CancellationToken,
    /// Removals nobody waits for; `close` waits for them.
    pub(super) background: Mutex<JoinSet<()>>,
}

impl SwarmEngine {
    /// Does not contact the manager. `services` are the config's services at start.
    pub fn new(cfg: SwarmConfig, services: &[&ServiceConfig]) -> Arc<SwarmEngine> {
        let endpoint = endpoint_or_default(cfg.endpoint.as_deref());
        let known = services
            .iter()
            .filter_map(|svc| match &svc.source {
                Source::Image(img) if img.runtime == ImageRuntime::Swarm => Some((
                    svc.name.clone(),
                    Expected {
                        spec: spec::spec_fingerprint(&cfg, img, &svc.env, svc.deploy.stop_grace),
                        image: img.image.clone(),
                    },
                )),
                _ => None,
            })
            .collect();
        let engine = Arc::new(SwarmEngine {
            cfg,
            endpoint,
            client: OnceCell::new(),
            local_node: OnceCell::new(),
            network: OnceCell::new(),
            watched: Mutex::new(HashMap::new()),
            known,
            swept: OnceCell::new(),
            candidates: Mutex::new(HashMap::new()),
            exiting: AtomicBool::new(false),
            stop_events: CancellationToken::new(),
            background: Mutex::new(JoinSet::new()),
        });
        tokio::spawn(engine.clone().follow());
        engine
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// wakeway is exiting: a stop from now on leaves the service running unless
    /// `stop_on_exit` is set, so the next start adopts it.
    pub fn begin_exit(&self) {
        self.exiting.store(true, SeqCst);
    }

    /// Stops following the swarm and waits for removals in progress.
    pub async fn close(&self) {
        self.stop_events.cancel();
        let mut set = std::mem::take(&mut *self.background.lock().expect("background lock"));
        while set.join_next().await.is_some() {}
    }

    pub(super) fn unreachable(&self, e: impl std::fmt::Display) -> RuntimeError {
        client::unreachable("swarm manager", &self.endpoint, "swarm", e)
    }

    pub(super) fn api_error(&self, what: &str, e: DockerError) -> RuntimeError {
        client::api_error("swarm", what, e, |e| self.unreachable(e))
    }

    /// The client, once the engine has answered and said it is a swarm manager.
    pub(super) async fn client(&self) -> Result<&Docker, RuntimeError> {
        let docker = self
            .client
            .get_or_try_init(|| async {
                connect_and_negotiate(&self.endpoint)
                    .await
                    .map_err(|e| self.unreachable(e))
            })
            .await?;
        self.local_node
            .get_or_try_init(|| async {
                let info = tokio::time::timeout(QUICK_TIMEOUT, docker.info())
                    .await
                    .map_err(|_| self.unreachable(format!("no answer within {QUICK_TIMEOUT:?}")))?
                    .map_err(|e| self.api_error("info", e))?;
                let swarm = info.swarm.unwrap_or_default();
                let active = swarm.local_node_state == Some(LocalNodeState::ACTIVE);
                match swarm.node_id.filter(|id| !id.is_empty()) {
                    Some(id) if active && swarm.control_available == Some(true) => Ok(id),
                    _ => Err(RuntimeError {
                        message: format!(
                            "the docker engine at {} is not a swarm manager (swarm state {}); run `docker swarm init` there, or point [swarm] endpoint at a manager",
                            self.endpoint,
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

    pub(super) fn connected(&self) -> Option<Docker> {
        self.client.get().cloned()
    }

    pub(super) fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.background.lock().expect("background lock").spawn(task);
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

    /// The tasks of one swarm service.
    pub(super) async fn tasks_of(
        &self,
        docker: &Docker,
        id: &str,
    ) -> Result<Vec<Task>, RuntimeError> {
        let opts = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                vec![id.to_string()],
            )])),
        };
        docker
            .list_tasks(Some(opts))
            .await
            .map_err(|e| self.api_error("list tasks", e))
    }

    /// The tasks of a swarm service that may have been removed: the `service` filter refuses a
    /// removed service, while its tasks linger until they have stopped.
    pub(super) async fn tasks_named(
        &self,
        docker: &Docker,
        id: &str,
        name: &str,
    ) -> Result<Vec<Task>, RuntimeError> {
        let opts = ListTasksOptions {
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![name.to_string()],
            )])),
        };
        let tasks = docker
            .list_tasks(Some(opts))
            .await
            .map_err(|e| self.api_error("list tasks", e))?;
        // The name filter matches prefixes: keep this service's own.
        Ok(tasks
            .into_iter()
            .filter(|t| t.service_id.as_deref() == Some(id))
            .collect())
    }

    // -----------------------------------------------------------------------------------------
    // Watching instances

    pub(super) fn watch(&self, id: &str, name: &str) -> watch::Receiver<Option<String>> {
        let (tx, rx) = watch::channel(None);
        self.watched.lock().expect("watched lock").insert(
            id.to_string(),
            Watched {
                name: name.to_string(),
                exited: tx,
                running: false,
                stopping: false,
            },
        );
        rx
    }

    pub(super) fn is_watched(&self, id: &str) -> bool {
        self.watched.lock().expect("watched lock").contains_key(id)
    }

    /// Leftovers are dealt with before this wakeway's first task exists; when adoption could
    /// not run (manager down at start), nothing is adopted any more.
    pub(super) async fn ensure_swept(self: &Arc<Self>) -> Result<(), RuntimeError> {
        self.swept
            .get_or_try_init(|| self.sweep(false))
            .await
            .map(|_| ())
    }

    pub(super) fn mark_running(&self, id: &str) {
        if let Some(w) = self.watched.lock().expect("watched lock").get_mut(id) {
            w.running = true;
        }
    }

    pub(super) fn mark_stopping(&self, id: &str) {
        if let Some(w) = self.watched.lock().expect("watched lock").get_mut(id) {
            w.stopping = true;
        }
    }

    pub(super) fn forget(&self, id: &str) {
        self.watched.lock().expect("watched lock").remove(id);
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
        let mut watched = self.watched.lock().expect("watched lock");
        let Some(w) = watched.get(id) else {
            return;
        };
        let reason = reason(&w.name);
        let first = w.exited.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
        let remove = first && !w.stopping;
        let name = w.name.clone();
        if forget || remove {
            watched.remove(id);
        }
        drop(watched);
        if remove && let Some(docker) = self.connected() {
            let engine = self.clone();
            let id = id.to_string();
            self.spawn_background(async move {
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
