//! The canonical configuration: what the rest of wakeway reads. The TOML front end (`file.rs`)
//! produces it; `validate.rs` checks it. Nothing else parses config.

use super::types_service::ServiceConfig;
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

impl Config {
    /// A config built in code: `services`, every section at its default, no file, nothing
    /// persists.
    pub fn new(services: Vec<ServiceConfig>) -> Config {
        Config {
            path: None,
            state_file: None,
            proxy: ProxyConfig::default(),
            admin: AdminConfig::default(),
            docker: DockerConfig::default(),
            swarm: SwarmConfig::default(),
            cluster: None,
            log: LogConfig::default(),
            services,
            scaling: GlobalScaling::default(),
        }
    }
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
