//! SIGTERM: stop accepting, finish what is in flight, stop the instances, exit 0.

mod common;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_stops_children() {
    let mut wk = Wakeway::start(&whoami_service(
        "hello",
        "hello.localhost",
        r#"
[service.scaling]
min_instances = 1
max_instances = 3
"#,
    ))
    .await;
    wk.wait_ready("hello").await;
    let proxy = wk.proxy;

    let tasks: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(async move {
                try_get(proxy, "hello.localhost", &format!("/?sleep=3s&i={i}")).await
            })
        })
        .collect();
    wk.wait_load("hello", 3, 0).await;
    let pids: Vec<u32> = wk
        .instances("hello")
        .await
        .iter()
        .filter_map(|i| i.pid)
        .collect();
    assert!(!pids.is_empty());

    wk.proc.signal(libc::SIGTERM);

    for task in tasks {
        let resp = task.await.unwrap().expect("in-flight request completes");
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    }
    let status = wk.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "wakeway exits 0 after SIGTERM: {status}");
    wait_pids_gone(&pids).await;
    assert!(
        try_get(proxy, "hello.localhost", "/").await.is_err(),
        "nothing listens after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_nothing_in_flight_exits_0() {
    let mut wk = Wakeway::start(&whoami_service(
        "hello",
        "hello.localhost",
        "[service.scaling]\nmin_instances = 1\n",
    ))
    .await;
    let pids: Vec<u32> = wk
        .wait_ready("hello")
        .await
        .iter()
        .filter_map(|i| i.pid)
        .collect();
    wk.proc.signal(libc::SIGINT);
    let status = wk.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "wakeway exits 0 after SIGINT: {status}");
    wait_pids_gone(&pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_wakeway_takes_its_children_along() {
    let mut wk = Wakeway::start(&whoami_service(
        "hello",
        "hello.localhost",
        "[service.scaling]\nmin_instances = 1\n",
    ))
    .await;
    let pids: Vec<u32> = wk
        .wait_ready("hello")
        .await
        .iter()
        .filter_map(|i| i.pid)
        .collect();
    assert!(!pids.is_empty());
    wk.proc.signal(libc::SIGKILL);
    wk.proc.wait_exit(DEADLINE).await;
    wait_pids_gone(&pids).await;
}
