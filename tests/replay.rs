//! `wakeway replay`: access logs with known answers, written here, replayed by the real binary;
//! and a log recorded by a real `wakeway run`, whose cold starts and instance-seconds the
//! replay must predict.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// One JSON access-log line as wakeway writes it: arrival `at` seconds after midnight.
fn line(at: f64, service: &str, duration_ms: f64, queue_ms: f64, cold: bool) -> String {
    let ms = (at * 1000.0).round() as u64;
    let (s, milli) = (ms / 1000, ms % 1000);
    serde_json::json!({
        "time": format!("2026-11-27T{:02}:{:02}:{:02}.{milli:03}Z", s / 3600, s / 60 % 60, s % 60),
        "service": service,
        "revision": format!("{service}-00001"),
        "instance": format!("{service}-00001-a"),
        "method": "GET",
        "path": "/",
        "protocol": "HTTP/1.1",
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 12,
        "duration_ms": duration_ms,
        "queue_ms": queue_ms,
        "cold_start": cold,
        "upstream_connect_ms": null,
        "client": "127.0.0.1:50000",
        "user_agent": "test",
        "referer": null,
        "request_id": "r",
        "trace_id": null,
    })
    .to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A config with one process service `web` and these `[service.*]` tables.
fn config(dir: &Path, name: &str, tables: &str) -> PathBuf {
    let text = format!(
        "{LISTEN_ANY}\n{}\n{tables}\n",
        whoami_service("web", "web.localhost", "")
    );
    write(dir, name, &text)
}

/// `wakeway replay LOG -c CONFIG ARGS`: its exit status, stdout and stderr.
async fn replay(
    log: &Path,
    cfg: &Path,
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let mut all = vec!["replay", path_str(log), "-c", path_str(cfg)];
    all.extend_from_slice(args);
    run_to_exit(&all).await
}

/// `wakeway replay ARGS --format json`, which must succeed; its rows.
async fn replay_json(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let (status, out, err) = run_to_exit(&all).await;
    assert!(status.success(), "replay failed: {err}\n{out}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array().expect("an array").clone()
}

fn row<'a>(rows: &'a [Value], config: &Path) -> &'a Value {
    rows.iter()
        .find(|r| r["config"] == path_str(config))
        .unwrap_or_else(|| panic!("no row for {}: {rows:?}", config.display()))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key}: {v}"))
}

/// Replays `n` requests of `duration_ms` arriving at once against the service configured by
/// `tables`, with `cold_start`; the row for it.
async fn replay_burst(n: usize, duration_ms: f64, tables: &str, cold_start: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let log: String = (0..n)
        .map(|_| line(0.0, "web", duration_ms, 0.0, false) + "\n")
        .collect();
    let log = write(dir.path(), "access.log", &log);
    let cfg = config(dir.path(), "burst.toml", tables);
    let rows = replay_json(&[
        path_str(&log),
        "-c",
        path_str(&cfg),
        "--cold-start",
        cold_start,
    ])
    .await;
    row(&rows, &cfg).clone()
}

/// One 100 ms request every 10 minutes, six in all. With idle_timeout = 5m each finds the
/// service at zero (6 cold starts) and its instance lives the cold start (1 s), the request and
/// the idle timeout (plus up to a 1 s decision tick); with 15m the first instance stays up for
/// the hour. The decisions come with the figures, as `wakeway events` shows them.
#[tokio::test]
async fn idle_timeout_decides_cold_starts_and_instance_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let log: String = (0..6)
        .map(|k| line(k as f64 * 600.0, "web", 100.0, 0.0, false) + "\n")
        .collect();
    let log = write(dir.path(), "access.log", &log);
    let short = config(
        dir.path(),
        "idle5.toml",
        "[service.scaling]\nidle_timeout = \"5m\"",
    );
    let long = config(
        dir.path(),
        "idle15.toml",
        "[service.scaling]\nidle_timeout = \"15m\"",
    );
    let rows = replay_json(&[
        path_str(&log),
        "-c",
        path_str(&short),
        "-c",
        path_str(&long),
        "--cold-start",
        "1s",
        "--events",
    ])
    .await;
    assert_eq!(rows.len(), 2, "{rows:?}");

    let r = row(&rows, &short);
    assert_eq!(r["service"], "web");
    assert_eq!(num(r, "requests"), 6.0);
    assert_eq!(num(r, "cold_starts"), 6.0, "{r}");
    assert_eq!(num(r, "waited_for_cold_start"), 6.0, "{r}");
    assert_eq!(num(r, "peak_instances"), 1.0);
    assert_eq!(num(r, "refused"), 0.0);
    let secs = num(r, "instance_seconds");
    // 6 x (300 s idle + 1 s cold start + 0.1 s service), plus at most a 1 s tick and the drain each.
    assert!(
        (6.0 * 301.1..=6.0 * 302.6).contains(&secs),
        "instance_seconds {secs}"
    );
    assert!((num(r, "wait_p50_ms") - 1000.0).abs() < 50.0, "{r}");
    let kinds = |r: &Value, kind: &str| {
        r["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["kind"] == kind)
            .count()
    };
    assert_eq!(kinds(r, "instance_starting"), 6, "{r}");
    // Each scale to zero says why (idle) and when, on the log's clock.
    let idle: Vec<&Value> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "scale" && e["clamped_by"] == "idle")
        .collect();
    assert_eq!(idle.len(), 6, "{r}");
    let first = idle[0]["time"].as_str().unwrap();
    assert!(first.starts_with("2026-11-27T00:05:0"), "{first}");

    let r = row(&rows, &long);
    assert_eq!(num(r, "cold_starts"), 1.0, "{r}");
    assert_eq!(num(r, "waited_for_cold_start"), 1.0, "{r}");
    let secs = num(r, "instance_seconds");
    // Up from the first request to 15 minutes after the last one ended.
    assert!((3900.1..=3902.1).contains(&secs), "instance_seconds {secs}");
    assert_eq!(kinds(r, "instance_starting"), 1);
}

