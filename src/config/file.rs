//! The TOML front end: raw serde structs (`deny_unknown_fields`, durations as strings) turned
//! into the canonical [`Config`], plus the span <-> key-path mapping used for error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::duration::{UNITS_HELP, parse_duration};
use super::size::parse_size;
use super::types::*;

// ---------------------------------------------------------------------------------------------
// Raw structs: exactly the file's shape.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    proxy: Option<RawProxy>,
    admin: Option<RawAdmin>,
    docker: Option<RawDocker>,
    swarm: Option<RawSwarm>,
    log: Option<RawLog>,
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
    idle_timeout: Option<Dur>,
    shutdown_timeout: Option<Dur>,
    tls: Option<super::front::RawTls>,
    max_uri_bytes: Option<Size>,
    max_header_line_bytes: Option<Size>,
    max_header_bytes: Option<Size>,
    max_headers: Option<usize>,
    header_read_timeout: Option<Dur>,
    trusted_proxies: Option<Vec<super::front::Cidr>>,
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
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawHealthKind {
    Http,
    Tcp,
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
}

// ---------------------------------------------------------------------------------------------
// Value types whose parse errors carry the value's span (so they name key and line).

/// A duration string (`"30s"`).
pub(super) struct Dur(pub(super) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration string; {UNITS_HELP}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(bare_number(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(bare_number(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(bare_number(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size string (`"256MiB"`).
pub(super) struct Size(pub(super) u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a size string; {}", super::size::SIZE_UNITS_HELP)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
                parse_size(s).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
                Err(bare_size(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Err(bare_size(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Size, E> {
                Err(bare_size(n))
            }
        }
        d.deserialize_any(V)
    }
}

fn bare_size<E: de::Error>(n: impl fmt::Display) -> E {
    E::custom(format!(
        "invalid size {n}: a bare number has no unit, write a string such as \"{n}MiB\"; {}",
        super::size::SIZE_UNITS_HELP
    ))
}

/// An IP address without a port (`"127.0.0.1"`).
struct HostIp(IpAddr);

impl<'de> Deserialize<'de> for HostIp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HostIp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address string such as \"127.0.0.1\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HostIp, E> {
                s.trim().parse().map(HostIp).map_err(|_| {
                    E::custom(format!(
                        "invalid address {s:?}: expected an IP address without a port, such as \"127.0.0.1\""
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

fn bare_number<E: de::Error>(n: impl fmt::Display) -> E {
    E::custom(format!(
        "invalid duration {n}: a bare number has no unit, write a string such as \"{n}s\"; {UNITS_HELP}"
    ))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "invalid address {s:?}: expected an IP address and port such as \"127.0.0.1:8080\" or \"[::1]:8080\""
        )
    })
}

/// `listen = "addr"` or `listen = ["addr", ...]`.
pub(super) struct ListenList(pub(super) Vec<SocketAddr>);

impl<'de> Deserialize<'de> for ListenList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListenList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string such as \"127.0.0.1:8080\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ListenList, E> {
                parse_addr(s)
                    .map(|a| ListenList(vec![a]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListenList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(parse_addr(&s).map_err(de::Error::custom)?);
                }
                Ok(ListenList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `listen = "addr"` or `listen = "off"`.
struct AdminListen(Option<SocketAddr>);

impl<'de> Deserialize<'de> for AdminListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AdminListen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string such as \"127.0.0.1:9180\", or \"off\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AdminListen, E> {
                if s.trim().eq_ignore_ascii_case("off") {
                    return Ok(AdminListen(None));
                }
                parse_addr(s).map(|a| AdminListen(Some(a))).map_err(|m| {
                    E::custom(format!("{m}, or \"off\" to disable the admin listener"))
                })
            }
        }
        d.deserialize_str(V)
    }
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
        log,
        services,
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
    };
    let h = s.health;
    let hd = HealthConfig::default();
    let health = HealthConfig {
        kind: match h.kind {
            Some(RawHealthKind::Http) => HealthKind::Http,
            Some(RawHealthKind::Tcp) => HealthKind::Tcp,
            None => hd.kind,
        },
        path: h.path.unwrap_or(hd.path),
        interval: dur_or(h.interval, hd.interval),
        timeout: dur_or(h.timeout, hd.timeout),
        healthy_threshold: h.healthy_threshold.unwrap_or(hd.healthy_threshold),
        unhealthy_threshold: h.unhealthy_threshold.unwrap_or(hd.unhealthy_threshold),
        startup_timeout: dur_or(h.startup_timeout, hd.startup_timeout),
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
    };
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
    })
}

// ---------------------------------------------------------------------------------------------
// Locations: toml error -> line + key path; key path -> line.

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Inverse of [`render_path`]: `service[0].env."A.B"` -> [service, 0, env, A.B].
fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut chars = path.chars().peekable();
    let mut cur = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Quoted key, with `\"` and `\\` escapes.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        '"' => break,
                        c => cur.push(c),
                    }
                }
                segs.push(Seg::Key(std::mem::take(&mut cur)));
            }
            '.' => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
            }
            '[' => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
                let mut num = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    num.push(c);
                }
                if let Ok(i) = num.parse() {
                    segs.push(Seg::Index(i));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        segs.push(Seg::Key(cur));
    }
    segs
}

