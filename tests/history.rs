//! What wakeway remembers of a service for the console and the CLI: its history
//! (`GET /v1/services/{name}/history`, per second and per 10 s, per revision too), its recent
//! figures and state in `GET /v1/services/{name}` (a service whose requests all fail is
//! failing, not idle), and the tail of its access log (`GET .../access?status=`), each behind
//! the admin API's guards.

mod common;

use std::time::Duration;

use common::split::Admin;
use common::*;
use http::{Method, StatusCode};
use serde_json::Value;

/// Sends `path` to `host` until `check` of the service view holds.
async fn requests_until(
    wk: &Wakeway,
    host: &str,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let service = host.split('.').next().unwrap().to_string();
    wait_for(what, Duration::from_secs(60), || async {
        let _ = try_get(wk.proxy, host, path).await;
        let v = wk.service(&service).await;
        check(&v).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_holds_each_second_and_the_recent_figures_follow() {
    let wk = Wakeway::start(&whoami_service(
        "web",
        "web.localhost",
        "[service.scaling]\nmin_instances = 1\n",
    ))
    .await;
    wk.wait_ready("web").await;
    let admin = Admin {
        addr: wk.admin,
        token: None,
    };
    // Answers in several seconds, some of them 503.
    let mut sent = 0u32;
    let history = wait_for("3 busy seconds of history", Duration::from_secs(60), || {
        sent += 1;
        let path = if sent.is_multiple_of(4) {
            "/?status=503"
        } else {
            "/ok"
        };
        let admin = &admin;
        let wk = &wk;
        async move {
            let _ = try_get(wk.proxy, "web.localhost", path).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            let h = admin.get("/v1/services/web/history").await;
            let busy = h["points"]
                .as_array()?
                .iter()
                .filter(|p| p["requests_per_second"].as_f64() > Some(0.0))
                .count();
            (busy >= 3).then_some(h)
        }
    })
    .await;
    assert_eq!(
        (history["range"].as_str(), history["step_seconds"].as_u64()),
        (Some("10m"), Some(1))
    );
    let points = history["points"].as_array().unwrap();
    assert!(
        points
            .windows(2)
            .all(|w| w[1]["t"].as_u64() == w[0]["t"].as_u64().map(|t| t + 1)),
        "one step a second: {history}"
    );
    let busy: Vec<&Value> = points
        .iter()
        .filter(|p| p["requests_per_second"].as_f64() > Some(0.0))
        .collect();
    assert!(
        busy.iter()
            .all(|p| p["p50_ms"].is_number() && p["p99_ms"].is_number()),
        "{history}"
    );
    assert!(
        busy.iter().all(|p| p["error_percent"]["5xx"].is_number()),
        "{history}"
    );
    assert!(
        busy.iter()
            .any(|p| p["error_percent"]["5xx"].as_f64() > Some(0.0)),
        "503s count as 5xx: {history}"
    );
    assert!(
        points.iter().all(|p| p["instances"]["ready"] == 1),
        "{history}"
    );
    let idle = points.iter().find(|p| p["requests_per_second"] == 0.0);
    if let Some(p) = idle {
        assert!(
            p.get("p50_ms").is_none() && p.get("error_percent").is_none(),
            "nothing measured, nothing said: {p}"
        );
    }
    let revision = &history["revisions"][0];
    assert_eq!(revision["revision"], "web-00001", "{history}");
    assert!(
        revision["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["percent"] == 100 && p["requests_per_second"].as_f64() > Some(0.0)),
        "{history}"
    );

    // Only what is newer than a step already read.
    let last = points.last().unwrap()["t"].as_u64().unwrap();
    let newer = admin
        .get(&format!("/v1/services/web/history?after={last}"))
        .await;
    assert!(
        newer["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["t"].as_u64() > Some(last)),
        "{newer}"
    );
    let hour = admin.get("/v1/services/web/history?range=1h").await;
    assert_eq!(hour["step_seconds"], 10, "{hour}");
    let (status, e) = admin
        .call(Method::GET, "/v1/services/web/history?range=2d", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"].as_str().unwrap().contains("`2d`"), "{e}");

    let view = wk.service("web").await;
    assert_eq!(view["state"], "running", "{view}");
    assert_eq!(view["recent"]["window_seconds"], 10, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_requests_all_fail_is_failing_not_idle() {
    let wk = Wakeway::start(&format!(
        "{}\n{}\n{}",
        whoami_service("web", "web.localhost", ""),
        whoami_service("quiet", "quiet.localhost", ""),
        r#"
[[service]]
name = "broken"
hosts = ["broken.localhost"]
command = ["sh", "-c", "echo no database >&2; exit 1"]
"#
    ))
    .await;
    assert_eq!(wk.service("quiet").await["state"], "idle");
    let web = requests_until(&wk, "web.localhost", "/?status=500", "web failing", |v| {
        v["state"] == "failing"
    })
    .await;
    let why = web["state_reason"].as_str().unwrap_or_default();
    assert!(why.contains("5xx"), "{web}");
    assert_eq!(web["recent"]["error_percent"]["5xx"], 100.0, "{web}");
    let broken = requests_until(&wk, "broken.localhost", "/", "broken failing", |v| {
        v["state"] == "failing"
    })
    .await;
    let why = broken["state_reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("broken-00001") && why.contains("start"),
        "{broken}"
    );
    let (status, out, _) = run_to_exit(&["status", "--admin", &wk.admin.to_string()]).await;
    assert!(status.success());
    let row = out.lines().find(|l| l.starts_with("web ")).unwrap();
    assert!(row.contains(" failing "), "{out}");
    assert!(out.contains("web is failing: "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_tail_keeps_the_last_lines_filtered_by_status() {
    let logs = tempfile::tempdir().unwrap();
    let services = [
        whoami_service("web", "web.localhost", ""),
        whoami_service("api", "api.localhost", ""),
    ];
    let wk = Wakeway::start_config(&access_log_config(
        &logs.path().join("access.log"),
        "",
        &services.join("\n"),
    ))
    .await;
    for path in [
        "/a",
        "/missing?status=404",
        "/b?token=secret",
        "/boom?status=500",
    ] {
        assert!(wk.get("web.localhost", path).await.status.as_u16() > 0);
    }
    wk.get("api.localhost", "/other").await;
    let tail = wait_for("4 lines of web", DEADLINE, || async {
        let v = wk.admin_json("/v1/services/web/access").await;
        (v["lines"].as_array()?.len() == 4).then_some(v)
    })
    .await;
    assert_eq!(tail["access_log"], "file");
    let paths: Vec<&str> = tail["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/a", "/missing", "/b", "/boom"],
        "oldest first, only web's, no query"
    );
    let first = &tail["lines"][0];
    assert!(
        first["duration_ms"].is_number() && first["revision"] == "web-00001",
        "{first}"
    );
    let errors = wk.admin_json("/v1/services/web/access?status=errors").await;
    let codes: Vec<u64> = errors["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [404, 500]);
    let only = wk
        .admin_json("/v1/services/web/access?status=5xx&tail=5")
        .await;
    assert_eq!(only["lines"].as_array().unwrap().len(), 1);
    let seq = tail["lines"][1]["seq"].as_u64().unwrap();
    let after = wk
        .admin_json(&format!("/v1/services/web/access?after={seq}"))
        .await;
    assert_eq!(after["lines"].as_array().unwrap().len(), 2);
    let (status, e) = admin_call(
        wk.admin,
        Method::GET,
        "/v1/services/web/access?status=6xx",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, _) = admin_call(
        wk.admin,
        Method::GET,
        "/v1/services/nosuch/access",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_access_log_off_the_tail_says_so() {
    let wk = Wakeway::start(&whoami_service("web", "web.localhost", "")).await;
    wk.get("web.localhost", "/").await;
    let v = wk.admin_json("/v1/services/web/access").await;
    assert_eq!(v["access_log"], "off", "{v}");
    assert_eq!(v["lines"], serde_json::json!([]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_routes_keep_the_admin_guards() {
    let wk = Wakeway::start_config(&format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken\"\n{}",
        whoami_service("web", "web.localhost", "")
    ))
    .await;
    for path in [
        "/v1/services/web/history",
        "/v1/services/web/access",
        "/v1/services/web/logs",
    ] {
        let (status, _) = admin_call(wk.admin, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without the token");
        let (status, v) = admin_call(wk.admin, Method::GET, path, None, Some("t0ken")).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        // DNS rebinding: another name in Host is refused before the token is looked at.
        let mut req = request(
            Method::GET,
            &format!("evil.example:{}", wk.admin.port()),
            path,
            "",
        );
        req.headers_mut()
            .insert("authorization", "Bearer t0ken".parse().unwrap());
        let resp = send(wk.admin, req).await.unwrap();
        assert_eq!(
            resp.status,
            StatusCode::FORBIDDEN,
            "{path} with a foreign Host"
        );
        // Read-only: anything else is refused.
        let (status, _) = admin_call(wk.admin, Method::POST, path, None, Some("t0ken")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "POST {path}");
    }
}
