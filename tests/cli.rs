//! `wakeway check` and `wakeway run` on good and bad config files.

mod common;

use common::*;

const MISSPELT: &str = r#"[proxy]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[service]]
name = "hello"
hosts = ["hello.localhost"]
command = ["wakeway", "whoami"]

[service.scaling]
min_instances = 0
targte_concurrency = 5
"#;

fn write_config(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_names_file_line_key(stderr: &str, file_name: &str, line: usize, key: &str) {
    assert!(
        stderr.contains(&format!("{file_name}:{line}")),
        "stderr names {file_name}:{line}: {stderr}"
    );
    assert!(stderr.contains(key), "stderr names the key {key}: {stderr}");
}

/// Runs `wakeway COMMAND -c misspelt.toml`, checks it fails naming the file, line and key, and
/// returns its stdout.
async fn rejects_misspelt(command: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "misspelt.toml", MISSPELT);
    let line = line_of(MISSPELT, "targte_concurrency");

    let (status, stdout, stderr) = run_to_exit(&[command, "-c", path_str(&path)]).await;
    assert!(!status.success(), "{command} must fail: {status}\n{stderr}");
    assert_names_file_line_key(&stderr, "misspelt.toml", line, "targte_concurrency");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_rejects_misspelt_key_naming_file_line_and_key() {
    rejects_misspelt("check").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rejects_misspelt_key_naming_file_line_and_key() {
    let stdout = rejects_misspelt("run").await;
    assert!(
        !stdout.contains("listening on"),
        "run must not start listening with a bad config: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_a_good_config_and_summarises_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "{LISTEN_ANY}\n{}\n{}",
        whoami_service("hello", "hello.localhost", ""),
        whoami_service(
            "slow",
            "slow.localhost",
            "[service.scaling]\nmin_instances = 1\ntarget_concurrency = 5\n"
        )
    );
    let path = write_config(&dir, "good.toml", &good);
    let (status, stdout, stderr) = run_to_exit(&["check", "-c", path_str(&path)]).await;
    assert!(
        status.success(),
        "check passes: {status}\n{stdout}\n{stderr}"
    );
    let summary = format!("{stdout}{stderr}");
    for word in ["hello", "hello.localhost", "slow", "slow.localhost"] {
        assert!(summary.contains(word), "summary mentions {word}: {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_rejects_a_bad_value_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = MISSPELT.replace("targte_concurrency = 5", "idle_timeout = \"soon\"");
    let path = write_config(&dir, "badvalue.toml", &text);
    let line = line_of(&text, "idle_timeout");
    let (status, _stdout, stderr) = run_to_exit(&["check", "-c", path_str(&path)]).await;
    assert!(!status.success(), "check must fail: {status}\n{stderr}");
    assert_names_file_line_key(&stderr, "badvalue.toml", line, "idle_timeout");
}

/// Runs wakeway with `log` as its `[log]` table and `RUST_LOG` as given, cold-starts a service,
/// stops it, and returns its stderr lines.
async fn log_lines(log: &str, rust_log: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{LISTEN_ANY}\n[log]\n{log}\n{}",
        whoami_service("hello", "hello.localhost", "")
    );
    let path = write_config(&dir, "log.toml", &text);
    let mut proc = Proc::spawn_with_env(
        "wakeway run",
        &["run", "-c", path_str(&path)],
        &[("RUST_LOG", rust_log)],
    );
    let proxy = proc.listening_addr("proxy").await;
    proc.listening_addr("admin").await;
    assert_eq!(get(proxy, "hello.localhost", "/").await.status, 200);
    proc.signal(libc::SIGTERM);
    assert!(proc.wait_exit(DEADLINE).await.success());
    proc.wait_output_closed().await;
    proc.stderr().lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_line_by_line() {
    let lines = log_lines("format = \"json\"", "").await;
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "timestamp: {line}");
        assert!(v["level"].is_string(), "level: {line}");
        assert!(v["message"].is_string(), "message: {line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"kind\":\"cold_start\"")),
        "events carry their fields: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_applies_and_rust_log_overrides_it_and_text_has_no_colour() {
    let quiet = log_lines("level = \"warn\"", "").await;
    assert!(
        !quiet.iter().any(|l| l.contains(" INFO ")),
        "level = warn hides info: {quiet:?}"
    );
    let loud = log_lines("level = \"warn\"", "info").await;
    assert!(
        loud.iter().any(|l| l.contains(" INFO ")),
        "RUST_LOG=info overrides the file: {loud:?}"
    );
    for line in &loud {
        assert!(!line.contains('\x1b'), "no colour off a terminal: {line:?}");
        let stamp = line.split_whitespace().next().unwrap_or("");
        assert!(
            stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T'),
            "every line starts with a timestamp: {line:?}"
        );
    }
}

/// `wakeway status` prints a table: a row per service, a row per instance with its state and pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_services_and_instances_as_a_table() {
    let wk = Wakeway::whoami("hello", "").await;
    assert_eq!(wk.get("hello.localhost", "/").await.status, 200);
    let instance = wk.wait_ready("hello").await[0].id.clone();

    let status = cli_ok(wk.admin, &["status"]).await;
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("SERVICE"), "{status}");
    assert!(lines[1].starts_with("hello"), "{status}");
    assert!(lines[1].contains("running"), "{status}");
    let row = lines
        .iter()
        .find(|l| l.starts_with(&instance))
        .unwrap_or_else(|| panic!("an instance row: {status}"));
    let pid = wk.instances("hello").await[0]
        .pid
        .expect("a process has a pid")
        .to_string();
    assert!(row.contains("ready") && row.contains(&pid), "{row}");
}

