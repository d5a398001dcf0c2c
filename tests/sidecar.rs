//! `wakeway sidecar`: one static upstream behind a hard concurrency limit and a queue.

mod common;

use common::*;
use http::StatusCode;

async fn start_whoami() -> (Proc, std::net::SocketAddr) {
    let mut whoami = Proc::spawn("whoami", &["whoami", "--port", "0"]);
    let addr = whoami.listening_addr("whoami").await;
    (whoami, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_limit_holds_at_the_upstream() {
    let (_whoami, upstream) = start_whoami().await;
    let upstream_s = upstream.to_string();
    let mut sidecar = Proc::spawn(
        "sidecar",
        &[
            "sidecar",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream_s,
            "--max-concurrency",
            "2",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let proxy = sidecar.listening_addr("proxy").await;
    let admin = sidecar.listening_addr("admin").await;

    let tasks: Vec<_> = (0..10)
        .map(|i| {
            tokio::spawn(async move {
                try_get(proxy, "anything.test", &format!("/?sleep=500ms&i={i}")).await
            })
        })
        .collect();
    for task in tasks {
        let resp = task.await.unwrap().expect("request completes");
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
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
    let upstream_s = upstream.to_string();
    let mut sidecar = Proc::spawn(
        "sidecar",
        &[
            "sidecar",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream_s,
            "--max-concurrency",
            "1",
            "--max-pending",
            "1",
            "--queue-timeout",
            "30s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let proxy = sidecar.listening_addr("proxy").await;
    let admin = sidecar.listening_addr("admin").await;
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
    assert_eq!(
        rejected.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        rejected.text()
    );
    assert!(rejected.header("retry-after").is_some());
    assert_eq!(busy.await.unwrap().unwrap().status, StatusCode::OK);
    assert_eq!(queued.await.unwrap().unwrap().status, StatusCode::OK);
}
