//! The swarm side of the harness, for tests against the real local engine in swarm mode (a
//! single-node swarm: `.ci/run` runs `docker swarm init` when the engine is not in one).
//!
//! [`SwarmTest`] wraps a [`DockerTest`] (the shared image, a scope of its own) and adds an
//! overlay network of its own; on drop it removes every swarm service of its scope, waits for
//! their tasks to stop, and removes the network. Without an engine in swarm mode it skips with
//! a loud message, except under `CI=true`, where that fails.

use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{LocalNodeState, Service, ServiceSpec, TaskSpec, TaskSpecContainerSpec};
use bollard::query_parameters::{ListContainersOptions, ListServicesOptions};
use tokio::time::Instant;

use crate::common::docker::{DockerTest, clean_up, docker_service, skip};
use crate::common::engine_scenarios::{EngineTest, GHOST};
use crate::common::{DEADLINE, LISTEN_ANY, wait_for};

/// How long cleanup waits for the tasks of removed services to stop.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(60);

pub struct SwarmTest {
    pub docker_test: DockerTest,
    pub network: String,
}

impl Deref for SwarmTest {
    type Target = DockerTest;
    fn deref(&self) -> &DockerTest {
        &self.docker_test
    }
}

/// Whether the engine is an active swarm manager, and what it says when not.
async fn swarm_state(docker: &Docker) -> Result<(), String> {
    let info = docker.info().await.map_err(|e| e.to_string())?;
    let swarm = info.swarm.unwrap_or_default();
    if swarm.local_node_state == Some(LocalNodeState::ACTIVE)
        && swarm.control_available == Some(true)
    {
        Ok(())
    } else {
        Err(format!(
            "the engine is not a swarm manager (swarm state {:?}); run `docker swarm init`",
            swarm.local_node_state
        ))
    }
}

impl SwarmTest {
    /// `None` (after a loud message) when no engine answers or it is not a swarm manager,
    /// unless `CI=true`.
    pub async fn new() -> Option<SwarmTest> {
        let docker_test = DockerTest::new().await?;
        if let Err(e) = swarm_state(&docker_test.docker).await {
            return skip("swarm", &e);
        }
        let network = format!("{}-net", docker_test.scope);
        Some(SwarmTest {
            docker_test,
            network,
        })
    }

    /// A complete config: listeners on free ports, `[swarm]` with this test's scope, network
    /// and `swarm_keys`, then `services`.
    pub fn swarm_config(&self, swarm_keys: &str, services: &str) -> String {
        format!(
            "{LISTEN_ANY}\n[swarm]\nscope = \"{}\"\nnetwork = \"{}\"\n{swarm_keys}\n{services}",
            self.scope, self.network
        )
    }

    /// This scope's swarm services, optionally of one wakeway service.
    pub async fn services(&self, service: Option<&str>) -> Vec<Service> {
        let opts = ListServicesOptions {
            filters: Some(self.scope_filter(service)),
            status: None,
        };
        self.docker
            .list_services(Some(opts))
            .await
            .expect("list services")
    }

    /// Waits until `service`'s swarm services are exactly those of `instances` (by their
    /// `wakeway.instance` labels).
    pub async fn wait_service_instances(
        &self,
        service: &str,
        instances: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        let labels = || async {
            let services = self.services(Some(service)).await;
            let labels = services.into_iter().filter_map(|s| s.spec?.labels);
            labels
                .filter_map(|mut l| l.remove("wakeway.instance"))
                .collect()
        };
        self.wait_exactly("swarm services", service, instances, labels)
            .await
    }

    /// The ids of this scope's swarm services.
    pub async fn service_ids(&self) -> BTreeSet<String> {
        self.services(None)
            .await
            .into_iter()
            .filter_map(|s| s.id)
            .collect()
    }

    /// Waits until this scope has no swarm service, no task and no container left.
    pub async fn wait_nothing_left(&self) {
        wait_for(
            &format!(
                "no swarm service, task or container left in scope {}",
                self.scope
            ),
            DEADLINE,
            || async {
                let services = self.services(None).await.len();
                let containers = self.containers(None, true).await.len();
                let tasks = self.tasks().await;
                (services == 0 && containers == 0 && tasks == 0).then_some(())
            },
        )
        .await
    }

