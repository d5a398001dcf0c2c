use super::super::parse;
use super::*;
use crate::config::diagnostics::{Seg, line_of_key, parse_path, render_path};
use std::path::Path;

fn err(text: &str) -> ConfigError {
    parse(text, Some(Path::new("config/wakeway.toml"))).unwrap_err()
}

/// The error `text` makes, asserted to be at `key` on `line`.
fn err_at(text: &str, line: usize, key: &str) -> ConfigError {
    let e = err(text);
    assert_eq!((e.line, e.key.as_deref()), (Some(line), Some(key)), "{e}");
    e
}

const FULL: &str = r#"
[proxy]
listen = ["127.0.0.1:8080", "[::1]:8081"]
connect_timeout = "3s"
response_timeout = "90s"
upstream_read_timeout = "30s"
idle_timeout = "45s"
shutdown_timeout = "20s"

[admin]
listen = "off"

[[service]]
name = "api"
hosts = ["API.Example.com", "*"]
command = ["./api", "--port", "{port}"]
env = { GREETING = "hi", MODE = "prod" }
upstream_idle_timeout = "2s"
retry_idempotent = true

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
protocol = "h2c"
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
            upstream_read_timeout: secs(30),
            idle_timeout: secs(45),
            shutdown_timeout: secs(20),
            ..ProxyConfig::default()
        },
        admin: AdminConfig {
            listen: None,
            ..AdminConfig::default()
        },
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
                    idle_ignore: IdleIgnore::default(),
                    ..ScalingConfig::default()
                },
                health: HealthConfig {
                    kind: HealthKind::Tcp,
                    path: "/ready".into(),
                    interval: secs(1),
                    timeout: Duration::from_millis(500),
                    healthy_threshold: 2,
                    unhealthy_threshold: 4,
                    startup_timeout: secs(90),
                    grpc_service: String::new(),
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
                    keep_revisions: 20,
                },
                max_body_bytes: None,
                redirect_https: false,
                traffic: Vec::new(),
                socket_activation: false,
                upstream_idle_timeout: secs(2),
                retry_idempotent: true,
                protocol: Protocol::Http1,
            },
            ServiceConfig {
                protocol: Protocol::H2c,
                ..ServiceConfig::new(
                    "legacy",
                    vec!["legacy.local".into()],
                    Source::Upstreams(vec![
                        "127.0.0.1:3000".into(),
                        "backend.internal:3001".into(),
                    ]),
                )
            },
        ],
        ..Config::new(Vec::new())
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
    let text2 = format!("{text}\n[[service]]\nname = \"b\"\nhosts = [\"b\"]\ncomand = [\"b\"]\n")
        .replace("targte_", "target_");
    let e = err(&text2);
    assert_eq!(e.line, Some(13), "{e}");
    assert_eq!(e.key.as_deref(), Some("service[1].comand"), "{e}");
    err_at(
        "[proxy]\nlisten = \"127.0.0.1:1\"\n\n[servce]\nname = \"x\"\n",
        4,
        "servce",
    );
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

    let e = err_at(
        "[proxy]\nlisten = [\"127.0.0.1:1\", \"localhost:80\"]\n",
        2,
        "proxy.listen",
    );
    assert!(e.message.contains("localhost:80"), "{e}");

    err_at("[admin]\nlisten = \"nope\"\n", 2, "admin.listen");

    let e = err(
        "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\n[service.health]\nkind = \"udp\"\n",
    );
    assert_eq!(e.key.as_deref(), Some("service[0].health.kind"), "{e}");
    assert!(e.message.contains("`http`"), "{e}");

    let e =
        err("[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nenv = { PORT = 80 }\n");
    assert_eq!(e.key.as_deref(), Some("service[0].env.PORT"), "{e}");

    err_at(
        "[[service]]\nhosts = [\"a\"]\ncommand = [\"a\"]\n",
        1,
        "service[0].name",
    );

    // Syntax error: line, no key.
    let e = err("[proxy]\nlisten = \n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().starts_with("config/wakeway.toml:2: "), "{e}");
}

#[test]
fn source_errors() {
    let e =
        err("[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\n\nimage = \"nginx\"\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(6), Some("service[0].image")),
        "{e}"
    );
    assert!(e.message.contains("exactly one"), "{e}");

    let e = err_at(
        "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nupstreams = [\"1.2.3.4:5\"]\n",
        5,
        "service[0].upstreams",
    );
    assert!(e.message.contains("exactly one"), "{e}");

    err_at(
        "[[service]]\nname = \"a\"\nhosts = [\"a\"]\n",
        1,
        "service[0]",
    );

    err_at(
        "[docker]\nsocket = \"/var/run/docker.sock\"\n",
        2,
        "docker.socket",
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
        e.assert_case(to, key, Some(line), says);
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
    let key = "service[1].scaling.min_instances";
    let shown = format!("config/wakeway.toml:13: key `{key}`: ");
    err(text).assert_shown(Some(13), key, &shown);
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

    err_at(
        "[[service]]\nname = \"a\"\nhosts = [\"*\"]\ncommand = [\"a\"]\n[[service]]\nname = \"b\"\nhosts = [\"*\"]\ncommand = [\"b\"]\n",
        7,
        "service[1].hosts[0]",
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
    err_at("[log]\n\nformat = \"xml\"\n", 3, "log.format");
    let e = err("[log]\nlevel = \"info,[oops\"\n");
    assert_eq!(e.key.as_deref(), Some("log.level"));
    let e = err("[log]\nacess = \"stdout\"\n");
    assert_eq!(e.key.as_deref(), Some("log.acess"));
}

#[test]
fn an_unknown_protocol_names_its_key_and_the_choices() {
    let e = err_at(
        "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nprotocol = \"http2\"\n",
        5,
        "service[0].protocol",
    );
    let shown = e.to_string();
    assert!(
        shown.contains("http1") && shown.contains("h2c") && shown.contains("auto"),
        "{shown}"
    );
}
