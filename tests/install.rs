//! The install story as a user meets it: the systemd unit in `contrib/` runs, reloads and stops
//! wakeway the way systemd would; shell completions come from the CLI itself; with JSON logs and
//! the access log on stdout, every stdout line parses as JSON (`wakeway run | jq`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// The `[Service]` keys of contrib/wakeway.service (a key given twice keeps the last value).
fn unit_keys() -> HashMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/wakeway.service");
    let text = std::fs::read_to_string(path).expect("contrib/wakeway.service");
    let mut section = String::new();
    let mut keys = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[Service]" {
            let (k, v) = line.split_once('=').expect("key=value");
            keys.insert(k.to_string(), v.to_string());
        }
    }
    keys
}

fn parse_seconds(v: &str) -> Duration {
    Duration::from_secs(v.trim_end_matches('s').parse().expect("seconds"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_unit_starts_reloads_and_stops_wakeway() {
    let unit = unit_keys();
    assert_eq!(
        unit["KillMode"], "mixed",
        "SIGTERM to wakeway alone, so it drains"
    );
    let nofile: u64 = unit["LimitNOFILE"].parse().expect("LimitNOFILE");
    assert!(nofile >= 65536, "LimitNOFILE {nofile}");
    let stop_timeout = parse_seconds(&unit["TimeoutStopSec"]);
    assert!(
        stop_timeout > Duration::from_secs(30),
        "TimeoutStopSec above the default shutdown_timeout"
    );

    // ExecStart, with the binary under test and a config of ours in place of the installed paths.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wakeway.toml");
    std::fs::write(
        &config,
        format!("{LISTEN_ANY}{}", whoami_service("one", "one.localhost", "")),
    )
    .unwrap();
    let exec_start: Vec<String> = unit["ExecStart"]
        .split_whitespace()
        .map(|w| w.replace("/etc/wakeway/wakeway.toml", path_str(&config)))
        .collect();
    assert_eq!(exec_start[0], "/usr/local/bin/wakeway");
    let args: Vec<&str> = exec_start[1..].iter().map(String::as_str).collect();
    // LimitNOFILE is systemd's to set (raising the hard limit needs CAP_SYS_RESOURCE).
    let mut proc = Proc::spawn("wakeway (systemd unit)", &args);
    let proxy = proc.listening_addr("proxy").await;
    assert_eq!(get(proxy, "one.localhost", "/").await.status, 200);

    // `systemctl reload`: ExecReload with $MAINPID, then the added service answers.
    std::fs::write(
        &config,
        format!(
            "{LISTEN_ANY}{}{}",
            whoami_service("one", "one.localhost", ""),
            whoami_service("two", "two.localhost", "")
        ),
    )
    .unwrap();
    let reload: Vec<String> = unit["ExecReload"]
        .split_whitespace()
        .map(|w| w.replace("$MAINPID", &proc.pid().to_string()))
        .collect();
    let status = std::process::Command::new(&reload[0])
        .args(&reload[1..])
        .status()
        .expect("ExecReload runs");
    assert!(status.success(), "ExecReload: {status}");
    wait_for("the reloaded service answers", DEADLINE, || async {
        (try_get(proxy, "two.localhost", "/").await.ok()?.status == 200).then_some(())
    })
    .await;

    // `systemctl stop`: KillSignal to the main process; it exits cleanly within TimeoutStopSec.
    assert_eq!(unit["KillSignal"], "SIGTERM");
    proc.signal(libc::SIGTERM);
    let status = proc.wait_exit(stop_timeout).await;
    assert!(status.success(), "wakeway exits 0 on SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_generated_for_each_shell() {
    let (status, bash, stderr) = run_to_exit(&["completions", "bash"]).await;
    assert!(status.success(), "{stderr}");
    for verb in ["run", "check", "deploy", "traffic", "events", "completions"] {
        assert!(bash.contains(verb), "bash completion knows `{verb}`");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("wakeway.bash");
    std::fs::write(&script, &bash).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("bash");
    assert!(syntax.success(), "the bash completion script parses");
    for shell in ["zsh", "fish"] {
        let (status, out, stderr) = run_to_exit(&["completions", shell]).await;
        assert!(
            status.success() && out.contains("deploy"),
            "{shell}: {stderr}"
        );
    }
    let (status, _, stderr) = run_to_exit(&["completions", "tcsh"]).await;
    assert!(!status.success(), "an unknown shell is refused");
    assert!(stderr.contains("tcsh"), "the refusal names it: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_every_stdout_line_is_json() {
    let config = format!(
        r#"{LISTEN_ANY}
[log]
format = "json"
access = "stdout"

[[service]]
name = "hello"
hosts = ["hello.localhost"]
command = ["sh", "-c", "echo booted; exec {WAKEWAY} whoami"]
"#
    );
    let mut w = Wakeway::start_config(&config).await;
    for _ in 0..3 {
        assert_eq!(w.get("hello.localhost", "/").await.status, 200);
    }
    w.proc.signal(libc::SIGTERM);
    assert!(w.proc.wait_exit(DEADLINE).await.success());
    w.proc.wait_output_closed().await;
    let stdout = w.proc.stdout();
    let mut listening = 0;
    let mut access = 0;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        if v["message"]
            .as_str()
            .is_some_and(|m| m.contains("listening on"))
        {
            assert!(
                v["addr"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
            listening += 1;
        }
        if v["service"] == "hello" {
            access += 1;
        }
    }
    assert_eq!(listening, 2, "proxy and admin announced: {stdout}");
    assert_eq!(access, 3, "one access line per request: {stdout}");

    // wakeway's own log (stderr): the app's output carries whose it is as fields.
    let stderr = w.proc.stderr();
    let app_line = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"].as_str().is_some_and(|m| m.ends_with("booted")))
        .unwrap_or_else(|| panic!("the app's line in the log: {stderr}"));
    assert_eq!(app_line["service"], "hello", "{app_line}");
    assert_eq!(app_line["revision"], "hello-00001", "{app_line}");
    assert_eq!(app_line["stream"], "stdout", "{app_line}");
    assert!(
        app_line["instance"]
            .as_str()
            .is_some_and(|i| i.starts_with("hello-00001-")),
        "{app_line}"
    );
}
