//! The docker runtime against the real local engine: cold start, scale out and in, crashes,
//! adoption after a restart, a missing image, engine outages, and a new image behind the tag.
//! The scenarios swarm shares are written once in `common/engine_scenarios.rs`; the image, the
//! per-test scope and the cleanup are in `common/docker.rs`. The releases on docker
//! (blue/green, rollback, pause, reload) are in `docker_releases.rs`.

mod common;

use std::collections::BTreeSet;

use common::docker::*;
use common::engine_scenarios as scenario;
use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_runs_a_labelled_limited_container_and_stop_on_exit_removes_it() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let (mut w, instance) = scenario::cold_start(&t).await;

    let containers = t.containers(Some("cold"), true).await;
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    let info = t.inspect(containers[0].id.as_deref().unwrap()).await;
    assert_eq!(
        info.name.as_deref(),
        Some(format!("/wakeway-{}-cold-{instance}", t.scope).as_str())
    );
    let config = info.config.clone().unwrap();
    let labels = config.labels.clone().unwrap();
    for (k, v) in [
        ("wakeway.managed", "true"),
        ("wakeway.service", "cold"),
        ("wakeway.revision", "cold-00001"),
        ("wakeway.instance", instance.as_str()),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let env = config.env.clone().unwrap();
    for var in [
        "PORT=8080".to_string(),
        "WAKEWAY_SERVICE=cold".into(),
        "WAKEWAY_REVISION=cold-00001".into(),
        format!("WAKEWAY_INSTANCE={instance}"),
        "GREETING=hi".into(),
    ] {
        assert!(env.contains(&var), "{var} not in {env:?}");
    }
    assert_eq!(config.stop_signal.as_deref(), Some("SIGINT"));
    let host = info.host_config.clone().unwrap();
    assert_eq!(host.nano_cpus, Some(500_000_000), "cpus = 0.5");
    assert_eq!(host.memory, Some(64 << 20), "memory = 64MiB");

    // Published on 127.0.0.1 on a port the engine picked (for a wakeway that cannot reach the
    // container itself), but wakeway connects to the container's own address on its network:
    // past the engine's userland proxy, which accepts before the app listens.
    let settings = info.network_settings.unwrap();
    let ports = settings.ports.unwrap();
    let binding = &ports["8080/tcp"].as_ref().unwrap()[0];
    assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(binding.host_port.as_deref().unwrap().parse::<u16>().is_ok());
    let own_ip = settings.networks.unwrap()["bridge"]
        .ip_address
        .clone()
        .unwrap();
    let admin = w.instances("cold").await;
    assert_eq!(admin[0].address, format!("{own_ip}:8080"));

    let events = w.events("cold").await;
    assert_eq!(events_of_kind(&events, "cold_start").len(), 1, "{events:?}");
    assert_eq!(events_of_kind(&events, "instance_ready").len(), 1);

    // stop_on_exit = true: wakeway stops and removes its containers on the way out.
    w.proc.signal(libc::SIGTERM);
    let status = w.proc.wait_exit(DEADLINE).await;
    assert!(status.success(), "{status}");
    assert!(
        t.container_ids(true).await.is_empty(),
        "stop_on_exit = true leaves no container, running or stopped"
    );
}

/// An app that listens only a while after its container starts, behind a TCP probe: the probe
/// must wait for the app itself, not pass on the engine's userland proxy, which accepts on the
/// published port from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cold_starts_behind_a_tcp_probe_all_answer() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let slow = DOCKERFILE.replace(
        "\"0.0.0.0\"]",
        "\"0.0.0.0\", \"--startup-delay\", \"300ms\"]",
    );
    assert_ne!(slow, DOCKERFILE);
    let image = t
        .own_build(&format!("wakeway-test-{}:slow-start", t.scope), &slow)
        .await;
    let service = docker_service(
        "slow",
        &image,
        r#"stop_grace = "1s"

[service.health]
kind = "tcp"

[service.scaling]
idle_timeout = "200ms"
stable_window = "400ms"
panic_window = "200ms""#,
    );
    let w = Wakeway::start_config(&t.config("stop_on_exit = true", &service)).await;
    const COLD_STARTS: usize = 20;
    for i in 0..COLD_STARTS {
        let resp = w.get("slow.localhost", &format!("/?cold={i}")).await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "cold start {i} of {COLD_STARTS}: {}",
            resp.text()
        );
        wait_for("slow back at zero instances", DEADLINE, || async {
            w.instances("slow").await.is_empty().then_some(())
        })
        .await;
    }
    let events = w.events("slow").await;
    assert_eq!(
        events_of_kind(&events, "cold_start").len(),
        COLD_STARTS,
        "every request was a cold start: {events:?}"
    );
}

