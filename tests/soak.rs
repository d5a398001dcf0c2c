//! The soak test (issue 9): constant concurrent load through a process service while it scales
//! out, deploys a new revision, reloads its config, loses an instance to SIGKILL, goes to zero,
//! cold-starts again and finally wakeway gets SIGTERM. Only the requests in flight on the killed
//! instance may fail, and no process of the service may be left. Bounded: about a minute.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use serde_json::json;
use tokio::time::Instant;

const CLIENTS: usize = 16;
const MAX_CONCURRENCY: u32 = 8;
/// How long the load runs steadily between two faults (the scenario, not a synchronisation).
const PHASE: Duration = Duration::from_secs(8);

fn config(marker: &str, max_instances: u32, version: &str) -> String {
    let service_keys = format!(
        r#"env = {{ SOAK_RUN = "{marker}", VERSION = "{version}" }}

[service.scaling]
min_instances = 0
max_instances = {max_instances}
target_concurrency = 3
max_concurrency = {MAX_CONCURRENCY}
idle_timeout = "2s"
stable_window = "6s"
panic_window = "2s"

[service.health]
interval = "1s"

[service.deploy]
drain_timeout = "10s"
stop_grace = "2s"
"#
    );
    format!(
        "{}{}",
        listen_with("shutdown_timeout = \"10s\""),
        whoami_service("soak", "soak.localhost", &service_keys)
    )
}

/// Lets the load run for a phase; it must keep being served throughout.
async fn steady(load: &Load) {
    let mark = Instant::now();
    tokio::time::sleep(PHASE).await;
    load.wait_done_since(mark, CLIENTS).await;
}

/// Every live process that carries this run's marker in its environment: the instances and
/// anything they started.
fn processes_with(marker: &str) -> Vec<u32> {
    let needle = format!("SOAK_RUN={marker}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            pid_alive(pid)
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_scale_deploy_reload_kill_zero_cold_start_sigterm() {
    let began = Instant::now();
    let marker = format!("soak-{}-{}", std::process::id(), began.elapsed().as_nanos());
    let mut wk = Wakeway::start_config(&config(&marker, 6, "1")).await;

    // Load from zero: a cold start, then scale-out on concurrency.
    let load = Load::start(wk.proxy, "soak.localhost", "/?sleep=50ms", CLIENTS);
    wait_for("scale-out to 2 ready instances", DEADLINE, || async {
        (wk.ready_count("soak").await >= 2).then_some(())
    })
    .await;
    steady(&load).await;

    // A deploy under load.
    wk.deploy_ok(
        "soak",
        json!({ "env": { "SOAK_RUN": marker, "VERSION": "2" } }),
    )
    .await;
    steady(&load).await;

    // A reload under load: a scaling change applied live and an env change deployed.
    wk.write_config(&config(&marker, 5, "3"));
    let (status, report) = wk.admin_post("/v1/reload", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    wk.wait_reload_deployed(&report, "soak").await;
    steady(&load).await;

    // SIGKILL of a busy instance: only its requests in flight may fail.
    let victim = wait_for("a busy ready instance", DEADLINE, || async {
        wk.instances("soak")
            .await
            .into_iter()
            .find(|i| i.state == "ready" && i.in_flight > 0 && i.pid.is_some())
    })
    .await;
    let pid = victim.pid.unwrap();
    let mark_kill = Instant::now();
    signal(pid, libc::SIGKILL);
    // The signal takes a moment to land on a busy machine: requests that reach the instance
    // until it is dead are in flight on it. From then on, none may fail.
    let dead_at = loop {
        if !pid_alive(pid) {
            break Instant::now();
        }
        assert!(
            mark_kill.elapsed() < DEADLINE,
            "the killed instance never died"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    steady(&load).await;

    let samples = load.stop().await;
    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok()).collect();
    assert!(
        failed.len() <= MAX_CONCURRENCY as usize,
        "more failures than the killed instance could hold ({MAX_CONCURRENCY}): {:?}",
        failed_samples(&samples)
    );
    for f in &failed {
        assert!(
            f.sent < dead_at,
            "a request sent {:?} after the killed instance was dead failed: {:?}",
            f.sent.duration_since(dead_at),
            f.result
        );
    }

    // Calm: the service goes to zero and its processes exit.
    wait_for("the service at zero", DEADLINE, || async {
        wk.instances("soak").await.is_empty().then_some(())
    })
    .await;
    wait_for("no process of the service left", DEADLINE, || async {
        processes_with(&marker).is_empty().then_some(())
    })
    .await;

    // A cold start again, then SIGTERM with requests in flight: they finish.
    wk.get_ok("soak.localhost", "/cold").await;
    let proxy = wk.proxy;
    let last: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(async move {
                try_get(proxy, "soak.localhost", &format!("/?sleep=1s&i={i}")).await
            })
        })
        .collect();
    wk.wait_load("soak", 4, 0).await;
    wk.proc.signal(libc::SIGTERM);
    for r in last {
        let r = r.await.unwrap().expect("a request in flight at SIGTERM");
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let status = wk.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "wakeway exits 0 after SIGTERM: {status}");
    wait_for(
        "no process of the service left after exit",
        DEADLINE,
        || async { processes_with(&marker).is_empty().then_some(()) },
    )
    .await;

    if std::env::var_os("SOAK_LOG").is_some() {
        for l in wk
            .proc
            .stderr()
            .lines()
            .filter(|l| l.contains("wakeway::events"))
        {
            eprintln!("{l}");
        }
    }
    let events = instances_started(&wk).await;
    eprintln!(
        "soak: {} requests by {CLIENTS} clients, {} failed (all in flight on the killed instance), {} instances started, {:.0?} in all",
        samples.len(),
        failed.len(),
        events,
        began.elapsed()
    );
}

/// How many instances were started, from the log wakeway wrote (the admin API is gone by now).
async fn instances_started(wk: &Wakeway) -> usize {
    wk.proc
        .stderr()
        .lines()
        .filter(|l| l.contains("instance_starting") || l.contains("starting instance"))
        .count()
}
