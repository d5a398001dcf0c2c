//! Semantic checks on a built [`Config`]. Errors name the key path
//! (`service[1].scaling.max_concurrency`); `parse` adds the file and line.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::ConfigError;
use super::types::*;
use super::types_service::*;

type Result<T = ()> = std::result::Result<T, ConfigError>;

fn fail(key: impl Into<String>, message: impl Into<String>) -> Result {
    Err(ConfigError::at_key(key, message))
}

pub(crate) fn validate(config: &Config) -> Result {
    validate_proxy(config)?;
    super::validate_front::validate(config)?;
    validate_docker(&config.docker)?;
    validate_swarm(&config.swarm)?;
    super::cluster::validate(config)?;
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut hosts: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, svc) in config.services.iter().enumerate() {
        let at = |k: &str| format!("service[{i}].{k}");
        validate_name(&svc.name, &at("name"))?;
        if let Some(prev) = names.insert(&svc.name, i) {
            return fail(
                at("name"),
                format!(
                    "service name `{}` is already used by service[{prev}]; names must be unique",
                    svc.name
                ),
            );
        }
        if svc.hosts.is_empty() {
            return fail(
                at("hosts"),
                format!(
                    "service `{}` has no hosts; add e.g. hosts = [\"{}.localhost\"] (\"*\" is the catch-all)",
                    svc.name, svc.name
                ),
            );
        }
        for (j, host) in svc.hosts.iter().enumerate() {
            let key = at(&format!("hosts[{j}]"));
            validate_host(host, &key)?;
            if let Some(owner) = hosts.insert(host, &svc.name) {
                let msg = if owner == svc.name {
                    format!("host `{host}` is listed twice in service `{owner}`")
                } else {
                    format!(
                        "host `{host}` is already claimed by service `{owner}`; each host routes to one service"
                    )
                };
                return fail(key, msg);
            }
        }
        validate_source(&svc.source, i)?;
        for (k, v) in &svc.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return fail(
                    at("env"),
                    format!(
                        "invalid environment variable name {k:?}: must be non-empty without '=' or NUL"
                    ),
                );
            }
            if v.contains('\0') {
                return fail(
                    at(&format!("env.{k}")),
                    "an environment variable's value cannot contain NUL (\\0)",
                );
            }
        }
        validate_scaling(&svc.scaling, i)?;
        super::validate_service::validate(svc, i)?;
        validate_health(&svc.health, i)?;
        positive(svc.queue.timeout, &at("queue.timeout"))?;
        positive(svc.upstream_idle_timeout, &at("upstream_idle_timeout"))?;
        positive(svc.deploy.timeout, &at("deploy.timeout"))?;
        if svc.deploy.keep_revisions == 0 {
            return fail(
                at("deploy.keep_revisions"),
                "keep_revisions must be at least 1 (the live revision)",
            );
        }
    }
    Ok(())
}

fn validate_proxy(config: &Config) -> Result {
    let listen = &config.proxy.listen;
    if listen.is_empty() {
        return fail(
            "proxy.listen",
            "no listen address: set e.g. listen = \"127.0.0.1:8080\"",
        );
    }
    let mut seen = HashSet::new();
    for addr in listen {
        if addr.port() != 0 && !seen.insert(*addr) {
            return fail("proxy.listen", format!("address {addr} is listed twice"));
        }
    }
    if let Some(admin) = config.admin.listen
        && admin.port() != 0
        && listen.contains(&admin)
    {
        return fail(
            "admin.listen",
            format!(
                "admin address {admin} is also a proxy listen address; use another port or \"off\""
            ),
        );
    }
    validate_admin(&config.admin)?;
    validate_log(&config.log)?;
    let p = &config.proxy;
    positive(p.connect_timeout, "proxy.connect_timeout")?;
    positive(p.response_timeout, "proxy.response_timeout")?;
    positive(p.upstream_read_timeout, "proxy.upstream_read_timeout")?;
    positive(p.idle_timeout, "proxy.idle_timeout")?;
    if p.workers == Some(0) || p.workers.is_some_and(|w| w > 1024) {
        return fail(
            "proxy.workers",
            "must be between 1 and 1024 (leave it out for one per core)".to_string(),
        );
    }
    Ok(())
}

