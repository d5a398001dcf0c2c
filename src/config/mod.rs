//! Configuration: the TOML front end (`file.rs`), semantic checks (`validate.rs`), duration
//! strings (`duration.rs`) and the canonical structs everything else reads (`types.rs`).
//!
//! Every error names the file and line (when known), the key path (`service[1].scaling.max_instances`)
//! and what is wrong.

mod cidr;
mod cluster;
mod diagnostics;
mod duration;
mod file;
mod file_service;
mod front;
mod idle_ignore;
mod size;
mod types;
mod types_service;
mod validate;
mod validate_acme;
mod validate_front;
mod validate_service;
mod values;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testing;

pub use cluster::ClusterConfig;
pub use duration::{format_duration, parse_duration};
pub use size::{format_size, parse_size};
#[cfg(test)]
pub(crate) use testing::{assert_refused, uncomment};
pub use types::*;
pub use types_service::*;
pub(crate) use validate::canonical_signal;
pub use validate_service::{check_tag, check_traffic};

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration error: where (file, line, key path) and what is wrong.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file, when the config came from one.
    pub file: Option<PathBuf>,
    /// 1-based line in `file`, when known.
    pub line: Option<usize>,
    /// Key path such as `service[0].scaling.max_instances`, when the error is about one key.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` (a key path such as `service[0].hosts`), with no location yet.
    pub fn at_key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Read, parse and validate a file. The error says file, line and key.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        key: None,
        message: format!("cannot read config file: {e}"),
    })?;
    parse(&text, Some(path))
}

/// Parse + validate text; `path` only for messages (and stored in Config.path).
pub fn parse(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
    let located = |mut err: ConfigError| {
        err.file = path.map(Path::to_path_buf);
        if err.line.is_none()
            && let Some(key) = &err.key
        {
            err.line = diagnostics::line_of_key(text, key);
        }
        err
    };
    let mut config = file::from_text(text).map_err(located)?;
    config.path = path.map(Path::to_path_buf);
    if let Some(dir) = path.and_then(Path::parent) {
        resolve_tls_paths(&mut config, dir);
    }
    config.state_file = path.map(|p| state_file_of(p, config.state_file.take()));
    if let (Some(acme), Some(state)) = (
        config.proxy.tls.as_mut().and_then(|t| t.acme.as_mut()),
        &config.state_file,
    ) {
        acme.storage = Some(state.parent().unwrap_or(Path::new("")).join("acme"));
    }
    validate::validate(&config).map_err(located)?;
    check_tls_files(&config).map_err(located)?;
    Ok(config)
}

/// The state file sits beside the config (`wakeway.toml` -> `wakeway.state.json`) unless
/// `state_file` names another; a relative one is read against the config's directory.
fn state_file_of(config: &Path, written: Option<PathBuf>) -> PathBuf {
    let dir = config.parent().unwrap_or(Path::new(""));
    match written {
        Some(p) if p.is_relative() => dir.join(p),
        Some(p) => p,
        None => {
            let stem = config
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "wakeway".into());
            dir.join(format!("{stem}.state.json"))
        }
    }
}

/// Certificate paths are written relative to the config file, as nginx reads them relative to
/// its prefix: the file and its certificates move together.
fn resolve_tls_paths(config: &mut Config, dir: &Path) {
    let Some(tls) = &mut config.proxy.tls else {
        return;
    };
    for cert in &mut tls.certificates {
        for path in [&mut cert.cert, &mut cert.key] {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }
    for path in tls.acme.iter_mut().flat_map(|a| a.ca_roots.iter_mut()) {
        if path.is_relative() {
            *path = dir.join(&*path);
        }
    }
}

/// Reads every certificate and key now, so `wakeway check` and a reload refuse a file the TLS
/// listener could not serve, naming the file and why.
fn check_tls_files(config: &Config) -> Result<(), ConfigError> {
    let Some(tls) = &config.proxy.tls else {
        return Ok(());
    };
    crate::tls::CertStore::load(&tls.certificates)
        .map(drop)
        .map_err(|e| {
            ConfigError::at_key(e.key_path(), format!("{}: {}", e.path.display(), e.reason))
        })?;
    for (i, path) in tls.acme.iter().flat_map(|a| a.ca_roots.iter()).enumerate() {
        crate::tls::acme::read_roots(path).map_err(|why| {
            ConfigError::at_key(
                format!("proxy.tls.acme.ca_roots[{i}]"),
                format!("{}: {why}", path.display()),
            )
        })?;
    }
    Ok(())
}

/// Semantic checks on an already-built Config (also used for configs built in code).
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    validate::validate(config).map_err(|mut err| {
        err.file = config.path.clone();
        err
    })
}

