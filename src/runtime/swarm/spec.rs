//! What the swarm service of one instance looks like, and what wakeway reads back from its task.
//! Pure: no engine calls, so every rule here is unit tested.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerInspectResponse, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, Limit,
    NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task,
    TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};

use crate::config::{self, ImageSource, SwarmConfig};
use crate::runtime::engine::labels::{env_text, fnv1a, instance_name, source_text};

/// Swarm service names are DNS labels: at most 63 characters.
const MAX_NAME: usize = 63;

/// `wakeway-<scope>-<service>-<instance>` (no scope when it is the default), shortened with a
/// hash of the full name when it would not fit a DNS label.
pub fn service_name(scope: &str, service: &str, instance: &str) -> String {
    let full = instance_name(scope, service, instance);
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = fnv1a(&full);
    let keep = MAX_NAME - hash.len() - 1;
    // Names are ASCII (validated service names, scopes and instance ids).
    format!("{}-{hash}", full[..keep].trim_end_matches('-'))
}

/// A fingerprint of everything that shapes a task: one whose fingerprint differs from the
/// config's is stale.
pub fn spec_fingerprint(
    swarm: &SwarmConfig,
    img: &ImageSource,
    env: &BTreeMap<String, String>,
    stop_grace: Duration,
) -> String {
    let mut text = format!(
        "swarm\n{}stop_grace={}\nnetwork={}\npublish={:?}\n",
        source_text(img),
        stop_grace.as_millis(),
        swarm.network,
        swarm.publish,
    );
    for c in &swarm.constraints {
        text.push_str(&format!("constraint {c}\n"));
    }
    text.push_str(&env_text(env));
    fnv1a(&text)
}

/// Everything one instance's swarm service is made of.
pub struct Blueprint<'a> {
    pub name: &'a str,
    pub image: &'a ImageSource,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub network: &'a str,
    pub constraints: &'a [String],
    pub stop_grace: Duration,
}