/// An admin API reachable from other machines without a token would let anyone on the network
/// deploy, pause and reload: refuse to start rather than serve it open.
fn validate_admin(admin: &AdminConfig) -> Result {
    if let Some(addr) = admin.listen
        && !addr.ip().is_loopback()
        && admin.token.is_none()
    {
        return fail(
            "admin.listen",
            format!(
                "the admin API would listen on {addr}, reachable from other machines, without a \
                 token; set `token` or `token_file` in [admin], or listen on 127.0.0.1"
            ),
        );
    }
    for (i, host) in admin.hosts.iter().enumerate() {
        if host.is_empty() || host.contains(['/', ':', '*', ' ']) {
            return fail(
                format!("admin.hosts[{i}]"),
                format!("{host:?} is not a host name (no port, scheme, path or wildcard)"),
            );
        }
    }
    positive(admin.header_read_timeout, "admin.header_read_timeout")
}

fn validate_log(log: &LogConfig) -> Result {
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log.level) {
        return fail(
            "log.level",
            format!(
                "{:?} is not a log filter ({e}); use a level such as \"info\" or \"warn,wakeway=debug\"",
                log.level
            ),
        );
    }
    if let AccessLogTarget::File(path) = &log.access
        && path.as_os_str().is_empty()
    {
        return fail(
            "log.access",
            "empty path; use \"stdout\", \"off\" or a file path",
        );
    }
    Ok(())
}

fn validate_name(name: &str, key: &str) -> Result {
    if name.is_empty() {
        return fail(key, "service name is empty");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return fail(
            key,
            format!(
                "invalid service name {name:?}: character {c:?} not allowed; use only lower-case letters, digits and '-'"
            ),
        );
    }
    Ok(())
}

fn validate_host(host: &str, key: &str) -> Result {
    if host.is_empty() {
        return fail(key, "empty host name");
    }
    if host == "*" {
        return Ok(());
    }
    if host.contains('*') {
        return fail(
            key,
            format!("invalid host {host:?}: only \"*\" on its own (the catch-all) is supported"),
        );
    }
    if host.chars().any(|c| c.is_ascii_uppercase()) {
        return fail(key, format!("host {host:?} must be lower-case"));
    }
    // A bracketed IPv6 literal has colons but no port.
    let ipv6_literal = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !ipv6_literal {
        return fail(
            key,
            format!(
                "invalid host {host:?}: hosts match without the port; remove the \":port\" suffix"
            ),
        );
    }
    if let Some(c) = host
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@'))
    {
        return fail(key, format!("invalid host {host:?}: contains {c:?}"));
    }
    Ok(())
}

fn validate_source(source: &Source, i: usize) -> Result {
    match source {
        Source::Command(argv) => {
            let key = format!("service[{i}].command");
            // A NUL cannot pass to exec: refused here rather than failing at every start.
            if let Some(j) = argv.iter().position(|a| a.contains('\0')) {
                return fail(
                    format!("{key}[{j}]"),
                    "a command argument cannot contain NUL (\\0)",
                );
            }
            match argv.first() {
                None => fail(key, "command is empty: give the program and its arguments"),
                Some(prog) if prog.trim().is_empty() => {
                    fail(key, "command[0] (the program) is empty")
                }
                Some(_) => Ok(()),
            }
        }
        Source::Upstreams(ups) => {
            if ups.is_empty() {
                return fail(
                    format!("service[{i}].upstreams"),
                    "upstreams is empty: give at least one \"host:port\"",
                );
            }
            for (j, up) in ups.iter().enumerate() {
                if let Err(why) = check_host_port(up) {
                    return fail(
                        format!("service[{i}].upstreams[{j}]"),
                        format!("invalid upstream {up:?}: {why}; expected \"host:port\""),
                    );
                }
            }
            Ok(())
        }
        Source::Image(img) => validate_image(img, i),
    }
}