/// Checks one service on its own (a deployment's config built from an API request).
pub fn validate_service(service: &ServiceConfig) -> Result<(), ConfigError> {
    let mut config = Config::new(vec![service.clone()]);
    config.admin.listen = None;
    validate(&config)
}

/// What the probe needs of the app, said where a new user reads it before the first request.
fn health_advice(h: &HealthConfig) -> String {
    match h.kind {
        HealthKind::Tcp => "tcp: ready once the port accepts a connection".to_string(),
        HealthKind::Grpc => format!(
            "grpc: grpc.health.v1.Health/Check{} must answer SERVING over h2c",
            if h.grpc_service.is_empty() {
                String::new()
            } else {
                format!(" for `{}`", h.grpc_service)
            }
        ),
        HealthKind::Http => format!(
            "http: GET {} must answer 2xx or 3xx; an app without that route never gets \
             traffic (its start fails after startup_timeout {}): point health.path at a route \
             it serves, or set health.kind = \"tcp\"",
            h.path,
            format_duration(h.startup_timeout)
        ),
    }
}

/// The ACME lines of `wakeway check`: the CA, where certificates are kept, each name ordered
/// and each host skipped with why.
fn acme_summary(out: &mut String, config: &Config, acme: &AcmeConfig) {
    use std::fmt::Write as _;
    let challenges: Vec<&str> = acme.challenges.iter().map(|c| c.name()).collect();
    let _ = writeln!(
        out,
        "    acme: {} ({}), kept in {}",
        acme.directory,
        challenges.join(", "),
        acme.storage
            .as_ref()
            .map_or("memory only (no state file)".into(), |p| p
                .display()
                .to_string())
    );
    let plan = acme_plan(config);
    for name in &plan.names {
        let _ = writeln!(out, "      {name}: ordered from the CA");
    }
    for (name, why) in &plan.skipped {
        let _ = writeln!(out, "      {name}: skipped: {why}");
    }
}

/// The names a config has the ACME CA order: the services' hosts against its certificate files.
pub fn acme_plan(config: &Config) -> crate::tls::acme::Plan {
    let files = config
        .proxy
        .tls
        .as_ref()
        .map_or(&[][..], |t| &t.certificates[..]);
    crate::tls::acme::plan(
        config
            .services
            .iter()
            .flat_map(|s| s.hosts.iter().map(String::as_str)),
        |host| crate::tls::acme::covered_by(files, host),
    )
}