/// 1-based line of byte offset `pos` in `text`.
fn line_at(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn contains(span: &Range<usize>, pos: usize) -> bool {
    span.start <= pos && pos < span.end.max(span.start + 1)
}

/// The deepest key path whose key or value span contains `pos`.
fn path_at(root: &DeTable<'_>, pos: usize) -> Vec<Seg> {
    fn table(t: &DeTable<'_>, pos: usize, cur: &mut Vec<Seg>, best: &mut Vec<Seg>) {
        for (k, v) in t.iter() {
            cur.push(Seg::Key(k.get_ref().to_string()));
            if (contains(&k.span(), pos) || contains(&v.span(), pos)) && cur.len() > best.len() {
                *best = cur.clone();
            }
            value(v, pos, cur, best);
            cur.pop();
        }
    }
    fn value(v: &Spanned<DeValue<'_>>, pos: usize, cur: &mut Vec<Seg>, best: &mut Vec<Seg>) {
        match v.get_ref() {
            DeValue::Table(t) => table(t, pos, cur, best),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    cur.push(Seg::Index(i));
                    if contains(&item.span(), pos) && cur.len() > best.len() {
                        *best = cur.clone();
                    }
                    value(item, pos, cur, best);
                    cur.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = Vec::new();
    table(root, pos, &mut Vec::new(), &mut best);
    best
}

/// The span that best locates `segs`: the key (or array element) of the deepest segment present.
fn span_of_path(root: &DeTable<'_>, segs: &[Seg]) -> Option<Range<usize>> {
    let mut found = None;
    let mut table = Some(root);
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                let Some((key, v)) = table.and_then(|t| {
                    t.iter()
                        .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                }) else {
                    break;
                };
                found = Some(key.span());
                value = Some(v);
            }
            Seg::Index(i) => {
                let Some(item) = value
                    .and_then(|v| v.get_ref().as_array())
                    .and_then(|a| a.get(*i))
                else {
                    break;
                };
                found = Some(item.span());
                value = Some(item);
            }
        }
        table = value.and_then(|v| v.get_ref().as_table());
    }
    found
}

/// The line where `key_path` (or its deepest present ancestor) is written in `text`.
pub(crate) fn line_of_key(text: &str, key_path: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    span_of_path(root.get_ref(), &parse_path(key_path)).map(|s| line_at(text, s.start))
}

/// Turn a toml error into a [`ConfigError`] with line and key path.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let line = span.as_ref().map(|s| line_at(text, s.start));
    let mut segs = match (&span, DeTable::parse(text)) {
        (Some(s), Ok(root)) => path_at(root.get_ref(), s.start),
        _ => Vec::new(),
    };
    let original = e.message().trim();
    let mut message = original.to_string();
    if let Some(rest) = original.strip_prefix("unknown field ") {
        message = format!(
            "unknown key {}",
            rest.replacen(", expected", "; expected", 1)
        );
        if let Some(s) = did_you_mean(rest) {
            message.push_str(&format!(" (did you mean `{s}`?)"));
        }
    } else if let Some(rest) = original.strip_prefix("missing field ") {
        // The span is the enclosing table: name the missing key in the path.
        if let Some(name) = rest.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
            segs.push(Seg::Key(name.to_string()));
        }
        message = format!("missing required key {rest}");
    } else if let Some(rest) = original.strip_prefix("unknown variant ") {
        message = format!("unknown value {rest}");
    }
    for (serde_words, ours) in [
        ("expected u32", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
    ] {
        message = message.replace(serde_words, ours);
    }
    ConfigError {
        file: None,
        line,
        key: (!segs.is_empty()).then(|| render_path(&segs)),
        message,
    }
}

