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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_rejects_misspelt_key_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "misspelt.toml", MISSPELT);
    let line = line_of(MISSPELT, "targte_concurrency");

    let (status, _stdout, stderr) = run_to_exit(&["check", "-c", path_str(&path)]).await;
    assert!(!status.success(), "check must fail: {status}\n{stderr}");
    assert_names_file_line_key(&stderr, "misspelt.toml", line, "targte_concurrency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rejects_misspelt_key_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "misspelt.toml", MISSPELT);
    let line = line_of(MISSPELT, "targte_concurrency");

    let (status, stdout, stderr) = run_to_exit(&["run", "-c", path_str(&path)]).await;
    assert!(!status.success(), "run must fail: {status}\n{stderr}");
    assert!(
        !stdout.contains("listening on"),
        "run must not start listening with a bad config: {stdout}"
    );
    assert_names_file_line_key(&stderr, "misspelt.toml", line, "targte_concurrency");
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
