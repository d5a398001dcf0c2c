//! The activator's bounded queue: full → 503 with Retry-After, wait too long → 504.

mod common;

use common::*;
use http::StatusCode;

fn one_slot_service(name: &str, queue: &str) -> String {
    whoami_service(
        name,
        &format!("{name}.localhost"),
        &format!(
            r#"
[service.scaling]
min_instances = 1
max_instances = 1
max_concurrency = 1
target_concurrency = 1

[service.queue]
{queue}
"#
        ),
    )
}

/// Waits until `name` is ready, then sends it a request that holds its one slot for `sleep`;
/// returns that request once it is in flight (await it with [`all_ok`]).
async fn hold_the_slot(
    wk: &Wakeway,
    name: &str,
    sleep: &str,
) -> tokio::task::JoinHandle<Result<Resp, String>> {
    wk.wait_ready(name).await;
    let (proxy, host) = (wk.proxy, format!("{name}.localhost"));
    let path = format!("/?sleep={sleep}");
    let busy = tokio::spawn(async move { try_get(proxy, &host, &path).await });
    wk.wait_load(name, 1, 0).await;
    busy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_full_is_503_with_retry_after() {
    let wk = Wakeway::start(&one_slot_service("q", "max_pending = 1\ntimeout = \"30s\"")).await;
    let busy = hold_the_slot(&wk, "q", "5s").await;
    let proxy = wk.proxy;
    let queued = tokio::spawn(async move { try_get(proxy, "q.localhost", "/queued").await });
    wk.wait_load("q", 1, 1).await;

    let rejected = wk.get("q.localhost", "/rejected").await;
    assert_eq!(
        rejected.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        rejected.text()
    );
    let retry_after = rejected.header("retry-after").expect("Retry-After header");
    assert!(
        retry_after.trim().parse::<u64>().is_ok(),
        "Retry-After is delay-seconds: {retry_after:?}"
    );

    all_ok(vec![busy, queued]).await;

    wait_for("a queue rejection in the metrics", DEADLINE, || async {
        let m = wk.metrics().await;
        (metric(&m, "wakeway_queue_rejections_total", &[("service", "q")]) == Some(1.0))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_timeout_is_504() {
    let wk = Wakeway::start(&one_slot_service("t", "timeout = \"500ms\"")).await;
    let busy = hold_the_slot(&wk, "t", "5s").await;

    let waited = wk.get("t.localhost", "/waits").await;
    assert_eq!(
        waited.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        waited.text()
    );

    all_ok(vec![busy]).await;
    // The queue is empty again.
    wk.wait_load("t", 0, 0).await;
}

/// Issue 9, defect 4: a reload that removes a service answers the requests queued for it at once
/// (503, saying why), while its instance still finishes the request it has in flight. They used
/// to wait until the instance drained, past their queue timeout (504).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_the_service_answers_its_queue_503() {
    let keep = whoami_service("keep", "keep.localhost", "");
    let config = format!(
        "{LISTEN_ANY}\n{keep}\n{}",
        one_slot_service("gone", "timeout = \"3s\"")
    );
    let wk = Wakeway::start_config(&config).await;
    let busy = hold_the_slot(&wk, "gone", "8s").await;
    let proxy = wk.proxy;
    let queued: Vec<_> = (0..2)
        .map(|i| {
            tokio::spawn(async move { try_get(proxy, "gone.localhost", &format!("/q{i}")).await })
        })
        .collect();
    wk.wait_load("gone", 1, 2).await;

    wk.write_config(&format!("{LISTEN_ANY}\n{keep}"));
    let (status, body) = wk.admin_post("/v1/reload", serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for q in queued {
        let resp = q.await.unwrap().expect("the queued request is answered");
        assert_eq!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            resp.text()
        );
        assert!(resp.text().contains("removed"), "{}", resp.text());
    }
    assert!(
        !busy.is_finished(),
        "the queue was answered only after the drain"
    );
    all_ok(vec![busy]).await;
}
