//! Traffic you can steer: a split between revisions, tags that reach one revision, deploys that
//! take no traffic, and gradual rollouts that halt on a bad revision.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const WEB: &str = "web.localhost";
const CANARY: &str = "canary--web.localhost";

/// Sends `stable` percent of web's traffic to web-00001 and the rest to the latest revision,
/// tagged `canary`; the admin API must accept it.
async fn split_to_canary(wk: &Wakeway, stable: u32) {
    let split = json!({ "traffic": [
        { "revision": "web-00001", "percent": stable },
        { "latest": true, "percent": 100 - stable, "tag": "canary" }
    ] });
    let (status, body) = put_traffic(wk, "web", split).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn put_traffic(wk: &Wakeway, service: &str, body: Value) -> (StatusCode, Value) {
    admin_call(
        wk.admin,
        Method::PUT,
        &format!("/v1/services/{service}/traffic"),
        Some(&body),
        None,
    )
    .await
}

async fn traffic(wk: &Wakeway, service: &str) -> Value {
    wk.admin_json(&format!("/v1/services/{service}/traffic"))
        .await
}

/// Deploys `env` as a new revision that takes no traffic, tagged `tag`; returns its id.
async fn deploy_no_traffic(wk: &Wakeway, env: Value, tag: &str) -> String {
    let done = wk
        .deploy_ok("web", json!({ "env": env, "no_traffic": true, "tag": tag }))
        .await;
    done["revision"].as_str().unwrap().to_string()
}

/// Starts a rollout of the `web` service's latest revision (`POST .../promote` with `rollout`),
/// which must be accepted; returns the answer.
async fn promote(wk: &Wakeway, rollout: Value) -> Value {
    let (status, r) = wk.admin_post("/v1/services/web/promote", rollout).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    r
}

/// `n` requests to `host`, `clients` at a time; counts the answers by revision (and status).
async fn spread(
    wk: &Wakeway,
    host: &'static str,
    n: usize,
    clients: usize,
) -> BTreeMap<String, usize> {
    let proxy = wk.proxy;
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(n));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let left = left.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |v| v.checked_sub(1),
                )
                .is_ok()
            {
                let r = get(proxy, host, "/").await;
                seen.push(if r.status == StatusCode::OK {
                    r.field("Revision").unwrap_or_default()
                } else {
                    format!("status {}: {}", r.status, r.text())
                });
            }
            seen
        }));
    }
    let mut counts = BTreeMap::new();
    for t in tasks {
        for rev in t.await.unwrap() {
            *counts.entry(rev).or_insert(0) += 1;
        }
    }
    counts
}

