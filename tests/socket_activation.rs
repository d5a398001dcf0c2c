//! Issue 20, part 2: `socket_activation = true`. Wakeway binds the instance's socket and hands
//! it over as fd 3 (`LISTEN_FDS=1`, `LISTEN_PID`): gunicorn (through its systemd support, which
//! reads `LISTEN_FDS`) and `wakeway whoami` serve on it, and the cold request waits in the socket's backlog while the app boots,
//! with no probe on the way.

mod common;

use common::python_apps::{gunicorn_command, venv, write_flask_app};
use common::*;

/// No probe ran, so none failed, and no start failed.
async fn no_probe_failure(w: &Wakeway, service: &str) {
    let events = w.events(service).await;
    for kind in ["probe_failing", "start_failed", "instance_exited"] {
        assert!(
            events.iter().all(|e| e["kind"] != kind),
            "{kind}: {events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gunicorn_on_an_inherited_socket_serves_the_cold_request() {
    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A second of imports: the request must wait in the backlog, not fail or be probed.
    write_flask_app(dir.path(), 1.0);
    let w = Wakeway::start(&format!(
        r#"
[[service]]
name = "flask"
hosts = ["flask.localhost"]
command = {}
socket_activation = true

[service.health]
kind = "http"
path = "/"
"#,
        gunicorn_command(&venv, dir.path(), None)
    ))
    .await;
    let resp = w.get_ok("flask.localhost", "/").await;
    assert!(resp.text().starts_with("pid "), "{}", resp.text());
    no_probe_failure(&w, "flask").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_accepts_listen_fds() {
    let w = Wakeway::start(
        r#"
[[service]]
name = "who"
hosts = ["who.localhost"]
command = ["wakeway", "whoami", "--port", "1", "--startup-delay", "500ms"]
socket_activation = true
"#,
    )
    .await;
    // `--port 1` could not be bound: only the inherited socket serves.
    let resp = w.get_ok("who.localhost", "/").await;
    assert!(resp.instance().is_some(), "{}", resp.text());
    no_probe_failure(&w, "who").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_socket_activation_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.toml");
    std::fs::write(
        &path,
        "[[service]]\nname = \"d\"\nhosts = [\"d.localhost\"]\nimage = \"x:1\"\nsocket_activation = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(WAKEWAY)
        .args(["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("socket_activation") && err.contains("docker"),
        "{err}"
    );
}