/// One-screen human summary for `wakeway check`: listeners, then per service: name, runtime
/// (process/static/docker), hosts, source, scaling min/max/target/max_concurrency,
/// idle_timeout; then the route table (host -> service).
pub fn summary(config: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(path) = &config.path {
        let _ = writeln!(out, "config: {}", path.display());
    }
    if let Some(path) = &config.state_file {
        let _ = writeln!(out, "state:  {} (deployed revisions)", path.display());
    }
    let _ = writeln!(out, "listeners:");
    let proxy: Vec<String> = config.proxy.listen.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(out, "  proxy  {}", proxy.join(", "));
    if let Some(tls) = &config.proxy.tls {
        let addrs: Vec<String> = tls.listen.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "  tls    {}", addrs.join(", "));
        for cert in &tls.certificates {
            let mut names = cert.hosts.join(", ");
            if cert.default {
                names.push_str(if cert.hosts.is_empty() {
                    "(default)"
                } else {
                    " (default)"
                });
            }
            let _ = writeln!(out, "    {names}: {}", cert.cert.display());
        }
        if let Some(acme) = &tls.acme {
            acme_summary(&mut out, config, acme);
        }
    }
    match config.admin.listen {
        Some(addr) => {
            let _ = writeln!(out, "  admin  {addr}");
        }
        None => {
            let _ = writeln!(out, "  admin  off");
        }
    }
    if config.services.is_empty() {
        let _ = writeln!(
            out,
            "services: none (no [[service]] defined; every request will get 404)"
        );
        return out;
    }
    let _ = writeln!(out, "services ({}):", config.services.len());
    for svc in &config.services {
        let sc = &svc.scaling;
        let _ = writeln!(out, "  {} ({})", svc.name, svc.source.runtime_name());
        let _ = writeln!(out, "    hosts:   {}", svc.hosts.join(", "));
        let source = match &svc.source {
            Source::Command(argv) => format!("command {}", quote_list(argv)),
            Source::Upstreams(ups) => format!("upstreams {}", ups.join(", ")),
            Source::Image(img) => {
                let mut s = format!("image {} port {}", img.image, img.port);
                if let Some(cpus) = img.cpus {
                    let _ = write!(s, " cpus {cpus}");
                }
                if let Some(memory) = img.memory {
                    let _ = write!(s, " memory {}", format_size(memory));
                }
                s
            }
        };
        let _ = writeln!(out, "    source:  {source}");
        let _ = writeln!(
            out,
            "    scaling: min {} max {} target_concurrency {} max_concurrency {} idle_timeout {}",
            sc.min_instances,
            sc.max_instances,
            sc.target_concurrency,
            sc.max_concurrency,
            format_duration(sc.idle_timeout)
        );
        let ig = &sc.idle_ignore;
        if !ig.is_empty() {
            let mut parts = Vec::new();
            if !ig.user_agents.is_empty() {
                parts.push(format!("user_agents {}", quote_list(&ig.user_agents)));
            }
            if !ig.paths.is_empty() {
                let paths: Vec<String> = ig.paths.iter().map(|p| p.to_string()).collect();
                parts.push(format!("paths {}", paths.join(", ")));
            }
            if !ig.networks.is_empty() {
                let nets: Vec<String> = ig.networks.iter().map(|n| n.to_string()).collect();
                parts.push(format!("networks {}", nets.join(", ")));
            }
            parts.push(format!("wake {}", ig.wake));
            let _ = writeln!(out, "    idle_ignore: {}", parts.join("; "));
        }
        if !svc.traffic.is_empty() {
            let shares: Vec<String> = svc
                .traffic
                .iter()
                .map(|t| {
                    let mut s = format!(
                        "{} {}%",
                        t.revision.as_deref().unwrap_or("latest"),
                        t.percent
                    );
                    if let Some(tag) = &t.tag {
                        let _ = write!(s, " (tag {tag})");
                    }
                    s
                })
                .collect();
            let _ = writeln!(out, "    traffic: {}", shares.join(", "));
        }
        if svc.protocol != Protocol::Http1 {
            let _ = writeln!(out, "    protocol: {}", svc.protocol.as_str());
        }
        let _ = writeln!(out, "    health:  {}", health_advice(&svc.health));
    }
    let mut routes: Vec<(&str, &str)> = config
        .services
        .iter()
        .flat_map(|s| s.hosts.iter().map(|h| (h.as_str(), s.name.as_str())))
        .collect();
    // Exact hosts alphabetically, the catch-all last.
    routes.sort_by_key(|(h, _)| (*h == "*", *h));
    let width = routes.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    let _ = writeln!(out, "routes:");
    for (host, name) in routes {
        let _ = writeln!(out, "  {host:<width$} -> {name}");
    }
    out
}

