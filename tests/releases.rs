//! Releases on the process runtime: blue/green deployments under load, failed deployments,
//! rollback, pause/resume, config reload (good and bad files, API and SIGHUP), the admin token,
//! the CLI verbs, auto-deploy of a changed executable, and the release metrics. Pause, reload,
//! the admin token and the CLI are in `releases/operate.rs`.

mod common;
#[path = "releases/operate.rs"]
mod operate;

use std::time::{Duration, SystemTime};

use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

const WEB: &str = "web.localhost";

/// The deployment JSON has every field of the contract.
fn assert_deployment_shape(d: &Value) {
    for key in [
        "id",
        "revision",
        "previous_revision",
        "state",
        "trigger",
        "changes",
        "instances",
        "reason",
        "started_at",
        "switched_at",
        "finished_at",
        "duration_ms",
    ] {
        assert!(d.get(key).is_some(), "deployment has `{key}`: {d}");
    }
}

/// The `web` service's table keys: env `MODE`, then the `[service.scaling]` keys `scaling`.
fn mode_and_scaling(mode: &str, scaling: &str) -> String {
    format!("env = {{ MODE = \"{mode}\" }}\n\n[service.scaling]\n{scaling}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_under_load_switches_with_no_failed_request_and_drains_in_flight() {
    let scaling = "min_instances = 2\nmax_instances = 2";
    let wk = Wakeway::whoami("web", &mode_and_scaling("blue", scaling)).await;
    let old = wk.wait_ready_revision("web", "web-00001", 2).await;
    assert_eq!(wk.revision("web").await, "web-00001");

    // A request held open on one old instance across the whole deployment.
    let held = HeldRequest::start(wk.proxy, WEB, "/echo", "before the switch|");
    let busy = wk
        .holding_one("web")
        .await
        .expect("the instance holding the request");
    let idle = old
        .iter()
        .find(|i| i.id != busy.id)
        .expect("the other old instance")
        .clone();

    let load = Load::start(wk.proxy, WEB, "/?sleep=100ms", 4);
    let started = Instant::now();
    load.wait_done_since(started, 8).await;

    let d = wk
        .deploy("web", json!({ "env": { "MODE": "green" } }))
        .await;
    assert_deployment_shape(&d);
    assert_eq!(d["revision"], "web-00002", "{d}");
    assert_eq!(d["previous_revision"], "web-00001", "{d}");
    assert_eq!(d["trigger"], "api", "{d}");
    assert_eq!(d["instances"], 2, "sized to the live pool: {d}");
    assert!(
        d["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "env.MODE")),
        "the change is named: {d}"
    );
    let id = d["id"].as_str().unwrap().to_string();

    let done = wk.wait_deployment("web", &id).await;
    // The pool was stored before the deployment was marked succeeded: every request sent from
    // here on must reach the new revision.
    let switched = Instant::now();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(done["reason"].is_null(), "{done}");
    assert!(done["switched_at"].is_string(), "{done}");
    assert!(done["finished_at"].is_string(), "{done}");
    assert!(done["duration_ms"].is_u64(), "{done}");
    assert_eq!(wk.revision("web").await, "web-00002");

    // The idle old instance drains and stops; the busy one waits for its request.
    wait_pids_gone(&[idle.pid.expect("pid")]).await;
    let still = wk.assert_draining("web", &busy.id).await;
    assert!(pid_alive(busy.pid.expect("pid")), "{still:?}");

    load.wait_done_since(switched, 8).await;
    let resp = held.finish_ok("after the switch").await;
    assert_eq!(
        resp.header("x-wakeway-instance"),
        Some(busy.id.as_str()),
        "served start to end by the old instance"
    );
    wait_pids_gone(&[busy.pid.unwrap()]).await;

    let samples = load.stop().await;
    assert_clean_switch(&samples, switched, "web-00001", "web-00002");
    wk.wait_ready_revision("web", "web-00002", 2).await;

    let events = wk.events("web").await;
    assert_kinds_in_order(&events, "deploy_started", "deploy_switched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_deploy_keeps_the_old_revision_serving() {
    let wk = Wakeway::whoami(
        "web",
        r#"
[service.scaling]
min_instances = 1
max_instances = 1

[service.deploy]
timeout = "3s"
"#,
    )
    .await;
    wk.wait_ready_revision("web", "web-00001", 1).await;

    // Bad requests name what is wrong and start nothing.
    let path = "/v1/services/web/deployments";
    let (status, body) = wk
        .admin_post(path, json!({ "comand": ["wakeway", "whoami"] }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].to_string().contains("comand"), "{body}");
    let (status, body) = wk.admin_post(path, json!({ "image": "web:v2" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].to_string().contains("image"), "{body}");
    let (status, body) = wk
        .admin_post("/v1/services/nope/deployments", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(wk.deployments("web").await.is_empty());

    let load = Load::started(wk.proxy, WEB, "/?sleep=100ms", 3, 5).await;

    // The new revision never becomes ready.
    let d = wk
        .deploy(
            "web",
            json!({ "command": ["wakeway", "whoami", "--startup-delay", "1h"] }),
        )
        .await;
    let id = d["id"].as_str().unwrap().to_string();
    assert_eq!(d["state"], "in_progress", "{d}");
    assert_eq!(d["revision"], "web-00002", "{d}");
    assert_eq!(d["changes"], json!(["command"]), "{d}");

    // It started, but takes no traffic; a second deployment meanwhile is refused.
    let green = wk
        .wait_instances("web", "an instance of web-00002 starting", |l| {
            l.iter()
                .any(|i| revision_of_instance(&i.id) == "web-00002" && i.pid.is_some())
        })
        .await;
    let green_pid = green
        .iter()
        .find(|i| revision_of_instance(&i.id) == "web-00002")
        .and_then(|i| i.pid)
        .unwrap();
    let (status, body) = wk.admin_post(path, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].to_string().contains("in progress"), "{body}");

    let failed = wk.wait_deployment("web", &id).await;
    let mark = Instant::now();
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("deploy.timeout"), "the reason: {failed}");
    assert_eq!(wk.revision("web").await, "web-00001");
    let revisions = wk.admin_json("/v1/services/web/revisions").await;
    assert_eq!(
        revisions
            .as_array()
            .and_then(|r| r.last())
            .map(|r| &r["id"]),
        Some(&json!("web-00001")),
        "the live revision is the last: {revisions}"
    );

    // The new instance is stopped; the old one keeps serving.
    wait_pids_gone(&[green_pid]).await;
    wk.wait_ready_revision("web", "web-00001", 1).await;
    let samples = load.stop_after(mark, 5).await;
    assert_only_revision_served(&samples, "web-00001", "only the old revision served");

    let events = wk.events("web").await;
    let failed_event = events
        .iter()
        .find(|e| e["kind"] == "deploy_failed")
        .unwrap_or_else(|| panic!("a deploy_failed event: {:?}", kinds(&events)));
    assert!(
        failed_event["message"]
            .as_str()
            .is_some_and(|m| m.contains("deploy.timeout")),
        "{failed_event}"
    );
    assert!(
        !kinds(&events).contains(&"start_failed"),
        "the failed deployment's instances are not start failures of the live revision: {:#?}",
        events
            .iter()
            .filter(|e| e["kind"] == "start_failed")
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_redeploys_the_previous_revision() {
    let wk = Wakeway::whoami("web", &mode_and_scaling("one", "min_instances = 1")).await;
    wk.wait_ready_revision("web", "web-00001", 1).await;

    let (status, body) = wk
        .admin_post("/v1/services/web/rollback", json!(null))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "nothing to roll back to: {body}"
    );

    let v2 = wk.deploy("web", json!({ "env": { "MODE": "two" } })).await;
    let v2_id = v2["id"].as_str().unwrap().to_string();
    assert_eq!(
        wk.wait_deployment("web", &v2_id).await["state"],
        "succeeded"
    );
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00002"));

    let (status, rb) = wk
        .admin_post("/v1/services/web/rollback", json!(null))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rb}");
    assert_deployment_shape(&rb);
    assert_eq!(rb["trigger"], "rollback", "{rb}");
    assert_eq!(rb["revision"], "web-00001", "{rb}");
    assert_eq!(rb["previous_revision"], "web-00002", "{rb}");
    let rb_id = rb["id"].as_str().unwrap().to_string();
    assert_eq!(
        wk.wait_deployment("web", &rb_id).await["state"],
        "succeeded"
    );

    assert_eq!(wk.revision("web").await, "web-00001");
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00001"));
    wk.wait_ready_revision("web", "web-00001", 1).await;

    assert_rolled_back_then_rollback(&wk, "web", &v2_id).await;
    let revisions = wk.admin_json("/v1/services/web/revisions").await;
    let ids: Vec<&Value> = revisions
        .as_array()
        .expect("revisions array")
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(
        ids.last(),
        Some(&&json!("web-00001")),
        "live is last: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_at_zero_proves_one_instance_then_goes_back_to_zero() {
    let wk = Wakeway::whoami("web", "[service.scaling]\nidle_timeout = \"1s\"\n").await;
    assert!(wk.instances("web").await.is_empty());
    let d = wk.deploy("web", json!({ "env": { "MODE": "two" } })).await;
    assert_eq!(d["instances"], 1, "one instance proves the revision: {d}");
    let d = wk.wait_deployment("web", d["id"].as_str().unwrap()).await;
    assert_eq!(d["state"], "succeeded", "{d}");
    assert_eq!(wk.revision("web").await, "web-00002");
    wait_for("back to zero after idle_timeout", DEADLINE, || async {
        wk.instances("web").await.is_empty().then_some(())
    })
    .await;
    let resp = wk.get_ok(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00002"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_deploy_follows_a_changed_executable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("wakeway-copy");
    std::fs::copy(WAKEWAY, &exe).expect("copy the binary");
    let wk = Wakeway::start(&format!(
        r#"
[[service]]
name = "web"
hosts = ["{WEB}"]
command = [{:?}, "whoami"]

[service.scaling]
min_instances = 1

[service.deploy]
auto = true
"#,
        path_str(&exe)
    ))
    .await;
    wk.wait_ready_revision("web", "web-00001", 1).await;
    assert_eq!(
        wk.get(WEB, "/").await.field("Revision").as_deref(),
        Some("web-00001")
    );

    // A new build lands on the same path (same bytes, new mtime: what `touch` does).
    let touch = |secs: u64| {
        let f = std::fs::File::open(&exe).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(secs))
            .expect("set mtime");
    };
    for (n, revision) in [(1, "web-00002"), (2, "web-00003")] {
        touch(60 * n as u64);
        let d = wait_for(&format!("auto deployment #{n}"), DEADLINE, || async {
            let list = wk.deployments("web").await;
            (list.len() >= n).then(|| list[n - 1].clone())
        })
        .await;
        assert_eq!(d["trigger"], "auto", "{d}");
        assert_eq!(d["revision"], revision, "{d}");
        let d = wk.wait_deployment("web", d["id"].as_str().unwrap()).await;
        assert_eq!(d["state"], "succeeded", "{d}");
        let resp = wk.get(WEB, "/").await;
        assert_eq!(resp.field("Revision").as_deref(), Some(revision));
    }
    let events = wk.events("web").await;
    assert_eq!(
        kinds(&events)
            .iter()
            .filter(|k| **k == "source_changed")
            .count(),
        2,
        "{:?}",
        kinds(&events)
    );
    assert_eq!(
        wk.deployments("web").await.len(),
        2,
        "one deployment per change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deployments_and_name_the_live_revision() {
    let wk = Wakeway::whoami("web", "[service.scaling]\nmin_instances = 1\n").await;
    wk.wait_ready_revision("web", "web-00001", 1).await;
    let outcome = |text: &str, o: &str| {
        metric(
            text,
            "wakeway_deployments_total",
            &[("service", "web"), ("outcome", o)],
        )
        .unwrap_or(0.0)
    };
    let info = |text: &str, r: &str| {
        metric(
            text,
            "wakeway_revision_info",
            &[("service", "web"), ("revision", r)],
        )
    };
    let m = wk.metrics().await;
    assert_eq!(info(&m, "web-00001"), Some(1.0), "{m}");
    assert_eq!(outcome(&m, "succeeded"), 0.0, "{m}");

    wk.deploy_ok("web", json!({ "env": { "MODE": "two" } }))
        .await;
    let m = wk.metrics().await;
    assert_eq!(outcome(&m, "succeeded"), 1.0, "{m}");
    assert_eq!(outcome(&m, "failed"), 0.0, "{m}");
    assert_eq!(info(&m, "web-00002"), Some(1.0), "{m}");
    assert_eq!(info(&m, "web-00001"), None, "only the live revision: {m}");

    let d = wk
        .deploy_and_wait(
            "web",
            json!({ "command": ["wakeway", "whoami", "--no-such-flag"] }),
        )
        .await;
    assert_eq!(d["state"], "failed", "{d}");
    let m = wk.metrics().await;
    assert_eq!(outcome(&m, "succeeded"), 1.0, "{m}");
    assert_eq!(outcome(&m, "failed"), 1.0, "{m}");
    assert_eq!(info(&m, "web-00002"), Some(1.0), "{m}");
    assert_eq!(
        info(&m, "web-00003"),
        None,
        "the failed revision never went live: {m}"
    );
}
