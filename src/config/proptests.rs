//! Property tests of the config front end: whatever the text, parsing returns (never panics),
//! an error says where (a line inside the text), and valid values read back as written.

use std::path::Path;

use proptest::prelude::*;

use super::{ConfigError, parse};

const EXAMPLE: &str = include_str!("../../config/wakeway.toml");

/// Parses `text` as `config/x.toml`, catching a panic as a failure that names the input.
fn parse_checked(text: &str) -> Result<Result<super::Config, ConfigError>, TestCaseError> {
    let text_owned = text.to_string();
    std::panic::catch_unwind(move || parse(&text_owned, Some(Path::new("config/x.toml"))))
        .map_err(|_| TestCaseError::fail(format!("parse panicked on {text:?}")))
}

/// The error's line is inside the text (a line after the last, for an error at the very end).
fn line_in_text(e: &ConfigError, text: &str) -> Result<(), TestCaseError> {
    let lines = text.lines().count().max(1) + 1;
    if let Some(line) = e.line {
        prop_assert!(
            (1..=lines).contains(&line),
            "line {line} outside 1..={lines}: {e}"
        );
    }
    prop_assert!(!e.message.is_empty(), "empty message: {e:?}");
    Ok(())
}

/// Lines a config file is made of, right and wrong: tables, keys of every type, broken syntax.
fn line() -> impl Strategy<Value = String> {
    let tables = prop::sample::select(vec![
        "[proxy]",
        "[proxy.tls]",
        "[[proxy.tls.certificate]]",
        "[admin]",
        "[docker]",
        "[[service]]",
        "[service.scaling]",
        "[service.health]",
        "[service.queue]",
        "[service.deploy]",
        "[servce]",
        "[[proxy]]",
        "[proxy",
    ]);
    let keys = prop::sample::select(vec![
        "listen",
        "connect_timeout",
        "idle_timeout",
        "max_uri_bytes",
        "max_header_bytes",
        "max_headers",
        "header_read_timeout",
        "trusted_proxies",
        "underscore_headers",
        "max_connections",
        "name",
        "hosts",
        "command",
        "upstreams",
        "image",
        "port",
        "memory",
        "env",
        "min_instances",
        "max_instances",
        "target_concurrency",
        "panic_threshold",
        "kind",
        "path",
        "cert",
        "key",
        "default",
        "max_body_bytes",
        "redirect_https",
        "token",
        "token_file",
        "targte_concurrency",
    ]);
    let values = prop::sample::select(vec![
        "\"127.0.0.1:0\"",
        "[\"127.0.0.1:0\", \"[::1]:0\"]",
        "\"30s\"",
        "\"0s\"",
        "30",
        "-1",
        "0",
        "1.5",
        "1e400",
        "true",
        "\"8KiB\"",
        "\"x\"",
        "\"\"",
        "[\"a.localhost\"]",
        "[\"*\"]",
        "[\"10.0.0.0/8\"]",
        "[\"10.0.0.1/8\"]",
        "\"drop\"",
        "{ A = \"1\" }",
        "{ A = 1 }",
        "[]",
        "[[]]",
        "\"/nonexistent.pem\"",
        "18446744073709551616",
        "\"\\u0000\"",
        "",
    ]);
    prop_oneof![
        tables.prop_map(str::to_string),
        (keys, values).prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~]{0,30}",
        Just(String::new()),
    ]
}