/// For serde's "`typo`, expected one of `a`, `b`": the closest expected key, if close enough.
fn did_you_mean(rest: &str) -> Option<String> {
    let mut names = rest.split('`').skip(1).step_by(2);
    let typo = names.next()?;
    names
        .map(|n| (edit_distance(typo, n), n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min()
        .map(|(_, n)| n.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use std::path::Path;

    fn err(text: &str) -> ConfigError {
        parse(text, Some(Path::new("config/wakeway.toml"))).unwrap_err()
    }

    const FULL: &str = r#"
[proxy]
listen = ["127.0.0.1:8080", "[::1]:8081"]
connect_timeout = "3s"
response_timeout = "90s"
idle_timeout = "45s"
shutdown_timeout = "20s"

[admin]
listen = "off"

[[service]]
name = "api"
hosts = ["API.Example.com", "*"]
command = ["./api", "--port", "{port}"]
env = { GREETING = "hi", MODE = "prod" }

[service.scaling]
min_instances = 1
max_instances = 4
target_concurrency = 7.5
max_concurrency = 12
idle_timeout = "2m"
stable_window = "30s"
panic_window = "3s"
panic_threshold = 1.5

[service.health]
kind = "tcp"
path = "/ready"
interval = "1s"
timeout = "500ms"
healthy_threshold = 2
unhealthy_threshold = 4
startup_timeout = "1.5m"

[service.queue]
max_pending = 50
timeout = "10s"

[service.deploy]
drain_timeout = "15s"
stop_grace = "5s"

[[service]]
name = "legacy"
hosts = ["legacy.local"]
upstreams = ["127.0.0.1:3000", "backend.internal:3001"]
"#;

    #[test]
    fn full_file_parses_to_expected_config() {
        let cfg = parse(FULL, Some(Path::new("full.toml"))).unwrap();
        let secs = Duration::from_secs;
        let expected = Config {
            path: Some("full.toml".into()),
            state_file: Some("full.state.json".into()),
            proxy: ProxyConfig {
                listen: vec![
                    "127.0.0.1:8080".parse().unwrap(),
                    "[::1]:8081".parse().unwrap(),
                ],
                connect_timeout: secs(3),
                response_timeout: secs(90),
                idle_timeout: secs(45),
                shutdown_timeout: secs(20),
                ..ProxyConfig::default()
            },
            admin: AdminConfig {
                listen: None,
                ..AdminConfig::default()
            },
            docker: DockerConfig::default(),
            swarm: SwarmConfig::default(),
            log: LogConfig::default(),
            services: vec![
                ServiceConfig {
                    name: "api".into(),
                    hosts: vec!["api.example.com".into(), "*".into()],
                    source: Source::Command(vec!["./api".into(), "--port".into(), "{port}".into()]),
                    env: [("GREETING", "hi"), ("MODE", "prod")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    scaling: ScalingConfig {
                        min_instances: 1,
                        max_instances: 4,
                        target_concurrency: 7.5,
                        max_concurrency: 12,
                        idle_timeout: secs(120),
                        stable_window: secs(30),
                        panic_window: secs(3),
                        panic_threshold: 1.5,
                    },
                    health: HealthConfig {
                        kind: HealthKind::Tcp,
                        path: "/ready".into(),
                        interval: secs(1),
                        timeout: Duration::from_millis(500),
                        healthy_threshold: 2,
                        unhealthy_threshold: 4,
                        startup_timeout: secs(90),
                    },
                    queue: QueueConfig {
                        max_pending: 50,
                        timeout: secs(10),
                    },
                    deploy: DeployConfig {
                        drain_timeout: secs(15),
                        stop_grace: secs(5),
                        timeout: secs(300),
                        auto: false,
                    },
                    max_body_bytes: None,
                    redirect_https: false,
                },
                ServiceConfig {
                    name: "legacy".into(),
                    hosts: vec!["legacy.local".into()],
                    source: Source::Upstreams(vec![
                        "127.0.0.1:3000".into(),
                        "backend.internal:3001".into(),
                    ]),
                    env: BTreeMap::new(),
                    scaling: ScalingConfig::default(),
                    health: HealthConfig::default(),
                    queue: QueueConfig::default(),
                    deploy: DeployConfig::default(),
                    max_body_bytes: None,
                    redirect_https: false,
                },
            ],
        };
        assert_eq!(cfg, expected);
    }

    #[test]
    fn defaults_fill_in() {
        let cfg = parse(
            "[[service]]\nname = \"a\"\nhosts = [\"a.localhost\"]\ncommand = [\"a\"]\n",
            None,
        )
        .unwrap();
        assert_eq!(cfg.path, None);
        assert_eq!(cfg.proxy, ProxyConfig::default());
        assert_eq!(cfg.admin, AdminConfig::default());
        let s = &cfg.services[0];
        assert_eq!(s.scaling, ScalingConfig::default());
        assert_eq!(s.health, HealthConfig::default());
        assert_eq!(s.queue, QueueConfig::default());
        assert_eq!(s.deploy, DeployConfig::default());
        assert!(s.env.is_empty());

        let empty = parse("", None).unwrap();
        assert!(empty.services.is_empty());
        assert_eq!(empty.proxy, ProxyConfig::default());

        // Integer target_concurrency, single listen string.
        let cfg = parse(
            "[proxy]\nlisten = \"0.0.0.0:80\"\n[[service]]\nname = \"a\"\nhosts = [\"*\"]\nupstreams = [\"[::1]:80\"]\n[service.scaling]\ntarget_concurrency = 3\n",
            None,
        )
        .unwrap();
        assert_eq!(cfg.proxy.listen, vec!["0.0.0.0:80".parse().unwrap()]);
        assert_eq!(cfg.services[0].scaling.target_concurrency, 3.0);
    }

    #[test]
    fn misspelt_key_names_file_line_and_key() {
        let text = "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\n\n[service.scaling]\nmin_instances = 0\ntargte_concurrency = 3\n";
        let e = err(text);
        let shown = e.to_string();
        assert_eq!(e.line, Some(8));
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].scaling.targte_concurrency")
        );
        assert!(shown.starts_with("config/wakeway.toml:8: "), "{shown}");
        assert!(shown.contains("targte_concurrency"), "{shown}");
        assert!(shown.contains("unknown key"), "{shown}");
        assert!(
            shown.contains("did you mean `target_concurrency`?"),
            "{shown}"
        );

        // In the second service, and at top level.
        let text2 =
            format!("{text}\n[[service]]\nname = \"b\"\nhosts = [\"b\"]\ncomand = [\"b\"]\n")
                .replace("targte_", "target_");
        let e = err(&text2);
        assert_eq!(e.line, Some(13), "{e}");
        assert_eq!(e.key.as_deref(), Some("service[1].comand"), "{e}");
        let e = err("[proxy]\nlisten = \"127.0.0.1:1\"\n\n[servce]\nname = \"x\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("servce")), "{e}");
    }

    #[test]
    fn type_and_value_errors_name_key() {
        let e = err(
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\n[service.scaling]\nmin_instances = -1\n",
        );
        assert_eq!(e.line, Some(6), "{e}");
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].scaling.min_instances"),
            "{e}"
        );

        let e = err("[proxy]\n\nconnect_timeout = \"5 minutes\"\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("proxy.connect_timeout"), "{e}");
        let shown = e.to_string();
        assert!(
            shown.contains("\"5 minutes\"") && shown.contains("ms, s, m, h"),
            "{shown}"
        );

        let e = err("[proxy]\nidle_timeout = 30\n");
        assert_eq!(e.key.as_deref(), Some("proxy.idle_timeout"), "{e}");
        assert!(e.message.contains("\"30s\""), "{e}");

        let e = err("[proxy]\nlisten = [\"127.0.0.1:1\", \"localhost:80\"]\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("proxy.listen")),
            "{e}"
        );
        assert!(e.message.contains("localhost:80"), "{e}");

        let e = err("[admin]\nlisten = \"nope\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("admin.listen")),
            "{e}"
        );

        let e = err(
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\n[service.health]\nkind = \"grpc\"\n",
        );
        assert_eq!(e.key.as_deref(), Some("service[0].health.kind"), "{e}");
        assert!(e.message.contains("`http`"), "{e}");

        let e = err(
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nenv = { PORT = 80 }\n",
        );
        assert_eq!(e.key.as_deref(), Some("service[0].env.PORT"), "{e}");

        let e = err("[[service]]\nhosts = [\"a\"]\ncommand = [\"a\"]\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(1), Some("service[0].name")),
            "{e}"
        );

        // Syntax error: line, no key.
        let e = err("[proxy]\nlisten = \n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().starts_with("config/wakeway.toml:2: "), "{e}");
    }

    #[test]
    fn source_errors() {
        let e = err(
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\n\nimage = \"nginx\"\n",
        );
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(6), Some("service[0].image")),
            "{e}"
        );
        assert!(e.message.contains("exactly one"), "{e}");

        let e = err(
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nupstreams = [\"1.2.3.4:5\"]\n",
        );
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(5), Some("service[0].upstreams")),
            "{e}"
        );
        assert!(e.message.contains("exactly one"), "{e}");

        let e = err("[[service]]\nname = \"a\"\nhosts = [\"a\"]\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(1), Some("service[0]")),
            "{e}"
        );

        let e = err("[docker]\nsocket = \"/var/run/docker.sock\"\n");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("docker.socket")),
            "{e}"
        );
    }

    const DOCKER: &str = r#"
