//! The read verbs that show what the console shows, on a service with a failed deployment, a
//! 90/10 split between tagged revisions and traffic: `history` (requests/s, errors, latency per
//! second), `deployments` (outcome, duration, why one failed), `revisions` (share and tags) and
//! `logs --access --status` (the requests it answered, filtered).

mod common;

use common::split::{Admin, failed_deploy_and_split, traffic_until_history};
use common::*;

/// The whitespace-separated cells of the first line of `out` starting with `first`.
fn row<'a>(out: &'a str, first: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.starts_with(first))
        .unwrap_or_else(|| panic!("no row {first}: {out}"))
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_deployments_revisions_and_the_request_tail_read_as_tables() {
    let logs = tempfile::tempdir().unwrap();
    let wk = Wakeway::start_config(&access_log_config(
        &logs.path().join("access.log"),
        "",
        &whoami_service("web", "web.localhost", MIN_ONE),
    ))
    .await;
    let admin = Admin {
        addr: wk.admin,
        token: None,
    };
    let split = failed_deploy_and_split(&admin, "web").await;
    traffic_until_history(wk.proxy, &admin, "web", "web.localhost", 3)
        .await
        .abort();

    let out = cli_ok(wk.admin, &["history", "web", "-n", "600"]).await;
    assert!(out.starts_with("web: the last "), "{out}");
    let header = row(&out, "TIME");
    assert_eq!(&header[2..6], ["REQ/S", "4XX", "5XX", "P50"], "{out}");
    let busy = out
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|r| r != "0"))
        .count();
    assert!(busy >= 3, "3 busy seconds: {out}");
    assert!(out.contains(" ms "), "latency with its unit: {out}");
    let stable = row(&out, &split.stable);
    assert_eq!(stable.last(), Some(&"90%"), "{out}");
    assert_eq!(row(&out, &split.canary).last(), Some(&"10%"), "{out}");

    let out = cli_ok(wk.admin, &["deployments", "web"]).await;
    let failed = split.failed["id"].as_str().unwrap();
    let line = out.lines().find(|l| l.starts_with(failed)).unwrap();
    assert!(
        line.contains(" failed ") && line.contains("exit status: 3"),
        "{out}"
    );
    assert!(
        line.contains(" ms ") || line.contains(" s "),
        "its duration: {out}"
    );

    let out = cli_ok(wk.admin, &["revisions", "web"]).await;
    assert_eq!(row(&out, &split.stable)[2..4], ["90%", "stable"], "{out}");
    assert_eq!(row(&out, &split.canary)[2..4], ["10%", "canary"], "{out}");
    assert!(
        !out.contains("web-00002"),
        "a revision that never ran is not kept: {out}"
    );

    let out = cli_ok(wk.admin, &["logs", "web", "--access", "--status", "5xx"]).await;
    assert!(!out.is_empty(), "some 503s were sent");
    assert!(
        out.lines()
            .all(|l| l.split_whitespace().nth(1) == Some("503")),
        "only 5xx: {out}"
    );
    let out = cli_ok(wk.admin, &["logs", "web", "--access", "-n", "3"]).await;
    assert_eq!(out.lines().count(), 3, "{out}");
}
