use std::path::Path;

use super::super::{ConfigError, IdleIgnore, IpNet, parse};
use super::*;

const FILE: &str = "etc/wakeway.toml";

const TEXT: &str = r#"
[[service]]
name = "web"
hosts = ["web.localhost"]
command = ["app"]

[service.scaling]
idle_timeout = "2s"

[service.scaling.idle_ignore]
user_agents = ["kube-probe/", "Googlebot"]
paths = ["/healthz", "/status/*"]
networks = ["10.0.0.0/8"]
wake = true

[[service.traffic]]
revision = "web-00002"
percent = 90

[[service.traffic]]
latest = true
percent = 10
tag = "canary"
"#;

fn err(text: &str) -> ConfigError {
    parse(text, Some(Path::new(FILE))).unwrap_err()
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
        + 1
}

#[test]
fn traffic_and_idle_ignore_parse() {
    let cfg = parse(TEXT, Some(Path::new(FILE))).unwrap();
    let svc = &cfg.services[0];
    assert_eq!(
        svc.traffic,
        vec![
            TrafficTarget {
                revision: Some("web-00002".into()),
                percent: 90,
                tag: None,
            },
            TrafficTarget {
                revision: None,
                percent: 10,
                tag: Some("canary".into()),
            },
        ]
    );
    let ig = &svc.scaling.idle_ignore;
    assert_eq!(ig.user_agents, vec!["kube-probe/", "Googlebot"]);
    let paths: Vec<String> = ig.paths.iter().map(|p| p.to_string()).collect();
    assert_eq!(paths, vec!["/healthz", "/status/*"]);
    assert_eq!(ig.networks, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
    assert!(ig.wake);
    let peer = "192.0.2.1".parse().unwrap();
    assert!(ig.matches(peer, b"/status/db?full=1", || None));
    assert!(ig.matches(peer, b"/", || Some(&b"GoogleBot/2.1"[..])));
    assert!(!ig.matches(peer, b"/", || Some(&b"curl/8"[..])));
    let summary = super::super::summary(&cfg);
    for line in [
        "    idle_ignore: user_agents [\"kube-probe/\", \"Googlebot\"]; paths /healthz, /status/*; networks 10.0.0.0/8; wake true\n",
        "    traffic: web-00002 90%, latest 10% (tag canary)\n",
    ] {
        assert!(summary.contains(line), "{line:?} not in\n{summary}");
    }
}

#[test]
fn defaults_when_absent() {
    let cfg = parse(
        "[[service]]\nname = \"web\"\nhosts = [\"web.localhost\"]\ncommand = [\"app\"]\n",
        None,
    )
    .unwrap();
    let svc = &cfg.services[0];
    assert!(svc.traffic.is_empty());
    assert_eq!(svc.scaling.idle_ignore, IdleIgnore::default());
    assert!(svc.scaling.idle_ignore.is_empty());
    assert!(!svc.scaling.idle_ignore.wake);
    // An empty table ignores nothing and is accepted anywhere.
    let empty = parse(
        "[[service]]\nname = \"web\"\nhosts = [\"web.localhost\"]\nupstreams = [\"127.0.0.1:1\"]\n\
         [service.scaling.idle_ignore]\nwake = true\n",
        None,
    )
    .unwrap();
    assert!(empty.services[0].scaling.idle_ignore.is_empty());
}

#[test]
fn each_mistake_names_file_line_and_key() {
    let a41 = format!("tag = \"{}\"", "a".repeat(41));
    // (replace, with, key, the line that holds it, what the message says)
    let cases: Vec<(&str, &str, &str, &str, &str)> = vec![
        (
            "percent = 10\n",
            "percent = 20\n",
            "service[0].traffic",
            "[[service.traffic]]",
            "sum to 110 (90 + 20); they must sum to exactly 100",
        ),
        (
            "percent = 90\n",
            "percent = 0\n",
            "service[0].traffic",
            "[[service.traffic]]",
            "sum to 10 (0 + 10)",
        ),
        (
            "percent = 90\n",
            "percent = 190\n",
            "service[0].traffic[0].percent",
            "percent = 190",
            "0-100 (got 190)",
        ),
        (
            "percent = 90\n",
            "percent = -90\n",
            "service[0].traffic[0].percent",
            "percent = -90",
            "non-negative integer",
        ),
        (
            "revision = \"web-00002\"",
            "revision = \"web-2\"",
            "service[0].traffic[0].revision",
            "revision = \"web-2\"",
            "`web-NNNNN` with 5 digits",
        ),
        (
            "revision = \"web-00002\"",
            "revision = \"api-00002\"",
            "service[0].traffic[0].revision",
            "revision = \"api-00002\"",
            "such as \"web-00002\"",
        ),
        (
            "revision = \"web-00002\"",
            "revision = \"web-00000\"",
            "service[0].traffic[0].revision",
            "revision = \"web-00000\"",
            "5 digits",
        ),
        (
            "latest = true",
            "revision = 'web-00002'",
            "service[0].traffic[1].revision",
            "'web-00002'",
            "revision web-00002 already has traffic[0]",
        ),
        (
            "revision = \"web-00002\"",
            "latest=true",
            "service[0].traffic[1].latest",
            "latest = true",
            "`latest = true` already has traffic[0]",
        ),
        (
            "latest = true",
            "latest = true\nrevision = \"web-00003\"",
            "service[0].traffic[1].latest",
            "latest = true",
            "not both",
        ),
        (
            "latest = true",
            "latest = false",
            "service[0].traffic[1].latest",
            "latest = false",
            "`latest = false` names no revision: set `revision = \"web-00001\"` or `latest = true`",
        ),
        (
            "[[service.traffic]]\nlatest = true\n",
            "[[service.traffic]] # the canary\n",
            "service[0].traffic[1]",
            "# the canary",
            "names no revision",
        ),
        (
            "[[service.traffic]]\nrevision = \"web-00002\"\npercent = 90\n",
            "[[service.traffic]] # stable\nrevision = \"web-00002\"\n",
            "service[0].traffic[0].percent",
            "# stable",
            "missing required key `percent`",
        ),
        (
            "percent = 90\n",
            "percent = 90\nweight = 5\n",
            "service[0].traffic[0].weight",
            "weight = 5",
            "unknown key",
        ),
        (
            "tag = \"canary\"",
            "tag = \"Canary\"",
            "service[0].traffic[1].tag",
            "tag = \"Canary\"",
            "lower-case DNS label",
        ),
        (
            "tag = \"canary\"",
            "tag = \"1canary\"",
            "service[0].traffic[1].tag",
            "tag = \"1canary\"",
            "starting with a letter",
        ),
        (
            "tag = \"canary\"",
            "tag = \"can_ary\"",
            "service[0].traffic[1].tag",
            "tag = \"can_ary\"",
            "'_' is not allowed",
        ),
        (
            "tag = \"canary\"",
            "tag = \"can--ary\"",
            "service[0].traffic[1].tag",
            "tag = \"can--ary\"",
            "\"--\"",
        ),
        (
            "tag = \"canary\"",
            "tag = \"canary-\"",
            "service[0].traffic[1].tag",
            "tag = \"canary-\"",
            "end with '-'",
        ),
        (
            "tag = \"canary\"",
            &a41,
            "service[0].traffic[1].tag",
            "tag = \"aaaa",
            "at most 40",
        ),
        (
            "percent = 90\n",
            "percent = 90\ntag = 'canary'\n",
            "service[0].traffic[1].tag",
            "tag = \"canary\"",
            "tag `canary` is already used by traffic[0]",
        ),
        (
            "command = [\"app\"]",
            "upstreams = [\"127.0.0.1:3000\"]",
            "service[0].traffic",
            "[[service.traffic]]",
            "static (`upstreams`): it has no revisions",
        ),
        (
            "\"Googlebot\"]",
            "\"\"]",
            "service[0].scaling.idle_ignore.user_agents[1]",
            "user_agents",
            "empty pattern matches every request",
        ),
        (
            "\"Googlebot\"]",
            "\"Google\\tbot\"]",
            "service[0].scaling.idle_ignore.user_agents[1]",
            "user_agents",
            "printable ASCII",
        ),
        (
            "\"/status/*\"",
            "\"status/*\"",
            "service[0].scaling.idle_ignore.paths[1]",
            "paths =",
            "starts with '/'",
        ),
        (
            "\"/status/*\"",
            "\"/*\"",
            "service[0].scaling.idle_ignore.paths[1]",
            "paths =",
            "matches every request",
        ),
        (
            "networks = [\"10.0.0.0/8\"]",
            "networks = [\"10.1.0.0/8\"]",
            "service[0].scaling.idle_ignore.networks[0]",
            "networks =",
            "did you mean 10.0.0.0/8?",
        ),
        (
            "networks = [\"10.0.0.0/8\"]",
            "networks = [\"::/0\"]",
            "service[0].scaling.idle_ignore.networks[0]",
            "networks =",
            "matches every client",
        ),
        (
            "wake = true",
            "wake = \"yes\"",
            "service[0].scaling.idle_ignore.wake",
            "wake =",
            "expected a boolean",
        ),
        (
            "wake = true",
            "wake = true\nuser_agent = [\"x\"]",
            "service[0].scaling.idle_ignore.user_agent",
            "user_agent =",
            "did you mean `user_agents`?",
        ),
    ];
    for (from, to, key, line_at, says) in cases {
        assert!(TEXT.contains(from), "{from:?}");
        let text = TEXT.replacen(from, to, 1);
        let e = err(&text);
        let line = line_of(&text, line_at);
        e.assert_case(to, key, Some(line), says);
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{FILE}:{line}: key `{key}`: ")),
            "{shown}"
        );
    }
}