scenario::twins!(DockerTest {
    scales_out_under_slow_requests_then_back_to_zero => scales_out_then_back_to_zero("3s"),
    killed_container_is_replaced_and_only_its_requests_fail =>
        killed_instance_is_replaced_and_only_its_requests_fail(),
    engine_outage_keeps_instances_serving_and_exits_are_seen_after_it =>
        engine_outage_keeps_instances_serving_and_exits_are_seen_after_it(""),
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_running_containers_and_removes_stale_ones() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let changed =
        scenario::restart_adopts_instances_and_removes_stale_ones(&t, libc::SIGTERM, "").await;
    let failed = changed.events_of("keep", "start_failed").await;
    assert!(
        failed.is_empty(),
        "the stale containers' names were free at once: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_a_clear_error_and_503_and_check_says_so() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let (w, missing, _) = scenario::missing_image_is_a_clear_503_and_check_says_so(&t).await;
    let events = w.events("ghost").await;
    let failed = events_of_kind(&events, "start_failed");
    assert!(
        failed
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains(&missing)),
        "{events:?}"
    );
    assert!(
        t.container_ids(true).await.is_empty(),
        "no container was created"
    );
    // The other service is not affected.
    assert_eq!(w.get("here.localhost", "/").await.status, StatusCode::OK);
}

/// Needs no engine: the endpoint is a socket that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_engine_is_named_and_other_runtimes_keep_working() {
    let services = scenario::unreachable_engine_is_named_and_other_runtimes_keep_working::<
        DockerTest,
    >("unix:///nonexistent/wakeway-test-docker.sock")
    .await;
    // With no endpoint in the config, DOCKER_HOST names the engine.
    let other = "unix:///nonexistent/wakeway-test-docker-host.sock";
    scenario::docker_host_names_the_engine(&services, other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_passes_port_and_connects_on_loopback() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let service = docker_service("hostnet", &t.image, "");
    let w =
        Wakeway::start_config(&t.config("network = \"host\"\nstop_on_exit = true", &service)).await;
    w.get_ok("hostnet.localhost", "/").await;
    let address = w.instances("hostnet").await[0].address.clone();
    let port = address
        .strip_prefix("127.0.0.1:")
        .unwrap_or_else(|| panic!("connects on loopback: {address}"));
    let id = t.container_ids(false).await.into_iter().next().unwrap();
    let info = t.inspect(&id).await;
    assert_eq!(
        info.host_config.unwrap().network_mode.as_deref(),
        Some("host")
    );
    let env = info.config.unwrap().env.unwrap();
    assert!(
        env.contains(&format!("PORT={port}")),
        "PORT is the port wakeway connects to: {env:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_image_behind_the_tag_deploys_and_a_restart_adopts_it() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let (mut first, config, deployed) =
        scenario::new_image_behind_the_tag_deploys(&t, "", "").await;
    let after = t.container_ids(true).await;
    assert_eq!(after.len(), 1, "{after:?}");
    let resp = first.get("auto.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.instance().as_ref(), Some(&deployed));

    // The deployed container runs what the config names now: a restart adopts it.
    first.proc.signal(libc::SIGTERM);
    first.proc.wait_exit(DEADLINE).await;
    let second = Wakeway::start_config(&config).await;
    let adopted = wait_ready_count(&second, "auto", 1).await;
    assert_eq!(adopted, BTreeSet::from([deployed]));
    assert_eq!(t.wait_containers(1).await, after);
    scenario::assert_adopted_not_started(&second, "auto", 1).await;
}

/// With a state file a revision keeps its image across a restart: its container left running
/// is adopted although the tag moved while wakeway was stopped, not replaced; a container of
/// the service that runs another image is not adopted as one of that revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_the_container_of_the_pinned_image_after_the_tag_moved() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let state = StateFile::temp();
    let tag = t.own_tag(&format!("wakeway-test-{}:moving", t.scope)).await;
    let old_id = t.docker.inspect_image(&tag).await.unwrap().id.unwrap();
    // stop_on_exit is off by default: the container outlives wakeway.
    let config = state.config(&t.config(
        "",
        &docker_service("pinned", &tag, "[service.scaling]\nmin_instances = 1"),
    ));
    let mut first = Wakeway::start_config(&config).await;
    let instances = wait_ready_count(&first, "pinned", 1).await;
    let containers = t.container_ids(false).await;
    first.proc.signal(libc::SIGTERM);
    first.proc.wait_exit(DEADLINE).await;

    let moved = DOCKERFILE.replace("CMD", "LABEL wakeway.test.moved=yes\nCMD");
    assert_ne!(moved, DOCKERFILE);
    t.own_build(&tag, &moved).await;
    let new_id = t.docker.inspect_image(&tag).await.unwrap().id.unwrap();
    assert_ne!(new_id, old_id, "the tag moved");
    // What a deployment under way at the stop leaves: a container of the next revision, of
    // the same spec, running what the tag names now.
    let live = containers.iter().next().unwrap();
    let mut labels = t.inspect(live).await.config.unwrap().labels.unwrap();
    labels.insert("wakeway.revision".into(), "pinned-00002".into());
    labels.insert("wakeway.instance".into(), "pinned-00002-a".into());
    let body = bollard::models::ContainerCreateBody {
        image: Some(tag.clone()),
        labels: Some(labels),
        ..Default::default()
    };
    let opts = bollard::query_parameters::CreateContainerOptions {
        name: Some(format!("{}-green", t.scope)),
        platform: String::new(),
    };
    let green = t
        .docker
        .create_container(Some(opts), body)
        .await
        .unwrap()
        .id;
    t.docker.start_container(&green, None).await.unwrap();

    let second = Wakeway::start_config(&config).await;
    let adopted = wait_ready_count(&second, "pinned", 1).await;
    assert_eq!(adopted, instances, "the same instance, adopted");
    assert_eq!(t.wait_containers(1).await, containers);
    let running: Vec<Option<String>> = t
        .containers(Some("pinned"), true)
        .await
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    assert_eq!(
        running,
        [Some(old_id)],
        "the revision's own image, and only that"
    );
    scenario::assert_adopted_not_started(&second, "pinned", 1).await;
}