fn validate_docker(d: &DockerConfig) -> Result {
    validate_endpoint("docker.endpoint", d.endpoint.as_deref(), "host:port")?;
    if d.network.trim().is_empty() {
        return fail(
            "docker.network",
            "network is empty: use \"bridge\", \"host\" or the name of a user-defined network",
        );
    }
    validate_scope("docker.scope", &d.scope)?;
    Ok(())
}

/// The engine's API address, when set; `example` is a TCP one for the message.
fn validate_endpoint(key: &str, endpoint: Option<&str>, example: &str) -> Result {
    let known = ["unix://", "tcp://", "http://"];
    match endpoint {
        Some(e) if !known.iter().any(|p| e.starts_with(p)) => fail(
            key,
            format!(
                "unsupported endpoint {e:?}: use \"unix:///var/run/docker.sock\" or \"tcp://{example}\" (leave it unset to use $DOCKER_HOST)"
            ),
        ),
        _ => Ok(()),
    }
}

/// The scope goes into container (or service) names and labels.
fn validate_scope(key: &str, scope: &str) -> Result {
    let ok = !scope.is_empty()
        && scope.len() <= 32
        && scope
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return fail(
            key,
            format!("invalid scope {scope:?}: use 1 to 32 lower-case letters, digits and '-'"),
        );
    }
    Ok(())
}

fn validate_swarm(s: &SwarmConfig) -> Result {
    validate_endpoint("swarm.endpoint", s.endpoint.as_deref(), "manager:2375")?;
    let net = s.network.trim();
    if net != s.network {
        return fail(
            "swarm.network",
            format!(
                "invalid network {:?}: give the name of an overlay network (or \"\" for none)",
                s.network
            ),
        );
    }
    if matches!(
        net,
        "host" | "bridge" | "none" | "ingress" | "docker_gwbridge"
    ) {
        return fail(
            "swarm.network",
            format!(
                "network {net:?} is not an attachable overlay; name one of your own (wakeway creates it when missing)"
            ),
        );
    }
    validate_scope("swarm.scope", &s.scope)?;
    for (i, c) in s.constraints.iter().enumerate() {
        let parts = c.split_once("==").or_else(|| c.split_once("!="));
        let ok = parts.is_some_and(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty());
        if !ok {
            return fail(
                format!("swarm.constraints[{i}]"),
                format!(
                    "invalid constraint {c:?}: use `attribute == value` or `attribute != value`, e.g. \"node.role == worker\""
                ),
            );
        }
    }
    Ok(())
}

fn validate_image(img: &ImageSource, i: usize) -> Result {
    let at = |k: &str| format!("service[{i}].{k}");
    let image = img.image.trim();
    if image.is_empty() || image != img.image || image.contains(char::is_whitespace) {
        return fail(
            at("image"),
            format!(
                "invalid image {:?}: give a reference such as \"web:latest\" without spaces",
                img.image
            ),
        );
    }
    if img.port == 0 {
        return fail(
            at("port"),
            "port must be the port the app listens on inside the container (1-65535)",
        );
    }
    if let Some(cpus) = img.cpus
        && !(cpus.is_finite() && cpus >= 0.01)
    {
        return fail(
            at("cpus"),
            format!("cpus must be at least 0.01 (got {cpus})"),
        );
    }
    // The engine refuses a smaller limit.
    const MIN_MEMORY: u64 = 6 << 20;
    if let Some(memory) = img.memory
        && memory < MIN_MEMORY
    {
        return fail(
            at("memory"),
            format!(
                "memory must be at least 6MiB, the engine's minimum (got {})",
                super::format_size(memory)
            ),
        );
    }
    if let Some(sig) = &img.stop_signal
        && canonical_signal(sig).is_none()
    {
        return fail(
            at("stop_signal"),
            format!("unknown signal {sig:?}: use a name such as \"SIGTERM\" or \"SIGINT\""),
        );
    }
    Ok(())
}