fn quote_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/wakeway.toml");

    /// Instances, concurrency target and limit, idle timeout.
    fn scaling(s: &ServiceConfig) -> (u32, u32, f64, u32, std::time::Duration) {
        let c = &s.scaling;
        let (min, max) = (c.min_instances, c.max_instances);
        (
            min,
            max,
            c.target_concurrency,
            c.max_concurrency,
            c.idle_timeout,
        )
    }

    #[test]
    fn example_file_parses() {
        let cfg = parse(EXAMPLE, Some(Path::new("config/wakeway.toml"))).unwrap();
        assert_eq!(cfg.path.as_deref(), Some(Path::new("config/wakeway.toml")));
        assert_eq!(cfg.proxy.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(cfg.admin.listen, Some("127.0.0.1:9180".parse().unwrap()));
        assert_eq!(cfg.services.len(), 2);
        let hello = &cfg.services[0];
        assert_eq!(hello.name, "hello");
        assert_eq!(hello.hosts, vec!["hello.localhost"]);
        assert_eq!(
            hello.source,
            Source::Command(vec!["wakeway".into(), "whoami".into()])
        );
        assert_eq!(
            scaling(hello),
            (0, 5, 10.0, 20, std::time::Duration::from_secs(30))
        );
        assert_eq!(hello.health.kind, HealthKind::Http);
        assert_eq!(hello.health.path, "/healthz");
        let slow = &cfg.services[1];
        assert_eq!(slow.name, "slow");
        assert_eq!(slow.hosts, vec!["slow.localhost"]);
        assert_eq!(
            scaling(slow),
            (1, 10, 5.0, 10, std::time::Duration::from_secs(60))
        );
    }

    #[test]
    fn example_file_mentions_every_key() {
        // Every key of the schema appears (possibly commented out) in the example.
        let keys = [
            "[proxy]",
            "listen",
            "connect_timeout",
            "response_timeout",
            "upstream_read_timeout",
            "idle_timeout",
            "shutdown_timeout",
            "[admin]",
            "[[service]]",
            "name",
            "hosts",
            "command",
            "upstreams",
            "image",
            "env",
            "upstream_idle_timeout",
            "retry_idempotent",
            "[service.scaling]",
            "min_instances",
            "max_instances",
            "target_concurrency",
            "max_concurrency",
            "stable_window",
            "panic_window",
            "panic_threshold",
            "[service.scaling.idle_ignore]",
            "user_agents",
            "paths",
            "networks",
            "wake",
            "[service.health]",
            "kind",
            "path",
            "interval",
            "timeout",
            "healthy_threshold",
            "unhealthy_threshold",
            "startup_timeout",
            "[service.queue]",
            "max_pending",
            "[service.deploy]",
            "drain_timeout",
            "stop_grace",
        ];
        for key in keys {
            let needle = if key.starts_with('[') {
                key.to_string()
            } else {
                format!("{key} =")
            };
            assert!(EXAMPLE.contains(&needle), "example lacks {needle}");
        }
    }

    #[test]
    fn load_reports_file() {
        let dir = std::env::temp_dir().join(format!("wakeway-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"x\"]\n\n[service.scaling]\nmin_instances = 3\nmax_instances = 2\n",
        )
        .unwrap();
        let err = load(&path).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{}:7: ", path.display())),
            "{shown}"
        );
        assert!(
            shown.contains("service[0].scaling.min_instances"),
            "{shown}"
        );
        let missing = load(&dir.join("nope.toml")).unwrap_err();
        assert!(missing.to_string().contains("nope.toml"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();

        let ok = load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/wakeway.toml"
        )));
        // The example is only present when tests run from the wakeway crate itself.
        if let Err(e) = ok {
            assert!(e.message.contains("cannot read"), "{e}");
        }
    }

    #[test]
    fn validate_names_file_from_config_path() {
        let mut cfg = parse(EXAMPLE, Some(Path::new("x.toml"))).unwrap();
        cfg.services[1].hosts = vec!["hello.localhost".into()];
        let err = validate(&cfg).unwrap_err();
        let key = "service[1].hosts[0]";
        err.assert_shown(None, key, "x.toml: key `service[1].hosts[0]`");
    }

    #[test]
    fn summary_lists_everything() {
        let cfg = parse(EXAMPLE, Some(Path::new("config/wakeway.toml"))).unwrap();
        let s = summary(&cfg);
        for needle in [
            "127.0.0.1:8080",
            "127.0.0.1:9180",
            "hello (process)",
            "slow (process)",
            "hello.localhost",
            "min 0 max 5 target_concurrency 10 max_concurrency 20 idle_timeout 30s",
            "min 1 max 10 target_concurrency 5 max_concurrency 10 idle_timeout 1m",
            "hello.localhost -> hello",
            "slow.localhost  -> slow",
            "command [\"wakeway\", \"whoami\"]",
        ] {
            assert!(s.contains(needle), "summary lacks {needle:?}:\n{s}");
        }
        let empty = parse("", None).unwrap();
        assert!(summary(&empty).contains("services: none"));
        let mut off = empty.clone();
        off.admin.listen = None;
        assert!(summary(&off).contains("admin  off"));
    }
}
