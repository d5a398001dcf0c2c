//! Releases on the docker runtime, against the real local engine: the contract of
//! `releases.rs` (blue/green under load, failed deployments, rollback, pause/resume, reload),
//! checked on what `docker ps -a` shows as well as on what the admin API says.
//!
//! The image, the per-test scope and the cleanup are in `common/docker.rs`; every wakeway here
//! runs with `stop_on_exit = true`, and the scope's leftovers are removed when a test ends.
//! Rollbacks are in `docker_releases/rollback.rs`.

mod common;
#[path = "docker_releases/rollback.rs"]
mod rollback;

use std::collections::BTreeSet;

use common::docker::*;
use common::engine_scenarios as scenario;
use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

const WEB: &str = "web.localhost";

/// A complete config for `t`'s scope: wakeway removes its containers when it exits.
fn config(t: &DockerTest, services: &str) -> String {
    t.config("stop_on_exit = true", services)
}

/// The environment of the container running `instance` of `service`.
async fn container_env(t: &DockerTest, service: &str, instance: &str) -> Vec<String> {
    let name = format!("wakeway-{}-{service}-{instance}", t.scope);
    let info = t.inspect(&name).await;
    info.config.and_then(|c| c.env).unwrap_or_default()
}

/// The image reference each container of `service` was deployed from (its `wakeway.image`
/// label: the container itself is created from the image id its revision pinned).
async fn container_images(t: &DockerTest, service: &str) -> BTreeSet<String> {
    t.containers(Some(service), true)
        .await
        .into_iter()
        .filter_map(|c| c.labels?.remove("wakeway.image"))
        .collect()
}

/// The image id each container of `service` runs.
/// Every container of service `web` runs image `id`; `why` explains a failure.
async fn assert_web_runs(t: &DockerTest, id: &str, why: &str) {
    let want = BTreeSet::from([id.to_string()]);
    assert_eq!(container_image_ids(t, "web").await, want, "{why}");
}

async fn container_image_ids(t: &DockerTest, service: &str) -> BTreeSet<String> {
    t.containers(Some(service), true)
        .await
        .into_iter()
        .filter_map(|c| c.image_id)
        .collect()
}

/// Moves `tag` to another image (the test image with one more label); returns its new id.
async fn move_tag(t: &DockerTest, tag: &str, old_id: &str) -> String {
    let moved = DOCKERFILE.replace("CMD", "LABEL wakeway.test.moved=yes\nCMD");
    assert_ne!(moved, DOCKERFILE);
    t.own_build(tag, &moved).await;
    let new_id = image_id(t, tag).await;
    assert_ne!(new_id, old_id, "the tag moved");
    new_id
}