/// `wakeway events` prints a table whose scale rows carry the decision's inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_print_a_table_of_decisions() {
    let wk = Wakeway::whoami("hello", "").await;
    assert_eq!(wk.get("hello.localhost", "/").await.status, 200);

    let events = cli_ok(wk.admin, &["events", "hello"]).await;
    assert!(events.starts_with("TIME"), "{events}");
    let scale = events
        .lines()
        .find(|l| l.contains(" scale "))
        .unwrap_or_else(|| panic!("a scale event: {events}"));
    assert!(
        scale.contains("trigger=demand") && scale.contains("to=1"),
        "the decision's inputs: {scale}"
    );
}

/// `wakeway pause`, `resume` and `reload` answer in sentences, not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_reload_answer_in_sentences() {
    let wk = Wakeway::whoami("hello", "").await;
    assert_eq!(wk.get("hello.localhost", "/").await.status, 200);

    let paused = cli_ok(wk.admin, &["pause", "hello"]).await;
    assert!(
        paused.starts_with("hello is paused:") && !paused.contains('{'),
        "{paused}"
    );
    let resumed = cli_ok(wk.admin, &["resume", "hello"]).await;
    assert!(resumed.starts_with("hello is resumed"), "{resumed}");
    let reloaded = cli_ok(wk.admin, &["reload"]).await;
    assert_eq!(reloaded.trim(), "reloaded: nothing changed.");
}

/// Runs `wakeway ARGS --admin ADDR` to completion; returns (status, stdout, stderr).
/// The line of `out` about instance `prefix*` that contains `word`.
fn instance_line<'a>(out: &'a str, prefix: &str, word: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(prefix) && l.contains(word))
        .unwrap_or_else(|| panic!("a `{prefix}... {word}` line: {out}"))
}

/// `wakeway deploy` waits readably: each new instance starting, then ready with how long it
/// took, then the switch; a new command whose probe never passes shows the probe's answer while
/// it waits and fails the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_shows_each_new_instance_and_the_probes_answer() {
    let wk = Wakeway::whoami(
        "web",
        r#"
[service.scaling]
min_instances = 1

[service.health]
kind = "http"
path = "/healthz"
startup_timeout = "3s"
"#,
    )
    .await;
    wk.wait_ready("web").await;

    let (status, out, err) = cli(wk.admin, &["deploy", "web", "--env", "MODE=two"]).await;
    assert!(status.success(), "{out}{err}");
    let starting = instance_line(&out, "web-00002-", "starting");
    let ready = instance_line(&out, "web-00002-", "ready after");
    assert!(
        out.find(starting) < out.find(ready),
        "starting comes before ready: {out}"
    );
    assert!(
        !out.contains("web-00001-"),
        "instances of other revisions print nothing: {out}"
    );
    assert!(
        out.trim_end().ends_with("web-00002 is live"),
        "the outcome ends it: {out}"
    );

    // A sidecar in front of a closed port is up and answers every request, the probe's too,
    // with a 5xx: an app that never turns healthy.
    let never_healthy = format!(
        "wakeway sidecar --listen 127.0.0.1:{{port}} --upstream 127.0.0.1:{} \
         --max-concurrency 1 --queue-timeout 10ms",
        closed_port()
    );
    let (status, out, err) = cli(wk.admin, &["deploy", "web", "--command", &never_healthy]).await;
    assert!(
        !status.success(),
        "a failed deploy exits non-zero: {out}{err}"
    );
    instance_line(&out, "web-00003-", "starting");
    let failing = instance_line(&out, "web-00003-", "failing");
    assert!(
        failing.contains("GET /healthz answered 5"),
        "the probe's answer: {failing}"
    );
    assert!(
        err.contains("failed")
            && err.contains("startup_timeout")
            && err.contains("web-00002 stays live"),
        "the outcome says why and what stays: {err}"
    );
    assert_eq!(wk.revision("web").await, "web-00002");
}

