//! Instances that fail while the service scales: never ready, unhealthy, slow to accept, or
//! stopped while still starting.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_that_cannot_become_ready_answers_503() {
    // whoami answers the probe path with 503: the instance never becomes ready.
    let wk = Wakeway::whoami("broken", &http_probe("/never?status=503", "1s", "20s")).await;
    assert_retry_later(&wk.get("broken.localhost", "/").await);
    let events = wk.events("broken").await;
    assert!(!events.is_empty(), "the failed start is an event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_instance_leaves_the_pool_and_is_replaced() {
    let wk = Wakeway::whoami(
        "flaky",
        r#"
[service.scaling]
min_instances = 1
max_instances = 2

[service.health]
kind = "http"
interval = "200ms"
timeout = "1s"
unhealthy_threshold = 2
"#,
    )
    .await;
    let sick = wk.wait_ready("flaky").await.remove(0);

    // whoami's /healthz answers 503 from now on (the only instance gets this request).
    let resp = send(
        wk.proxy,
        request(
            http::Method::POST,
            "flaky.localhost",
            "/healthz?status=503",
            "",
        ),
    )
    .await
    .expect("request");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.instance().as_deref(),
        None,
        "answered by whoami's /healthz"
    );
    assert_eq!(resp.header("x-wakeway-instance"), Some(sick.id.as_str()));

    wait_for(
        "the unhealthy instance to leave the pool",
        DEADLINE,
        || async {
            let now = wk.instances("flaky").await;
            (!now.iter().any(|i| i.id == sick.id && i.state == "ready")).then_some(())
        },
    )
    .await;
    let resp = wk.get_ok("flaky.localhost", "/after").await;
    assert_ne!(
        resp.instance(),
        Some(sick.id.clone()),
        "a healthy instance serves"
    );
}

async fn upstream_state(wk: &Wakeway) -> String {
    wk.instances("busy").await[0].state.clone()
}

/// Issue 9, defect 3: a connect timeout (here a full accept backlog) is one strike toward
/// `unhealthy_threshold`, not a death sentence; the upstream stays in the pool until the
/// threshold is reached. It used to be taken out by the first timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_counts_toward_the_threshold() {
    // A listener that never accepts, its backlog filled: further connects time out.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    loop {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(c)) => held.push(c),
            Ok(Err(e)) => panic!("connect to the test listener: {e}"),
            Err(_) => break,
        }
        assert!(held.len() < 64, "the backlog never filled");
    }
    let wk = Wakeway::start_config(&format!(
        "{}{}",
        listen_with("connect_timeout = \"200ms\""),
        static_service(
            "busy",
            "busy.localhost",
            addr,
            "interval = \"1h\"\nunhealthy_threshold = 3",
            "[service.queue]\ntimeout = \"1s\"",
        )
    ))
    .await;
    let resp = wk.get("busy.localhost", "/").await;
    assert!(resp.status.is_server_error(), "{}", resp.text());
    // The controller has counted the timeout once it says so.
    let strikes = wk.wait_event("busy", "instance_connect_timeout").await;
    assert!(
        strikes[0]["message"].as_str().unwrap().contains("of 3"),
        "{strikes:?}"
    );
    assert_eq!(
        upstream_state(&wk).await,
        "ready",
        "one slow connect took it out"
    );
    // More timeouts reach the threshold: now it is out.
    wait_for("the upstream to be taken out", DEADLINE, || async {
        if upstream_state(&wk).await == "unhealthy" {
            return Some(());
        }
        let _ = wk.get("busy.localhost", "/").await;
        None
    })
    .await;
    let why = wk
        .events_of("busy", "instance_unhealthy")
        .await
        .into_iter()
        .next()
        .expect("an instance_unhealthy event");
    assert!(
        why["message"].as_str().unwrap().contains("timed out"),
        "{why}"
    );
    drop(listener);
}

/// Issue 9, defect 7: a deploy switches while the live revision's instances are still booting.
/// They are stopped once, reported stopped once, and never come up afterwards. They used to be
/// reported stopped at once, started again on a new port and become ready a second later,
/// untracked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_stopped_while_starting_stay_stopped() {
    let wk = Wakeway::start(&whoami_args(
        "boot",
        &["--startup-delay", "2s"],
        "[service.scaling]\nmin_instances = 2\nmax_instances = 4\n",
    ))
    .await;
    let booting: Vec<Instance> = wait_for("two booting instances", DEADLINE, || async {
        let now = wk.instances("boot").await;
        (now.len() == 2 && now.iter().all(|i| i.state == "starting" && i.pid.is_some()))
            .then_some(now)
    })
    .await;
    wk.deploy_ok(
        "boot",
        serde_json::json!({ "command": ["wakeway", "whoami"] }),
    )
    .await;
    for old in &booting {
        wait_pids_gone(&[old.pid.unwrap()]).await;
    }
    // Outlast the old instances' startup delay: a request held that long, on the new revision.
    wk.get_ok("boot.localhost", "/?sleep=3s").await;
    let events = wk.events("boot").await;
    for old in &booting {
        let of = |kind: &str| {
            events
                .iter()
                .filter(|e| e["kind"] == kind && e["instance"] == old.id.as_str())
                .count()
        };
        assert_eq!(of("instance_ready"), 0, "{} came up after its stop", old.id);
        assert_eq!(
            of("instance_stopped"),
            1,
            "{} reported stopped once",
            old.id
        );
    }
    let now = wk.instances("boot").await;
    assert!(
        now.iter().all(|i| !booting.iter().any(|b| b.id == i.id)),
        "an old instance is still known: {now:?}"
    );
}
