//! Cold start, scale-out on concurrency, scale-down under load, scale to zero. Instances that
//! fail meanwhile are in `scaling/failing.rs`.

mod common;
#[path = "scaling/failing.rs"]
mod failing;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use http::StatusCode;

/// Instances that take traffic or are about to (not draining).
fn live(instances: &[Instance]) -> usize {
    instances.iter().filter(|i| i.state != "draining").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_serves_first_request_from_a_new_instance() {
    let wk = Wakeway::whoami(
        "hello",
        r#"
[service.scaling]
min_instances = 0
max_instances = 3
"#,
    )
    .await;

    let before = wk.instances("hello").await;
    assert!(
        before.is_empty(),
        "min 0: no instance before the first request: {before:?}"
    );

    let resp = wk.get_ok("hello.localhost", "/first").await;
    let answered = resp.instance().expect("whoami body has an Instance line");
    assert_eq!(resp.header("x-wakeway-instance"), Some(answered.as_str()));
    assert_eq!(resp.field("Service").as_deref(), Some("hello"));

    let after = wk.instances("hello").await;
    assert_eq!(after.len(), 1, "exactly one instance started: {after:?}");
    let inst = &after[0];
    assert_eq!(inst.id, answered, "the body names the admin instance id");
    assert_eq!(inst.state, "ready");
    let pid = inst.pid.expect("a process instance has a pid");
    assert!(pid_alive(pid), "instance pid {pid} is alive");
    assert!(
        !before.iter().any(|i| i.id == answered),
        "the instance did not exist before the request"
    );

    // The instance's stdout lands in wakeway's log, prefixed with its id.
    wk.proc
        .wait_stderr_line(
            "the instance's output in wakeway's log",
            &[&answered, "whoami listening on"],
        )
        .await;

    // A second request reuses it.
    let again = wk.get("hello.localhost", "/second").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.instance(), Some(answered));
    assert_eq!(wk.instances("hello").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_scales_out() {
    let wk = Wakeway::whoami(
        "burst",
        r#"
[service.scaling]
min_instances = 0
max_instances = 10
target_concurrency = 5
max_concurrency = 10
"#,
    )
    .await;

    let tasks = spawn_gets(wk.proxy, "burst.localhost", 40, |i| {
        format!("/?sleep=3s&i={i}")
    });

    let seen = wait_for(
        ">= 4 instances while 40 slow requests run",
        DEADLINE,
        || async {
            let n = live(&wk.instances("burst").await);
            (n >= 4).then_some(n)
        },
    )
    .await;
    assert!(seen <= 10, "max_instances holds: {seen}");

    let served_by: BTreeSet<String> = all_ok(tasks)
        .await
        .iter()
        .map(|resp| resp.instance().unwrap())
        .collect();
    assert!(
        served_by.len() >= 2,
        "the burst was spread over several instances: {served_by:?}"
    );
    let n = wk.instances("burst").await.len();
    assert!(n <= 10, "never more than max_instances: {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_under_load_loses_no_request() {
    let wk = Wakeway::whoami(
        "elastic",
        r#"
[service.scaling]
min_instances = 0
max_instances = 6
target_concurrency = 2
max_concurrency = 4
idle_timeout = "30s"
stable_window = "2s"
panic_window = "1s"
"#,
    )
    .await;
    let proxy = wk.proxy;

    // A burst that scales out.
    let burst = spawn_gets(proxy, "elastic.localhost", 16, |i| {
        format!("/?sleep=1500ms&b={i}")
    });
    let peak = wait_for(">= 3 instances during the burst", DEADLINE, || async {
        let n = live(&wk.instances("elastic").await);
        (n >= 3).then_some(n)
    })
    .await;
    all_ok(burst).await;

    // Light steady load while the autoscaler scales down.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ok = 0usize;
                let mut failures = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match try_get(
                        proxy,
                        "elastic.localhost",
                        &format!("/?sleep=50ms&c={c}&n={n}"),
                    )
                    .await
                    {
                        Ok(r) if r.status == StatusCode::OK => ok += 1,
                        Ok(r) => failures.push(format!("{}: {}", r.status, r.text())),
                        Err(e) => failures.push(e),
                    }
                }
                (ok, failures)
            })
        })
        .collect();

    let low = wait_for(
        "instance count to drop to <= 2 under light load",
        Duration::from_secs(60),
        || async {
            let n = wk.instances("elastic").await.len();
            (n <= 2).then_some(n)
        },
    )
    .await;
    // Keep the load on a little longer so the last drains happen under it too.
    let more = wk.get("elastic.localhost", "/?sleep=500ms").await;
    assert_eq!(more.status, StatusCode::OK);
    stop.store(true, Ordering::Relaxed);

    let mut total_ok = 0;
    let mut all_failures = Vec::new();
    for client in clients {
        let (ok, failures) = client.await.unwrap();
        total_ok += ok;
        all_failures.extend(failures);
    }
    assert!(
        all_failures.is_empty(),
        "{} failed requests during scale-down: {all_failures:?}",
        all_failures.len()
    );
    assert!(total_ok >= 10, "the steady load ran: {total_ok} requests");
    assert!(low < peak, "scaled down from {peak} to {low}");

    // Every decision that changed the desired count is an event carrying its inputs, and the
    // way down is at most halving per decision (to zero only when idle).
    let events = wk.events("elastic").await;
    let scales: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "scale").collect();
    assert!(
        scales.iter().any(|e| e["to"].as_u64() > e["from"].as_u64()),
        "a scale-up event: {events:?}"
    );
    let downs: Vec<_> = scales
        .iter()
        .filter(|e| e["to"].as_u64() < e["from"].as_u64())
        .collect();
    assert!(!downs.is_empty(), "a scale-down event: {events:?}");
    for e in &downs {
        for input in ["stable_avg", "panic_avg", "mode"] {
            assert!(!e[input].is_null(), "scale-down event carries {input}: {e}");
        }
        let (from, to) = (e["from"].as_u64().unwrap(), e["to"].as_u64().unwrap());
        assert!(
            to == 0 || to >= from / 2,
            "at most halving per decision: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_service_scales_to_zero_and_processes_exit() {
    let wk = Wakeway::whoami(
        "idle",
        r#"
[service.scaling]
min_instances = 0
max_instances = 3
target_concurrency = 1
max_concurrency = 2
idle_timeout = "1s"
stable_window = "2s"
panic_window = "1s"
"#,
    )
    .await;
    let tasks = spawn_gets(wk.proxy, "idle.localhost", 4, |i| {
        format!("/?sleep=500ms&i={i}")
    });
    // Collect the pids of every instance seen while the requests run.
    let mut pids = BTreeSet::new();
    for i in wk.wait_ready("idle").await {
        pids.extend(i.pid);
    }
    all_ok(tasks).await;
    for i in wk.instances("idle").await {
        pids.extend(i.pid);
    }
    assert!(!pids.is_empty(), "process instances report their pids");

    wk.wait_scaled_to_zero("idle", "after idle_timeout").await;
    let pids: Vec<u32> = pids.into_iter().collect();
    wait_pids_gone(&pids).await;

    let svc = wk.service("idle").await;
    assert_eq!(svc["desired"].as_u64(), Some(0), "{svc}");

    // And it comes back on demand.
    let resp = wk.get("idle.localhost", "/again").await;
    assert_eq!(resp.status, StatusCode::OK);
    let inst = resp.instance().unwrap();
    let pid = wk
        .instances("idle")
        .await
        .into_iter()
        .find(|i| i.id == inst)
        .and_then(|i| i.pid)
        .expect("the new instance is listed with a pid");
    assert!(!pids.contains(&pid), "a new process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_waits_for_a_slow_starting_instance() {
    // The process exists long before it listens: the request must wait for readiness.
    let wk = Wakeway::start(&whoami_args("sluggish", &["--startup-delay", "1500ms"], "")).await;
    let resp = wk.get_ok("sluggish.localhost", "/").await;
    let instances = wk.instances("sluggish").await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(Some(instances[0].id.clone()), resp.instance());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_idle_timeout_keeps_its_instance() {
    let wk = Wakeway::whoami(
        "long",
        r#"
[service.scaling]
min_instances = 0
idle_timeout = "1s"
stable_window = "2s"
panic_window = "1s"
"#,
    )
    .await;
    let proxy = wk.proxy;
    let task = tokio::spawn(async move { try_get(proxy, "long.localhost", "/?sleep=4s").await });
    let inst = wk.wait_ready("long").await.remove(0);
    while !task.is_finished() {
        let now = wk.instances("long").await;
        assert!(
            now.iter().any(|i| i.id == inst.id && i.state == "ready"),
            "an instance with a request in flight is not idle: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resp = task.await.unwrap().expect("request completes");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.instance(), Some(inst.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_placeholder_in_command_is_replaced() {
    let wk = Wakeway::start(&whoami_args(
        "explicit",
        &["--port", "{port}"],
        "[service.health]\nstartup_timeout = \"10s\"\n",
    ))
    .await;
    wk.get_ok("explicit.localhost", "/").await;
    let inst = wk.instances("explicit").await.remove(0);
    let port = inst.address.rsplit(':').next().unwrap().to_string();
    let expected = format!("whoami listening on 127.0.0.1:{port}");
    wk.proc
        .wait_stderr_line(
            "the instance to listen on the port wakeway gave it",
            &[&inst.id, &expected],
        )
        .await;
}

/// Issue 9, defect 1: the README's burst (40 requests of 3 s, target 5) after a calm spell scales
/// out and stays out while the burst lasts. It used to go 1 -> 4 (demand) -> 2 -> 1 -> 4: the
/// stable window, still full of the calm before, drained instances that each held requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_scales_out_without_scaling_down_before_a_calm_window() {
    let wk = Wakeway::whoami(
        "slow",
        r#"
[service.scaling]
min_instances = 1
max_instances = 10
target_concurrency = 5
max_concurrency = 10
stable_window = "15s"
panic_window = "6s"
"#,
    )
    .await;
    wk.wait_ready("slow").await;
    // The scenario, not a synchronisation: a stable window of calm before the burst.
    tokio::time::sleep(Duration::from_secs(15)).await;
    all_ok(spawn_gets(wk.proxy, "slow.localhost", 40, |i| {
        format!("/?sleep=3s&i={i}")
    }))
    .await;
    let events = wk.events("slow").await;
    let scales: Vec<(u64, u64, String)> = events
        .iter()
        .filter(|e| e["kind"] == "scale")
        .map(|e| {
            (
                e["from"].as_u64().unwrap_or(0),
                e["to"].as_u64().unwrap_or(0),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        scales.iter().any(|(from, to, _)| to > from),
        "the burst scaled out: {scales:?}"
    );
    assert!(
        scales.iter().all(|(from, to, _)| to >= from),
        "scaled down during the burst: {scales:?}"
    );
    let drained = wk.events_of("slow", "instance_draining").await;
    assert!(drained.is_empty(), "drained during the burst: {drained:?}");
}

fn two_speed_service(flag: &std::path::Path, min: u32, max: u32) -> String {
    format!(
        r#"{LISTEN_ANY}
[[service]]
name = "warm"
hosts = ["warm.localhost"]
command = ["sh", "-c", "if [ -e {flag} ]; then sleep 30; fi; exec {WAKEWAY} whoami"]

[service.scaling]
min_instances = {min}
max_instances = {max}
"#,
        flag = flag.display()
    )
}

/// Issue 9, defect 2: desired drops to 1 while one instance is ready and another still starting:
/// the start is cancelled and the warm instance keeps serving. It used to be the warm one that
/// was drained, leaving traffic to wait for the cold start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_is_taken_from_starting_instances_first() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("slow");
    let wk = Wakeway::start_config(&two_speed_service(&flag, 1, 3)).await;
    let warm = wk.wait_ready("warm").await.remove(0);
    // From now on a new instance takes 30 s to start.
    std::fs::write(&flag, "").unwrap();
    let reload = |text: String| {
        let wk = &wk;
        async move {
            wk.write_config(&text);
            let (status, report) = wk.admin_post("/v1/reload", serde_json::json!({})).await;
            assert_eq!(status, StatusCode::OK, "{report}");
        }
    };
    reload(two_speed_service(&flag, 2, 3)).await;
    let cold = wait_for("a second instance starting", DEADLINE, || async {
        wk.instances("warm")
            .await
            .into_iter()
            .find(|i| i.state == "starting" && i.pid.is_some())
    })
    .await;
    reload(two_speed_service(&flag, 1, 1)).await;
    wait_pids_gone(&[cold.pid.unwrap()]).await;
    // The cancelled start is reported once its process is gone, moments after.
    let now = wk
        .wait_instances("warm", "one instance left", |list| list.len() == 1)
        .await;
    assert_eq!(
        (now[0].id.as_str(), now[0].state.as_str()),
        (warm.id.as_str(), "ready")
    );
    let resp = wk.get("warm.localhost", "/").await;
    assert_eq!(
        resp.instance(),
        Some(warm.id.clone()),
        "the warm one serves"
    );
    let drained = wk.events_of("warm", "instance_draining").await;
    assert!(
        drained.is_empty(),
        "a ready instance was drained: {drained:?}"
    );
}