/// A 90/10 split sends about a tenth of the requests to the canary, a tagged host reaches the
/// tagged revision only, and each revision scales on its own load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_shares_requests_and_each_revision_scales_on_its_own() {
    let wk = Wakeway::whoami(
        "web",
        r#"
[service.scaling]
max_concurrency = 4
target_concurrency = 2
max_instances = 4
idle_timeout = "2s"
stable_window = "4s"
panic_window = "2s"
"#,
    )
    .await;
    assert_eq!(wk.get(WEB, "/").await.status, StatusCode::OK);
    let canary = deploy_no_traffic(&wk, json!({ "V": "2" }), "canary").await;
    assert_eq!(canary, "web-00002");
    // The new revision is the latest, yet the traffic stayed with web-00001.
    let t = traffic(&wk, "web").await;
    assert_eq!(t["latest"], "web-00002", "{t}");
    let shares = t["traffic"].as_array().unwrap();
    assert_eq!(shares[0]["revision"], "web-00001", "{t}");
    assert_eq!(shares[0]["percent"], 100, "{t}");
    assert_eq!(shares[1]["tag"], "canary", "{t}");
    assert_eq!(shares[1]["host"], CANARY, "{t}");
    let only_old = spread(&wk, WEB, 50, 5).await;
    assert_eq!(only_old.get("web-00001"), Some(&50), "{only_old:?}");

    // Percentages must sum to 100: refused, nothing changes.
    let (status, body) = put_traffic(
        &wk,
        "web",
        json!({ "traffic": [{ "revision": "web-00001", "percent": 90 }, { "latest": true, "percent": 20 }] }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("sum to 110"),
        "{body}"
    );
    let (status, body) = put_traffic(
        &wk,
        "web",
        json!({ "traffic": [{ "revision": "web-00009", "percent": 100 }] }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("web-00009"),
        "{body}"
    );

    split_to_canary(&wk, 90).await;
    let counts = spread(&wk, WEB, 2000, 16).await;
    let to_canary = counts.get("web-00002").copied().unwrap_or(0);
    let to_stable = counts.get("web-00001").copied().unwrap_or(0);
    assert_eq!(
        to_canary + to_stable,
        2000,
        "every request answered 200: {counts:?}"
    );
    assert!(
        (140..=260).contains(&to_canary),
        "10% ± 3% of 2,000 to the canary: {counts:?}"
    );

    // The tagged host reaches the canary only; an unknown tag is a 404, not the main revision.
    let tagged = spread(&wk, CANARY, 100, 4).await;
    assert_eq!(tagged.get("web-00002"), Some(&100), "{tagged:?}");
    let unknown = wk.get("nosuch--web.localhost", "/").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text());
    assert!(unknown.text().contains("nosuch"), "{}", unknown.text());

    // Load on the canary alone: it scales out, the stable revision does not follow.
    let stable_before = of_revision(&wk.instances("web").await, "web-00001").len();
    let mut held = Vec::new();
    for _ in 0..10 {
        let proxy = wk.proxy;
        held.push(tokio::spawn(async move {
            get(proxy, CANARY, "/?sleep=4s").await.status
        }));
    }
    wk.wait_instances("web", "the canary scaled out to 3 or more", |list| {
        list.iter()
            .filter(|i| revision_of_instance(&i.id) == "web-00002" && i.state == "ready")
            .count()
            >= 3
    })
    .await;
    let stable_now = of_revision(&wk.instances("web").await, "web-00001").len();
    assert!(
        stable_now <= stable_before.max(1),
        "the stable revision scaled with the canary's load: {stable_before} -> {stable_now}"
    );
    for h in held {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
    let scale_events: Vec<Value> = wk
        .events("web")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "scale" && e["revision"] == "web-00002")
        .collect();
    assert!(!scale_events.is_empty(), "scale events carry the revision");

    // With no more requests, both revisions go back to zero, each on its own idle timer.
    wk.wait_instances("web", "every revision back at zero", |list| list.is_empty())
        .await;
    let m = wk.metrics().await;
    assert_eq!(
        metric(
            &m,
            "wakeway_revision_traffic_percent",
            &[("service", "web"), ("revision", "web-00002")]
        ),
        Some(10.0),
        "{m}"
    );
}

/// `--no-traffic` then a rollout in steps: the revision ends with all the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_moves_traffic_in_steps_to_the_end() {
    let wk = Wakeway::whoami("web", "").await;
    assert_eq!(wk.get(WEB, "/").await.status, StatusCode::OK);
    let next = deploy_no_traffic(&wk, json!({ "V": "2" }), "next").await;
    let r = promote(&wk, json!({ "steps": [10, 50, 100], "interval": "1s" })).await;
    assert_eq!(r["revision"], next.as_str(), "{r}");
    // Steady requests while it moves: none fails.
    let load = Load::start(wk.proxy, WEB, "/", 4);
    wait_for("the rollout to finish", DEADLINE, || async {
        let t = traffic(&wk, "web").await;
        (t["rollout"]["state"] == "done").then_some(())
    })
    .await;
    assert_none_failed(&load.stop().await, "");
    let t = traffic(&wk, "web").await;
    let shares = t["traffic"].as_array().unwrap();
    assert_eq!(shares.len(), 1, "{t}");
    assert_eq!(shares[0]["revision"], next.as_str(), "{t}");
    assert_eq!(shares[0]["percent"], 100, "{t}");
    assert_eq!(shares[0]["latest"], true, "{t}");
    let steps = wk.events_of("web", "rollout_step").await;
    assert_eq!(steps.len(), 2, "two steps after the first: {steps:?}");
    let after = spread(&wk, WEB, 20, 2).await;
    assert_eq!(after.get(next.as_str()), Some(&20), "{after:?}");
}

