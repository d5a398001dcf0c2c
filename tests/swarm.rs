//! The swarm runtime against a real single-node swarm (the local engine in swarm mode): cold
//! start, scale-out and back to zero, a killed task, scale-down and blue/green under load,
//! rollback, `deploy.auto`, adoption after a SIGKILL, a missing image and an unreachable manager.
//! The image, the per-test scope, network and cleanup are in `common/swarm.rs`.

mod common;

use std::collections::BTreeSet;

use bollard::models::{EndpointPortConfigPublishModeEnum, EndpointSpecModeEnum};
use bollard::query_parameters::KillContainerOptions;
use common::docker::swarm::*;
use common::docker::*;
use common::*;
use http::StatusCode;
use serde_json::json;
use tokio::time::Instant;

fn ids(instances: &[Instance]) -> BTreeSet<String> {
    instances.iter().map(|i| i.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_runs_one_labelled_task_reached_on_its_own_port() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let service = swarm_service(
        "cold",
        &t.image,
        r#"env = { GREETING = "hi" }
cpus = 0.5
memory = "64MiB"
stop_signal = "SIGINT"
stop_grace = "3s""#,
    );
    let mut w = Wakeway::start_config(&t.swarm_config("stop_on_exit = true", &service)).await;
    assert!(
        t.services(None).await.is_empty(),
        "min_instances 0: no swarm service before the first request"
    );

    let sent = Instant::now();
    let resp = w.get("cold.localhost", "/").await;
    eprintln!(
        "swarm cold start: first byte after {} ms",
        sent.elapsed().as_millis()
    );
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.field("Pid").as_deref(),
        Some("1"),
        "answered from inside a container: {}",
        resp.text()
    );
    let instance = resp.instance().expect("an Instance line");

    // One swarm service per instance, named after it, with the wakeway labels.
    let services = t.services(Some("cold")).await;
    assert_eq!(services.len(), 1, "{services:?}");
    let spec = services[0].spec.clone().unwrap();
    assert_eq!(
        spec.name.as_deref(),
        Some(format!("wakeway-{}-cold-{instance}", t.scope).as_str())
    );
    let labels = spec.labels.clone().unwrap();
    for (k, v) in [
        ("wakeway.managed", "true"),
        ("wakeway.scope", t.scope.as_str()),
        ("wakeway.service", "cold"),
        ("wakeway.revision", "cold-00001"),
        ("wakeway.instance", instance.as_str()),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    assert_eq!(
        spec.mode.unwrap().replicated.unwrap().replicas,
        Some(1),
        "one task per swarm service"
    );
    let task = spec.task_template.unwrap();
    let limits = task.resources.unwrap().limits.unwrap();
    assert_eq!(limits.nano_cpus, Some(500_000_000), "cpus = 0.5");
    assert_eq!(limits.memory_bytes, Some(64 << 20), "memory = 64MiB");
    let container = task.container_spec.unwrap();
    assert_eq!(container.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(container.stop_grace_period, Some(3_000_000_000));
    let env = container.env.unwrap();
    for var in [
        "PORT=8080".to_string(),
        "WAKEWAY_SERVICE=cold".into(),
        format!("WAKEWAY_INSTANCE={instance}"),
        "GREETING=hi".into(),
    ] {
        assert!(env.contains(&var), "{var} not in {env:?}");
    }
    // Routed to the task itself: no virtual IP, no routing mesh, and wakeway connects to the
    // port the node published for this task.
    let endpoint = spec.endpoint_spec.unwrap();
    assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR));
    let port = &endpoint.ports.unwrap()[0];
    assert_eq!(
        port.publish_mode,
        Some(EndpointPortConfigPublishModeEnum::HOST)
    );
    let published = services[0]
        .endpoint
        .clone()
        .and_then(|e| e.ports)
        .unwrap_or_default();
    assert!(
        published
            .iter()
            .all(|p| p.publish_mode != Some(EndpointPortConfigPublishModeEnum::INGRESS)),
        "{published:?}"
    );
    let net = t.docker.inspect_network(&t.network, None).await.unwrap();
    assert_eq!(net.driver.as_deref(), Some("overlay"));
    assert_eq!(net.attachable, Some(true), "wakeway created the network");
    let info = t.inspect(&t.task_container(&instance).await).await;
    let host_port = info
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.clone())
        .unwrap()
        .get("8080/tcp")
        .cloned()
        .flatten()
        .unwrap()
        .into_iter()
        .find(|b| b.host_ip.as_deref() == Some("0.0.0.0"))
        .and_then(|b| b.host_port)
        .expect("a port published on IPv4");
    assert!(
        info.network_settings
            .unwrap()
            .networks
            .unwrap()
            .contains_key(&t.network),
        "the task joined the overlay network"
    );
    let admin = w.instances("cold").await;
    assert_eq!(admin[0].address, format!("127.0.0.1:{host_port}"));
    assert_eq!(w.service("cold").await["runtime"], "swarm");

    // stop_on_exit = true: wakeway removes its swarm services on the way out.
    w.proc.signal(libc::SIGTERM);
    let status = w.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "{status}");
    t.wait_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_out_to_three_tasks_under_slow_requests_then_back_to_zero() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let service = swarm_service(
        "burst",
        &t.image,
        r#"stop_grace = "2s"

[service.scaling]
max_instances = 4
target_concurrency = 2
max_concurrency = 2
idle_timeout = "2s"
stable_window = "4s"
panic_window = "2s""#,
    );
    let w = Wakeway::start_config(&t.swarm_config("stop_on_exit = true", &service)).await;

    let proxy = w.proxy;
    let requests: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                get(proxy, "burst.localhost", &format!("/?sleep=4s&n={i}")).await
            })
        })
        .collect();
    let running = wait_for("at least 3 running tasks", DEADLINE, || async {
        let n = t.containers(Some("burst"), false).await.len();
        (n >= 3).then_some(n)
    })
    .await;
    let mut answered = BTreeSet::new();
    for r in requests {
        let resp = r.await.unwrap();
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        answered.insert(resp.instance().unwrap());
    }
    assert!(
        answered.len() >= 3,
        "6 concurrent requests at 2 per instance spread over >= 3 tasks: {answered:?}"
    );
    assert!(running <= 4, "max_instances = 4, saw {running} tasks");

    // Idle for idle_timeout: back to zero, with no swarm service, task or container left.
    t.wait_nothing_left().await;
    wait_for("no instances in the admin API", DEADLINE, || async {
        w.instances("burst").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_task_is_replaced_and_only_its_requests_fail() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let service = swarm_service(
        "crash",
        &t.image,
        r#"
[service.scaling]
min_instances = 3
max_instances = 3
target_concurrency = 2
max_concurrency = 2"#,
    );
    let w = Wakeway::start_config(&t.swarm_config("stop_on_exit = true", &service)).await;
    let before = wait_ready_count(&w, "crash", 3).await;

    let proxy = w.proxy;
    let requests: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                try_get(proxy, "crash.localhost", &format!("/?sleep=5s&n={i}")).await
            })
        })
        .collect();
    w.wait_load("crash", 6, 0).await;
    let victim = before.iter().next().unwrap().clone();
    let container = t.task_container(&victim).await;
    t.docker
        .kill_container(&container, None::<KillContainerOptions>)
        .await
        .expect("docker kill");

    let (mut ok, mut failed) = (Vec::new(), 0);
    for r in requests {
        match r.await.unwrap() {
            Ok(resp) if resp.status == StatusCode::OK => ok.push(resp.instance().unwrap()),
            Ok(resp) => {
                assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text());
                failed += 1;
            }
            Err(_) => failed += 1,
        }
    }
    assert_eq!(
        failed, 2,
        "exactly the victim's two requests fail; ok: {ok:?}"
    );
    assert!(!ok.contains(&victim), "{ok:?}");

    // Replaced by a new task; the victim's swarm service is removed.
    let after = wait_for("3 ready instances without the victim", DEADLINE, || async {
        let ids = ready_ids(&w, "crash").await;
        (ids.len() == 3 && !ids.contains(&victim)).then_some(ids)
    })
    .await;
    assert_eq!(
        after.intersection(&before).count(),
        2,
        "{before:?} -> {after:?}"
    );
    t.wait_service_instances("crash", &after).await;
    let events = w.events("crash").await;
    assert!(
        events_of_kind(&events, "instance_exited")
            .iter()
            .any(|e| e["instance"] == victim.as_str()
                && e["reason"].as_str().unwrap_or("").contains("137")),
        "an instance_exited event for {victim} with the exit code: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_under_load_drains_the_chosen_task_and_loses_nothing() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let service = |min: u32| {
        swarm_service(
            "web",
            &t.image,
            &format!(
                r#"stop_grace = "2s"

[service.scaling]
min_instances = {min}
max_instances = 3
target_concurrency = 10
max_concurrency = 10
stable_window = "2s"
panic_window = "1s"

[service.deploy]
drain_timeout = "60s""#
            ),
        )
    };
    let w = Wakeway::start_config(&t.swarm_config("stop_on_exit = true", &service(3))).await;
    let three = wait_ready_count(&w, "web", 3).await;
    t.wait_service_instances("web", &three).await;

    // A request held open on one task for the whole scale-down.
    let held = HeldRequest::start(w.proxy, "web.localhost", "/echo", "held|");
    w.wait_load("web", 1, 0).await;
    let load = Load::start(w.proxy, "web.localhost", "/?sleep=50ms", 2);
    load.wait_done_since(Instant::now(), 8).await;

    // min_instances 3 -> 1: the autoscaler, not the swarm, picks the victims.
    w.write_config(&t.swarm_config("stop_on_exit = true", &service(1)));
    w.proc.signal(libc::SIGHUP);
    let left = wait_for("one instance serving", DEADLINE * 2, || async {
        let ids = ready_ids(&w, "web").await;
        (ids.len() == 1).then_some(ids)
    })
    .await;
    let mark = Instant::now();
    load.wait_done_since(mark, 8).await;
    // Whether or not its task was a victim, the held request ends normally: a victim is
    // drained before its swarm service is removed.
    let resp = held
        .finish("done")
        .await
        .expect("the held request completes");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.text(), "held|done", "drained, not cut off");
    wait_for("the drained instances gone", DEADLINE, || async {
        (w.instances("web").await.len() == 1).then_some(())
    })
    .await;
    t.wait_service_instances("web", &left).await;
    let samples = load.stop().await;
    assert!(
        failed_samples(&samples).is_empty(),
        "failed requests during the scale-down: {:?}",
        failed_samples(&samples)
    );
    let events = w.events("web").await;
    let stopped: BTreeSet<String> = events_of_kind(&events, "instance_stopped")
        .iter()
        .filter_map(|e| e["instance"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        stopped,
        three.difference(&left).cloned().collect(),
        "exactly the instances wakeway chose were stopped: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_deploy_under_load_loses_nothing_and_rollback_runs_the_old_image() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let v1 = t.own_tag(&format!("wakeway-test-{}:v1", t.scope)).await;
    let v2 = t
        .own_build(
            &format!("wakeway-test-{}:v2", t.scope),
            &format!("{DOCKERFILE}ENV WAKEWAY_TEST_VARIANT=2\n"),
        )
        .await;
    let w = Wakeway::start_config(&t.swarm_config(
        "stop_on_exit = true",
        &swarm_service(
            "web",
            &v1,
            "stop_grace = \"2s\"\n\n[service.scaling]\nmin_instances = 2\nmax_instances = 2",
        ),
    ))
    .await;
    let old = w.wait_ready_revision("web", "web-00001", 2).await;
    t.wait_service_instances("web", &ids(&old)).await;

    let load = Load::start(w.proxy, "web.localhost", "/?sleep=50ms", 4);
    load.wait_done_since(Instant::now(), 8).await;
    let d = w.deploy("web", json!({ "image": v2 })).await;
    assert_eq!(d["revision"], "web-00002", "{d}");
    let done = w.wait_deployment("web", d["id"].as_str().unwrap()).await;
    let switched = Instant::now();
    assert_eq!(done["state"], "succeeded", "{done}");
    let green = w.wait_ready_revision("web", "web-00002", 2).await;
    // The old tasks drain and their swarm services go: only the new image runs.
    t.wait_service_instances("web", &ids(&green)).await;
    load.wait_done_since(switched, 8).await;
    let samples = load.stop().await;
    assert_clean_switch(&samples, switched, "web-00001", "web-00002");
    let images: BTreeSet<String> = t
        .services(Some("web"))
        .await
        .into_iter()
        .filter_map(|s| s.spec?.task_template?.container_spec?.image)
        .collect();
    assert_eq!(images, BTreeSet::from([v2.clone()]));

    // Rollback: the previous image runs again, in new tasks.
    let (status, rb) = w.admin_post("/v1/services/web/rollback", json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rb}");
    let done = w.wait_deployment("web", rb["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let back = rb["revision"].as_str().unwrap().to_string();
    let rolled = w.wait_ready_revision("web", &back, 2).await;
    t.wait_service_instances("web", &ids(&rolled)).await;
    let images: BTreeSet<String> = t
        .services(Some("web"))
        .await
        .into_iter()
        .filter_map(|s| s.spec?.task_template?.container_spec?.image)
        .collect();
    assert_eq!(images, BTreeSet::from([v1]));
    let resp = w.get("web.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_wakeway_restarted_adopts_its_tasks_and_removes_leftovers() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let service = |greeting: &str| {
        swarm_service(
            "keep",
            &t.image,
            &format!(
                "env = {{ GREETING = \"{greeting}\" }}\nstop_grace = \"2s\"\n\n[service.scaling]\nmin_instances = 2\nmax_instances = 4"
            ),
        )
    };
    let config = t.swarm_config("", &service("one"));
    let mut first = Wakeway::start_config(&config).await;
    let instances = wait_ready_count(&first, "keep", 2).await;
    let services = t.service_ids().await;
    assert_eq!(services.len(), 2);
    first.proc.signal(libc::SIGKILL);
    first.proc.wait_exit(DEADLINE).await;
    assert_eq!(
        t.service_ids().await,
        services,
        "the tasks outlive a SIGKILL"
    );

    // What an older wakeway could have left: a service of a service no longer in the config.
    let ghost = t
        .leftover_service(
            &format!("{}-ghost", t.scope),
            &[
                ("wakeway.service", "ghost"),
                ("wakeway.instance", "ghost-00001-a"),
            ],
        )
        .await;

    let second = Wakeway::start_config(&config).await;
    let adopted = wait_ready_count(&second, "keep", 2).await;
    assert_eq!(adopted, instances, "the same instances, adopted");
    let now = wait_for("the ghost service removed", DEADLINE, || async {
        let ids = t.service_ids().await;
        (!ids.contains(&ghost)).then_some(ids)
    })
    .await;
    assert_eq!(now, services, "no swarm service added, none lost");
    let events = second.events("keep").await;
    assert_eq!(
        events_of_kind(&events, "instance_adopted").len(),
        2,
        "{events:?}"
    );
    assert!(
        events_of_kind(&events, "instance_starting").is_empty(),
        "none duplicated: {events:?}"
    );
    let resp = second.get("keep.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(instances.contains(&resp.instance().unwrap()));
    drop(second);

    // A changed env makes them stale: replaced, not adopted.
    let changed = Wakeway::start_config(&t.swarm_config("", &service("two"))).await;
    let fresh = wait_ready_count(&changed, "keep", 2).await;
    t.wait_service_instances("keep", &fresh).await;
    let replaced = t.service_ids().await;
    assert!(
        replaced.is_disjoint(&services),
        "{services:?} -> {replaced:?}"
    );
    for s in t.services(Some("keep")).await {
        let env = s
            .spec
            .unwrap()
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .env
            .unwrap();
        assert!(env.contains(&"GREETING=two".to_string()), "{env:?}");
    }
    let resp = changed.get("keep.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_image_behind_the_tag_deploys() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let tag = t.own_tag(&format!("wakeway-test-{}:live", t.scope)).await;
    let service = swarm_service(
        "auto",
        &tag,
        "stop_grace = \"2s\"\n\n[service.scaling]\nmin_instances = 1\n\n[service.deploy]\nauto = true",
    );
    let w = Wakeway::start_config(&t.swarm_config("stop_on_exit = true", &service)).await;
    let before = wait_ready_count(&w, "auto", 1).await;

    build_image(
        &t.docker,
        &tag,
        &format!("{DOCKERFILE}ENV WAKEWAY_TEST_VARIANT=2\n"),
    )
    .await
    .expect("build the new image");
    let new_image = t.docker.inspect_image(&tag).await.unwrap().id.unwrap();

    let after = wait_for("one new instance, the old one gone", DEADLINE, || async {
        let ids = ready_ids(&w, "auto").await;
        (ids.len() == 1 && ids.is_disjoint(&before)).then_some(ids)
    })
    .await;
    t.wait_service_instances("auto", &after).await;
    let instance = after.into_iter().next().unwrap();
    let info = t.inspect(&t.task_container(&instance).await).await;
    assert_eq!(info.image.as_deref(), Some(new_image.as_str()));
    let events = w.events("auto").await;
    assert_eq!(
        events_of_kind(&events, "deploy_switched").len(),
        1,
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_a_clear_503_leaves_no_service_and_check_says_so() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let missing = format!("wakeway-test-missing-{}:none", t.scope);
    let config = t.swarm_config(
        "",
        &format!(
            "{}\n{}",
            swarm_service("ghost", &missing, "[service.queue]\ntimeout = \"50s\""),
            swarm_service("here", &t.image, "")
        ),
    );

    // `wakeway check` looks at the manager and at the images on its node.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wakeway.toml");
    std::fs::write(&path, &config).unwrap();
    let (status, stdout, stderr) = run_to_exit(&["check", "-c", path_str(&path)]).await;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("swarm manager ") && !l.contains("NOT")),
        "{stdout}"
    );
    let line = |service: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(service) && l.contains("image "))
            .unwrap_or_else(|| panic!("no image line for {service}:\n{stdout}"))
            .to_string()
    };
    assert!(line("ghost").contains("NOT on this node"), "{stdout}");
    assert!(line("here").contains("present locally"), "{stdout}");

    let w = Wakeway::start_config(&config).await;
    let resp = w.get("ghost.localhost", "/").await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert!(resp.header("retry-after").is_some());
    assert!(
        resp.text().contains(&missing) && resp.text().contains("rejected"),
        "{}",
        resp.text()
    );
    wait_for("the failed service removed", DEADLINE, || async {
        t.services(None).await.is_empty().then_some(())
    })
    .await;
}

/// Needs no engine: the endpoint is a socket that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_manager_is_named_and_other_runtimes_keep_working() {
    let endpoint = "unix:///nonexistent/wakeway-test-swarm.sock";
    let services = format!(
        "{}\n{}",
        swarm_service("boxed", "anything:1", ""),
        whoami_service("plain", "plain.localhost", "")
    );
    let w = Wakeway::start_config(&format!(
        "{LISTEN_ANY}\n[swarm]\nendpoint = \"{endpoint}\"\n{services}"
    ))
    .await;
    let resp = w.get("boxed.localhost", "/").await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert!(resp.header("retry-after").is_some());
    assert!(
        resp.text().contains(endpoint) && resp.text().contains("unreachable"),
        "{}",
        resp.text()
    );
    assert_eq!(w.get("plain.localhost", "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_overlay_network_tasks_join_only_their_node() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let config = t
        .swarm_config("stop_on_exit = true", &swarm_service("bare", &t.image, ""))
        .replace(&format!("network = \"{}\"", t.network), "network = \"\"");
    let w = Wakeway::start_config(&config).await;
    let resp = w.get("bare.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let spec = t.services(Some("bare")).await[0].spec.clone().unwrap();
    assert!(
        spec.task_template.unwrap().networks.is_none(),
        "no overlay network attached"
    );
    assert!(
        t.docker.inspect_network(&t.network, None).await.is_err(),
        "no network created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_outage_keeps_tasks_serving_and_exits_are_seen_after_it() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let Some(mut engine) = FlakyEngine::new() else {
        eprintln!("SKIPPING manager outage test: it stands in for a unix socket engine only");
        return;
    };
    let services = format!(
        "{}\n{}",
        swarm_service(
            "warm",
            &t.image,
            "stop_grace = \"2s\"\n\n[service.scaling]\nmin_instances = 1"
        ),
        swarm_service("lazy", &t.image, "stop_grace = \"2s\"")
    );
    let w = Wakeway::start_config(&t.swarm_config(
        &format!("endpoint = \"{}\"\nstop_on_exit = true", engine.endpoint()),
        &services,
    ))
    .await;
    let before = wait_ready_count(&w, "warm", 1).await;
    let victim = before.iter().next().unwrap().clone();
    let container = t.task_container(&victim).await;

    engine.down();
    // Running tasks do not need the manager.
    let resp = w.get("warm.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.instance(), Some(victim.clone()));
    // Starting one does: a clear 503 naming the endpoint.
    let resp = w.get("lazy.localhost", "/").await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert!(resp.header("retry-after").is_some());
    assert!(resp.text().contains(&engine.endpoint()), "{}", resp.text());

    // The task dies while wakeway cannot hear the swarm.
    t.docker
        .kill_container(&container, None::<KillContainerOptions>)
        .await
        .expect("docker kill");

    engine.up();
    let after = wait_for("warm replaced after the outage", DEADLINE, || async {
        let ids = ready_ids(&w, "warm").await;
        (ids.len() == 1 && !ids.contains(&victim)).then_some(ids)
    })
    .await;
    t.wait_service_instances("warm", &after).await;
    let resp = wait_for("lazy starts once the manager is back", DEADLINE, || async {
        let resp = w.get("lazy.localhost", "/").await;
        (resp.status == StatusCode::OK).then_some(resp)
    })
    .await;
    assert_eq!(resp.field("Service").as_deref(), Some("lazy"));
}
