//! Operating a service between releases: pause and resume, config reloads (good and bad files,
//! API and SIGHUP, static upstreams), the admin token and the CLI's exit codes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_drains_and_answers_503_until_resumed() {
    let wk = Wakeway::whoami("web", "").await;
    let first = wk.get_ok(WEB, "/").await;
    let pid = wk.wait_ready("web").await[0].pid.expect("pid");

    let proxy = wk.proxy;
    let slow = tokio::spawn(async move { try_get(proxy, WEB, "/?sleep=2s").await });
    wk.wait_load("web", 1, 0).await;

    let (status, view) = wk.admin_post("/v1/services/web/pause", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["paused"], true, "{view}");

    assert_paused(&wk.get(WEB, "/").await);

    let slow = slow.await.unwrap().expect("the in-flight request");
    assert_eq!(
        slow.status,
        StatusCode::OK,
        "in flight at the pause: {}",
        slow.text()
    );
    wait_pids_gone(&[pid]).await;
    wk.wait_instances("web", "no instances", |l| l.is_empty())
        .await;
    assert_eq!(wk.service("web").await["paused"], true);

    let body = wk.assert_no_deploy_while_paused("web").await;
    assert!(body["error"].to_string().contains("paused"), "{body}");

    let resp = wk.resume_and_cold_start("web", WEB).await;
    assert_ne!(resp.field("Pid"), first.field("Pid"), "a new instance");

    let (status, body) = wk.admin_post("/v1/services/web/resume", json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT, "not paused: {body}");

    assert_paused_then_resumed(&wk.events("web").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_a_bad_file_changes_nothing_api_and_sighup() {
    let good = format!(
        "{LISTEN_ANY}\n{}",
        whoami_service("web", WEB, "[service.scaling]\nmin_instances = 1\n")
    );
    let wk = Wakeway::start_config(&good).await;
    let before = wk.wait_ready_revision("web", "web-00001", 1).await;

    // The bad file also changes env: applying any part of it would deploy.
    let bad = format!(
        "{LISTEN_ANY}\n{}",
        whoami_service(
            "web",
            WEB,
            "env = { MODE = \"two\" }\n[service.scaling]\nmin_instances = 1\nmax_instanses = 3\n"
        )
    );
    let line = line_of(&bad, "max_instanses");
    wk.write_config(&bad);
    let (status, body) = admin_call(wk.admin, Method::POST, "/v1/reload", None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("wakeway.toml:{line}")),
        "names the file and line {line}: {body}"
    );
    assert!(error.contains("max_instanses"), "names the key: {body}");

    let unchanged = || {
        let (before, admin) = (before.clone(), wk.admin);
        async move {
            let svc = admin_json(admin, "/v1/services/web").await;
            assert_eq!(svc["revision"], "web-00001", "{svc}");
            assert_eq!(instances_of(&svc), before, "the same instance serves");
            let deployments = admin_json(admin, "/v1/services/web/deployments").await;
            assert_eq!(deployments, json!([]), "nothing deployed");
        }
    };
    unchanged().await;
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00001"));
    wk.wait_event("wakeway", "reload_failed").await;

    // SIGHUP with the same bad file: also nothing.
    wk.proc.signal(libc::SIGHUP);
    wait_for("a second reload_failed event", DEADLINE, || async {
        let n = wk
            .events("wakeway")
            .await
            .iter()
            .filter(|e| e["kind"] == "reload_failed")
            .count();
        (n >= 2).then_some(())
    })
    .await;
    unchanged().await;
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        wk.proc.stderr().contains("max_instanses"),
        "the log names the key"
    );

    // SIGHUP really reloads: a fixed file deploys the env change.
    let fixed = bad.replace("max_instanses", "max_instances");
    wk.write_config(&fixed);
    wk.proc.signal(libc::SIGHUP);
    wk.wait_event("wakeway", "reloaded").await;
    let d = wait_for("the reload's deployment", DEADLINE, || async {
        wk.deployments("web").await.into_iter().next()
    })
    .await;
    assert_eq!(d["trigger"], "reload", "{d}");
    let d = wk.wait_deployment("web", d["id"].as_str().unwrap()).await;
    assert_eq!(d["state"], "succeeded", "{d}");
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00002"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_removes_and_changes_services() {
    let sized = |min: u32| {
        whoami_service(
            "sized",
            "sized.localhost",
            &format!("[service.scaling]\nmin_instances = {min}\n"),
        )
    };
    let before = format!(
        "{LISTEN_ANY}\n{}\n{}\n{}",
        whoami_service(
            "keep",
            "keep.localhost",
            "env = { MODE = \"one\" }\n[service.scaling]\nmin_instances = 1\n"
        ),
        whoami_service(
            "gone",
            "gone.localhost",
            "[service.scaling]\nmin_instances = 1\n"
        ),
        sized(1),
    );
    let wk = Wakeway::start_config(&before).await;
    wk.wait_ready_revision("keep", "keep-00001", 1).await;
    wk.wait_ready_revision("sized", "sized-00001", 1).await;
    let gone_pid = wk.wait_ready("gone").await[0].pid.expect("pid");
    // A request in flight on the service about to be removed.
    let held = HeldRequest::start(wk.proxy, "gone.localhost", "/echo", "still ");
    wk.wait_load("gone", 1, 0).await;

    let after = format!(
        "{LISTEN_ANY}\n{}\n{}\n{}",
        r#"
[[service]]
name = "keep"
hosts = ["keep.localhost", "keep2.localhost"]
command = ["wakeway", "whoami"]
env = { MODE = "two" }

[service.scaling]
min_instances = 2
max_instances = 3
"#,
        whoami_service("fresh", "fresh.localhost", ""),
        sized(2),
    );
    wk.write_config(&after);
    let (status, report) = admin_call(wk.admin, Method::POST, "/v1/reload", None, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["added"], json!(["fresh"]), "{report}");
    assert_eq!(report["removed"], json!(["gone"]), "{report}");
    for name in ["keep", "sized"] {
        assert!(
            report["updated"]
                .as_array()
                .is_some_and(|u| u.contains(&json!(name))),
            "{name} updated: {report}"
        );
    }
    let id = the_reload_deployment(&report, "keep");

    // The removed service: its host is gone at once, its instance drains and stops.
    let resp = wk.get("gone.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.text());
    let (status, _) = admin_call(wk.admin, Method::GET, "/v1/services/gone", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    held.finish_ok("served").await;
    wait_pids_gone(&[gone_pid]).await;

    // The added service serves.
    let resp = wk.get_ok("fresh.localhost", "/").await;
    assert_eq!(resp.field("Service").as_deref(), Some("fresh"));

    // The changed one: env deployed blue/green, scaling and hosts applied live.
    let d = wk.wait_deployment("keep", &id).await;
    assert_eq!(d["state"], "succeeded", "{d}");
    assert_eq!(d["trigger"], "reload", "{d}");
    assert_eq!(d["changes"], json!(["env.MODE"]), "{d}");
    for host in ["keep.localhost", "keep2.localhost"] {
        let resp = wk.get(host, "/").await;
        assert_eq!(resp.status, StatusCode::OK, "{host}: {}", resp.text());
        assert_eq!(
            resp.field("Revision").as_deref(),
            Some("keep-00002"),
            "{host}"
        );
    }
    wk.wait_ready_revision("keep", "keep-00002", 2).await;
    let svc = wk.service("keep").await;
    assert_eq!(svc["desired"], 2, "min_instances 2 applied: {svc}");
    assert_eq!(
        svc["hosts"],
        json!(["keep.localhost", "keep2.localhost"]),
        "{svc}"
    );
    wk.wait_event("keep", "config_updated").await;

    // A scaling-only change applies live, without a deployment.
    wk.wait_ready_revision("sized", "sized-00001", 2).await;
    assert!(wk.deployments("sized").await.is_empty());
    let scale = wk.wait_event("sized", "scale").await;
    assert_eq!(
        scale.last().map(|e| &e["trigger"]),
        Some(&json!("config")),
        "the scale event says the config did it: {scale:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_v1_but_not_metrics_or_healthz() {
    let config = format!(
        "{}{}",
        listeners("", "token = \"s3cret\""),
        whoami_service("web", WEB, "")
    );
    let wk = Wakeway::start_config(&config).await;

    let get = |path: &'static str, token: Option<&'static str>| {
        let admin = wk.admin;
        async move { admin_call(admin, Method::GET, path, None, token).await }
    };
    let (status, body) = get("/v1/services", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let raw = send(
        wk.admin,
        request(Method::GET, "localhost", "/v1/services", ""),
    )
    .await
    .unwrap();
    assert_eq!(raw.header("www-authenticate"), Some("Bearer"));
    let (status, _) = get("/v1/services", Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get("/v1/services", Some("s3cre")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get("/v1/services", Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A write without the token does nothing.
    let (status, _) = admin_call(
        wk.admin,
        Method::POST,
        "/v1/services/web/deployments",
        Some(&json!({})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin_call(wk.admin, Method::POST, "/v1/reload", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, list) = get("/v1/services/web/deployments", Some("s3cret")).await;
    assert_eq!(list, json!([]));

    // Scrapers and probes need no token; the data plane is not affected.
    for path in ["/metrics", "/healthz"] {
        let resp = common::get(wk.admin, "localhost", path).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}: {}", resp.text());
    }
    assert_eq!(wk.get(WEB, "/").await.status, StatusCode::OK);

    // A reload moves the token to a file; the old one stops working.
    let token_file = wk.config_path.with_file_name("token");
    std::fs::write(&token_file, "fr0m-a-file\n").unwrap();
    wk.write_config(&config.replace(
        "token = \"s3cret\"",
        &format!("token_file = {:?}", path_str(&token_file)),
    ));
    let (status, report) =
        admin_call(wk.admin, Method::POST, "/v1/reload", None, Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let (status, _) = get("/v1/services", Some("s3cret")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get("/v1/services", Some("fr0m-a-file")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploy_exit_code_says_whether_it_succeeded() {
    let wk = Wakeway::start_config(&format!(
        "{}{}",
        listeners("", "token = \"clitoken\""),
        whoami_service("web", WEB, "[service.scaling]\nmin_instances = 1\n")
    ))
    .await;
    let admin = wk.admin.to_string();
    let with = |args: &[&'static str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--admin".into(),
            admin.clone(),
            "--token".into(),
            "clitoken".into(),
        ]);
        v
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_exit(&refs).await
    };
    let live = || async {
        admin_json_with_token(wk.admin, "/v1/services/web", "clitoken").await["revision"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    wait_for("a ready instance", DEADLINE, || async {
        let svc = admin_json_with_token(wk.admin, "/v1/services/web", "clitoken").await;
        instances_of(&svc)
            .iter()
            .any(|i| i.state == "ready")
            .then_some(())
    })
    .await;

    let (status, stdout, stderr) = run(with(&["status"])).await;
    assert!(status.success(), "status: {status}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("web") && stdout.contains("web-00001"),
        "status shows the service and its revision: {stdout}"
    );

    let (status, stdout, stderr) = run(with(&["deploy", "web", "--env", "MODE=two"])).await;
    assert!(status.success(), "deploy: {status}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("succeeded") && stdout.contains("web-00002"),
        "{stdout}"
    );
    assert_eq!(live().await, "web-00002");

    // A command that exits at once: the deployment fails, the exit code says so.
    let (status, stdout, stderr) = run(with(&[
        "deploy",
        "web",
        "--command",
        "wakeway whoami --no-such-flag",
    ]))
    .await;
    assert!(
        !status.success(),
        "a failed deploy exits non-zero: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("failed") && stderr.contains("exited"),
        "says why: {stderr}"
    );
    assert_eq!(live().await, "web-00002");
    let resp = wk.get(WEB, "/").await;
    assert_eq!(resp.field("Revision").as_deref(), Some("web-00002"));

    let (status, stdout, stderr) = run(with(&["rollback", "web"])).await;
    assert!(status.success(), "rollback: {status}\n{stdout}\n{stderr}");
    let (status, stdout, _) = run(with(&["status", "web"])).await;
    assert!(status.success());
    assert!(stdout.contains("web-00001"), "rolled back: {stdout}");

    // WAKEWAY_ADMIN and WAKEWAY_TOKEN work as the flags do.
    let mut events = Proc::spawn_with_env(
        "wakeway events web",
        &["events", "web"],
        &[
            ("WAKEWAY_ADMIN", admin.as_str()),
            ("WAKEWAY_TOKEN", "clitoken"),
        ],
    );
    let status = events.wait_exit(DEADLINE).await;
    events.wait_output_closed().await;
    assert!(status.success(), "events: {}", events.stderr());
    for kind in ["deploy_started", "deploy_switched", "deploy_failed"] {
        assert!(
            events.stdout().contains(kind),
            "{kind}: {}",
            events.stdout()
        );
    }

    // Without the token the CLI fails and says why.
    let (status, _, stderr) = run_to_exit(&["status", "--admin", &admin]).await;
    assert!(!status.success());
    assert!(stderr.contains("401"), "{stderr}");
}

/// A request to `fixed.localhost` is answered by the upstream that calls itself `who`.
async fn assert_fixed_served_by(wk: &Wakeway, who: &str) {
    let resp = wk.get("fixed.localhost", "/").await;
    assert_eq!(resp.instance().as_deref(), Some(who), "{}", resp.text());
}

/// Static upstreams are a revision too: a reload that changes them switches traffic at once
/// (nothing to start), and pause takes them out of the pool without stopping anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_upstreams_change_by_reload_and_pause_takes_them_out() {
    let mut a = Proc::spawn_with_env(
        "upstream-a",
        &["whoami", "--port", "0"],
        &[("WAKEWAY_INSTANCE", "upstream-a")],
    );
    let mut b = Proc::spawn_with_env(
        "upstream-b",
        &["whoami", "--port", "0"],
        &[("WAKEWAY_INSTANCE", "upstream-b")],
    );
    let (addr_a, addr_b) = (
        a.listening_addr("whoami").await,
        b.listening_addr("whoami").await,
    );
    let fixed = |addr: std::net::SocketAddr| {
        format!(
            "{LISTEN_ANY}\n[[service]]\nname = \"fixed\"\nhosts = [\"fixed.localhost\"]\nupstreams = [\"{addr}\"]\n"
        )
    };
    let wk = Wakeway::start_config(&fixed(addr_a)).await;
    assert_fixed_served_by(&wk, "upstream-a").await;

    wk.write_config(&fixed(addr_b));
    let (status, report) = admin_call(wk.admin, Method::POST, "/v1/reload", None, None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["deployed"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    wait_for("the new upstream serves", DEADLINE, || async {
        let r = wk.get("fixed.localhost", "/").await;
        (r.instance().as_deref() == Some("upstream-b")).then_some(())
    })
    .await;
    assert_eq!(wk.revision("fixed").await, "fixed-00002");
    assert_eq!(
        wk.instances("fixed").await.len(),
        1,
        "the old upstream left"
    );

    let (status, _) = wk.admin_post("/v1/services/fixed/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_paused(&wk.get("fixed.localhost", "/").await);
    let (status, _) = wk.admin_post("/v1/services/fixed/resume", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_fixed_served_by(&wk, "upstream-b").await;
    assert!(b.try_wait().is_none(), "a static upstream is never stopped");
}
