//! The canonical configuration of one service: where its instances come from, how it scales,
//! how it is probed, queued and deployed. `types.rs` holds the rest of the file (the listeners,
//! the admin API, the engines, logging).

use std::collections::BTreeMap;
use std::time::Duration;

use super::idle_ignore::IdleIgnore;

/// What an instance idle for `idle_timeout` (or scaled down) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdleAction {
    /// Stopped: the next request pays a cold start.
    #[default]
    Stop,
    /// Frozen (cgroup freezer, `docker pause`): it keeps its memory, uses no CPU, and the next
    /// request thaws it in milliseconds.
    Freeze,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    /// Lower-cased host names without port; `"*"` is the catch-all.
    pub hosts: Vec<String>,
    pub source: Source,
    pub env: BTreeMap<String, String>,
    pub scaling: ScalingConfig,
    pub health: HealthConfig,
    pub queue: QueueConfig,
    pub deploy: DeployConfig,
    /// A request body larger than this gets 413; `None` is unlimited.
    pub max_body_bytes: Option<u64>,
    /// Plain-HTTP requests get a 308 to the same URL over HTTPS (needs `[proxy.tls]`).
    pub redirect_https: bool,
    pub traffic: Vec<TrafficTarget>,
    /// Wakeway binds each instance's listening socket and passes it as fd 3 (`LISTEN_FDS=1`).
    pub socket_activation: bool,
    /// An idle kept-alive connection to an instance is not reused after this long: below the
    /// app's own keep-alive timeout, so wakeway never writes into a connection the app closes.
    pub upstream_idle_timeout: Duration,
    /// PUT and DELETE are sent again to another instance after one failed while handling them
    /// (as GET, HEAD, OPTIONS and requests with an `Idempotency-Key` are): only for apps whose
    /// PUT and DELETE really are idempotent.
    pub retry_idempotent: bool,
    /// What wakeway speaks to the service's instances.
    pub protocol: Protocol,
}

impl ServiceConfig {
    /// Node's and most app servers' keep-alive is 5 s: close first.
    pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
}

/// The protocol to instances (`protocol`): the address is the same, only the wire differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1, whatever the client spoke.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (cleartext): gRPC servers and h2c apps.
    H2c,
    /// h2c for gRPC requests (`content-type: application/grpc*`) that arrived over h2; HTTP/1.1
    /// for the rest, so one app can serve a gRPC API and a web UI.
    Auto,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
            Protocol::Auto => "auto",
        }
    }
}

impl ServiceConfig {
    /// A service with every setting at its default: what a file with only `name`, `hosts` and a
    /// source says (the sidecar's, and tests').
    pub fn new(name: &str, hosts: Vec<String>, source: Source) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            hosts,
            source,
            env: Default::default(),
            scaling: Default::default(),
            health: Default::default(),
            queue: Default::default(),
            deploy: Default::default(),
            max_body_bytes: None,
            redirect_https: false,
            traffic: Vec::new(),
            socket_activation: false,
            upstream_idle_timeout: ServiceConfig::DEFAULT_UPSTREAM_IDLE_TIMEOUT,
            retry_idempotent: false,
            protocol: Protocol::Http1,
        }
    }
}

/// One share of a service's traffic (`[[service.traffic]]`). Empty list: 100% to the latest revision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficTarget {
    /// `None`: the latest revision (`latest = true` in the file).
    pub revision: Option<String>,
    pub percent: u32,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `command = [...]`: the process runtime. `{port}` in any argument is replaced by the port.
    Command(Vec<String>),
    /// `upstreams = [...]`: the static runtime. Kept as written (`host:port`); resolved at start.
    Upstreams(Vec<String>),
    /// `image = "..."`: the docker runtime.
    Image(ImageSource),
}