/// `"term"`, `"TERM"` and `"SIGTERM"` all mean `SIGTERM`.
pub(crate) fn canonical_signal(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s.as_str().to_string())
}

/// `host:port`, `1.2.3.4:80` or `[::1]:80`.
fn check_host_port(s: &str) -> std::result::Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("missing port".into());
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("bad port {port:?}"));
    }
    if host.is_empty() {
        return Err("missing host".into());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        return if ok {
            Ok(())
        } else {
            Err("bad IPv6 address".into())
        };
    }
    if host.contains(':') {
        return Err("IPv6 addresses must be in brackets, e.g. [::1]:80".into());
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@'))
    {
        return Err("bad host".into());
    }
    Ok(())
}

fn validate_scaling(s: &ScalingConfig, i: usize) -> Result {
    let at = |k: &str| format!("service[{i}].scaling.{k}");
    if s.max_instances < 1 {
        return fail(at("max_instances"), "max_instances must be at least 1");
    }
    if s.min_instances > s.max_instances {
        return fail(
            at("min_instances"),
            format!(
                "min_instances ({}) is greater than max_instances ({})",
                s.min_instances, s.max_instances
            ),
        );
    }
    if s.max_concurrency < 1 {
        return fail(at("max_concurrency"), "max_concurrency must be at least 1");
    }
    let t = s.target_concurrency;
    if !(t.is_finite() && t > 0.0) {
        return fail(
            at("target_concurrency"),
            format!("target_concurrency must be greater than 0 (got {t})"),
        );
    }
    if t > f64::from(s.max_concurrency) {
        return fail(
            at("target_concurrency"),
            format!(
                "target_concurrency ({t}) is greater than max_concurrency ({})",
                s.max_concurrency
            ),
        );
    }
    let p = s.panic_threshold;
    if !(p.is_finite() && p > 1.0) {
        return fail(
            at("panic_threshold"),
            format!("panic_threshold must be greater than 1.0 (got {p})"),
        );
    }
    positive(s.stable_window, &at("stable_window"))?;
    positive(s.panic_window, &at("panic_window"))?;
    if s.panic_window > s.stable_window {
        return fail(
            at("panic_window"),
            format!(
                "panic_window ({}) is longer than stable_window ({})",
                super::format_duration(s.panic_window),
                super::format_duration(s.stable_window)
            ),
        );
    }
    Ok(())
}

fn validate_health(h: &HealthConfig, i: usize) -> Result {
    let at = |k: &str| format!("service[{i}].health.{k}");
    if !h.path.starts_with('/') {
        return fail(
            at("path"),
            format!("health path {:?} must start with '/'", h.path),
        );
    }
    if h.healthy_threshold < 1 {
        return fail(
            at("healthy_threshold"),
            "healthy_threshold must be at least 1",
        );
    }
    if h.unhealthy_threshold < 1 {
        return fail(
            at("unhealthy_threshold"),
            "unhealthy_threshold must be at least 1",
        );
    }
    if !h.grpc_service.is_empty() && h.kind != HealthKind::Grpc {
        return fail(
            at("grpc_service"),
            "grpc_service is read only by health.kind = \"grpc\"",
        );
    }
    positive(h.interval, &at("interval"))?;
    positive(h.timeout, &at("timeout"))?;
    positive(h.startup_timeout, &at("startup_timeout"))?;
    Ok(())
}

fn positive(d: Duration, key: &str) -> Result {
    if d.is_zero() {
        let name = key.rsplit('.').next().unwrap_or(key);
        return fail(key, format!("{name} must be greater than 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
