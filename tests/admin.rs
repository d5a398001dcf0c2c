//! The admin API and the Prometheus metrics.

mod common;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_the_requests_say() {
    let wk = Wakeway::start(&whoami_service("hello", "hello.localhost", "")).await;
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