#[test]
fn idle_ignore_on_a_static_service_is_refused() {
    let text = TEXT
        .replacen("command = [\"app\"]", "upstreams = [\"127.0.0.1:3000\"]", 1)
        .split("[[service.traffic]]")
        .next()
        .unwrap()
        .to_string();
    let e = err(&text);
    assert_eq!(
        e.key.as_deref(),
        Some("service[0].scaling.idle_ignore"),
        "{e}"
    );
    assert_eq!(
        e.line,
        Some(line_of(&text, "[service.scaling.idle_ignore]"))
    );
    assert!(e.message.contains("never stops it"), "{e}");
}

#[test]
fn configs_built_in_code_are_checked_too() {
    let mut svc = parse(TEXT, None).unwrap().services.remove(0);
    svc.traffic[1].percent = 11;
    let e = super::super::validate_service(&svc).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("service[0].traffic"), "{e}");
    assert!(e.message.contains("sum to 101"), "{e}");
    svc.traffic = vec![TrafficTarget {
        revision: None,
        percent: 100,
        tag: None,
    }];
    super::super::validate_service(&svc).unwrap();
    svc.traffic.clear();
    super::super::validate_service(&svc).unwrap();
}

#[test]
fn the_example_idle_ignore_parses_when_uncommented() {
    let example = include_str!("../../../config/wakeway.toml");
    let keys = [
        "[service.scaling.idle_ignore]",
        "user_agents =",
        "paths =",
        "networks =",
        "wake =",
    ];
    let uncommented = crate::config::uncomment(example, &keys);
    let cfg = parse(&uncommented, None).unwrap();
    let ig = &cfg.services[0].scaling.idle_ignore;
    assert!(ig.user_agents.iter().any(|u| u == "kube-probe/"), "{ig:?}");
    assert_eq!(ig.paths.len(), 2, "{ig:?}");
    assert_eq!(ig.networks.len(), 1, "{ig:?}");
    assert!(!ig.wake);
}
