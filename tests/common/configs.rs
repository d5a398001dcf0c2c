//! Pieces of config files and the paths, ports and lines tests put in them.

use std::path::Path;

/// A `[[service]]` table running `wakeway whoami`, with extra TOML appended (e.g. sub-tables).
pub fn whoami_service(name: &str, host: &str, extra: &str) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
hosts = ["{host}"]
command = ["wakeway", "whoami"]
{extra}
"#
    )
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