/// `wakeway events` prints an autoscaler decision with its inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_show_the_inputs_of_an_autoscaler_decision() {
    let wk = Wakeway::whoami(
        "idle",
        r#"
[service.scaling]
idle_timeout = "1s"
stable_window = "2s"
panic_window = "1s"
"#,
    )
    .await;
    assert_eq!(wk.get("idle.localhost", "/").await.status, 200);
    wait_for("the autoscaler's scale to zero", DEADLINE, || async {
        wk.events("idle")
            .await
            .iter()
            .any(|e| e["kind"] == "scale" && e["trigger"] == "autoscaler")
            .then_some(())
    })
    .await;
    let (status, out, err) = cli(wk.admin, &["events", "idle"]).await;
    assert!(status.success(), "{err}");
    let line = out
        .lines()
        .find(|l| l.contains(" scale ") && l.contains("(autoscaler)"))
        .unwrap_or_else(|| panic!("the autoscaler's scale event: {out}"));
    let inputs = line
        .split_once("  [")
        .map(|(_, i)| i.trim_end_matches(']'))
        .unwrap_or_else(|| panic!("inputs after the message: {line}"));
    let keys: Vec<&str> = inputs
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(
        keys[..7],
        [
            "revision",
            "from",
            "to",
            "trigger",
            "mode",
            "stable_avg",
            "panic_avg"
        ],
        "the decision's inputs in reading order: {line}"
    );
    assert!(
        inputs.starts_with("revision=idle-00001 from=1 to=0 trigger=autoscaler mode=stable "),
        "{line}"
    );
    assert!(inputs.contains("clamped_by=idle"), "the bound: {line}");
}

/// The release verbs that steer traffic, end to end: `deploy --no-traffic --tag`, `traffic` to
/// show and set a split, and `promote` following a rollout in steps to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_and_promote_steer_a_revision_in() {
    let wk = Wakeway::whoami("web", "").await;
    assert_eq!(wk.get("web.localhost", "/").await.status, 200);

    let (status, out, err) = cli(
        wk.admin,
        &[
            "deploy",
            "web",
            "--env",
            "V=2",
            "--no-traffic",
            "--tag",
            "next",
        ],
    )
    .await;
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("takes no traffic yet") && out.contains("next--web.localhost"),
        "{out}"
    );
    let tagged = wk.get("next--web.localhost", "/").await;
    assert_eq!(tagged.field("Revision").as_deref(), Some("web-00002"));
    assert_eq!(
        wk.get("web.localhost", "/")
            .await
            .field("Revision")
            .as_deref(),
        Some("web-00001")
    );

    let (status, out, err) = cli(wk.admin, &["traffic", "web", "web-00001=80", "latest=20"]).await;
    assert!(status.success(), "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("web-00001"))
        .unwrap_or_else(|| panic!("a row for web-00001: {out}"));
    assert!(row.contains("80"), "{out}");
    let (status, out, err) = cli(wk.admin, &["status", "web"]).await;
    assert!(status.success(), "{err}");
    assert!(
        out.contains("web-00001 80%, web-00002 20%"),
        "status shows the split, not only the latest revision: {out}"
    );
    let (status, out, err) = cli(wk.admin, &["traffic", "web", "web-00001=80", "latest=30"]).await;
    assert!(!status.success(), "{out}");
    assert!(err.contains("sum to 110"), "{err}");

    let (status, out, err) = cli(
        wk.admin,
        &["promote", "web", "--steps", "50,100", "--interval", "1s"],
    )
    .await;
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("100%"), "{out}");
    let (status, out, _) = cli(wk.admin, &["traffic", "web"]).await;
    assert!(status.success());
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("web-")).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(
        rows[0].starts_with("web-00002") && rows[0].contains("100"),
        "{out}"
    );
}
