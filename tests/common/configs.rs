//! Pieces of config files and the paths, ports and lines tests put in them.

use std::path::Path;

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
    format!(
        r#"
[[service]]
name = "{name}"
hosts = ["{host}"]
upstreams = ["{upstream}"]

[service.health]
kind = "tcp"
{health_keys}
{extra}
"#
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