/// A container image and how to run it. The stop grace period is `deploy.stop_grace`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageSource {
    /// As `docker run` takes it: `name:tag`, `name@sha256:...` or an image id.
    pub image: String,
    /// The port the app listens on inside the container (also in `$PORT`).
    pub port: u16,
    /// CPU limit in cores (`NanoCpus`); `None` is unlimited.
    pub cpus: Option<f64>,
    /// Hard memory limit in bytes, swap included; `None` is unlimited.
    pub memory: Option<u64>,
    /// Sent to stop a container; `None` is the image's `STOPSIGNAL` (SIGTERM by default).
    pub stop_signal: Option<String>,
    /// `runtime = "swarm"` runs the image as swarm tasks; the default is the local engine.
    pub runtime: ImageRuntime,
}

/// Which engine runs an image service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageRuntime {
    #[default]
    Docker,
    Swarm,
}

impl ImageSource {
    pub const DEFAULT_PORT: u16 = 8080;
}

impl Source {
    pub fn runtime_name(&self) -> &'static str {
        RuntimeKind::of(self).as_str()
    }
}

/// Which runtime a service's source picks: `command` → process, `image` → docker or swarm,
/// `upstreams` → static. Decisions are taken on this, never on its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Process,
    Docker,
    Swarm,
    Static,
}

impl RuntimeKind {
    pub fn of(source: &Source) -> RuntimeKind {
        match source {
            Source::Command(_) => RuntimeKind::Process,
            Source::Upstreams(_) => RuntimeKind::Static,
            Source::Image(img) => match img.runtime {
                ImageRuntime::Docker => RuntimeKind::Docker,
                ImageRuntime::Swarm => RuntimeKind::Swarm,
            },
        }
    }

    /// The name users read (config docs, admin API, `wakeway check`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Swarm => "swarm",
            RuntimeKind::Static => "static",
        }
    }

    /// Whether wakeway starts instances: a static upstream is only ever there or not, and has
    /// no exit notice.
    pub fn starts_instances(self) -> bool {
        self != RuntimeKind::Static
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScalingConfig {
    pub min_instances: u32,
    pub max_instances: u32,
    pub target_concurrency: f64,
    pub max_concurrency: u32,
    pub idle_timeout: Duration,
    pub stable_window: Duration,
    pub panic_window: Duration,
    pub panic_threshold: f64,
    /// Requests that are served but do not keep the service from scaling to zero.
    pub idle_ignore: IdleIgnore,
    pub idle_action: IdleAction,
    /// A frozen instance is stopped after this long.
    pub frozen_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    Http,
    Tcp,
    /// `grpc.health.v1.Health/Check` over h2c.
    Grpc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub kind: HealthKind,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub startup_timeout: Duration,
    /// The service name a gRPC probe asks about (`""`: the server as a whole).
    pub grpc_service: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub max_pending: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeployConfig {
    pub drain_timeout: Duration,
    /// Between SIGTERM and SIGKILL when an instance is stopped.
    pub stop_grace: Duration,
    /// A blue/green deploy whose new instances are not all healthy by then fails.
    pub timeout: Duration,
    /// Deploy by itself when the source changes underneath: a new image behind the tag
    /// (docker) or a changed executable (process).
    pub auto: bool,
    /// Revisions remembered (for rollback, in the state file): the newest this many, plus any
    /// that hold traffic or a tag.
    pub keep_revisions: usize,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        ScalingConfig {
            min_instances: 0,
            max_instances: 10,
            target_concurrency: 70.0,
            max_concurrency: 100,
            idle_timeout: Duration::from_secs(300),
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            panic_threshold: 2.0,
            idle_ignore: IdleIgnore::default(),
            idle_action: IdleAction::Stop,
            frozen_timeout: Duration::from_secs(3600),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            // As App Runner, Cloud Run and Knative: an app need not serve any particular route.
            kind: HealthKind::Tcp,
            path: "/healthz".to_string(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
            startup_timeout: Duration::from_secs(60),
            grpc_service: String::new(),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_pending: 1000,
            timeout: Duration::from_secs(30),
        }
    }
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            drain_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            auto: false,
            keep_revisions: 20,
        }
    }
}