/// 100 requests at once, 30 s each, at target_concurrency = 10: ten instances, no more.
#[tokio::test]
async fn a_burst_peaks_at_demand_over_target() {
    let r = &replay_burst(
        100,
        30_000.0,
        "[service.scaling]\ntarget_concurrency = 10\nmax_instances = 50",
        "2s",
    )
    .await;
    assert_eq!(num(r, "requests"), 100.0);
    assert_eq!(num(r, "peak_instances"), 10.0, "{r}");
    assert_eq!(num(r, "cold_starts"), 1.0, "{r}");
    assert_eq!(num(r, "refused"), 0.0, "{r}");
}

/// One instance with one slot and a queue of 5 that waits 2.5 s; 20 requests of 1 s at once.
/// 15 find the queue full (503). Of the 5 queued, the first is served when the instance is up
/// (1 s), the second a second later, the other three time out (504).
#[tokio::test]
async fn queue_overflow_and_timeout_are_refused() {
    let r = &replay_burst(
        20,
        1000.0,
        "[service.scaling]\nmax_concurrency = 1\ntarget_concurrency = 1\nmax_instances = 1\n\
         [service.queue]\nmax_pending = 5\ntimeout = \"2500ms\"",
        "1s",
    )
    .await;
    assert_eq!(num(r, "refused"), 18.0, "{r}");
    assert_eq!(num(r, "refused_503"), 15.0, "{r}");
    assert_eq!(num(r, "refused_504"), 3.0, "{r}");
    assert_eq!(num(r, "wait_max_ms"), 2000.0, "{r}");
}

/// `--service` replays one service; a service the config lacks is named, not replayed.
#[tokio::test]
async fn one_service_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log: String = (0..4)
        .map(|k| {
            line(
                k as f64,
                if k % 2 == 0 { "web" } else { "api" },
                10.0,
                0.0,
                false,
            ) + "\n"
        })
        .collect();
    let log = write(dir.path(), "access.log", &log);
    let cfg = config(dir.path(), "web.toml", "");
    let rows = replay_json(&[
        path_str(&log),
        "-c",
        path_str(&cfg),
        "--service",
        "web",
        "--cold-start",
        "1s",
    ])
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0]["service"].as_str(), num(&rows[0], "requests")),
        (Some("web"), 2.0)
    );
    let (status, _, err) = replay(&log, &cfg, &["--cold-start", "1s"]).await;
    assert!(status.success(), "{err}");
    assert!(
        err.contains("no service `api`; its 2 request(s) were not replayed"),
        "{err}"
    );
    let (status, _, err) = replay(&log, &cfg, &["--service", "api"]).await;
    assert!(!status.success());
    assert!(
        err.contains("--service api: no config given has a service of that name"),
        "{err}"
    );
}