    /// How many tasks of this scope's services the swarm knows of.
    pub async fn tasks(&self) -> usize {
        let opts = bollard::query_parameters::ListTasksOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("wakeway.scope={}", self.scope)],
            )])),
        };
        self.docker
            .list_tasks(Some(opts))
            .await
            .expect("list tasks")
            .len()
    }

    /// The id of the running container of `instance`'s task (on this single node).
    pub async fn task_container(&self, instance: &str) -> String {
        let opts = ListContainersOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![
                    format!("wakeway.scope={}", self.scope),
                    format!("wakeway.instance={instance}"),
                ],
            )])),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .expect("list containers");
        assert_eq!(
            list.len(),
            1,
            "one running container of {instance}: {list:?}"
        );
        list[0].id.clone().unwrap()
    }

    /// Creates a swarm service of this scope by hand, as a previous wakeway might have left it.
    pub async fn leftover_service(&self, name: &str, labels: &[(&str, &str)]) -> String {
        let all = self.scope_labels(labels);
        let spec = ServiceSpec {
            name: Some(name.to_string()),
            labels: Some(all.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(self.image.clone()),
                    labels: Some(all),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_service(spec, None)
            .await
            .expect("create leftover service")
            .id
            .unwrap()
    }
}

impl Drop for SwarmTest {
    fn drop(&mut self) {
        let scope = self.scope.clone();
        let network = self.network.clone();
        clean_up(move |docker| async move {
            let label =
                HashMap::from([("label".to_string(), vec![format!("wakeway.scope={scope}")])]);
            let opts = ListServicesOptions {
                filters: Some(label.clone()),
                status: None,
            };
            for s in docker.list_services(Some(opts)).await.unwrap_or_default() {
                if let Some(id) = s.id {
                    let _ = docker.delete_service(&id).await;
                }
            }
            // The network can go once no task is attached to it any more.
            let deadline = Instant::now() + CLEANUP_DEADLINE;
            loop {
                let opts = bollard::query_parameters::ListTasksOptions {
                    filters: Some(label.clone()),
                };
                let tasks = docker.list_tasks(Some(opts)).await.unwrap_or_default();
                let removed = tasks.is_empty() && docker.remove_network(&network).await.is_ok();
                let missing = docker.inspect_network(&network, None).await.is_err();
                if (tasks.is_empty() && missing) || removed {
                    return;
                }
                if Instant::now() > deadline {
                    eprintln!(
                        "swarm test cleanup: scope {scope} still has {} task(s) or network {network} after {CLEANUP_DEADLINE:?}",
                        tasks.len()
                    );
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

impl EngineTest for SwarmTest {
    const RUNTIME: &'static str = "swarm";
    const INSTANCES: &'static str = "tasks";
    const IMAGE_MISSING: (&'static str, &'static str) = ("NOT on this node", "rejected");

    fn test(&self) -> &DockerTest {
        self
    }

    async fn instance_ids(&self, _all: bool) -> BTreeSet<String> {
        self.service_ids().await
    }

    fn service(name: &str, image: &str, extra: &str) -> String {
        swarm_service(name, image, extra)
    }

    async fn wait_nothing_left(&self) {
        SwarmTest::wait_nothing_left(self).await;
    }

    fn engine_config(&self, keys: &str, services: &str) -> String {
        self.swarm_config(keys, services)
    }

    async fn wait_engine_instances(&self, service: &str, instances: &BTreeSet<String>) {
        self.wait_service_instances(service, instances).await;
    }

    async fn container_of(&self, _service: &str, instance: &str) -> String {
        self.task_container(instance).await
    }

    async fn envs(&self, service: &str) -> Vec<Vec<String>> {
        self.services(Some(service))
            .await
            .into_iter()
            .map(|s| {
                let task = s.spec.unwrap().task_template.unwrap();
                task.container_spec.unwrap().env.unwrap()
            })
            .collect()
    }

    /// A swarm service of a service no longer in the config.
    async fn leftovers(&self) -> Vec<String> {
        let name = format!("{}-ghost", self.scope);
        vec![self.leftover_service(&name, &GHOST).await]
    }
}

/// A swarm `[[service]]` on host `NAME.localhost`, with `extra` TOML appended.
pub fn swarm_service(name: &str, image: &str, extra: &str) -> String {
    let extra = format!(
        r#"runtime = "swarm"
{extra}

# A swarm task is reached on its node's published port, which may accept before the app
# listens: these services keep an HTTP probe so their first request finds the app.
[service.health]
kind = "http""#
    );
    docker_service(name, image, &extra)
}

/// A stand-in for the engine's socket that can go away and come back: it forwards each
/// connection to the real engine, and an outage closes them all and refuses new ones.
pub struct FlakyEngine {
    path: std::path::PathBuf,
    upstream: String,
    serving: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl FlakyEngine {
    /// `None` when the engine is not reached through a unix socket.
    pub fn new() -> Option<FlakyEngine> {
        let upstream = match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.trim().is_empty() => h.strip_prefix("unix://")?.to_string(),
            _ => "/var/run/docker.sock".to_string(),
        };
        let dir = tempfile::tempdir().unwrap();
        let mut engine = FlakyEngine {
            path: dir.path().join("engine.sock"),
            upstream,
            serving: None,
            _dir: dir,
        };
        engine.up();
        Some(engine)
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    pub fn up(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).unwrap();
        let upstream = self.upstream.clone();
        self.serving = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) drops every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut engine) = tokio::net::UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        }));
    }

    pub fn down(&mut self) {
        if let Some(task) = self.serving.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
