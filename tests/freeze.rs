//! Issue 20, part 1: `idle_action = "freeze"` with a real app (gunicorn + Flask from PyPI): an
//! idle instance is frozen, the next request thaws it (same process, 200), it is stopped after
//! `frozen_timeout`; `max_frozen_memory` stops the longest-frozen first; a frozen instance killed
//! from outside is replaced; a SIGKILLed wakeway leaves no frozen process behind.

mod common;

use std::path::Path;
use std::time::Duration;

use common::python_apps::{gunicorn_command, venv, write_flask_app};
use common::*;

fn flask_service(name: &str, venv: &Path, dir: &Path, scaling: &str) -> String {
    write_flask_app(dir, 0.0);
    format!(
        r#"
[[service]]
name = "{name}"
hosts = ["{name}.localhost"]
command = {}

[service.scaling]
idle_action = "freeze"
idle_timeout = "1s"
{scaling}
"#,
        gunicorn_command(venv, dir, Some("127.0.0.1:{port}"))
    )
}

async fn state_of(w: &Wakeway, service: &str) -> Vec<String> {
    w.instances(service)
        .await
        .into_iter()
        .map(|i| i.state)
        .collect()
}

async fn wait_state(w: &Wakeway, service: &str, state: &str) -> Instance {
    wait_for(
        &format!("{service}: an instance {state}"),
        DEADLINE,
        || async {
            w.instances(service)
                .await
                .into_iter()
                .find(|i| i.state == state)
        },
    )
    .await
}

/// The pid the Flask worker answered with.
async fn served_pid(w: &Wakeway, service: &str) -> String {
    served(w, service).await.text().trim().to_string()
}

/// `GET /` of `service`, answered 200.
async fn served(w: &Wakeway, service: &str) -> Resp {
    w.get_ok(&format!("{service}.localhost"), "/").await
}

