//! SIGTERM: stop accepting, finish what is in flight, stop the instances, exit 0.

mod common;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_stops_children() {
    let mut wk = Wakeway::whoami(
        "hello",
        r#"
[service.scaling]
min_instances = 1
max_instances = 3
"#,
    )
    .await;
    wk.wait_ready("hello").await;
    let proxy = wk.proxy;

    let tasks = spawn_gets(proxy, "hello.localhost", 3, |i| format!("/?sleep=3s&i={i}"));
    wk.wait_load("hello", 3, 0).await;
    let pids = pids_of(&wk.instances("hello").await);
    assert!(!pids.is_empty());

    wk.proc.signal(libc::SIGTERM);

    all_ok(tasks).await;
    let status = wk.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "wakeway exits 0 after SIGTERM: {status}");
    wait_pids_gone(&pids).await;
    assert!(
        try_get(proxy, "hello.localhost", "/").await.is_err(),
        "nothing listens after exit"
    );
}

/// `wakeway whoami` with one warm instance, and that instance's pid.
async fn warm_hello() -> (Wakeway, Vec<u32>) {
    let wk = Wakeway::whoami("hello", MIN_ONE).await;
    let pids = pids_of(&wk.wait_ready("hello").await);
    (wk, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_nothing_in_flight_exits_0() {
    let (mut wk, pids) = warm_hello().await;
    wk.proc.signal(libc::SIGINT);
    let status = wk.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "wakeway exits 0 after SIGINT: {status}");
    wait_pids_gone(&pids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_wakeway_takes_its_children_along() {
    let (mut wk, pids) = warm_hello().await;
    assert!(!pids.is_empty());
    wk.proc.signal(libc::SIGKILL);
    wk.proc.wait_exit(DEADLINE).await;
    wait_pids_gone(&pids).await;
}

/// Issue 9, defect 4: a request queued for an instance that will not be ready before wakeway
/// stops gets its 503, saying why, before wakeway exits (it used to get no answer at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_queued_requests_503_with_the_reason() {
    let mut wk = Wakeway::start_config(&format!(
        "{}{}",
        listen_with("shutdown_timeout = \"1s\""),
        command_service(
            "slow",
            "slow.localhost",
            &["wakeway", "whoami", "--startup-delay", "1h"],
            "[service.queue]\ntimeout = \"60s\"\n",
        )
    ))
    .await;
    let proxy = wk.proxy;
    let queued = tokio::spawn(async move { try_get(proxy, "slow.localhost", "/").await });
    wk.wait_load("slow", 0, 1).await;
    let pids: Vec<u32> = wait_for("the starting instance's pid", DEADLINE, || async {
        let pids = pids_of(&wk.instances("slow").await);
        (!pids.is_empty()).then_some(pids)
    })
    .await;

    wk.proc.signal(libc::SIGTERM);
    let resp = queued
        .await
        .unwrap()
        .expect("the queued request is answered");
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert!(resp.text().contains("stopping"), "{}", resp.text());
    let status = wk.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "{status}");
    wait_pids_gone(&pids).await;
}

/// An app that starts a background worker and writes its pid to the file returned.
async fn app_with_a_background_worker() -> (tempfile::TempDir, std::path::PathBuf, Wakeway) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("worker.pid");
    let script = format!(
        "sleep 300 & echo $! > {}; exec {WAKEWAY} whoami",
        file.display()
    );
    let wk = Wakeway::start(&shell_service("app", &script, MIN_ONE)).await;
    (dir, file, wk)
}

fn worker_pid(file: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Issue 9, defect 6: an app that starts a background worker (`sh -c "worker & exec app"`,
/// `npm start` -> node). When the app dies on its own the worker goes with it; so it does when
/// wakeway stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_background_worker_goes_with_its_instance() {
    let (_dir, file, mut wk) = app_with_a_background_worker().await;
    let first = wk.wait_ready("app").await;
    let worker = wait_for("the first worker's pid", DEADLINE, || async {
        worker_pid(&file)
    })
    .await;
    std::fs::remove_file(&file).unwrap();
    assert!(pid_alive(worker));

    // The app crashes: its worker must not live on.
    signal(first[0].pid.unwrap(), libc::SIGKILL);
    wait_pids_gone(&[worker]).await;

    // The replacement's worker goes when wakeway stops.
    let second = wait_for("the replacement's worker pid", DEADLINE, || async {
        worker_pid(&file)
    })
    .await;
    assert_ne!(second, worker);
    wk.wait_ready("app").await;
    wk.proc.signal(libc::SIGTERM);
    let status = wk.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "{status}");
    assert!(!pid_alive(second), "the worker outlived wakeway's exit");
}

/// Issue 9, defect 6, the hard case: wakeway itself is SIGKILLed. The app dies by its
/// parent-death signal; the worker it started in the background must not survive either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_wakeway_takes_an_apps_background_worker_along() {
    let (_dir, file, mut wk) = app_with_a_background_worker().await;
    let app = wk.wait_ready("app").await.remove(0).pid.unwrap();
    let worker = wait_for("the worker's pid", DEADLINE, || async { worker_pid(&file) }).await;
    assert!(pid_alive(worker));
    wk.proc.signal(libc::SIGKILL);
    wk.proc.wait_exit(DEADLINE).await;
    wait_pids_gone(&[app, worker]).await;
}
