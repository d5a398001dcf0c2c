//! The docker runtime against the real local engine: cold start, scale out and in, crashes,
//! adoption after a restart, a missing image, engine outages, and a new image behind the tag.
//! The image, the per-test scope and the cleanup are in `common/docker.rs`. The releases on
//! docker (blue/green, rollback, pause, reload) are in `docker_releases.rs`.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use bollard::query_parameters::KillContainerOptions;
use common::docker::*;
use common::*;
use http::StatusCode;

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_runs_a_labelled_limited_container_and_stop_on_exit_removes_it() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let service = docker_service(
        "cold",
        &t.image,
        r#"env = { GREETING = "hi" }
cpus = 0.5
memory = "64MiB"
stop_signal = "SIGINT"
stop_grace = "3s""#,
    );
    let mut w = Wakeway::start_config(&t.config("stop_on_exit = true", &service)).await;
    assert!(
        t.container_ids(true).await.is_empty(),
        "min_instances 0: no container before the first request"
    );

    let resp = w.get("cold.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.field("Pid").as_deref(),
        Some("1"),
        "answered from inside a container (its own pid namespace): {}",
        resp.text()
    );
    assert_eq!(resp.field("Service").as_deref(), Some("cold"));
    let instance = resp.instance().expect("an Instance line");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_out_under_slow_requests_then_back_to_zero() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let service = docker_service(
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
    let w = Wakeway::start_config(&t.config("stop_on_exit = true", &service)).await;

    let proxy = w.proxy;
    let requests: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                get(proxy, "burst.localhost", &format!("/?sleep=3s&n={i}")).await
            })
        })
        .collect();
    // While the requests are held, the containers run.
    let running = wait_for("at least 3 running containers", DEADLINE, || async {
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
        "6 concurrent requests at 2 per instance spread over >= 3 instances: {answered:?}"
    );
    assert!(running <= 4, "max_instances = 4, saw {running} containers");

    // Idle for idle_timeout: back to zero, and nothing is left in `docker ps -a`.
    t.wait_containers(0).await;
    wait_for("no instances in the admin API", DEADLINE, || async {
        w.instances("burst").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_container_is_replaced_and_only_its_requests_fail() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let service = docker_service(
        "crash",
        &t.image,
        r#"
[service.scaling]
min_instances = 3
max_instances = 3
target_concurrency = 2
max_concurrency = 2"#,
    );
    let w = Wakeway::start_config(&t.config("stop_on_exit = true", &service)).await;
    let before = wait_ready_count(&w, "crash", 3).await;

    let proxy = w.proxy;
    let requests: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                try_get(proxy, "crash.localhost", &format!("/?sleep=5s&n={i}")).await
            })
        })
        .collect();
    // Two on each instance: max_concurrency = 2 leaves no other spread.
    w.wait_load("crash", 6, 0).await;
    let victim = before.iter().next().unwrap().clone();
    let victim_container = format!("wakeway-{}-crash-{victim}", t.scope);
    t.docker
        .kill_container(&victim_container, None::<KillContainerOptions>)
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
    assert!(
        !ok.contains(&victim),
        "no answer from the killed instance {victim}: {ok:?}"
    );

    // Replaced: three ready instances again, the victim not among them, its container removed.
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
    t.wait_containers(3).await;
    let events = w.events("crash").await;
    let exited = events_of_kind(&events, "instance_exited");
    assert!(
        exited.iter().any(|e| e["instance"] == victim.as_str()
            && e["reason"].as_str().unwrap_or("").contains("137")),
        "an instance_exited event for {victim} with the exit code: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_running_containers_and_removes_stale_ones() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let service = |greeting: &str| {
        docker_service(
            "keep",
            &t.image,
            &format!(
                r#"env = {{ GREETING = "{greeting}" }}

[service.scaling]
min_instances = 2
max_instances = 4"#
            ),
        )
    };
    // stop_on_exit is off by default: containers outlive wakeway.
    let config = t.config("", &service("one"));
    let mut first = Wakeway::start_config(&config).await;
    let instances = wait_ready_count(&first, "keep", 2).await;
    let containers = t.container_ids(false).await;
    assert_eq!(containers.len(), 2);
    first.proc.signal(libc::SIGTERM);
    first.proc.wait_exit(DEADLINE).await;
    assert_eq!(
        t.container_ids(false).await,
        containers,
        "the containers keep running after wakeway exits"
    );

    // What an older wakeway could have left behind: a container of a service no longer in
    // the config, and a stopped one of this service.
    let ghost = t
        .leftover(
            &format!("{}-ghost", t.scope),
            &[
                ("wakeway.service", "ghost"),
                ("wakeway.instance", "ghost-00001-a"),
            ],
            true,
        )
        .await;
    let stopped = t
        .leftover(
            &format!("{}-stopped", t.scope),
            &[
                ("wakeway.service", "keep"),
                ("wakeway.revision", "keep-00001"),
                ("wakeway.instance", "keep-00001-z"),
            ],
            false,
        )
        .await;

    let second = Wakeway::start_config(&config).await;
    let adopted = wait_ready_count(&second, "keep", 2).await;
    assert_eq!(adopted, instances, "the same instances, adopted");
    let now = t.wait_containers(2).await;
    assert_eq!(now, containers, "no container added, none lost");
    assert!(!now.contains(&ghost) && !now.contains(&stopped));
    let events = second.events("keep").await;
    assert_eq!(
        events_of_kind(&events, "instance_adopted").len(),
        2,
        "{events:?}"
    );
    assert!(
        events_of_kind(&events, "instance_starting").is_empty(),
        "{events:?}"
    );
    let resp = second.get("keep.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(instances.contains(&resp.instance().unwrap()));
    drop(second);

    // A changed env makes them stale: replaced, not adopted.
    let changed = Wakeway::start_config(&t.config("", &service("two"))).await;
    wait_ready_count(&changed, "keep", 2).await;
    let replaced = t.wait_containers(2).await;
    assert!(
        replaced.is_disjoint(&containers),
        "stale containers removed and replaced: {containers:?} -> {replaced:?}"
    );
    let events = changed.events("keep").await;
    assert!(
        events_of_kind(&events, "start_failed").is_empty(),
        "the stale containers' names were free at once: {events:?}"
    );
    let fresh = t.inspect(replaced.iter().next().unwrap()).await;
    let env = fresh.config.unwrap().env.unwrap();
    assert!(env.contains(&"GREETING=two".to_string()), "{env:?}");
    assert_eq!(
        changed.get("keep.localhost", "/").await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_a_clear_error_and_503_and_check_says_so() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let missing = format!("wakeway-test-missing-{}:none", t.scope);
    let config = t.config(
        "",
        &format!(
            "{}\n{}",
            docker_service(
                "ghost",
                &missing,
                "[service.queue]\ntimeout = \"50s\"" // a hang would show as a 504
            ),
            docker_service("here", &t.image, "")
        ),
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wakeway.toml");
    std::fs::write(&path, &config).unwrap();
    let (status, stdout, stderr) = run_to_exit(&["check", "-c", path_str(&path)]).await;
    assert!(status.success(), "{stdout}\n{stderr}");
    let line = |service: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(service) && l.contains("image "))
            .unwrap_or_else(|| panic!("no image line for {service}:\n{stdout}"))
            .to_string()
    };
    assert!(
        line("ghost").contains("NOT found locally; build or pull it"),
        "{stdout}"
    );
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
    let body = resp.text();
    assert!(
        body.contains(&missing) && body.contains("not found locally; build or pull it"),
        "{body}"
    );
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
    let services = format!(
        "{}\n{}",
        docker_service("boxed", "anything:1", ""),
        whoami_service("plain", "plain.localhost", "")
    );
    let endpoint = "unix:///nonexistent/wakeway-test-docker.sock";
    let w = Wakeway::start_config(&format!(
        "{LISTEN_ANY}\n[docker]\nendpoint = \"{endpoint}\"\n{services}"
    ))
    .await;
    assert_eq!(w.get("plain.localhost", "/").await.status, StatusCode::OK);
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

    // With no endpoint in the config, DOCKER_HOST names the engine.
    let other = "unix:///nonexistent/wakeway-test-docker-host.sock";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wakeway.toml");
    std::fs::write(&path, format!("{LISTEN_ANY}\n{services}")).unwrap();
    let mut proc = Proc::spawn_with_env(
        "wakeway run (DOCKER_HOST)",
        &["run", "-c", path_str(&path)],
        &[("DOCKER_HOST", other)],
    );
    let proxy = proc.listening_addr("proxy").await;
    let resp = get(proxy, "boxed.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.text().contains(other), "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_passes_port_and_connects_on_loopback() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let service = docker_service("hostnet", &t.image, "");
    let w =
        Wakeway::start_config(&t.config("network = \"host\"\nstop_on_exit = true", &service)).await;
    let resp = w.get("hostnet.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
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

/// A stand-in for the engine's socket that can go away and come back: it forwards each
/// connection to the real engine, and an outage closes them all and refuses new ones.
struct FlakyEngine {
    path: PathBuf,
    upstream: String,
    serving: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl FlakyEngine {
    fn new() -> FlakyEngine {
        let upstream = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        let dir = tempfile::tempdir().unwrap();
        let mut engine = FlakyEngine {
            path: dir.path().join("engine.sock"),
            upstream,
            serving: None,
            _dir: dir,
        };
        engine.up();
        engine
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn up(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).unwrap();
        let upstream = self.upstream.clone();
        self.serving = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) drops every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut engine) = tokio::net::UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        }));
    }

    fn down(&mut self) {
        if let Some(task) = self.serving.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_outage_keeps_instances_serving_and_exits_are_seen_after_it() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    if std::env::var("DOCKER_HOST").is_ok_and(|h| !h.starts_with("unix://")) {
        eprintln!("SKIPPING engine outage test: it stands in for a unix socket engine only");
        return;
    }
    let mut engine = FlakyEngine::new();
    let services = format!(
        "{}\n{}",
        docker_service("warm", &t.image, "[service.scaling]\nmin_instances = 1"),
        docker_service("lazy", &t.image, "")
    );
    let w = Wakeway::start_config(&t.config(
        &format!("endpoint = \"{}\"\nstop_on_exit = true", engine.endpoint()),
        &services,
    ))
    .await;
    let before = wait_ready_count(&w, "warm", 1).await;
    let victim = before.iter().next().unwrap().clone();

    engine.down();
    // Running containers do not need the engine.
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

    // The container dies while wakeway cannot hear the engine's events.
    t.docker
        .kill_container(
            &format!("wakeway-{}-warm-{victim}", t.scope),
            None::<KillContainerOptions>,
        )
        .await
        .expect("docker kill");

    engine.up();
    let after = wait_for("warm replaced after the outage", DEADLINE, || async {
        let ids = ready_ids(&w, "warm").await;
        (ids.len() == 1 && !ids.contains(&victim)).then_some(ids)
    })
    .await;
    assert_eq!(
        w.get("warm.localhost", "/").await.instance(),
        after.into_iter().next()
    );
    let resp = wait_for("lazy starts once the engine is back", DEADLINE, || async {
        let resp = w.get("lazy.localhost", "/").await;
        (resp.status == StatusCode::OK).then_some(resp)
    })
    .await;
    assert_eq!(resp.field("Service").as_deref(), Some("lazy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_image_behind_the_tag_deploys_and_a_restart_adopts_it() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let tag = t.own_tag(&format!("wakeway-test-{}:live", t.scope)).await;
    let service = docker_service(
        "auto",
        &tag,
        "[service.scaling]\nmin_instances = 1\n\n[service.deploy]\nauto = true",
    );
    let config = t.config("", &service);
    let mut first = Wakeway::start_config(&config).await;
    wait_ready_count(&first, "auto", 1).await;
    let before = t.container_ids(true).await;

    // A new build of the same tag.
    let variant = format!("{DOCKERFILE}ENV WAKEWAY_TEST_VARIANT=2\n");
    build_image(&t.docker, &tag, &variant)
        .await
        .expect("build the new image");
    let new_image = t.docker.inspect_image(&tag).await.unwrap().id.unwrap();

    let after = wait_for(
        "one container of the new image, the old one gone",
        DEADLINE,
        || async {
            let list = t.containers(Some("auto"), true).await;
            let on_new = list.len() == 1 && list[0].image_id.as_deref() == Some(new_image.as_str());
            on_new.then(|| list[0].id.clone().unwrap())
        },
    )
    .await;
    assert!(!before.contains(&after));
    let events = first.events("auto").await;
    assert_eq!(
        events_of_kind(&events, "deploy_switched").len(),
        1,
        "{events:?}"
    );
    let resp = first.get("auto.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    let deployed = resp.instance().unwrap();

    // The deployed container runs what the config names now: a restart adopts it.
    first.proc.signal(libc::SIGTERM);
    first.proc.wait_exit(DEADLINE).await;
    let second = Wakeway::start_config(&config).await;
    let adopted = wait_ready_count(&second, "auto", 1).await;
    assert_eq!(adopted, BTreeSet::from([deployed]));
    assert_eq!(t.wait_containers(1).await, BTreeSet::from([after]));
    let events = second.events("auto").await;
    assert_eq!(
        events_of_kind(&events, "instance_adopted").len(),
        1,
        "{events:?}"
    );
    assert!(
        events_of_kind(&events, "instance_starting").is_empty(),
        "{events:?}"
    );
}

/// With a state file a revision keeps its image across a restart: its container left running
/// is adopted although the tag moved while wakeway was stopped, not replaced; a container of
/// the service that runs another image is not adopted as one of that revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_the_container_of_the_pinned_image_after_the_tag_moved() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("pinned.state.json");
    let tag = t.own_tag(&format!("wakeway-test-{}:moving", t.scope)).await;
    let old_id = t.docker.inspect_image(&tag).await.unwrap().id.unwrap();
    // stop_on_exit is off by default: the container outlives wakeway.
    let config = format!(
        "state_file = \"{}\"\n{}",
        path_str(&state),
        t.config(
            "",
            &docker_service("pinned", &tag, "[service.scaling]\nmin_instances = 1")
        )
    );
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
    let events = second.events("pinned").await;
    assert_eq!(
        events_of_kind(&events, "instance_adopted").len(),
        1,
        "{events:?}"
    );
    assert!(
        events_of_kind(&events, "instance_starting").is_empty(),
        "{events:?}"
    );
}
