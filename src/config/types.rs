//! The canonical configuration: what the rest of wakeway reads. The TOML front end (`file.rs`)
//! produces it; `validate.rs` checks it. Nothing else parses config.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub use super::cidr::IpNet;
pub use super::idle_ignore::{IdleIgnore, PathPattern};
/// Owned by the certificate store, which reads no config.
pub use crate::tls::CertificateConfig;
pub use crate::tls::acme::{AcmeChallenge, AcmeConfig, LETS_ENCRYPT_DIRECTORY};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this config came from, for error messages and reloads. `None` when built in code
    /// (sidecar mode, tests).
    pub path: Option<PathBuf>,
    /// Where revisions and deployments persist (`state_file`, resolved against the config's
    /// directory; by default `NAME.state.json` beside `NAME.toml`). `None` when built in code:
    /// nothing persists.
    pub state_file: Option<PathBuf>,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub docker: DockerConfig,
    pub swarm: SwarmConfig,
    /// `[cluster]`: several replicas, one fleet; `None`: one process with its state file.
    pub cluster: Option<super::ClusterConfig>,
    pub log: LogConfig,
    pub services: Vec<ServiceConfig>,
    /// `[scaling]`: what the services share.
    pub scaling: GlobalScaling,
}

/// `[scaling]`: limits over every service at once.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalScaling {
    /// When frozen instances together hold more memory, the longest-frozen are stopped first.
    pub max_frozen_memory: u64,
}

impl Default for GlobalScaling {
    fn default() -> Self {
        GlobalScaling {
            max_frozen_memory: 2 << 30,
        }
    }
}

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

/// `[log]`: wakeway's own log, the access log, request ids and traces, `Server-Timing`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter (`"info"`, `"warn,wakeway=debug"`); `RUST_LOG` overrides it.
    pub level: String,
    pub access: AccessLogTarget,
    pub access_format: AccessLogFormat,
    /// Whether the access log's path keeps the query string (it may carry secrets).
    pub access_query: bool,
    /// Start a W3C trace (`traceparent`) for requests that arrive without one.
    pub start_trace: bool,
    pub server_timing: ServerTimingMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// nginx/Apache `combined`, with wakeway's fields appended as `key=value`.
    Combined,
}

/// Which responses carry `Server-Timing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTimingMode {
    Off,
    /// Only responses whose request waited for a cold start.
    ColdStart,
    Always,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            access: AccessLogTarget::Off,
            access_format: AccessLogFormat::Json,
            access_query: false,
            start_trace: true,
            server_timing: ServerTimingMode::ColdStart,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub listen: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// The longest pause between two reads of an upstream's response body (nginx's
    /// `proxy_read_timeout`); then the response ends, cut short.
    pub upstream_read_timeout: Duration,
    /// Client keep-alive: a client connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// `[proxy.tls]`: HTTPS listeners and their certificates; `None` serves plain HTTP only.
    pub tls: Option<TlsConfig>,
    /// A request target longer than this gets 414.
    pub max_uri_bytes: usize,
    /// One header line longer than this gets 431.
    pub max_header_line_bytes: usize,
    /// The request head (request line and headers) larger than this in total gets 431.
    pub max_header_bytes: usize,
    /// More header lines than this gets 431.
    pub max_headers: usize,
    /// From accepting a connection (or the end of the previous request) to a complete request
    /// head; covers silent connections and a stalled h2 preface. Then 408 or close.
    pub header_read_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is appended to rather than replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// What happens to a request header whose name contains `_`.
    pub underscore_headers: UnderscoreHeaders,
    /// Client connections open at once, over all listeners; beyond it new ones wait in the
    /// kernel's accept backlog.
    pub max_connections: usize,
    /// Data-plane worker threads, each with its own listening sockets and upstream connections.
    /// `None`: one per core the process may run on.
    pub workers: Option<usize>,
}