/// Deploys `body` to service `web`, which must succeed as `revision` with one ready instance
/// running in its container; returns the instance ids.
async fn deploy_one(
    t: &DockerTest,
    w: &Wakeway,
    body: serde_json::Value,
    revision: &str,
) -> BTreeSet<String> {
    let d = w.deploy("web", body).await;
    assert_eq!(d["revision"], revision, "{d}");
    let done = w.wait_deployment("web", d["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let ready = ids_of(&w.wait_ready_revision("web", revision, 1).await);
    t.wait_container_instances("web", &ready).await;
    ready
}

async fn image_id(t: &DockerTest, reference: &str) -> String {
    t.docker
        .inspect_image(reference)
        .await
        .unwrap_or_else(|e| panic!("inspect image {reference}: {e}"))
        .id
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_deploy_of_a_new_tag_under_load_fails_no_request() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let v1 = t.own_tag(&format!("wakeway-test-{}:v1", t.scope)).await;
    let v2 = t.own_tag(&format!("wakeway-test-{}:v2", t.scope)).await;
    let w = scenario::two_of_web(&t, &v1, "").await;

    // A request held open on one old container across the whole deployment.
    let held = HeldRequest::start(w.proxy, WEB, "/echo", "before the switch|");
    let busy = w
        .holding_one("web")
        .await
        .expect("the instance holding the request")
        .id;

    let load = Load::started(w.proxy, WEB, "/?sleep=50ms", 4, 8).await;

    let (d, switched) = scenario::deploy_switched(&w, json!({ "image": v2 })).await;
    assert_eq!(d["previous_revision"], "web-00001", "{d}");
    assert_eq!(d["instances"], 2, "sized to the live pool: {d}");
    assert_eq!(d["changes"], json!(["image"]), "{d}");
    assert_eq!(w.revision("web").await, "web-00002");

    // The idle old container drains and is removed; the busy one waits for its request.
    let green = of_revision(&w.instances("web").await, "web-00002");
    assert_eq!(green.len(), 2, "{green:?}");
    let mut expected = green.clone();
    expected.insert(busy.clone());
    t.wait_container_instances("web", &expected).await;
    w.assert_draining("web", &busy).await;

    load.wait_done_since(switched, 8).await;
    let resp = held.finish_ok("after the switch").await;
    assert_eq!(
        resp.header("x-wakeway-instance"),
        Some(busy.as_str()),
        "served start to end by the old container"
    );
    // Its request done, the last old container goes too: only the new image runs.
    t.wait_container_instances("web", &green).await;
    assert_eq!(container_images(&t, "web").await, BTreeSet::from([v2]));

    let samples = load.stop().await;
    assert_clean_switch(&samples, switched, "web-00001", "web-00002");
    let events = w.events("web").await;
    assert_kinds_in_order(&events, "deploy_started", "deploy_switched");
}

/// An image whose app runs but never passes its probe: it listens on another port than the
/// one the service publishes.
async fn never_ready_image(t: &DockerTest) -> String {
    let cmd = DOCKERFILE.replace("\"0.0.0.0\"]", "\"0.0.0.0\", \"--port\", \"9999\"]");
    assert_ne!(cmd, DOCKERFILE);
    t.own_build(&format!("wakeway-test-{}:never-ready", t.scope), &cmd)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deploys_keep_the_old_container_serving_and_leave_no_new_one() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let never_ready = never_ready_image(&t).await;
    let missing = format!("wakeway-test-missing-{}:none", t.scope);
    let w = Wakeway::start_config(&config(
        &t,
        &docker_service(
            "web",
            &t.image,
            r#"[service.scaling]
min_instances = 1
max_instances = 1

[service.deploy]
timeout = "3s""#,
        ),
    ))
    .await;
    let live = ids_of(&w.wait_ready_revision("web", "web-00001", 1).await);
    t.wait_container_instances("web", &live).await;

    let load = Load::started(w.proxy, WEB, "/?sleep=50ms", 3, 5).await;

    // 1. Health never passes: the new container runs but takes no traffic, then goes.
    let d = w.deploy("web", json!({ "image": never_ready })).await;
    assert_eq!(d["state"], "in_progress", "{d}");
    assert_eq!(d["revision"], "web-00002", "{d}");
    let id = d["id"].as_str().unwrap().to_string();
    wait_for("a container of web-00002", DEADLINE, || async {
        let now = t.container_instances("web").await;
        now.iter()
            .any(|i| revision_of_instance(i) == "web-00002")
            .then_some(())
    })
    .await;
    let failed = w.wait_deployment("web", &id).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("deploy.timeout"), "the reason: {failed}");
    assert_eq!(w.revision("web").await, "web-00001");
    t.wait_container_instances("web", &live).await;

    // 2. The image does not exist: nothing is created, the reason names the image.
    let d = w.deploy("web", json!({ "image": missing })).await;
    assert_eq!(d["revision"], "web-00003", "{d}");
    let failed = w.wait_deployment("web", d["id"].as_str().unwrap()).await;
    let mark = Instant::now();
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&missing) && reason.contains("not found locally"),
        "the reason names the image: {failed}"
    );
    assert_eq!(w.revision("web").await, "web-00001");
    assert_eq!(t.container_instances("web").await, live);
    w.wait_ready_revision("web", "web-00001", 1).await;

    // The old container served throughout.
    let samples = load.stop_after(mark, 5).await;
    assert_only_revision_served(&samples, "web-00001", "only the old container served");
    assert!(
        samples
            .iter()
            .all(|s| live.contains(s.instance.as_deref().unwrap_or_default())),
        "only the old container served"
    );
    let states: Vec<Value> = w
        .deployments("web")
        .await
        .iter()
        .map(|d| d["state"].clone())
        .collect();
    assert_eq!(states, [json!("failed"), json!("failed")]);
    let events = w.events("web").await;
    assert_eq!(
        events_of_kind(&events, "deploy_failed").len(),
        2,
        "{:?}",
        kinds(&events)
    );
    assert!(
        events_of_kind(&events, "start_failed").is_empty(),
        "a failed deployment is not a start failure of the live revision: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_removes_the_containers_and_resume_cold_starts_a_new_one() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let w = Wakeway::start_config(&config(&t, &docker_service("web", &t.image, ""))).await;
    let first = w.get_ok(WEB, "/").await;
    let first = first.instance().expect("an Instance line");
    t.wait_container_instances("web", &BTreeSet::from([first.clone()]))
        .await;

    let held = HeldRequest::start(w.proxy, WEB, "/echo", "in flight ");
    w.wait_load("web", 1, 0).await;
    let (status, view) = w.admin_post("/v1/services/web/pause", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["paused"], true, "{view}");

    assert_paused(&w.get(WEB, "/").await);
    // Draining, not stopped: the request in flight finishes on its container.
    assert_eq!(
        t.container_instances("web").await,
        BTreeSet::from([first.clone()])
    );
    held.finish_ok("at the pause").await;

    t.wait_container_instances("web", &BTreeSet::new()).await;
    w.wait_instances("web", "no instances", |l| l.is_empty())
        .await;
    w.assert_no_deploy_while_paused("web").await;

    let resp = w.resume_and_cold_start("web", WEB).await;
    let second = resp.instance().expect("an Instance line");
    assert_ne!(second, first, "a new container");
    t.wait_container_instances("web", &BTreeSet::from([second]))
        .await;
    let events = w.events("web").await;
    assert_eq!(
        events_of_kind(&events, "cold_start").len(),
        2,
        "{:?}",
        kinds(&events)
    );
    assert_paused_then_resumed(&events);
}

