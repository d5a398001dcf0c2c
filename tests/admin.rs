//! The admin API and the Prometheus metrics.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_the_requests_say() {
    let wk = Wakeway::whoami("hello", "").await;
    const N: usize = 5;
    for i in 0..N {
        let resp = wk.get("hello.localhost", &format!("/m{i}")).await;
        assert_eq!(resp.status, StatusCode::OK);
    }
    let missing = wk.get("nope.localhost", "/").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let text = wait_for("requests_total to reach N", DEADLINE, || async {
        let m = wk.metrics().await;
        let n = metric(
            &m,
            "wakeway_requests_total",
            &[("service", "hello"), ("code", "200")],
        );
        (n == Some(N as f64)).then_some(m)
    })
    .await;
    let hello = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("service", "hello")];
        labels.extend_from_slice(extra);
        metric(&text, name, &labels)
    };
    assert_eq!(hello("wakeway_cold_starts_total", &[]), Some(1.0), "{text}");
    assert_eq!(
        hello("wakeway_instances", &[("state", "ready")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        hello("wakeway_in_flight_requests", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(hello("wakeway_queued_requests", &[]), Some(0.0), "{text}");
    assert_eq!(hello("wakeway_desired_instances", &[]), Some(1.0), "{text}");
    assert_eq!(
        hello("wakeway_request_duration_seconds_count", &[]),
        Some(N as f64),
        "{text}"
    );
    assert_eq!(
        hello("wakeway_cold_start_duration_seconds_count", &[]),
        Some(1.0),
        "{text}"
    );
    for family in [
        "wakeway_queue_rejections_total",
        "wakeway_scale_events_total",
        "wakeway_upstream_errors_total",
    ] {
        assert!(text.contains(family), "{family} is exported: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_describes_services_instances_and_events() {
    let wk = Wakeway::start(&format!(
        "{}\n{}",
        whoami_service("hello", "hello.localhost", ""),
        whoami_service("other", "other.localhost", "")
    ))
    .await;

    let health = get(wk.admin, "localhost", "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);

    let resp = wk.get("hello.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);

    let all = wk.admin_json("/v1/services").await;
    let names: Vec<&str> = all
        .as_array()
        .expect("/v1/services is an array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"hello") && names.contains(&"other"),
        "{all}"
    );

    let svc = wk.service("hello").await;
    assert_eq!(svc["name"], "hello");
    assert_eq!(svc["runtime"], "process", "{svc}");
    assert_eq!(
        svc["hosts"],
        serde_json::json!(["hello.localhost"]),
        "{svc}"
    );
    for key in ["desired", "in_flight", "queued"] {
        assert!(svc[key].is_u64(), "{key} is a number: {svc}");
    }
    let inst = &svc["instances"][0];
    for key in ["id", "revision", "address", "state", "started_at"] {
        assert!(inst[key].is_string(), "instance {key}: {svc}");
    }
    assert!(inst["in_flight"].is_u64(), "{svc}");
    assert!(inst["pid"].is_u64(), "{svc}");
    assert_eq!(
        resp.field("Revision").as_deref(),
        inst["revision"].as_str(),
        "WAKEWAY_REVISION reaches the instance"
    );

    let missing = get(wk.admin, "localhost", "/v1/services/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let events = wk.events("hello").await;
    assert!(!events.is_empty(), "a cold start leaves events");
    let mut last_seq = None;
    for e in &events {
        assert_eq!(e["service"], "hello", "filtered by service: {e}");
        for key in ["time", "kind", "message"] {
            assert!(e[key].is_string(), "event {key}: {e}");
        }
        let seq = e["seq"].as_u64().expect("seq");
        assert!(last_seq.is_none_or(|l| seq > l), "newest last: {events:?}");
        last_seq = Some(seq);
    }
}

/// The attack of the front-door issue: a web page in the user's browser posts to the loopback
/// admin port (text/plain needs no preflight; DNS rebinding puts the page's own name in
/// `Host`). Every variant is refused and its command never runs; the same deployment sent the
/// way the CLI sends it does run, so the refusals are what kept it from running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_admin_requests_are_refused_and_the_command_never_runs() {
    let wk = Wakeway::whoami("web", "").await;
    let marker = wk.config_path.with_file_name("pwned");
    let attack = serde_json::json!({
        "command": ["sh", "-c", format!("touch {}; exec wakeway whoami", path_str(&marker))]
    })
    .to_string();
    let admin_host = wk.admin.to_string();
    let evil = "http://evil.example";
    let rebound = format!("evil.example:{}", wk.admin.port());
    let rebound_origin = format!("http://{rebound}");

    type Case<'a> = (&'a str, &'a str, Vec<(&'static str, &'a str)>, StatusCode);
    let cases: Vec<Case> = vec![
        (
            "text/plain from a foreign page",
            &admin_host,
            vec![("content-type", "text/plain"), ("origin", evil)],
            StatusCode::FORBIDDEN,
        ),
        (
            "text/plain without Origin",
            &admin_host,
            vec![("content-type", "text/plain;charset=UTF-8")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no-cors without a body type",
            &admin_host,
            vec![],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "JSON from a foreign Origin",
            &admin_host,
            vec![("content-type", "application/json"), ("origin", evil)],
            StatusCode::FORBIDDEN,
        ),
        (
            "JSON marked cross-site by the browser",
            &admin_host,
            vec![
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            "another localhost port (same-site, not same-origin)",
            &admin_host,
            vec![
                ("content-type", "application/json"),
                ("origin", "http://127.0.0.1:3000"),
                ("sec-fetch-site", "same-site"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            "DNS rebinding: the page's own name in Host and Origin",
            &rebound,
            vec![
                ("content-type", "text/plain"),
                ("origin", &rebound_origin),
                ("sec-fetch-site", "same-origin"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            "DNS rebinding with JSON",
            &rebound,
            vec![
                ("content-type", "application/json"),
                ("origin", &rebound_origin),
                ("sec-fetch-site", "same-origin"),
            ],
            StatusCode::FORBIDDEN,
        ),
    ];
    for (what, host, headers, expected) in &cases {
        for path in [
            "/v1/services/web/deployments",
            "/v1/services/web/pause",
            "/v1/services/web/resume",
            "/v1/services/web/rollback",
            "/v1/reload",
        ] {
            let mut req = request(Method::POST, host, path, attack.clone());
            for (k, v) in headers {
                req.headers_mut().insert(*k, v.parse().unwrap());
            }
            let resp = send(wk.admin, req).await.expect("admin answers");
            assert_eq!(
                resp.status,
                *expected,
                "{what}: POST {path}: {}",
                resp.text()
            );
            let body: serde_json::Value =
                serde_json::from_slice(&resp.body).expect("refusals are JSON");
            assert!(body["error"].is_string(), "{what}: says why: {body}");
        }
    }
    // A rebound page cannot read the API either.
    let read = get(wk.admin, &rebound, "/v1/services").await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.text());

    let svc = wk.service("web").await;
    assert_eq!(svc["paused"], false, "no refused pause took effect: {svc}");
    assert!(
        wk.deployments("web").await.is_empty(),
        "no refused deployment began"
    );
    // The service still serves, cold-starting the configured command.
    assert_eq!(wk.get("web.localhost", "/").await.status, StatusCode::OK);
    assert!(!marker.exists(), "a refused deployment's command ran");

    // The same deployment as the CLI sends it runs: the checks, not the body, stopped it.
    let d = wk
        .deploy("web", serde_json::from_str(&attack).unwrap())
        .await;
    wait_for(
        "the accepted deployment's command to run",
        DEADLINE,
        || async { marker.exists().then_some(()) },
    )
    .await;
    wk.wait_deployment("web", d["id"].as_str().unwrap()).await;
}

/// A configured name passes the Host check; the token is required and never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_hosts_and_token_rules() {
    let wk = Wakeway::start_config(&format!(
        "{}{}",
        listeners(
            "",
            "token = \"t0ken-never-logged\"\nhosts = [\"wakeway.internal\"]"
        ),
        whoami_service("web", "web.localhost", "")
    ))
    .await;
    let call = |host: &'static str, token: Option<&'static str>| {
        let admin = wk.admin;
        async move {
            let mut req = request(Method::GET, host, "/v1/services", Bytes::new());
            if let Some(t) = token {
                req.headers_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            send(admin, req).await.expect("admin answers").status
        }
    };
    let good = Some("t0ken-never-logged");
    assert_eq!(call("wakeway.internal:9180", good).await, StatusCode::OK);
    assert_eq!(call("WAKEWAY.internal", good).await, StatusCode::OK);
    assert_eq!(call("localhost", good).await, StatusCode::OK);
    assert_eq!(call("other.internal", good).await, StatusCode::FORBIDDEN);
    assert_eq!(call("localhost", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call("localhost", Some("t0ken")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("localhost", Some("t0ken-never-logged-and-more")).await,
        StatusCode::UNAUTHORIZED
    );
    // Scrapers and probes reach these by any name, without the token.
    assert_eq!(
        get(wk.admin, "wakeway:9180", "/metrics").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(wk.admin, "10.1.2.3", "/healthz").await.status,
        StatusCode::OK
    );

    let (status, _) = admin_call(wk.admin, Method::POST, "/v1/reload", None, good).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin_call(
        wk.admin,
        Method::POST,
        "/v1/services/web/pause",
        None,
        Some("wrong"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let output = format!("{}{}", wk.proc.stdout(), wk.proc.stderr());
    assert!(
        !output.contains("t0ken-never-logged"),
        "the token appears in wakeway's output: {output}"
    );
    let events = wk_events_with_token(&wk, "t0ken-never-logged").await;
    assert!(
        !events.contains("t0ken-never-logged"),
        "the token appears in the events: {events}"
    );
}

async fn wk_events_with_token(wk: &Wakeway, token: &str) -> String {
    admin_json_with_token(wk.admin, "/v1/events", token)
        .await
        .to_string()
}

/// An admin API reachable from other machines without a token does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_admin_without_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.toml");
    let text = "[proxy]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"0.0.0.0:0\"\n";
    std::fs::write(&path, text).unwrap();
    let (status, stdout, stderr) = run_to_exit(&["run", "-c", path_str(&path)]).await;
    assert!(!status.success(), "must not start: {stdout}\n{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    assert!(
        stderr.contains("admin.listen") && stderr.contains("token"),
        "names the key and the fix: {stderr}"
    );
    // With a token it starts.
    std::fs::write(&path, format!("{text}token = \"s3cret\"\n")).unwrap();
    let mut proc = Proc::spawn("wakeway run", &["run", "-c", path_str(&path)]);
    proc.listening_addr("admin").await;
}

/// Connections that send nothing, or stop inside the request head, are closed by the admin's
/// header-read timeout, and the API keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_admin_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let wk = Wakeway::start_config(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"300ms\"\n",
    )
    .await;
    let mut silent = tokio::net::TcpStream::connect(wk.admin).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(wk.admin).await.unwrap();
    partial
        .write_all(b"GET /v1/services HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    // A keep-alive connection that goes quiet after one request.
    let mut idle = tokio::net::TcpStream::connect(wk.admin).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        admin_json(wk.admin, "/v1/services").await,
        serde_json::json!([])
    );
    for (what, conn) in [
        ("silent", &mut silent),
        ("partial head", &mut partial),
        ("idle keep-alive", &mut idle),
    ] {
        let closed = tokio::time::timeout(DEADLINE, async {
            let mut buf = [0u8; 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the {what} connection is still open");
    }
}

/// The Grafana dashboard in config/ queries only families a running wakeway exports, and has a
/// panel for each thing the README promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboard_queries_exported_families() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/grafana-dashboard.json"
    ))
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queried = std::collections::BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("wakeway_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name);
                queried.insert(family.to_string());
            }
        }
    }
    let wk = Wakeway::whoami("hello", "").await;
    assert_eq!(wk.get("hello.localhost", "/").await.status, StatusCode::OK);
    let metrics = wk.metrics().await;
    for family in &queried {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {family}, which wakeway does not export"
        );
    }
    for family in [
        "wakeway_requests_total",
        "wakeway_request_duration_seconds",
        "wakeway_in_flight_requests",
        "wakeway_queued_requests",
        "wakeway_instances",
        "wakeway_cold_starts_total",
        "wakeway_cold_start_duration_seconds",
        "wakeway_scale_events_total",
        "wakeway_deployments_total",
    ] {
        assert!(queried.contains(family), "no panel shows {family}");
    }
}
