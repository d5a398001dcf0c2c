use super::*;

fn service(name: &str, host: &str) -> ServiceConfig {
    ServiceConfig::new(name, vec![host.into()], Source::Command(vec!["run".into()]))
}

fn config(services: Vec<ServiceConfig>) -> Config {
    Config::new(services)
}

/// Apply `edit` to a valid one-service config; return the error's key path.
fn key_of(edit: impl FnOnce(&mut Config)) -> String {
    let mut c = config(vec![service("a", "a.localhost")]);
    edit(&mut c);
    let e = validate(&c).expect_err("should fail");
    assert_eq!(e.line, None);
    e.key.expect("key path")
}

#[test]
fn valid_configs_pass() {
    validate(&config(vec![])).unwrap();
    let mut s = service("web-2", "*");
    s.source = Source::Upstreams(vec![
        "127.0.0.1:80".into(),
        "[::1]:81".into(),
        "db.internal:5432".into(),
    ]);
    validate(&config(vec![service("a", "a.localhost"), s])).unwrap();
}

#[test]
fn each_rule_names_its_key() {
    type Edit = Box<dyn FnOnce(&mut Config)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("proxy.listen", Box::new(|c| c.proxy.listen.clear())),
        (
            "admin.listen",
            Box::new(|c| c.admin.listen = Some(c.proxy.listen[0])),
        ),
        (
            "proxy.connect_timeout",
            Box::new(|c| c.proxy.connect_timeout = Duration::ZERO),
        ),
        (
            "admin.listen",
            Box::new(|c| c.admin.listen = Some("0.0.0.0:9180".parse().unwrap())),
        ),
        (
            "admin.hosts[0]",
            Box::new(|c| c.admin.hosts = vec!["http://admin.example".into()]),
        ),
        ("log.level", Box::new(|c| c.log.level = "info,[bad".into())),
        (
            "log.access",
            Box::new(|c| c.log.access = AccessLogTarget::File("".into())),
        ),
        (
            "admin.header_read_timeout",
            Box::new(|c| c.admin.header_read_timeout = Duration::ZERO),
        ),
        ("service[0].name", Box::new(|c| c.services[0].name.clear())),
        (
            "service[0].name",
            Box::new(|c| c.services[0].name = "Web".into()),
        ),
        (
            "service[0].name",
            Box::new(|c| c.services[0].name = "a_b".into()),
        ),
        (
            "service[1].name",
            Box::new(|c| c.services.push(service("a", "b.localhost"))),
        ),
        (
            "service[0].hosts",
            Box::new(|c| c.services[0].hosts.clear()),
        ),
        (
            "service[0].hosts[0]",
            Box::new(|c| c.services[0].hosts[0] = "a.localhost:8080".into()),
        ),
        (
            "service[0].hosts[0]",
            Box::new(|c| c.services[0].hosts[0] = "A.localhost".into()),
        ),
        (
            "service[0].hosts[0]",
            Box::new(|c| c.services[0].hosts[0] = "*.localhost".into()),
        ),
        (
            "service[0].hosts[1]",
            Box::new(|c| c.services[0].hosts.push("a.localhost".into())),
        ),
        (
            "service[0].command",
            Box::new(|c| c.services[0].source = Source::Command(vec![])),
        ),
        (
            "service[0].upstreams",
            Box::new(|c| c.services[0].source = Source::Upstreams(vec![])),
        ),
        (
            "service[0].upstreams[1]",
            Box::new(|c| c.services[0].source = Source::Upstreams(vec!["h:1".into(), "h".into()])),
        ),
        (
            "service[0].upstreams[0]",
            Box::new(|c| c.services[0].source = Source::Upstreams(vec!["h:x".into()])),
        ),
        (
            "service[0].upstreams[0]",
            Box::new(|c| c.services[0].source = Source::Upstreams(vec![":80".into()])),
        ),
        (
            "service[0].upstreams[0]",
            Box::new(|c| c.services[0].source = Source::Upstreams(vec!["::1:80".into()])),
        ),
        (
            "service[0].env",
            Box::new(|c| {
                c.services[0].env.insert("A=B".into(), "x".into());
            }),
        ),
        (
            "service[0].health.path",
            Box::new(|c| c.services[0].health.path = "healthz".into()),
        ),
        (
            "service[0].health.grpc_service",
            Box::new(|c| c.services[0].health.grpc_service = "api.Users".into()),
        ),
        (
            "service[0].health.healthy_threshold",
            Box::new(|c| c.services[0].health.healthy_threshold = 0),
        ),
        (
            "service[0].health.unhealthy_threshold",
            Box::new(|c| c.services[0].health.unhealthy_threshold = 0),
        ),
        (
            "service[0].queue.timeout",
            Box::new(|c| c.services[0].queue.timeout = Duration::ZERO),
        ),
    ];
    for (want, edit) in cases {
        assert_eq!(key_of(edit), want);
    }
    // `[service.scaling]`: each field and a value it refuses.
    type ScalingEdit = fn(&mut ScalingConfig);
    let scaling: Vec<(&str, ScalingEdit)> = vec![
        ("min_instances", |s| s.min_instances = 11),
        ("max_instances", |s| s.max_instances = 0),
        ("max_concurrency", |s| s.max_concurrency = 0),
        ("target_concurrency", |s| s.target_concurrency = 0.0),
        ("target_concurrency", |s| s.target_concurrency = f64::NAN),
        ("target_concurrency", |s| s.target_concurrency = 100.5),
        ("panic_threshold", |s| s.panic_threshold = 1.0),
        ("panic_window", |s| s.panic_window = Duration::ZERO),
        ("stable_window", |s| s.stable_window = Duration::ZERO),
        ("panic_window", |s| s.panic_window = Duration::from_secs(61)),
    ];
    for (field, edit) in scaling {
        let key = key_of(|c| edit(&mut c.services[0].scaling));
        assert_eq!(key, format!("service[0].scaling.{field}"));
    }
}

#[test]
fn duplicate_hosts_across_services() {
    let c = config(vec![
        service("a", "x.localhost"),
        service("b", "x.localhost"),
    ]);
    let e = validate(&c).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("service[1].hosts[0]"));
    assert!(e.message.contains("already claimed by service `a`"), "{e}");
    let c = config(vec![service("a", "*"), service("b", "*")]);
    assert_eq!(
        validate(&c).unwrap_err().key.as_deref(),
        Some("service[1].hosts[0]")
    );
}