/// One replica that the swarm never restarts (wakeway replaces a task that ends, so it knows
/// each instance's address), no virtual IP, and the app's port published in host mode on a
/// port the node picks: requests reach exactly the task wakeway chose.
pub fn service_spec(b: &Blueprint<'_>) -> ServiceSpec {
    let limits = (b.image.cpus.is_some() || b.image.memory.is_some()).then(|| Limit {
        nano_cpus: b.image.cpus.map(|c| (c * 1e9).round() as i64),
        memory_bytes: b.image.memory.map(|m| m as i64),
        pids: None,
    });
    ServiceSpec {
        name: Some(b.name.to_string()),
        labels: Some(b.labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(b.image.image.clone()),
                labels: Some(b.labels.clone()),
                env: Some(b.env.clone()),
                stop_signal: b
                    .image
                    .stop_signal
                    .as_deref()
                    .and_then(config::canonical_signal),
                stop_grace_period: Some(b.stop_grace.as_nanos() as i64),
                ..Default::default()
            }),
            resources: limits.map(|limits| TaskSpecResources {
                limits: Some(limits),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            placement: (!b.constraints.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(b.constraints.to_vec()),
                ..Default::default()
            }),
            networks: (!b.network.is_empty()).then(|| {
                vec![NetworkAttachmentConfig {
                    target: Some(b.network.to_string()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(vec![EndpointPortConfig {
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(b.image.port)),
                // None: the node picks a free port, so there is no race for it.
                published_port: None,
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                name: None,
            }]),
        }),
        ..Default::default()
    }
}

/// Where a task is in its life, as wakeway needs it.
#[derive(Debug, PartialEq)]
pub enum TaskView {
    /// Not running yet: its state and the swarm's message (e.g. why no node fits).
    Pending(String),
    Running(RunningTask),
    /// It will not run (again): why.
    Ended(String),
}

#[derive(Debug, PartialEq)]
pub struct RunningTask {
    pub node: String,
    pub port: u16,
    pub container: Option<String>,
    pub pid: Option<u32>,
}

/// The task that counts among a service's tasks: the newest (a single-replica service that
/// never restarts has one).
pub fn current_task(tasks: &[Task]) -> Option<&Task> {
    tasks
        .iter()
        .max_by_key(|t| t.version.as_ref().and_then(|v| v.index).unwrap_or(0))
}

/// Reasons name the task, not its service: callers prefix what they know it as.
pub fn read_task(task: &Task) -> TaskView {
    let status = task.status.clone().unwrap_or_default();
    let message = status
        .err
        .clone()
        .filter(|e| !e.is_empty())
        .or(status.message.clone())
        .unwrap_or_default();
    let container = status.container_status.clone().unwrap_or_default();
    let desired_gone = matches!(
        task.desired_state,
        Some(TaskState::SHUTDOWN | TaskState::REMOVE)
    );
    match status.state {
        Some(TaskState::RUNNING) if !desired_gone => {
            let port = status
                .port_status
                .as_ref()
                .and_then(|p| p.ports.as_ref())
                .into_iter()
                .flatten()
                .find_map(|p| {
                    p.published_port
                        .filter(|&port| port > 0 && port <= i64::from(u16::MAX))
                })
                .map(|p| p as u16);
            match port {
                Some(port) => TaskView::Running(RunningTask {
                    node: task.node_id.clone().unwrap_or_default(),
                    port,
                    container: container.container_id.filter(|c| !c.is_empty()),
                    pid: container.pid.filter(|p| *p > 0).map(|p| p as u32),
                }),
                None => TaskView::Ended(
                    "its task runs without a published port; was its endpoint changed by hand?"
                        .into(),
                ),
            }
        }
        Some(TaskState::RUNNING) => TaskView::Ended("its task is being stopped".into()),
        Some(
            s @ (TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED),
        ) => {
            let code = container.exit_code.filter(|_| {
                matches!(
                    s,
                    TaskState::FAILED | TaskState::COMPLETE | TaskState::SHUTDOWN
                )
            });
            let mut reason = format!("its task is {s}");
            if !message.is_empty() {
                reason.push_str(&format!(": {message}"));
            }
            if let Some(code) = code.filter(|c| *c != 0) {
                reason.push_str(&format!(" ({})", exit_code_text(code)));
            }
            TaskView::Ended(reason)
        }
        Some(s) if desired_gone => TaskView::Ended(format!("its task is {s} and stopping")),
        Some(s) => TaskView::Pending(if message.is_empty() {
            s.to_string()
        } else {
            format!("{s}: {message}")
        }),
        None => TaskView::Pending("new".to_string()),
    }
}

/// The host port a local task's container published on IPv4 (the status lists IPv4 and IPv6
/// bindings alike, and the engine may give them different ports).
pub fn ipv4_published_port(info: &ContainerInspectResponse) -> Option<u16> {
    info.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .values()
        .flatten()
        .flatten()
        .find(|b| {
            b.host_ip
                .as_deref()
                .is_none_or(|ip| ip.is_empty() || ip.parse::<std::net::Ipv4Addr>().is_ok())
        })
        .and_then(|b| b.host_port.as_deref()?.parse::<u16>().ok())
        .filter(|p| *p != 0)
}

/// `exit code 137 (SIGKILL)`.
pub fn exit_code_text(code: i64) -> String {
    if code > 128 && code < 128 + 65 {
        let sig = nix::sys::signal::Signal::try_from((code - 128) as i32)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {}", code - 128));
        format!("exit code {code} ({sig})")
    } else {
        format!("exit code {code}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::engine::labels::{InstanceLabels, sample_image};
    use bollard::models::{ContainerStatus, ObjectVersion, PortStatus, TaskStatus};

    fn image() -> ImageSource {
        ImageSource {
            stop_signal: Some("int".into()),
            ..sample_image(config::ImageRuntime::Swarm)
        }
    }

    #[test]
    fn names_fit_a_dns_label_and_stay_distinct() {
        assert_eq!(
            service_name("default", "web", "web-00001-a"),
            "wakeway-web-web-00001-a"
        );
        let long = "a".repeat(40);
        let a = service_name("staging", &long, &format!("{long}-00001-a"));
        let b = service_name("staging", &long, &format!("{long}-00001-b"));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.starts_with("wakeway-staging-aaaa"));
    }

    #[test]
    fn the_spec_routes_to_one_task_without_mesh_or_vip() {
        let img = image();
        let constraints = vec!["node.role == worker".to_string()];
        let b = Blueprint {
            name: "wakeway-web-web-00001-a",
            image: &img,
            env: vec!["PORT=8080".into()],
            labels: InstanceLabels {
                scope: "default",
                service: "web",
                revision: "web-00001",
                instance: "web-00001-a",
                spec: "f",
            }
            .to_map(Some("sha256:1")),
            network: "wakeway",
            constraints: &constraints,
            stop_grace: Duration::from_secs(3),
        };
        let spec = service_spec(&b);
        assert_eq!(spec.mode.unwrap().replicated.unwrap().replicas, Some(1));
        let endpoint = spec.endpoint_spec.unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR), "no VIP");
        let port = &endpoint.ports.unwrap()[0];
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST),
            "never the routing mesh"
        );
        assert_eq!((port.target_port, port.published_port), (Some(8080), None));
        let task = spec.task_template.unwrap();
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let limits = task.resources.unwrap().limits.unwrap();
        assert_eq!(limits.nano_cpus, Some(500_000_000));
        assert_eq!(limits.memory_bytes, Some(64 << 20));
        assert_eq!(task.placement.unwrap().constraints.unwrap(), constraints);
        let c = task.container_spec.unwrap();
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(c.stop_grace_period, Some(3_000_000_000));
        let labels = c.labels.unwrap();
        assert_eq!(labels["wakeway.instance"], "web-00001-a");
        assert_eq!(labels["wakeway.image"], "sha256:1");
        assert_eq!(spec.labels.unwrap(), labels, "service and container alike");
    }

    #[test]
    fn fingerprint_changes_with_what_shapes_a_task() {
        let swarm = SwarmConfig::default();
        let env = BTreeMap::new();
        let grace = Duration::from_secs(10);
        let base = spec_fingerprint(&swarm, &image(), &env, grace);
        assert_eq!(base, spec_fingerprint(&swarm, &image(), &env, grace));
        let other_net = SwarmConfig {
            network: "other".into(),
            ..SwarmConfig::default()
        };
        let placed = SwarmConfig {
            constraints: vec!["node.role == manager".into()],
            ..SwarmConfig::default()
        };
        for changed in [
            spec_fingerprint(&other_net, &image(), &env, grace),
            spec_fingerprint(&placed, &image(), &env, grace),
            spec_fingerprint(&swarm, &image(), &env, Duration::from_secs(1)),
            spec_fingerprint(
                &swarm,
                &ImageSource {
                    memory: None,
                    ..image()
                },
                &env,
                grace,
            ),
        ] {
            assert_ne!(base, changed);
        }
    }

    /// The text hashed must not change between releases: a new fingerprint for the same
    /// config would make a restarted wakeway replace every running task.
    #[test]
    fn fingerprint_of_a_known_config_stays_the_same() {
        let swarm = SwarmConfig {
            constraints: vec!["node.role == manager".into()],
            ..SwarmConfig::default()
        };
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(
            spec_fingerprint(&swarm, &image(), &env, Duration::from_secs(10)),
            "7a0e2ffb86ad22d9"
        );
    }

    fn task(state: TaskState, desired: TaskState, port: Option<i64>) -> Task {
        Task {
            node_id: Some("node1".into()),
            version: Some(ObjectVersion { index: Some(3) }),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                err: Some("no suitable node".into()).filter(|_| state == TaskState::PENDING),
                container_status: Some(ContainerStatus {
                    container_id: Some("c1".into()),
                    pid: Some(42),
                    exit_code: Some(137),
                }),
                port_status: Some(PortStatus {
                    ports: port.map(|p| {
                        vec![EndpointPortConfig {
                            published_port: Some(p),
                            ..Default::default()
                        }]
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_ipv4_binding_is_the_one_wakeway_uses() {
        use bollard::models::{NetworkSettings, PortBinding};
        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        };
        let info = ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([(
                    "8080/tcp".to_string(),
                    Some(vec![binding("::", "32846"), binding("0.0.0.0", "32859")]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(ipv4_published_port(&info), Some(32859));
        assert_eq!(
            ipv4_published_port(&ContainerInspectResponse::default()),
            None
        );
    }

    #[test]
    fn task_states_read_as_pending_running_or_ended() {
        use TaskState::*;
        assert_eq!(
            read_task(&task(RUNNING, RUNNING, Some(30001))),
            TaskView::Running(RunningTask {
                node: "node1".into(),
                port: 30001,
                container: Some("c1".into()),
                pid: Some(42),
            })
        );
        assert_eq!(
            read_task(&task(PENDING, RUNNING, None)),
            TaskView::Pending("pending: no suitable node".into())
        );
        let TaskView::Ended(why) = read_task(&task(FAILED, SHUTDOWN, None)) else {
            panic!("failed is the end");
        };
        assert!(
            why.contains("failed") && why.contains("137 (SIGKILL)"),
            "{why}"
        );
        assert!(matches!(
            read_task(&task(RUNNING, REMOVE, Some(30001))),
            TaskView::Ended(_)
        ));
        assert!(matches!(
            read_task(&task(RUNNING, RUNNING, None)),
            TaskView::Ended(_)
        ));
    }
}