[docker]
endpoint = "unix:///run/docker.sock"
network = "host"
publish_address = "0.0.0.0"
stop_on_exit = true
scope = "staging"

[[service]]
name = "web"
hosts = ["web.localhost"]
image = "web:latest"
port = 3000
env = { MODE = "prod" }
cpus = 0.5
memory = "256MiB"
stop_signal = "SIGINT"
stop_grace = "4s"
"#;

    #[test]
    fn docker_service_parses() {
        let cfg = parse(DOCKER, None).unwrap();
        assert_eq!(
            cfg.docker,
            DockerConfig {
                endpoint: Some("unix:///run/docker.sock".into()),
                network: "host".into(),
                publish_address: "0.0.0.0".parse().unwrap(),
                stop_on_exit: true,
                scope: "staging".into(),
            }
        );
        let web = &cfg.services[0];
        assert_eq!(
            web.source,
            Source::Image(ImageSource {
                image: "web:latest".into(),
                port: 3000,
                cpus: Some(0.5),
                memory: Some(256 << 20),
                stop_signal: Some("SIGINT".into()),
                runtime: ImageRuntime::Docker,
            })
        );
        assert_eq!(web.deploy.stop_grace, Duration::from_secs(4));
        assert_eq!(web.env["MODE"], "prod");

        let minimal = parse(
            "[[service]]\nname = \"w\"\nhosts = [\"w\"]\nimage = \"w\"\n",
            None,
        )
        .unwrap();
        assert_eq!(minimal.docker, DockerConfig::default());
        let Source::Image(img) = &minimal.services[0].source else {
            panic!("not an image source");
        };
        assert_eq!((img.port, img.cpus, img.memory), (8080, None, None));
    }

    #[test]
    fn docker_errors_name_line_and_key() {
        let cases = [
            (
                "memory = \"256MiB\"",
                "memory = 256",
                "service[0].memory",
                "\"256MiB\"",
            ),
            (
                "memory = \"256MiB\"",
                "memory = \"1MiB\"",
                "service[0].memory",
                "6MiB",
            ),
            (
                "memory = \"256MiB\"",
                "memory = \"lots\"",
                "service[0].memory",
                "MiB",
            ),
            ("cpus = 0.5", "cpus = 0", "service[0].cpus", "0.01"),
            ("port = 3000", "port = 70000", "service[0].port", ""),
            ("port = 3000", "port = 0", "service[0].port", "1-65535"),
            (
                "stop_signal = \"SIGINT\"",
                "stop_signal = \"SIGNOPE\"",
                "service[0].stop_signal",
                "SIGNOPE",
            ),
            (
                "image = \"web:latest\"",
                "image = \"\"",
                "service[0].image",
                "web:latest",
            ),
            (
                "endpoint = \"unix:///run/docker.sock\"",
                "endpoint = \"ssh://h\"",
                "docker.endpoint",
                "tcp://",
            ),
            (
                "publish_address = \"0.0.0.0\"",
                "publish_address = \"0.0.0.0:80\"",
                "docker.publish_address",
                "without a port",
            ),
            (
                "scope = \"staging\"",
                "scope = \"Staging\"",
                "docker.scope",
                "lower-case",
            ),
            (
                "network = \"host\"",
                "network = \"\"",
                "docker.network",
                "bridge",
            ),
            (
                "stop_grace = \"4s\"",
                "stop_grace = \"4s\"\n[service.deploy]\nstop_grace = \"1s\"",
                "service[0].stop_grace",
                "keep one",
            ),
        ];
        for (from, to, key, says) in cases {
            let text = DOCKER.replace(from, to);
            let e = err(&text);
            let line = text
                .lines()
                .position(|l| l.starts_with(to.lines().next().unwrap()))
                .unwrap()
                + 1;
            assert_eq!(
                (e.key.as_deref(), e.line),
                (Some(key), Some(line)),
                "{to}: {e}"
            );
            assert!(e.message.contains(says), "{to}: {e}");
        }

        for k in [
            "port = 80",
            "cpus = 1",
            "memory = \"64MiB\"",
            "stop_signal = \"TERM\"",
            "stop_grace = \"1s\"",
        ] {
            let e = err(&format!(
                "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\n{k}\n"
            ));
            let name = k.split(' ').next().unwrap();
            assert_eq!(
                e.key.as_deref(),
                Some(format!("service[0].{name}").as_str()),
                "{e}"
            );
            assert_eq!(e.line, Some(5), "{e}");
            assert!(
                e.message.contains("only to services with an `image`"),
                "{e}"
            );
        }
    }

    #[test]
    fn validation_error_has_line_and_key_path() {
        let text = "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\n\n[[service]]\nname = \"b\"\nhosts = [\"b\"]\ncommand = [\"b\"]\n\n[service.scaling]\nmax_instances = 2\nmin_instances = 3\n";
        let e = err(text);
        assert_eq!(e.line, Some(13), "{e}");
        assert_eq!(e.key.as_deref(), Some("service[1].scaling.min_instances"));
        assert!(
            e.to_string()
                .starts_with("config/wakeway.toml:13: key `service[1].scaling.min_instances`: "),
            "{e}"
        );
    }

    #[test]
    fn duplicate_host_across_services() {
        let text = "[[service]]\nname = \"a\"\nhosts = [\"x.localhost\"]\ncommand = [\"a\"]\n\n[[service]]\nname = \"b\"\nhosts = [\"y.localhost\",\n  \"X.localhost\"]\ncommand = [\"b\"]\n";
        let e = err(text);
        assert_eq!(e.key.as_deref(), Some("service[1].hosts[1]"), "{e}");
        assert_eq!(e.line, Some(9), "{e}");
        assert!(
            e.message.contains("x.localhost") && e.message.contains("`a`"),
            "{e}"
        );

        let e = err(
            "[[service]]\nname = \"a\"\nhosts = [\"*\"]\ncommand = [\"a\"]\n[[service]]\nname = \"b\"\nhosts = [\"*\"]\ncommand = [\"b\"]\n",
        );
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(7), Some("service[1].hosts[0]")),
            "{e}"
        );
    }

    #[test]
    fn key_paths_round_trip() {
        let segs = vec![
            Seg::Key("service".into()),
            Seg::Index(3),
            Seg::Key("env".into()),
            Seg::Key("A.B \"q\"".into()),
        ];
        assert_eq!(parse_path(&render_path(&segs)), segs);
        assert_eq!(render_path(&segs[..3]), "service[3].env");
        let text = "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nenv = { \"A.B\" = \"1\" }\n";
        assert_eq!(line_of_key(text, "service[0].env.\"A.B\""), Some(5));
        assert_eq!(
            line_of_key(text, "service[0].scaling.max_instances"),
            Some(1)
        );
        assert_eq!(line_of_key(text, "proxy.listen"), None);
    }

    #[test]
    fn log_section_parses_and_bad_values_name_their_key() {
        let cfg = parse(
            "[log]\nformat = \"json\"\nlevel = \"warn,wakeway=debug\"\naccess = \"/var/log/wakeway/access.log\"\naccess_format = \"combined\"\naccess_query = true\nstart_trace = false\nserver_timing = \"always\"\n",
            None,
        )
        .unwrap();
        assert_eq!(
            cfg.log,
            LogConfig {
                format: LogFormat::Json,
                level: "warn,wakeway=debug".into(),
                access: AccessLogTarget::File("/var/log/wakeway/access.log".into()),
                access_format: AccessLogFormat::Combined,
                access_query: true,
                start_trace: false,
                server_timing: ServerTimingMode::Always,
            }
        );
        let stdout = parse("[log]\naccess = \"stdout\"\n", None).unwrap();
        assert_eq!(stdout.log.access, AccessLogTarget::Stdout);
        assert_eq!(parse("", None).unwrap().log, LogConfig::default());
        let e = err("[log]\n\nformat = \"xml\"\n");
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("log.format")));
        let e = err("[log]\nlevel = \"info,[oops\"\n");
        assert_eq!(e.key.as_deref(), Some("log.level"));
        let e = err("[log]\nacess = \"stdout\"\n");
        assert_eq!(e.key.as_deref(), Some("log.acess"));
    }
}