/// `[proxy.tls]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    pub certificates: Vec<CertificateConfig>,
    /// `[proxy.tls.acme]`: certificates ordered from an ACME CA for the names no file covers.
    pub acme: Option<AcmeConfig>,
}

/// A header name containing `_` is read as `-` by CGI/WSGI-style apps, so it can smuggle a
/// header wakeway did not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// Removed before forwarding (nginx's default).
    Drop,
    /// The request gets 400.
    Reject,
}

#[derive(Clone, PartialEq)]
pub struct AdminConfig {
    /// `None` disables the admin listener.
    pub listen: Option<SocketAddr>,
    /// When set, every `/v1` call needs `Authorization: Bearer <token>` (from `token` or the
    /// first line of `token_file`).
    pub token: Option<String>,
    /// Names the admin API answers to in `Host`, besides its own address and `localhost`: a
    /// request naming any other host is refused, so DNS rebinding cannot reach it.
    pub hosts: Vec<String>,
    /// A connection must send a complete request head within this long, from its first byte
    /// and between keep-alive requests; a silent connection is closed when it passes.
    pub header_read_timeout: Duration,
}

impl AdminConfig {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
}

// By hand: the token must never reach a log line through `{:?}`.
impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("hosts", &self.hosts)
            .field("header_read_timeout", &self.header_read_timeout)
            .finish()
    }
}

/// `[docker]`: how the docker runtime reaches the engine and publishes container ports.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    /// `unix:///path` or `tcp://host:port`. `None`: `$DOCKER_HOST`, else the local socket.
    pub endpoint: Option<String>,
    /// `bridge`, `host`, or a user-defined network.
    pub network: String,
    /// Container ports are published on this host address, on a port the engine picks.
    pub publish_address: IpAddr,
    /// Stop containers when wakeway exits; otherwise leave them for the next start to adopt.
    pub stop_on_exit: bool,
    /// Only containers labelled with this scope are adopted or removed, so several wakeways
    /// can share one engine.
    pub scope: String,
}

impl DockerConfig {
    pub const DEFAULT_SCOPE: &'static str = "default";
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            endpoint: None,
            network: "bridge".into(),
            publish_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            stop_on_exit: false,
            scope: DockerConfig::DEFAULT_SCOPE.into(),
        }
    }
}

/// `[swarm]`: how the swarm runtime reaches a manager, where its tasks run and how wakeway
/// reaches each task.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmConfig {
    /// A manager's API: `unix:///path` or `tcp://host:port`. `None`: `$DOCKER_HOST`, else the
    /// local socket.
    pub endpoint: Option<String>,
    /// The attachable overlay network every task joins; created when missing. Empty: none
    /// (tasks join only their node's default bridge, which starts them faster).
    pub network: String,
    /// How wakeway reaches each task.
    pub publish: SwarmPublish,
    /// Placement constraints for every task (`node.role == worker`, `node.labels.zone == a`).
    pub constraints: Vec<String>,
    /// Remove the instances' swarm services when wakeway exits; otherwise leave them for the
    /// next start to adopt.
    pub stop_on_exit: bool,
    /// Only swarm services labelled with this scope are adopted or removed.
    pub scope: String,
}

/// How wakeway reaches a swarm task. Never the routing mesh: it would hide which task a
/// request is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwarmPublish {
    /// The task's port is published in host mode on a port its node picks; wakeway connects
    /// to that node's address (loopback for its own node).
    Host,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            endpoint: None,
            network: "wakeway".into(),
            publish: SwarmPublish::Host,
            constraints: Vec::new(),
            stop_on_exit: false,
            scope: DockerConfig::DEFAULT_SCOPE.into(),
        }
    }
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

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(120),
            upstream_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            tls: None,
            max_uri_bytes: 8 << 10,
            max_header_line_bytes: 8 << 10,
            max_header_bytes: 32 << 10,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            underscore_headers: UnderscoreHeaders::Drop,
            max_connections: 10_000,
            workers: None,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9180))),
            token: None,
            hosts: Vec::new(),
            header_read_timeout: AdminConfig::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
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