/// A process stopped by the freezer: it is not running, and stays so.
fn frozen_in_kernel(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cg| {
        cg.lines()
            .any(|l| l.contains("freezer:/") && l.contains("/wakeway/"))
            || cg
                .lines()
                .any(|l| l.starts_with("0::") && l.contains("/wakeway/"))
    }) && std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("State:") && !l.contains("R ("))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_when_idle_thawed_by_a_request_stopped_after_frozen_timeout() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let w = Wakeway::start(&flask_service(
        "flask",
        &venv,
        dir.path(),
        "frozen_timeout = \"6s\"",
    ))
    .await;
    let cold = served(&w, "flask").await;
    assert_eq!(cold.timed_wait(), Some("cold-start"), "{:?}", cold.headers);
    let first = cold.text().trim().to_string();
    let inst = wait_state(&w, "flask", "frozen").await;
    let master = inst.pid.unwrap();
    assert!(frozen_in_kernel(master), "the process is not frozen");
    w.assert_one_frozen("flask", 1 << 20).await;

    // Thawed by the next request: the same worker answers, no new process, and Server-Timing
    // names the wait a thaw.
    let thawed = served(&w, "flask").await;
    assert_eq!(thawed.text().trim(), first, "a new process answered");
    assert_eq!(thawed.timed_wait(), Some("thaw"), "{:?}", thawed.headers);
    let events = w.events("flask").await;
    let thawed: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "instance_thawed")
        .collect();
    assert_eq!(thawed.len(), 1, "{events:?}");
    assert!(thawed[0]["thaw_ms"].as_f64().is_some());
    assert_eq!(
        events.iter().filter(|e| e["kind"] == "cold_start").count(),
        1,
        "the thaw is not a cold start"
    );

    // Frozen again, then stopped after frozen_timeout: the whole process tree is gone.
    wait_state(&w, "flask", "frozen").await;
    wait_for(
        "stopped after frozen_timeout",
        Duration::from_secs(30),
        || async { w.instances("flask").await.is_empty().then_some(()) },
    )
    .await;
    wait_pids_gone(&[master]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_frozen_memory_stops_the_longest_frozen_first() {
    let Some(venv) = venv() else { return };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let services = format!(
        "{}{}",
        flask_service("older", &venv, da.path(), ""),
        flask_service("newer", &venv, db.path(), "")
    );
    let w = Wakeway::start(&format!(
        "\n[scaling]\nmax_frozen_memory = \"100GiB\"\n{services}"
    ))
    .await;
    served_pid(&w, "older").await;
    wait_state(&w, "older", "frozen").await;
    served_pid(&w, "newer").await;
    wait_state(&w, "newer", "frozen").await;
    let held = |m: &str, s: &str| metric(m, "wakeway_frozen_memory_bytes", &[("service", s)]);
    let (older, newer) = wait_for("both frozen memories counted", DEADLINE, || async {
        let m = w.metrics().await;
        match (held(&m, "older"), held(&m, "newer")) {
            (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some((a as u64, b as u64)),
            _ => None,
        }
    })
    .await;
    // Room for the newer one alone: the older one goes, the newer one stays frozen.
    let limit = older + newer - 1;
    let text = std::fs::read_to_string(&w.config_path).unwrap().replace(
        "max_frozen_memory = \"100GiB\"",
        &format!("max_frozen_memory = \"{}KiB\"", limit / 1024),
    );
    std::fs::write(&w.config_path, text).unwrap();
    w.proc.signal(libc::SIGHUP);
    wait_for("the older frozen instance stopped", DEADLINE, || async {
        w.instances("older").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(state_of(&w, "newer").await, vec!["frozen"]);
    let drained = w.events("older").await;
    assert!(
        drained
            .iter()
            .any(|e| e["kind"] == "instance_draining" && e["reason"] == "max_frozen_memory"),
        "{drained:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_instance_killed_from_outside_is_replaced() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let w = Wakeway::start(&flask_service("flask", &venv, dir.path(), "")).await;
    let first = served_pid(&w, "flask").await;
    let inst = wait_state(&w, "flask", "frozen").await;
    signal(inst.pid.unwrap(), libc::SIGKILL);
    let again = served_pid(&w, "flask").await;
    assert_ne!(again, first, "the killed instance answered");
    w.assert_frozen_kill_seen("flask").await;
}

/// The parent-death signal cannot act on a frozen process: wakeway's guard thaws its cgroup as
/// it kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_wakeway_leaves_no_frozen_process_and_the_next_one_serves() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = flask_service("flask", &venv, dir.path(), "");
    let mut w = Wakeway::start(&config).await;
    served_pid(&w, "flask").await;
    let inst = wait_state(&w, "flask", "frozen").await;
    let pid = inst.pid.unwrap();
    assert!(frozen_in_kernel(pid));
    w.proc.signal(libc::SIGKILL);
    w.proc.wait_exit(DEADLINE).await;
    wait_pids_gone(&[pid]).await;
    let next = Wakeway::start(&config).await;
    served_pid(&next, "flask").await;
}

/// `wakeway check` says what `idle_action = "freeze"` does for each runtime: swarm cannot
/// freeze yet (its idle instances are stopped), docker pauses.
#[test]
fn check_says_swarm_cannot_freeze_and_docker_pauses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.toml");
    let service = |name: &str, runtime: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nhosts = [\"{name}.localhost\"]\nimage = \"x:1\"\n\
             runtime = \"{runtime}\"\n[service.scaling]\nidle_action = \"freeze\"\n"
        )
    };
    let config = format!("{}{}", service("s", "swarm"), service("d", "docker"));
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(WAKEWAY)
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(
            "service s: idle_action = \"freeze\" is not supported for swarm services yet; \
             idle instances are stopped instead"
        ),
        "{said}"
    );
    assert!(
        said.contains("service d: idle instances are paused (docker pause)"),
        "{said}"
    );
}
