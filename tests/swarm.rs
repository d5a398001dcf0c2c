//! The swarm runtime against a real single-node swarm (the local engine in swarm mode): cold
//! start, scale-out and back to zero, a killed task, scale-down and blue/green under load,
//! rollback, `deploy.auto`, adoption after a SIGKILL, a missing image and an unreachable manager.
//! The scenarios docker shares are written once in `common/engine_scenarios.rs`; the image,
//! the per-test scope, network and cleanup are in `common/swarm.rs`.

mod common;

use std::collections::BTreeSet;

use bollard::models::{EndpointPortConfigPublishModeEnum, EndpointSpecModeEnum};
use common::docker::swarm::*;
use common::docker::*;
use common::engine_scenarios as scenario;
use common::*;
use http::StatusCode;
use serde_json::json;
use tokio::time::Instant;

/// The images `service`'s swarm services run.
async fn images_of(t: &SwarmTest, service: &str) -> BTreeSet<String> {
    t.services(Some(service))
        .await
        .into_iter()
        .filter_map(|s| s.spec?.task_template?.container_spec?.image)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_runs_one_labelled_task_reached_on_its_own_port() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    let (mut w, instance) = scenario::cold_start(&t).await;

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

const STOP_GRACE: &str = "stop_grace = \"2s\"\n";

scenario::twins!(SwarmTest {
    scales_out_to_three_tasks_under_slow_requests_then_back_to_zero =>
        scales_out_then_back_to_zero("4s"),
    killed_task_is_replaced_and_only_its_requests_fail =>
        killed_instance_is_replaced_and_only_its_requests_fail(),
    sigkilled_wakeway_restarted_adopts_its_tasks_and_removes_leftovers =>
        restart_adopts_instances_and_removes_stale_ones(libc::SIGKILL, STOP_GRACE),
    new_image_behind_the_tag_deploys =>
        new_image_behind_the_tag_deploys("stop_on_exit = true", STOP_GRACE),
    manager_outage_keeps_tasks_serving_and_exits_are_seen_after_it =>
        engine_outage_keeps_instances_serving_and_exits_are_seen_after_it(STOP_GRACE),
});

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
    let load = Load::started(w.proxy, "web.localhost", "/?sleep=50ms", 2, 8).await;

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
    held.finish_ok("done").await;
    wait_for("the drained instances gone", DEADLINE, || async {
        (w.instances("web").await.len() == 1).then_some(())
    })
    .await;
    t.wait_service_instances("web", &left).await;
    let samples = load.stop().await;
    assert_none_failed(&samples, " during the scale-down");
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
    let w = scenario::two_of_web(&t, &v1, "stop_grace = \"2s\"\n").await;

    let load = Load::started(w.proxy, "web.localhost", "/?sleep=50ms", 4, 8).await;
    let (_, switched) = scenario::deploy_switched(&w, json!({ "image": v2 })).await;
    let green = w.wait_ready_revision("web", "web-00002", 2).await;
    // The old tasks drain and their swarm services go: only the new image runs.
    t.wait_service_instances("web", &ids_of(&green)).await;
    let samples = load.stop_after(switched, 8).await;
    assert_clean_switch(&samples, switched, "web-00001", "web-00002");
    let images = images_of(&t, "web").await;
    assert_eq!(images, BTreeSet::from([v2.clone()]));

    // Rollback: the previous image runs again, in new tasks.
    let rb = w.rollback_ok("web").await;
    let back = rb["revision"].as_str().unwrap().to_string();
    let rolled = w.wait_ready_revision("web", &back, 2).await;
    t.wait_service_instances("web", &ids_of(&rolled)).await;
    let images = images_of(&t, "web").await;
    assert_eq!(images, BTreeSet::from([v1]));
    let resp = w.get("web.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_a_clear_503_leaves_no_service_and_check_says_so() {
    let Some(t) = SwarmTest::new().await else {
        return;
    };
    // `wakeway check` looks at the manager and at the images on its node.
    let (_w, _, stdout) = scenario::missing_image_is_a_clear_503_and_check_says_so(&t).await;
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("swarm manager ") && !l.contains("NOT")),
        "{stdout}"
    );
    wait_for("the failed service removed", DEADLINE, || async {
        t.services(None).await.is_empty().then_some(())
    })
    .await;
}

/// Needs no engine: the endpoint is a socket that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_manager_is_named_and_other_runtimes_keep_working() {
    scenario::unreachable_engine_is_named_and_other_runtimes_keep_working::<SwarmTest>(
        "unix:///nonexistent/wakeway-test-swarm.sock",
    )
    .await;
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
    w.get_ok("bare.localhost", "/").await;
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
