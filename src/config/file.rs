//! The TOML front end: raw serde structs (`deny_unknown_fields`, durations as strings) turned
//! into the canonical [`Config`], plus the span <-> key-path mapping used for error messages.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::diagnostics::toml_error;
use super::types::*;
use super::types_service::*;
use super::values::{AdminListen, Cidr, Dur, HostIp, ListenList, Size};

// ---------------------------------------------------------------------------------------------
// Raw structs: exactly the file's shape.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    proxy: Option<RawProxy>,
    admin: Option<RawAdmin>,
    docker: Option<RawDocker>,
    swarm: Option<RawSwarm>,
    cluster: Option<super::cluster::RawCluster>,
    log: Option<RawLog>,
    scaling: Option<super::file_service::RawGlobalScaling>,
    state_file: Option<String>,
    #[serde(default)]
    service: Vec<RawService>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<RawLogFormat>,
    level: Option<String>,
    access: Option<String>,
    access_format: Option<RawAccessFormat>,
    access_query: Option<bool>,
    start_trace: Option<bool>,
    server_timing: Option<RawServerTiming>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawLogFormat {
    Text,
    Json,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawAccessFormat {
    Json,
    Combined,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawServerTiming {
    Off,
    ColdStart,
    Always,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Option<ListenList>,
    connect_timeout: Option<Dur>,
    response_timeout: Option<Dur>,
    upstream_read_timeout: Option<Dur>,
    idle_timeout: Option<Dur>,
    shutdown_timeout: Option<Dur>,
    tls: Option<super::front::RawTls>,
    max_uri_bytes: Option<Size>,
    max_header_line_bytes: Option<Size>,
    max_header_bytes: Option<Size>,
    max_headers: Option<usize>,
    header_read_timeout: Option<Dur>,
    trusted_proxies: Option<Vec<Cidr>>,
    underscore_headers: Option<super::front::RawUnderscoreHeaders>,
    max_connections: Option<usize>,
    workers: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<AdminListen>,
    token: Option<String>,
    token_file: Option<std::path::PathBuf>,
    hosts: Option<Vec<String>>,
    header_read_timeout: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    endpoint: Option<String>,
    network: Option<String>,
    publish_address: Option<HostIp>,
    stop_on_exit: Option<bool>,
    scope: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSwarm {
    endpoint: Option<String>,
    network: Option<String>,
    publish: Option<String>,
    constraints: Option<Vec<String>>,
    stop_on_exit: Option<bool>,
    scope: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawImageRuntime {
    Docker,
    Swarm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    #[serde(default)]
    hosts: Vec<String>,
    command: Option<Vec<String>>,
    upstreams: Option<Vec<String>>,
    image: Option<String>,
    /// The docker-only keys: checked against the source in `convert_service`.
    port: Option<u16>,
    cpus: Option<f64>,
    memory: Option<Size>,
    stop_signal: Option<String>,
    stop_grace: Option<Dur>,
    runtime: Option<RawImageRuntime>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    scaling: RawScaling,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    deploy: RawDeploy,
    max_body_bytes: Option<Size>,
    redirect_https: Option<bool>,
    upstream_idle_timeout: Option<Dur>,
    retry_idempotent: Option<bool>,
    #[serde(default)]
    traffic: Vec<super::file_service::RawTraffic>,
    socket_activation: Option<bool>,
    protocol: Option<RawProtocol>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawProtocol {
    Http1,
    H2c,
    Auto,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScaling {
    min_instances: Option<u32>,
    max_instances: Option<u32>,
    /// Integer or float: serde's f64 accepts both.
    target_concurrency: Option<f64>,
    max_concurrency: Option<u32>,
    idle_timeout: Option<Dur>,
    stable_window: Option<Dur>,
    panic_window: Option<Dur>,
    panic_threshold: Option<f64>,
    idle_ignore: Option<super::file_service::RawIdleIgnore>,
    idle_action: Option<super::file_service::RawIdleAction>,
    frozen_timeout: Option<Dur>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawHealthKind {
    Http,
    Tcp,
    Grpc,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    kind: Option<RawHealthKind>,
    path: Option<String>,
    interval: Option<Dur>,
    timeout: Option<Dur>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
    startup_timeout: Option<Dur>,
    grpc_service: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    max_pending: Option<usize>,
    timeout: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    drain_timeout: Option<Dur>,
    stop_grace: Option<Dur>,
    timeout: Option<Dur>,
    auto: Option<bool>,
    keep_revisions: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// Raw -> canonical.

/// Parse `text` into a [`Config`] (not yet validated). Errors carry the key path and, for
/// syntax/type errors, the line; `parse` fills in the file and any missing line.
pub(crate) fn from_text(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    convert(raw)
}

fn convert(raw: RawConfig) -> Result<Config, ConfigError> {
    let rd = raw.docker.unwrap_or_default();
    let dd = DockerConfig::default();
    let docker = DockerConfig {
        endpoint: rd.endpoint,
        network: rd.network.unwrap_or(dd.network),
        publish_address: rd.publish_address.map_or(dd.publish_address, |a| a.0),
        stop_on_exit: rd.stop_on_exit.unwrap_or(dd.stop_on_exit),
        scope: rd.scope.unwrap_or(dd.scope),
    };
    let rs = raw.swarm.unwrap_or_default();
    let sd = SwarmConfig::default();
    let swarm = SwarmConfig {
        endpoint: rs.endpoint,
        network: rs.network.unwrap_or(sd.network),
        publish: match rs.publish.as_deref() {
            Some("host") | None => SwarmPublish::Host,
            Some("ingress") => {
                return Err(ConfigError::at_key(
                    "swarm.publish",
                    "publish = \"ingress\" is the routing mesh: it hides which task a request reaches, so wakeway could not count in-flight requests per task; use \"host\"",
                ));
            }
            Some(other) => {
                return Err(ConfigError::at_key(
                    "swarm.publish",
                    format!("unknown publish mode {other:?}: use \"host\""),
                ));
            }
        },
        constraints: rs.constraints.unwrap_or(sd.constraints),
        stop_on_exit: rs.stop_on_exit.unwrap_or(sd.stop_on_exit),
        scope: rs.scope.unwrap_or(sd.scope),
    };
    let p = raw.proxy.unwrap_or_default();
    let pd = ProxyConfig::default();
    let proxy = ProxyConfig {
        listen: p.listen.map_or(pd.listen, |l| l.0),
        connect_timeout: dur_or(p.connect_timeout, pd.connect_timeout),
        response_timeout: dur_or(p.response_timeout, pd.response_timeout),
        upstream_read_timeout: dur_or(p.upstream_read_timeout, pd.upstream_read_timeout),
        idle_timeout: dur_or(p.idle_timeout, pd.idle_timeout),
        shutdown_timeout: dur_or(p.shutdown_timeout, pd.shutdown_timeout),
        tls: p.tls.map(super::front::convert_tls),
        max_uri_bytes: size_or(p.max_uri_bytes, pd.max_uri_bytes),
        max_header_line_bytes: size_or(p.max_header_line_bytes, pd.max_header_line_bytes),
        max_header_bytes: size_or(p.max_header_bytes, pd.max_header_bytes),
        max_headers: p.max_headers.unwrap_or(pd.max_headers),
        header_read_timeout: dur_or(p.header_read_timeout, pd.header_read_timeout),
        trusted_proxies: p
            .trusted_proxies
            .map_or(pd.trusted_proxies, |l| l.into_iter().map(|c| c.0).collect()),
        underscore_headers: p.underscore_headers.map_or(
            pd.underscore_headers,
            super::front::RawUnderscoreHeaders::into,
        ),
        max_connections: p.max_connections.unwrap_or(pd.max_connections),
        workers: p.workers,
    };
    let admin = match raw.admin {
        Some(a) => AdminConfig {
            listen: a.listen.map_or(AdminConfig::default().listen, |l| l.0),
            token: admin_token(a.token, a.token_file)?,
            hosts: a
                .hosts
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            header_read_timeout: dur_or(
                a.header_read_timeout,
                AdminConfig::DEFAULT_HEADER_READ_TIMEOUT,
            ),
        },
        None => AdminConfig::default(),
    };
    let log = convert_log(raw.log.unwrap_or_default());
    let services = raw
        .service
        .into_iter()
        .enumerate()
        .map(|(i, s)| convert_service(i, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config {
        path: None,
        state_file: raw.state_file.map(std::path::PathBuf::from),
        proxy,
        admin,
        docker,
        swarm,
        cluster: raw.cluster.map(super::cluster::convert).transpose()?,
        log,
        services,
        scaling: super::file_service::convert_global_scaling(raw.scaling),
    })
}

fn convert_log(raw: RawLog) -> LogConfig {
    let d = LogConfig::default();
    LogConfig {
        format: match raw.format {
            Some(RawLogFormat::Json) => LogFormat::Json,
            Some(RawLogFormat::Text) => LogFormat::Text,
            None => d.format,
        },
        level: raw.level.unwrap_or(d.level),
        access: match raw.access.as_deref() {
            None => d.access,
            Some("off") => AccessLogTarget::Off,
            Some("stdout") => AccessLogTarget::Stdout,
            Some(path) => AccessLogTarget::File(path.into()),
        },
        access_format: match raw.access_format {
            Some(RawAccessFormat::Json) => AccessLogFormat::Json,
            Some(RawAccessFormat::Combined) => AccessLogFormat::Combined,
            None => d.access_format,
        },
        access_query: raw.access_query.unwrap_or(d.access_query),
        start_trace: raw.start_trace.unwrap_or(d.start_trace),
        server_timing: match raw.server_timing {
            Some(RawServerTiming::Off) => ServerTimingMode::Off,
            Some(RawServerTiming::ColdStart) => ServerTimingMode::ColdStart,
            Some(RawServerTiming::Always) => ServerTimingMode::Always,
            None => d.server_timing,
        },
    }
}

/// The admin token, from `token` or the first line of `token_file` (read now: a reload re-reads
/// it, and a missing file is a config error, not an open admin API).
fn admin_token(
    token: Option<String>,
    file: Option<std::path::PathBuf>,
) -> Result<Option<String>, ConfigError> {
    let token = match (token, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::at_key(
                "admin.token_file",
                "set `token` or `token_file`, not both",
            ));
        }
        (Some(t), None) => t,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .map_err(|e| {
                ConfigError::at_key(
                    "admin.token_file",
                    format!("cannot read {}: {e}", f.display()),
                )
            })?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if token.is_empty() {
        return Err(ConfigError::at_key("admin.token", "the token is empty"));
    }
    Ok(Some(token))
}

fn dur_or(d: Option<Dur>, default: Duration) -> Duration {
    d.map_or(default, |d| d.0)
}

fn size_or(s: Option<Size>, default: usize) -> usize {
    s.map_or(default, |s| usize::try_from(s.0).unwrap_or(usize::MAX))
}

fn convert_service(i: usize, s: RawService) -> Result<ServiceConfig, ConfigError> {
    let key = |k: &str| format!("service[{i}].{k}");
    let mut given: Vec<&str> = Vec::new();
    if s.command.is_some() {
        given.push("command");
    }
    if s.upstreams.is_some() {
        given.push("upstreams");
    }
    if s.image.is_some() {
        given.push("image");
    }
    let is_image = given.as_slice() == ["image"];
    if !is_image {
        let docker_only = [
            ("port", s.port.is_some()),
            ("cpus", s.cpus.is_some()),
            ("memory", s.memory.is_some()),
            ("stop_signal", s.stop_signal.is_some()),
            ("stop_grace", s.stop_grace.is_some()),
            ("runtime", s.runtime.is_some()),
        ];
        if let Some((k, _)) = docker_only.iter().find(|(_, set)| *set) {
            let hint = if *k == "stop_grace" {
                "; for other runtimes set `stop_grace` in [service.deploy]"
            } else {
                ""
            };
            return Err(ConfigError::at_key(
                key(k),
                format!(
                    "`{k}` applies only to services with an `image` (docker and swarm runtimes){hint}"
                ),
            ));
        }
    }
    if s.stop_grace.is_some() && s.deploy.stop_grace.is_some() {
        return Err(ConfigError::at_key(
            key("stop_grace"),
            "stop_grace is set both here and in [service.deploy]; keep one",
        ));
    }
    let source = match (s.command, s.upstreams, s.image, given.as_slice()) {
        (Some(cmd), None, None, ["command"]) => Source::Command(cmd),
        (None, Some(ups), None, ["upstreams"]) => Source::Upstreams(ups),
        (None, None, Some(image), ["image"]) => Source::Image(ImageSource {
            image,
            port: s.port.unwrap_or(ImageSource::DEFAULT_PORT),
            cpus: s.cpus,
            memory: s.memory.map(|m| m.0),
            stop_signal: s.stop_signal,
            runtime: match s.runtime {
                Some(RawImageRuntime::Swarm) => ImageRuntime::Swarm,
                Some(RawImageRuntime::Docker) | None => ImageRuntime::Docker,
            },
        }),
        (_, _, _, []) => {
            return Err(ConfigError::at_key(
                format!("service[{i}]"),
                format!(
                    "service `{}` has no source: set exactly one of `command` (process runtime), `upstreams` (static runtime) or `image` (docker runtime)",
                    s.name
                ),
            ));
        }
        (_, _, _, several) => {
            return Err(ConfigError::at_key(
                key(several[1]),
                format!(
                    "service `{}` sets {}: set exactly one of `command`, `upstreams` or `image`",
                    s.name,
                    several
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            ));
        }
    };

    let sc = s.scaling;
    let sd = ScalingConfig::default();
    let scaling = ScalingConfig {
        min_instances: sc.min_instances.unwrap_or(sd.min_instances),
        max_instances: sc.max_instances.unwrap_or(sd.max_instances),
        target_concurrency: sc.target_concurrency.unwrap_or(sd.target_concurrency),
        max_concurrency: sc.max_concurrency.unwrap_or(sd.max_concurrency),
        idle_timeout: dur_or(sc.idle_timeout, sd.idle_timeout),
        stable_window: dur_or(sc.stable_window, sd.stable_window),
        panic_window: dur_or(sc.panic_window, sd.panic_window),
        panic_threshold: sc.panic_threshold.unwrap_or(sd.panic_threshold),
        idle_ignore: sc
            .idle_ignore
            .map_or(sd.idle_ignore, super::file_service::convert_idle_ignore),
        idle_action: sc.idle_action.map_or(sd.idle_action, Into::into),
        frozen_timeout: dur_or(sc.frozen_timeout, sd.frozen_timeout),
    };
    let h = s.health;
    let hd = HealthConfig::default();
    let health = HealthConfig {
        kind: match h.kind {
            Some(RawHealthKind::Http) => HealthKind::Http,
            Some(RawHealthKind::Tcp) => HealthKind::Tcp,
            Some(RawHealthKind::Grpc) => HealthKind::Grpc,
            None => hd.kind,
        },
        path: h.path.unwrap_or(hd.path),
        interval: dur_or(h.interval, hd.interval),
        timeout: dur_or(h.timeout, hd.timeout),
        healthy_threshold: h.healthy_threshold.unwrap_or(hd.healthy_threshold),
        unhealthy_threshold: h.unhealthy_threshold.unwrap_or(hd.unhealthy_threshold),
        startup_timeout: dur_or(h.startup_timeout, hd.startup_timeout),
        grpc_service: h.grpc_service.unwrap_or(hd.grpc_service),
    };
    let qd = QueueConfig::default();
    let queue = QueueConfig {
        max_pending: s.queue.max_pending.unwrap_or(qd.max_pending),
        timeout: dur_or(s.queue.timeout, qd.timeout),
    };
    let dd = DeployConfig::default();
    let deploy = DeployConfig {
        drain_timeout: dur_or(s.deploy.drain_timeout, dd.drain_timeout),
        // An image service may say it next to `image`, as `docker run --stop-timeout` does.
        stop_grace: dur_or(s.stop_grace.or(s.deploy.stop_grace), dd.stop_grace),
        timeout: dur_or(s.deploy.timeout, dd.timeout),
        auto: s.deploy.auto.unwrap_or(dd.auto),
        keep_revisions: s.deploy.keep_revisions.unwrap_or(dd.keep_revisions),
    };
    let traffic = super::file_service::convert_traffic(i, &s.name, s.traffic)?;
    Ok(ServiceConfig {
        name: s.name,
        hosts: s
            .hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        source,
        env: s.env,
        scaling,
        health,
        queue,
        deploy,
        max_body_bytes: s.max_body_bytes.map(|s| s.0),
        redirect_https: s.redirect_https.unwrap_or(false),
        traffic,
        socket_activation: s.socket_activation.unwrap_or(false),
        upstream_idle_timeout: dur_or(
            s.upstream_idle_timeout,
            ServiceConfig::DEFAULT_UPSTREAM_IDLE_TIMEOUT,
        ),
        retry_idempotent: s.retry_idempotent.unwrap_or(false),
        protocol: match s.protocol {
            Some(RawProtocol::Http1) | None => Protocol::Http1,
            Some(RawProtocol::H2c) => Protocol::H2c,
            Some(RawProtocol::Auto) => Protocol::Auto,
        },
    })
}

#[cfg(test)]
mod tests;
