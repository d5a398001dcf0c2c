//! The CLI in the habits of `gcloud run` and `kubectl`: `deploy` merges the environment unless
//! told to replace it, shows its diff first (`--dry-run` shows only that), splits `--command`
//! as a shell would; read verbs print JSON with `-o json`; an unknown name is an error.

mod common;

use common::*;

/// A whoami service whose instances answer with `WHOAMI_STATUS` from their environment, so a
/// request shows which variables the live revision has.
async fn start() -> Wakeway {
    let wk = Wakeway::whoami(
        "web",
        r#"env = { WHOAMI_STATUS = "203", KEEP = "1" }
[service.scaling]
min_instances = 1
"#,
    )
    .await;
    wk.wait_ready("web").await;
    assert_eq!(wk.get("web.localhost", "/").await.status, 203);
    wk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_merges_the_environment_and_shows_its_diff_first() {
    let wk = start().await;

    // --dry-run: the diff, and nothing deployed.
    let out = cli_ok(
        wk.admin,
        &["deploy", "web", "--update-env", "NEW=x", "--dry-run"],
    )
    .await;
    assert!(out.contains("env.NEW: (unset) -> x"), "{out}");
    assert!(
        !out.contains("KEEP"),
        "unchanged variables are not in the diff: {out}"
    );
    assert_eq!(
        wk.revision("web").await,
        "web-00001",
        "a dry run deploys nothing"
    );

    // --update-env (and its alias --env) keeps the other variables.
    let out = cli_ok(wk.admin, &["deploy", "web", "--env", "NEW=x"]).await;
    assert!(
        out.contains("env.NEW: (unset) -> x"),
        "the diff comes first: {out}"
    );
    assert_eq!(wk.revision("web").await, "web-00002");
    assert_eq!(
        wk.get("web.localhost", "/").await.status,
        203,
        "WHOAMI_STATUS survived an --env deploy"
    );

    // --remove-env takes one away; a name that is not set is refused, changing nothing.
    let (status, _, err) = cli(wk.admin, &["deploy", "web", "--remove-env", "NOPE"]).await;
    assert!(!status.success() && err.contains("NOPE"), "{err}");
    let out = cli_ok(
        wk.admin,
        &["deploy", "web", "--remove-env", "WHOAMI_STATUS"],
    )
    .await;
    assert!(out.contains("env.WHOAMI_STATUS: 203 -> (unset)"), "{out}");
    assert_eq!(wk.get("web.localhost", "/").await.status, 200);

    // --set-env replaces the whole environment.
    let out = cli_ok(
        wk.admin,
        &["deploy", "web", "--set-env", "ONLY=1", "--dry-run"],
    )
    .await;
    for gone in [
        "env.KEEP: 1 -> (unset)",
        "env.NEW: x -> (unset)",
        "env.ONLY: (unset) -> 1",
    ] {
        assert!(out.contains(gone), "{gone}: {out}");
    }

    // --command is split as a shell splits it: the quoted script is one word.
    let out = cli_ok(
        wk.admin,
        &[
            "deploy",
            "web",
            "--command",
            "sh -c 'exec wakeway whoami --port $PORT'",
            "--dry-run",
        ],
    )
    .await;
    assert!(
        out.contains(r#"["sh","-c","exec wakeway whoami --port $PORT"]"#),
        "{out}"
    );
    let (status, _, err) = cli(wk.admin, &["deploy", "web", "--command", "sh -c 'oops"]).await;
    assert!(
        !status.success() && err.contains("--command") && err.contains("quote"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_verbs_print_json_and_unknown_names_fail() {
    let wk = start().await;
    for args in [
        &["status", "-o", "json"][..],
        &["status", "web", "-o", "json"],
        &["events", "web", "-o", "json"],
        &["traffic", "web", "-o", "json"],
        &["certificates", "-o", "json"],
        &["logs", "web", "-o", "json"],
        &["logs", "web", "--access", "-o", "json"],
        &["history", "web", "-o", "json"],
        &["deployments", "web", "-o", "json"],
        &["revisions", "web", "-o", "json"],
    ] {
        let v: serde_json::Value = cli_json(wk.admin, args).await;
        assert!(v.is_array() || v.is_object(), "{args:?}: {v}");
    }
    let events: Vec<serde_json::Value> = cli_json(wk.admin, &["events", "web", "-o", "json"]).await;
    assert!(
        events.iter().any(|e| e["kind"] == "instance_ready"),
        "{events:?}"
    );

    for args in [
        &["events", "nosuch"][..],
        &["status", "nosuch"],
        &["traffic", "nosuch"],
        &["logs", "nosuch"],
        &["logs", "nosuch", "--access"],
        &["history", "nosuch"],
        &["deployments", "nosuch"],
        &["revisions", "nosuch"],
    ] {
        let (status, out, err) = cli(wk.admin, args).await;
        assert!(!status.success(), "{args:?} exits non-zero: {out}");
        assert!(err.contains("nosuch"), "{args:?} names it: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_without_traffic_does_not_say_switched() {
    let wk = start().await;
    let out = cli_ok(wk.admin, &["deploy", "web", "--env", "V=2", "--no-traffic"]).await;
    assert!(!out.contains("switched"), "{out}");
    assert!(out.contains("web-00002 is ready beside web-00001"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_names_the_revision_that_had_the_traffic() {
    let wk = start().await;
    cli_ok(wk.admin, &["deploy", "web", "--env", "V=2", "--no-traffic"]).await;
    // The canary (the latest revision) has no traffic: web-00001 takes all of it.
    let out = cli_ok(wk.admin, &["rollback", "web"]).await;
    let first = out.lines().next().unwrap();
    assert!(
        first.contains("web-00001 keeps the traffic") && !first.contains("web-00002"),
        "{out}"
    );
}

/// `wakeway logs` shows what an instance printed; a deploy whose app fails prints the app's own
/// last lines, not only an exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_an_instances_output_and_a_failed_deploy_prints_the_apps_last_lines() {
    let script =
        format!("echo hello from $WAKEWAY_INSTANCE; echo warming up >&2; exec {WAKEWAY} whoami");
    let wk = Wakeway::start(&shell_service("web", &script, MIN_ONE)).await;
    let ready = wk.wait_ready("web").await;
    let id = ready[0].id.clone();
    let out = wait_for(
        "the instance's output in `wakeway logs`",
        DEADLINE,
        || async {
            let out = cli_ok(wk.admin, &["logs", "web"]).await;
            out.contains("warming up").then_some(out)
        },
    )
    .await;
    let hello = out.lines().find(|l| l.contains("hello from")).expect(&out);
    assert!(hello.contains(&id) && hello.contains("stdout|"), "{hello}");
    let warm = out.lines().find(|l| l.contains("warming up")).unwrap();
    assert!(warm.contains("stderr|"), "{warm}");
    let lines: Vec<serde_json::Value> =
        cli_json(wk.admin, &["logs", "web", "--instance", &id, "-o", "json"]).await;
    assert!(lines.iter().all(|l| l["instance"] == id.as_str()));

    let (status, out, err) = cli(
        wk.admin,
        &[
            "deploy",
            "web",
            "--command",
            "sh -c 'echo cannot find config.yaml >&2; exit 3'",
        ],
    )
    .await;
    assert!(!status.success(), "{out}{err}");
    assert!(
        err.contains("the last lines web-00002 printed") && err.contains("cannot find config.yaml"),
        "{err}"
    );
    let (status, _, err) = cli(wk.admin, &["logs", "nosuch"]).await;
    assert!(!status.success() && err.contains("nosuch"), "{err}");
}