/// A revision that answers 5xx halts its rollout, and the traffic goes back where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_of_a_failing_revision_halts_and_goes_back() {
    let wk = Wakeway::whoami("web", "").await;
    assert_eq!(wk.get(WEB, "/").await.status, StatusCode::OK);
    let bad = deploy_no_traffic(&wk, json!({ "WHOAMI_STATUS": "500" }), "bad").await;
    let rollout = json!({ "steps": [20, 100], "interval": "30s", "max_error_rate": 0.1 });
    promote(&wk, rollout).await;
    // Requests during the first step: about a fifth reach the bad revision and fail.
    let halted = wait_for("the rollout to halt", DEADLINE, || async {
        let _ = spread(&wk, WEB, 20, 4).await;
        let t = traffic(&wk, "web").await;
        (t["rollout"]["state"] == "halted").then_some(t)
    })
    .await;
    let reason = halted["rollout"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("5xx"), "{halted}");
    let shares = halted["traffic"].as_array().unwrap();
    assert_eq!(shares[0]["revision"], "web-00001", "{halted}");
    assert_eq!(shares[0]["percent"], 100, "{halted}");
    let after = spread(&wk, WEB, 40, 4).await;
    assert_eq!(
        after.get("web-00001"),
        Some(&40),
        "back on the old revision: {after:?}"
    );
    let ev = wk.wait_event("web", "rollout_halted").await;
    assert_eq!(ev[0]["revision"], bad.as_str(), "{ev:?}");
}

/// The traffic set through the API outlives a restart, like the deployed revision does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traffic_outlives_a_restart() {
    let state = StateFile::temp();
    let config = state.config(&Wakeway::config(&whoami_service("web", WEB, "")));
    let mut wk = Wakeway::start_config(&config).await;
    deploy_no_traffic(&wk, json!({ "V": "2" }), "canary").await;
    split_to_canary(&wk, 70).await;
    wk.proc.signal(libc::SIGTERM);
    assert!(wk.proc.wait_exit(DEADLINE).await.success());

    let wk = Wakeway::start_config(&config).await;
    let t = traffic(&wk, "web").await;
    let shares = t["traffic"].as_array().unwrap();
    assert_eq!(shares[0]["revision"], "web-00001", "{t}");
    assert_eq!(shares[0]["percent"], 70, "{t}");
    assert_eq!(shares[1]["revision"], "web-00002", "{t}");
    assert_eq!(shares[1]["tag"], "canary", "{t}");
    let tagged = spread(&wk, CANARY, 10, 2).await;
    assert_eq!(tagged.get("web-00002"), Some(&10), "{tagged:?}");
}

/// `[[service.traffic]]` in the file applies at a reload that changes it; a file whose shares do
/// not sum to 100 is refused naming the file, line and key, and the running split stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_traffic_applies_at_a_reload_and_a_bad_one_changes_nothing() {
    let base = format!("{LISTEN_ANY}\n{}", whoami_service("web", WEB, ""));
    let wk = Wakeway::start_config(&base).await;
    deploy_no_traffic(&wk, json!({ "V": "2" }), "canary").await;

    let split = |old: u32, new: u32| {
        format!(
            "{base}\n[[service.traffic]]\nrevision = \"web-00001\"\npercent = {old}\n\n\
             [[service.traffic]]\nlatest = true\npercent = {new}\ntag = \"canary\"\n"
        )
    };
    wk.write_config(&split(50, 50));
    let (status, report) = wk.admin_post("/v1/reload", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["traffic"][0]["result"]["Ok"],
        Value::Null,
        "{report}"
    );
    let shares = |t: &Value| -> Vec<(String, u64, Value)> {
        t["traffic"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["revision"].as_str().unwrap().to_string(),
                    s["percent"].as_u64().unwrap(),
                    s["tag"].clone(),
                )
            })
            .collect()
    };
    let t = traffic(&wk, "web").await;
    assert_eq!(
        shares(&t),
        vec![
            ("web-00001".into(), 50, Value::Null),
            ("web-00002".into(), 50, json!("canary"))
        ],
        "{t}"
    );
    let counts = spread(&wk, WEB, 200, 4).await;
    assert!(
        counts.get("web-00001").copied().unwrap_or(0) > 0
            && counts.get("web-00002").copied().unwrap_or(0) > 0,
        "both revisions answer: {counts:?}"
    );

    let bad = split(50, 60);
    wk.write_config(&bad);
    let (status, report) = wk.admin_post("/v1/reload", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    let line = line_of(&bad, "[[service.traffic]]");
    assert!(
        error.contains(&format!("wakeway.toml:{line}"))
            && error.contains("service[0].traffic")
            && error.contains("sum to 110"),
        "{error}"
    );
    let after = traffic(&wk, "web").await;
    assert_eq!(shares(&after), shares(&t), "nothing changed");
}