/// A malformed line is counted with its number and the rest is replayed; a log none of whose
/// lines is usable names the missing field; a config that does not parse is reported exactly as
/// `wakeway check` reports it.
#[tokio::test]
async fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "ok.toml", "");
    let log = [
        line(0.0, "web", 10.0, 0.0, false),
        "{\"time\": oops".to_string(),
        line(1.0, "web", 10.0, 0.0, false),
    ]
    .join("\n");
    let log = write(dir.path(), "access.log", &log);
    let (status, out, err) = replay(&log, &cfg, &["--cold-start", "1s"]).await;
    assert!(status.success(), "{err}");
    assert!(err.contains("1 of 3 line(s) malformed"), "{err}");
    assert!(err.contains("line 2: not JSON"), "{err}");
    let requests = out
        .lines()
        .find(|l| l.trim_start().starts_with("requests"))
        .unwrap();
    assert!(
        requests.split_whitespace().eq(["requests", "2", "2"]),
        "{out}"
    );

    let no_duration: String = (0..3)
        .map(|k| {
            format!(r#"{{"time":"2026-11-27T00:00:0{k}.000Z","service":"web","status":200,"queue_ms":0}}"#) + "\n"
        })
        .collect();
    let log = write(dir.path(), "short.log", &no_duration);
    let (status, _, err) = run_to_exit(&["replay", path_str(&log), "-c", path_str(&cfg)]).await;
    assert!(!status.success());
    assert!(err.contains("no usable line in 3 line(s)"), "{err}");
    assert!(err.contains("line 1: no `duration_ms` field"), "{err}");

    let bad = write(
        dir.path(),
        "bad.toml",
        &format!(
            "{LISTEN_ANY}\n{}\n[service.scaling]\nidle_timout = \"5m\"\n",
            whoami_service("web", "web.localhost", "")
        ),
    );
    let (status, _, replay_err) = run_to_exit(&[
        "replay",
        path_str(&log),
        "-c",
        path_str(&cfg),
        "-c",
        path_str(&bad),
    ])
    .await;
    assert!(!status.success());
    let (_, _, check_err) = run_to_exit(&["check", "-c", path_str(&bad)]).await;
    assert!(check_err.contains("idle_timout"), "{check_err}");
    assert_eq!(replay_err, check_err);
}

/// A real `wakeway run` (process runtime, `wakeway whoami`) serves two bursts of traffic with a
/// scale to zero between them and writes its access log. Replayed with the same config, the
/// log predicts the cold starts that run had, and its instance-seconds within 10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_is_predicted() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let services = whoami_service(
        "web",
        "web.localhost",
        "[service.scaling]\nidle_timeout = \"8s\"",
    );
    let text = access_log_config(&access, "access_format = \"json\"", &services);
    let w = Wakeway::start_config(&text).await;
    let mut sent = 0;
    for _ in 0..2 {
        // Three seconds of traffic, then nothing until the service is back at zero.
        for _ in 0..12 {
            assert_eq!(w.get("web.localhost", "/?sleep=100ms").await.status, 200);
            sent += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        wait_for("scale to zero", Duration::from_secs(60), || async {
            w.instances("web").await.is_empty().then_some(())
        })
        .await;
    }
    let events = w.events("web").await;
    wait_for("the access log", DEADLINE, || async {
        let n = std::fs::read_to_string(&access)
            .unwrap_or_default()
            .lines()
            .count();
        (n == sent).then_some(())
    })
    .await;
    let cold_starts = events.iter().filter(|e| e["kind"] == "cold_start").count();
    assert_eq!(cold_starts, 2, "{events:?}");
    let real_seconds = instance_seconds(&events);

    let rows = replay_json(&[path_str(&access), "-c", path_str(&w.config_path)]).await;
    let r = row(&rows, &w.config_path);
    assert_eq!(num(r, "requests"), sent as f64);
    assert_eq!(num(r, "cold_starts"), cold_starts as f64, "{r}");
    let predicted = num(r, "instance_seconds");
    let error = (predicted - real_seconds).abs() / real_seconds;
    eprintln!("instance-seconds: the run had {real_seconds:.1}, replay predicts {predicted:.1}");
    assert!(
        error <= 0.10,
        "predicted {predicted} instance-seconds, the run had {real_seconds} ({r})"
    );
}

/// From each instance's `instance_starting` event to its `instance_stopped` one.
fn instance_seconds(events: &[Value]) -> f64 {
    let at = |e: &Value| {
        let t = e["time"].as_str().unwrap();
        wakeway::replay::parse_rfc3339(t).unwrap() as f64 / 1e6
    };
    let mut total = 0.0;
    for start in events.iter().filter(|e| e["kind"] == "instance_starting") {
        let id = &start["instance"];
        let stop = events
            .iter()
            .find(|e| e["kind"] == "instance_stopped" && &e["instance"] == id)
            .unwrap_or_else(|| panic!("{id} never stopped: {events:?}"));
        total += at(stop) - at(start);
    }
    total
}