/// A single-line edit of the example file.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, String),
    Delete(usize),
    Duplicate(usize),
    Truncate(usize, usize),
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len();
    match edit {
        Edit::Replace(i, with) => lines[i % n] = with.clone(),
        Edit::Delete(i) => {
            lines.remove(i % n);
        }
        Edit::Duplicate(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Edit::Truncate(i, at) => {
            let l = &mut lines[i % n];
            let mut cut = at % (l.len() + 1);
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            l.truncate(cut);
        }
    }
    lines.join("\n")
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), line()).prop_map(|(i, l)| Edit::Replace(i, l)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, at)| Edit::Truncate(i, at)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any text at all: no panic; an error is located inside the text.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(e) = parse_checked(&text)? {
            line_in_text(&e, &text)?;
        }
    }

    /// Files made of plausible and broken config lines: no panic, and every error names a
    /// line inside the file.
    #[test]
    fn toml_ish_errors_name_a_line(lines in prop::collection::vec(line(), 0..25)) {
        let text = lines.join("\n");
        if let Err(e) = parse_checked(&text)? {
            line_in_text(&e, &text)?;
            prop_assert!(e.line.is_some(), "no line in {e} for:\n{text}");
        }
    }

    /// One edit of the example file: no panic, and an error names a line inside the file and,
    /// for an unknown key, the line that key is on.
    #[test]
    fn edited_example_errors_name_a_line(edit in edit()) {
        let text = apply(EXAMPLE, &edit);
        if let Err(e) = parse_checked(&text)? {
            line_in_text(&e, &text)?;
            let line = e.line;
            prop_assert!(line.is_some(), "no line in {e} after {edit:?}");
            if e.message.starts_with("unknown key")
                && let (Some(line), Some(key)) = (line, &e.key)
            {
                let last = key.rsplit('.').next().unwrap_or(key);
                let written = text.lines().nth(line - 1).unwrap_or("");
                prop_assert!(written.contains(last.trim_matches('"')), "{e}: line {line} is {written:?}");
            }
        }
    }

    /// Valid limits and scaling values read back exactly as written.
    #[test]
    fn valid_values_read_back(
        max_uri in 256usize..1_000_000,
        line_kib in 1usize..64,
        extra_kib in 0usize..64,
        headers in 1usize..10_000,
        timeout_ms in 1u64..100_000,
        connections in 1usize..1_000_000,
        min in 0u32..50,
        spread in 0u32..50,
        max_concurrency in 1u32..1000,
        body_kib in prop::option::of(1u64..1_000_000),
    ) {
        let text = format!(
            "[proxy]\nmax_uri_bytes = \"{max_uri}B\"\nmax_header_line_bytes = \"{line_kib}KiB\"\n\
             max_header_bytes = \"{}KiB\"\nmax_headers = {headers}\n\
             header_read_timeout = \"{timeout_ms}ms\"\nmax_connections = {connections}\n\
             [[service]]\nname = \"a\"\nhosts = [\"a\"]\nupstreams = [\"127.0.0.1:1\"]\n{}\
             [service.scaling]\nmin_instances = {min}\nmax_instances = {}\nmax_concurrency = {max_concurrency}\n\
             target_concurrency = {max_concurrency}\n",
            line_kib + extra_kib,
            body_kib.map_or(String::new(), |b| format!("max_body_bytes = \"{b}KiB\"\n")),
            (min + spread).max(1),
        );
        let cfg = match parse_checked(&text)? {
            Ok(cfg) => cfg,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
        };
        let p = &cfg.proxy;
        prop_assert_eq!(p.max_uri_bytes, max_uri);
        prop_assert_eq!(p.max_header_line_bytes, line_kib << 10);
        prop_assert_eq!(p.max_header_bytes, (line_kib + extra_kib) << 10);
        prop_assert_eq!(p.max_headers, headers);
        prop_assert_eq!(p.header_read_timeout, std::time::Duration::from_millis(timeout_ms));
        prop_assert_eq!(p.max_connections, connections);
        let s = &cfg.services[0];
        prop_assert_eq!(s.max_body_bytes, body_kib.map(|b| b << 10));
        prop_assert_eq!(s.scaling.min_instances, min);
        prop_assert_eq!(s.scaling.max_instances, (min + spread).max(1));
        prop_assert_eq!(s.scaling.max_concurrency, max_concurrency);
    }
}
