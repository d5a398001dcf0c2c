//! Revisions you can trust: the default probe, the health gate of a deploy at zero, and
//! revisions that outlive a reload and a restart.

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const WEB: &str = "web.localhost";

/// An app that answers everything but the probed route (whoami's `?status=404` stands in for a
/// framework without `/healthz`): the waiting request is told the probe got 404, and so are the
/// events and `wakeway check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_http_probe_is_named_in_the_answer_the_event_and_check() {
    let wk = Wakeway::whoami("web", &http_probe("/missing?status=404", "30s", "1s")).await;
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT, "{}", resp.text());
    let body = resp.text();
    assert!(
        body.contains("GET /missing?status=404 answered 404"),
        "the body names the probe's answer: {body}"
    );
    let failing = wk.wait_event("web", "probe_failing").await;
    let message = failing[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("answered 404"), "{failing:?}");

    let (status, out, err) = run_to_exit(&["check", "-c", path_str(&wk.config_path)]).await;
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("GET /missing?status=404 must answer 2xx or 3xx")
            && out.contains("health.kind = \"tcp\""),
        "check advises on the http probe: {out}"
    );
}

/// With no `[service.health]` the probe is a TCP connect: an app is ready once it listens,
/// whatever routes it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_probe_is_tcp() {
    let wk = Wakeway::whoami("web", "").await;
    assert_eq!(wk.get(WEB, "/").await.status, StatusCode::OK);
    let (status, out, err) = run_to_exit(&["check", "-c", path_str(&wk.config_path)]).await;
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("health:  tcp"), "{out}");
    let state = wk.config_path.with_file_name("wakeway.state.json");
    assert!(
        out.contains(&format!("state:  {}", state.display())),
        "check names the state file beside the config: {out}"
    );
    assert!(state.exists(), "written at start: {}", state.display());
}

/// A deploy to a service at zero starts one instance of the new revision and gates on its
/// probe: a revision that cannot start fails its deployment (the CLI exits non-zero) and the old
/// revision keeps serving, cold-starting on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_at_zero_that_never_passes_fails_and_the_old_revision_serves() {
    let wk = Wakeway::whoami("web", "").await;
    assert!(wk.instances("web").await.is_empty(), "at zero");
    let admin = wk.admin.to_string();
    let (status, stdout, stderr) = run_to_exit(&[
        "deploy",
        "web",
        "--command",
        "false",
        "--admin",
        admin.as_str(),
    ])
    .await;
    assert!(
        !status.success(),
        "a deploy that never passes exits non-zero: {stdout}\n{stderr}"
    );
    assert!(stderr.contains("failed"), "says it failed: {stderr}");
    let deployments = wk.deployments("web").await;
    let attempt = deployments
        .iter()
        .find(|d| d["revision"] == "web-00002")
        .unwrap_or_else(|| panic!("the deployment of web-00002: {deployments:?}"));
    assert_eq!(attempt["state"], "failed", "{attempt}");
    assert_eq!(wk.revision("web").await, "web-00001");

    let resp = wk.get_ok(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00001"));
}

fn web(env_mode: &str, max_instances: u32) -> String {
    format!(
        "{LISTEN_ANY}\n{}",
        whoami_service(
            "web",
            WEB,
            &format!(
                "env = {{ MODE = \"{env_mode}\" }}\n\n[service.scaling]\nmin_instances = 1\nmax_instances = {max_instances}\n"
            ),
        )
    )
}

