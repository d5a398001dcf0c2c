//! Pieces of config files and the paths, ports and lines tests put in them.

use std::path::{Path, PathBuf};

/// `[scaling]` keys that keep one instance warm.
pub const MIN_ONE: &str = "[service.scaling]\nmin_instances = 1\n";

/// `[proxy]` with `proxy_keys` and `[admin]`, both on OS-picked loopback ports; append
/// `[[service]]` tables to it.
pub fn listen_with(proxy_keys: &str) -> String {
    listeners(proxy_keys, "")
}

/// As [`listen_with`], with `admin_keys` in `[admin]` too.
pub fn listeners(proxy_keys: &str, admin_keys: &str) -> String {
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
{proxy_keys}

[admin]
listen = "127.0.0.1:0"
{admin_keys}
"#
    )
}

/// A `[[service]]` table running `wakeway whoami`, with extra TOML appended (e.g. sub-tables).
pub fn whoami_service(name: &str, host: &str, extra: &str) -> String {
    command_service(name, host, &["wakeway", "whoami"], extra)
}

/// A `[[service]]` table for host `NAME.localhost` running `wakeway whoami ARGS`.
pub fn whoami_args(name: &str, args: &[&str], extra: &str) -> String {
    let mut command = vec!["wakeway", "whoami"];
    command.extend_from_slice(args);
    command_service(name, &format!("{name}.localhost"), &command, extra)
}

/// A `[[service]]` table for host `NAME.localhost` running `sh -c SCRIPT`.
pub fn shell_service(name: &str, script: &str, extra: &str) -> String {
    command_service(
        name,
        &format!("{name}.localhost"),
        &["sh", "-c", script],
        extra,
    )
}

/// A state file in a directory of its own: outside any one wakeway's config directory, so a
/// wakeway started again, from another copy of the config, finds it.
pub struct StateFile {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl StateFile {
    pub fn temp() -> StateFile {
        let dir = tempfile::tempdir().expect("tempdir");
        StateFile {
            path: dir.path().join("wakeway.state.json"),
            _dir: dir,
        }
    }

    /// `config`, a complete config file, with its `state_file` here.
    pub fn config(&self, config: &str) -> String {
        format!(
            "state_file = {}\n{config}",
            toml_string(path_str(&self.path))
        )
    }

    /// What wakeway saved in it.
    pub fn saved(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.path).expect("read the state file");
        serde_json::from_str(&text).expect("the state file is JSON")
    }
}

/// A `[[service]]` table running `command`, with extra TOML appended.
pub fn command_service(name: &str, host: &str, command: &[&str], extra: &str) -> String {
    let command: Vec<String> = command.iter().map(|a| toml_string(a)).collect();
    format!(
        r#"
[[service]]
name = "{name}"
hosts = ["{host}"]
command = [{}]
{extra}
"#,
        command.join(", ")
    )
}

/// A `[[service]]` table in front of the fixed upstream `upstream`, checked by TCP connect;
/// `health_keys` go into its `[service.health]`, then `extra` follows.
pub fn static_service(
    name: &str,
    host: &str,
    upstream: impl std::fmt::Display,
    health_keys: &str,
    extra: &str,
) -> String {
    let health = format!("[service.health]\nkind = \"tcp\"\n{health_keys}\n{extra}");
    upstreams_service(name, host, &[&upstream.to_string()], &health)
}

/// A `[[service]]` table in front of the fixed `upstreams`, with extra TOML appended.
pub fn upstreams_service(name: &str, host: &str, upstreams: &[&str], extra: &str) -> String {
    let upstreams: Vec<String> = upstreams.iter().map(|a| toml_string(a)).collect();
    format!(
        "\n[[service]]\nname = \"{name}\"\nhosts = [\"{host}\"]\nupstreams = [{}]\n{extra}\n",
        upstreams.join(", ")
    )
}

/// `[service.health]` probing `path` over HTTP, giving up after `startup_timeout`, and a
/// `[service.queue]` in which a request waits up to `queue_timeout`.
pub fn http_probe(path: &str, startup_timeout: &str, queue_timeout: &str) -> String {
    format!(
        "[service.health]\nkind = \"http\"\npath = {}\nstartup_timeout = \"{startup_timeout}\"\n\n\
         [service.queue]\ntimeout = \"{queue_timeout}\"\n",
        toml_string(path)
    )
}

/// `text` as a TOML basic string.
pub fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A port nothing listens on (bound then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// The line number (1-based) of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