/// Pause while a deployment's containers are still being created: the deployment fails (the
/// service was paused) and pause drains everything, so no container of it may stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_during_a_deploy_leaves_no_container_of_it() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let never_ready = never_ready_image(&t).await;
    let w = Wakeway::start_config(&config(
        &t,
        &docker_service("web", &t.image, "[service.scaling]\nmin_instances = 1"),
    ))
    .await;
    w.wait_ready_revision("web", "web-00001", 1).await;
    let d = w.deploy("web", json!({ "image": never_ready })).await;
    // Creating and starting a container takes the engine a few hundred milliseconds: the
    // pause comes before the new instance exists.
    let (status, view) = w.admin_post("/v1/services/web/pause", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let failed = w.wait_deployment("web", d["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    t.wait_container_instances("web", &BTreeSet::new()).await;
    w.wait_instances("web", "no instances", |l| l.is_empty())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_deploys_a_changed_env_adds_and_removes_docker_services() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let keep = |mode: &str| {
        docker_service(
            "keep",
            &t.image,
            &format!("env = {{ MODE = \"{mode}\" }}\n\n[service.scaling]\nmin_instances = 1"),
        )
    };
    let before = format!(
        "{}\n{}",
        keep("one"),
        docker_service("gone", &t.image, "[service.scaling]\nmin_instances = 1")
    );
    let w = Wakeway::start_config(&config(&t, &before)).await;
    let old = ids_of(&w.wait_ready_revision("keep", "keep-00001", 1).await);
    let gone = ids_of(&w.wait_ready_revision("gone", "gone-00001", 1).await);
    t.wait_container_instances("keep", &old).await;
    t.wait_container_instances("gone", &gone).await;

    let load = Load::started(w.proxy, "keep.localhost", "/?sleep=50ms", 2, 4).await;

    w.write_config(&config(
        &t,
        &format!("{}\n{}", keep("two"), docker_service("fresh", &t.image, "")),
    ));
    let (status, report) = admin_call(w.admin, Method::POST, "/v1/reload", None, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["added"], json!(["fresh"]), "{report}");
    assert_eq!(report["removed"], json!(["gone"]), "{report}");
    let id = the_reload_deployment(&report, "keep");

    // The changed service: env deployed blue/green, the old container replaced.
    let d = w.wait_deployment("keep", &id).await;
    let switched = Instant::now();
    assert_eq!(d["state"], "succeeded", "{d}");
    assert_eq!(d["trigger"], "reload", "{d}");
    assert_eq!(d["changes"], json!(["env.MODE"]), "{d}");
    let new = ids_of(&w.wait_ready_revision("keep", "keep-00002", 1).await);
    t.wait_container_instances("keep", &new).await;
    let env = container_env(&t, "keep", new.iter().next().unwrap()).await;
    assert!(env.contains(&"MODE=two".to_string()), "{env:?}");
    let samples = load.stop_after(switched, 4).await;
    assert_none_failed(&samples, " during the reload");
    assert!(
        samples
            .iter()
            .filter(|s| s.sent >= switched)
            .all(|s| s.revision.as_deref() == Some("keep-00002")),
        "after the switch only the new revision answers"
    );

    // The removed service: its host is gone and its container removed.
    let resp = w.get("gone.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.text());
    t.wait_container_instances("gone", &BTreeSet::new()).await;

    // The added service cold-starts a container of its own.
    let resp = w.get_ok("fresh.localhost", "/").await;
    assert_eq!(resp.field("Service").as_deref(), Some("fresh"));
    let fresh = resp.instance().expect("an Instance line");
    t.wait_container_instances("fresh", &BTreeSet::from([fresh]))
        .await;
}