/// `POST /v1/reload`; must succeed. Returns the report.
async fn reload(wk: &Wakeway) -> Value {
    let (status, report) = admin_call(wk.admin, Method::POST, "/v1/reload", None, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

/// The deployed revision stands until the file's own source for the service changes: a reload
/// that changes only scaling keeps an API deployment; a reload that changes the file's source
/// deploys it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaling_only_reload_keeps_the_deployed_revision() {
    let wk = Wakeway::start_config(&web("one", 4)).await;
    wk.wait_ready_revision("web", "web-00001", 1).await;
    wk.deploy_ok("web", json!({ "env": { "MODE": "two" } }))
        .await;

    wk.write_config(&web("one", 3));
    let report = reload(&wk).await;
    assert_eq!(
        report["deployed"],
        json!([]),
        "nothing redeployed: {report}"
    );
    assert_eq!(report["updated"], json!(["web"]), "{report}");
    assert_eq!(wk.revision("web").await, "web-00002");
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00002"));
    assert_eq!(wk.deployments("web").await.len(), 1, "no new deployment");

    wk.write_config(&web("three", 3));
    let report = reload(&wk).await;
    // The file's new source deploys.
    wk.wait_reload_deployed(&report, "web").await;
    assert_eq!(wk.revision("web").await, "web-00003");
}

/// A config with `state_file` at `state` (outside the config's own directory, so a second
/// wakeway started from another copy of the file shares it).
fn web_with_state(state: &StateFile, env_mode: &str, min_instances: u32) -> String {
    state.config(&Wakeway::config(&whoami_service(
        "web",
        WEB,
        &format!(
            "env = {{ MODE = \"{env_mode}\" }}\n\n[service.scaling]\nmin_instances = {min_instances}\n"
        ),
    )))
}

/// Revisions persist in the state file: a restart after an API deployment serves the deployed
/// revision (a scaling change to the file meanwhile changes nothing about it); a change to the
/// file's source while wakeway was stopped makes a new revision of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_serving_the_deployed_revision() {
    let state = StateFile::temp();

    let wk = Wakeway::start_config(&web_with_state(&state, "one", 0)).await;
    wk.deploy_ok("web", json!({ "env": { "MODE": "two" } }))
        .await;
    assert_eq!(wk.revision("web").await, "web-00002");
    wk.stop().await;
    let saved = state.saved();
    assert_eq!(
        saved["services"]["web"]["revisions"][1]["env"]["MODE"],
        "two"
    );

    let wk = Wakeway::start_config(&web_with_state(&state, "one", 1)).await;
    assert_eq!(wk.revision("web").await, "web-00002");
    let resp = wk.get_ok(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00002"));
    let deployments = wk.deployments("web").await;
    assert!(
        deployments
            .iter()
            .any(|d| d["revision"] == "web-00002" && d["state"] == "succeeded"),
        "the deployment is remembered too: {deployments:?}"
    );
    wk.wait_event("web", "revision_resumed").await;
    let revisions = wk.admin_json("/v1/services/web/revisions").await;
    assert_eq!(
        revisions.as_array().map(Vec::len),
        Some(2),
        "both revisions are remembered, so a rollback can go back: {revisions}"
    );
    let (status, d) = wk.admin_post("/v1/services/web/rollback", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{d}");
    let d = wk.wait_deployment("web", d["id"].as_str().unwrap()).await;
    assert_eq!(d["state"], "succeeded", "{d}");
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00001"));
    wk.stop().await;

    let wk = Wakeway::start_config(&web_with_state(&state, "three", 0)).await;
    assert_eq!(
        wk.revision("web").await,
        "web-00003",
        "the file's new source"
    );
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00003"));
    wk.stop().await;
}

/// The same gate for a revision that runs but never passes its probe: the deployment fails at
/// `deploy.timeout`, its instance is stopped, and the service stays on the old revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_at_zero_that_never_gets_ready_times_out_and_the_old_revision_serves() {
    let wk = Wakeway::whoami("web", "[service.deploy]\ntimeout = \"1s\"\n").await;
    let d = wk
        .deploy(
            "web",
            json!({ "command": ["wakeway", "whoami", "--startup-delay", "1h"] }),
        )
        .await;
    assert_eq!(d["instances"], 1, "{d}");
    let d = wk.wait_deployment("web", d["id"].as_str().unwrap()).await;
    assert_eq!(d["state"], "failed", "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("deploy.timeout"),
        "{d}"
    );
    wait_for("the new revision's instance gone", DEADLINE, || async {
        wk.instances("web").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(wk.revision("web").await, "web-00001");
    let resp = wk.get_ok(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00001"));
}
