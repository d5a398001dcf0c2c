//! `wakeway sidecar`: one static upstream behind a hard concurrency limit and a queue.

mod common;

use common::*;
use http::StatusCode;

/// `wakeway sidecar` in front of `upstream` with `limits`; its proxy and admin addresses.
async fn start_sidecar(
    upstream: std::net::SocketAddr,
    limits: &[&str],
) -> (Proc, std::net::SocketAddr, std::net::SocketAddr) {
    let upstream = upstream.to_string();
    let mut args = vec![
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
    ];
    args.extend_from_slice(limits);
    args.extend_from_slice(&["--admin", "127.0.0.1:0"]);
    let mut sidecar = Proc::spawn("sidecar", &args);
    let proxy = sidecar.listening_addr("proxy").await;
    let admin = sidecar.listening_addr("admin").await;
    (sidecar, proxy, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_limit_holds_at_the_upstream() {
    let (_whoami, upstream) = start_whoami().await;
    let (_sidecar, proxy, admin) = start_sidecar(upstream, &["--max-concurrency", "2"]).await;

    let tasks = spawn_gets(proxy, "anything.test", 10, |i| {
        format!("/?sleep=500ms&i={i}")
    });
    for resp in all_ok(tasks).await {
        assert_eq!(resp.instance().as_deref(), Some("whoami"));
    }

    let stats = get(upstream, "whoami", "/stats").await;
    let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    let max = stats["max_in_flight"].as_u64().unwrap();
    assert!(
        (1..=2).contains(&max),
        "never more than 2 concurrent at the upstream: {stats}"
    );
    assert!(stats["requests"].as_u64().unwrap() >= 10, "{stats}");

    let svc = admin_json(admin, "/v1/services/sidecar").await;
    assert_eq!(svc["name"], "sidecar", "{svc}");
    assert_eq!(svc["in_flight"].as_u64(), Some(0), "{svc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_queue_bounds() {
    let (_whoami, upstream) = start_whoami().await;
    let (_sidecar, proxy, admin) = start_sidecar(
        upstream,
        &[
            "--max-concurrency",
            "1",
            "--max-pending",
            "1",
            "--queue-timeout",
            "30s",
        ],
    )
    .await;
    let load = |in_flight: u64, queued: u64| async move {
        wait_for(
            &format!("sidecar in_flight {in_flight} queued {queued}"),
            DEADLINE,
            || async move {
                let s = admin_json(admin, "/v1/services/sidecar").await;
                (s["in_flight"].as_u64() == Some(in_flight) && s["queued"].as_u64() == Some(queued))
                    .then_some(())
            },
        )
        .await
    };

    let busy = tokio::spawn(async move { try_get(proxy, "x", "/?sleep=5s").await });
    load(1, 0).await;
    let queued = tokio::spawn(async move { try_get(proxy, "x", "/queued").await });
    load(1, 1).await;
    let rejected = get(proxy, "x", "/rejected").await;
    assert_retry_later(&rejected);
    assert_eq!(busy.await.unwrap().unwrap().status, StatusCode::OK);
    assert_eq!(queued.await.unwrap().unwrap().status, StatusCode::OK);
}
