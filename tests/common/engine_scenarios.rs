//! The scenarios the docker and swarm runtimes share, written once: each takes an
//! [`EngineTest`] (a [`DockerTest`] or a [`SwarmTest`]) and asserts what a user of either
//! runtime checks. `tests/docker.rs` and `tests/swarm.rs` run them in thin `#[tokio::test]`s
//! and keep only what one runtime has (limits on a container, a swarm service's endpoint).
//!
//! An instance is a container (docker) or a single-replica swarm service (swarm); its
//! "container" is the container itself or its task's.

use std::collections::BTreeSet;

use bollard::query_parameters::KillContainerOptions;
use http::{Method, StatusCode};
use tokio::time::Instant;

use super::docker::swarm::FlakyEngine;
use super::docker::{
    DOCKERFILE, DockerTest, build_image, events_of_kind, ready_ids, wait_ready_count,
};
use super::{
    DEADLINE, LISTEN_ANY, Proc, Resp, Wakeway, get, ids_of, path_str, request, run_to_exit, send,
    wait_for, whoami_service,
};

/// One runtime's side of the shared scenarios.
pub trait EngineTest {
    /// The runtime, as its config table is named.
    const RUNTIME: &'static str;
    /// What the engine runs one instance as, for messages: "containers", "tasks".
    const INSTANCES: &'static str;
    /// What `wakeway check` says of a missing image, and what the 503 of its service says.
    const IMAGE_MISSING: (&'static str, &'static str);

    /// A `[[service]]` of this runtime on host `NAME.localhost`, with `extra` TOML appended.
    fn service(name: &str, image: &str, extra: &str) -> String;
    /// The shared test image.
    fn test(&self) -> &DockerTest;
    /// A complete config: this test's `[docker]` or `[swarm]` table with `keys`, then
    /// `services`.
    fn engine_config(&self, keys: &str, services: &str) -> String;
    /// The ids of this scope's instances on the engine (`all`: stopped containers too).
    async fn instance_ids(&self, all: bool) -> BTreeSet<String>;
    /// Waits until `service`'s instances on the engine are exactly `instances`.
    async fn wait_engine_instances(&self, service: &str, instances: &BTreeSet<String>);
    /// Waits until this scope has nothing left on the engine.
    async fn wait_nothing_left(&self);
    /// The id or name of the running container of `service`'s `instance`.
    async fn container_of(&self, service: &str, instance: &str) -> String;
    /// The env of each of `service`'s instances.
    async fn envs(&self, service: &str) -> Vec<Vec<String>>;
    /// What a previous wakeway could have left: instances that are not the config's.
    async fn leftovers(&self) -> Vec<String>;
}

/// Thin `#[tokio::test]`s that run scenarios of this module against one harness, each
/// skipping as its harness does when no engine answers:
/// `twins!(DockerTest { test_name => scenario(args), ... })`.
// Only the docker and swarm test files use it; every test file compiles the harness.
#[allow(unused_macros)]
macro_rules! twins {
    ($harness:ident { $($test:ident => $scenario:ident($($arg:expr),*)),* $(,)? }) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let Some(t) = $harness::new().await else {
                return;
            };
            crate::common::engine_scenarios::$scenario(&t $(, $arg)*).await;
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use twins;

/// The labels of a leftover of a service no longer in the config.
pub const GHOST: [(&str, &str); 2] = [
    ("wakeway.service", "ghost"),
    ("wakeway.instance", "ghost-00001-a"),
];

/// `service`'s events show `n` instances adopted and none started: none was duplicated.
pub async fn assert_adopted_not_started(w: &Wakeway, service: &str, n: usize) {
    let events = w.events(service).await;
    assert_eq!(
        events_of_kind(&events, "instance_adopted").len(),
        n,
        "{events:?}"
    );
    assert!(
        events_of_kind(&events, "instance_starting").is_empty(),
        "none duplicated: {events:?}"
    );
}

/// Service `web` running `image` at exactly two instances (`extra` added to its table); returns
/// wakeway once both are ready and are what the engine runs.
pub async fn two_of_web<T: EngineTest>(t: &T, image: &str, extra: &str) -> Wakeway {
    let scaling = "[service.scaling]\nmin_instances = 2\nmax_instances = 2";
    let service = T::service("web", image, &format!("{extra}\n{scaling}"));
    let w = Wakeway::start_config(&t.engine_config("stop_on_exit = true", &service)).await;
    let old = w.wait_ready_revision("web", "web-00001", 2).await;
    t.wait_engine_instances("web", &ids_of(&old)).await;
    w
}

/// Deploys `body` to service `web`, which must succeed as revision web-00002; returns the
/// deployment as first answered and when it had switched.
pub async fn deploy_switched(w: &Wakeway, body: serde_json::Value) -> (serde_json::Value, Instant) {
    let d = w.deploy("web", body).await;
    assert_eq!(d["revision"], "web-00002", "{d}");
    let done = w.wait_deployment("web", d["id"].as_str().unwrap()).await;
    // The pool was stored before the deployment was marked succeeded.
    let switched = Instant::now();
    assert_eq!(done["state"], "succeeded", "{done}");
    (d, switched)
}

/// A 503 with `Retry-After` whose body says each of `says`.
fn assert_unavailable(resp: &Resp, says: &[&str]) {
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert!(resp.header("retry-after").is_some());
    let body = resp.text();
    assert!(says.iter().all(|s| body.contains(s)), "{body}");
}

/// The first request of a service at zero starts one instance, answered from inside a
/// container; returns wakeway and the instance of `cold`, whose env, limits, stop signal and
/// grace the caller checks on the engine.
pub async fn cold_start<T: EngineTest>(t: &T) -> (Wakeway, String) {
    let extra = r#"env = { GREETING = "hi" }
cpus = 0.5
memory = "64MiB"
stop_signal = "SIGINT"
stop_grace = "3s""#;
    let service = T::service("cold", &t.test().image, extra);
    let w = Wakeway::start_config(&t.engine_config("stop_on_exit = true", &service)).await;
    assert!(
        t.instance_ids(true).await.is_empty(),
        "min_instances 0: no instance on the engine before the first request"
    );
    let sent = Instant::now();
    let resp = w.get("cold.localhost", "/").await;
    eprintln!(
        "{} cold start: first byte after {} ms",
        T::RUNTIME,
        sent.elapsed().as_millis()
    );
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.field("Pid").as_deref(),
        Some("1"),
        "answered from inside a container (its own pid namespace): {}",
        resp.text()
    );
    assert_eq!(resp.field("Service").as_deref(), Some("cold"));
    let instance = resp.instance().expect("an Instance line");
    (w, instance)
}

/// Six slow requests at two per instance run three instances at least, four at most; idle,
/// the service goes back to zero with nothing left on the engine.
pub async fn scales_out_then_back_to_zero<T: EngineTest>(t: &T, sleep: &str) {
    let service = T::service(
        "burst",
        &t.test().image,
        r#"stop_grace = "2s"

[service.scaling]
max_instances = 4
target_concurrency = 2
max_concurrency = 2
idle_timeout = "2s"
stable_window = "4s"
panic_window = "2s""#,
    );
    let w = Wakeway::start_config(&t.engine_config("stop_on_exit = true", &service)).await;

    let proxy = w.proxy;
    let requests: Vec<_> = (0..6)
        .map(|i| {
            let path = format!("/?sleep={sleep}&n={i}");
            tokio::spawn(async move { get(proxy, "burst.localhost", &path).await })
        })
        .collect();
    // While the requests are held, the instances run.
    let what = format!("at least 3 running {}", T::INSTANCES);
    let running = wait_for(&what, DEADLINE, || async {
        let n = t.test().containers(Some("burst"), false).await.len();
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
    assert!(
        running <= 4,
        "max_instances = 4, saw {running} {}",
        T::INSTANCES
    );

    // Idle for idle_timeout: back to zero, and nothing is left on the engine.
    t.wait_nothing_left().await;
    wait_for("no instances in the admin API", DEADLINE, || async {
        w.instances("burst").await.is_empty().then_some(())
    })
    .await;
}

/// One of three instances is killed under load: exactly its two requests fail, it is
/// replaced, and its exit is an event with the exit code.
pub async fn killed_instance_is_replaced_and_only_its_requests_fail<T: EngineTest>(t: &T) {
    let service = T::service(
        "crash",
        &t.test().image,
        r#"
[service.scaling]
min_instances = 3
max_instances = 3
target_concurrency = 2
max_concurrency = 2"#,
    );
    let w = Wakeway::start_config(&t.engine_config("stop_on_exit = true", &service)).await;
    let before = wait_ready_count(&w, "crash", 3).await;

    let proxy = w.proxy;
    // POSTs: a GET on the killed instance would be sent again to another (safe to repeat), so
    // nothing would fail (docs/failure-policy.md).
    let requests: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                let path = format!("/?sleep=5s&n={i}");
                send(proxy, request(Method::POST, "crash.localhost", &path, "x")).await
            })
        })
        .collect();
    // Two on each instance: max_concurrency = 2 leaves no other spread.
    w.wait_load("crash", 6, 0).await;
    let victim = before.iter().next().unwrap().clone();
    let container = t.container_of("crash", &victim).await;
    t.test()
        .docker
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
    assert!(
        !ok.contains(&victim),
        "no answer from the killed instance {victim}: {ok:?}"
    );

    // Replaced: three ready instances again, the victim not among them nor on the engine.
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
    t.wait_engine_instances("crash", &after).await;
    let events = w.events("crash").await;
    assert!(
        events_of_kind(&events, "instance_exited")
            .iter()
            .any(|e| e["instance"] == victim.as_str()
                && e["reason"].as_str().unwrap_or("").contains("137")),
        "an instance_exited event for {victim} with the exit code: {events:?}"
    );
}

/// Instances outlive a wakeway stopped by `signal` (without `stop_on_exit`); the next start
/// adopts them (none started, none lost) and removes what an older wakeway left; a changed env
/// then makes them stale: replaced, not adopted. Returns the last wakeway.
pub async fn restart_adopts_instances_and_removes_stale_ones<T: EngineTest>(
    t: &T,
    signal: i32,
    extra: &str,
) -> Wakeway {
    let service = |greeting: &str| {
        T::service(
            "keep",
            &t.test().image,
            &format!(
                "env = {{ GREETING = \"{greeting}\" }}\n{extra}\n[service.scaling]\nmin_instances = 2\nmax_instances = 4"
            ),
        )
    };
    // stop_on_exit is off by default: instances outlive wakeway.
    let config = t.engine_config("", &service("one"));
    let mut first = Wakeway::start_config(&config).await;
    let instances = wait_ready_count(&first, "keep", 2).await;
    let before = t.instance_ids(false).await;
    assert_eq!(before.len(), 2);
    first.proc.signal(signal);
    first.proc.wait_exit(DEADLINE).await;
    assert_eq!(
        t.instance_ids(false).await,
        before,
        "the instances keep running after wakeway exits"
    );

    let leftovers = t.leftovers().await;
    let second = Wakeway::start_config(&config).await;
    let adopted = wait_ready_count(&second, "keep", 2).await;
    assert_eq!(adopted, instances, "the same instances, adopted");
    let now = wait_for("the leftovers removed", DEADLINE, || async {
        let ids = t.instance_ids(true).await;
        (ids.len() == 2 && leftovers.iter().all(|l| !ids.contains(l))).then_some(ids)
    })
    .await;
    assert_eq!(now, before, "no instance added, none lost");
    assert_adopted_not_started(&second, "keep", 2).await;
    let resp = second.get("keep.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(instances.contains(&resp.instance().unwrap()));
    drop(second);

    // A changed env makes them stale: replaced, not adopted.
    let changed = Wakeway::start_config(&t.engine_config("", &service("two"))).await;
    let fresh = wait_ready_count(&changed, "keep", 2).await;
    t.wait_engine_instances("keep", &fresh).await;
    let replaced = t.instance_ids(true).await;
    assert!(
        replaced.is_disjoint(&before),
        "stale instances removed and replaced: {before:?} -> {replaced:?}"
    );
    for env in t.envs("keep").await {
        assert!(env.contains(&"GREETING=two".to_string()), "{env:?}");
    }
    assert_eq!(
        changed.get("keep.localhost", "/").await.status,
        StatusCode::OK
    );
    changed
}

/// A service whose image is missing answers a clear 503 that says why, and `wakeway check`
/// says so too (and that the image of the other service, `here`, is present). Returns
/// wakeway, the missing image and what `check` printed.
pub async fn missing_image_is_a_clear_503_and_check_says_so<T: EngineTest>(
    t: &T,
) -> (Wakeway, String, String) {
    let (check_says, body_says) = T::IMAGE_MISSING;
    let missing = format!("wakeway-test-missing-{}:none", t.test().scope);
    let config = t.engine_config(
        "",
        &format!(
            "{}\n{}",
            // A hang would show as a 504.
            T::service("ghost", &missing, "[service.queue]\ntimeout = \"50s\""),
            T::service("here", &t.test().image, "")
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
    assert!(line("ghost").contains(check_says), "{stdout}");
    assert!(line("here").contains("present locally"), "{stdout}");

    let w = Wakeway::start_config(&config).await;
    let resp = w.get("ghost.localhost", "/").await;
    assert_unavailable(&resp, &[&missing, body_says]);
    (w, missing, stdout)
}

/// Needs no engine: `endpoint` is a socket that does not exist. A service of this runtime
/// answers a 503 naming the endpoint, one of another runtime keeps answering. Returns the
/// services.
pub async fn unreachable_engine_is_named_and_other_runtimes_keep_working<T: EngineTest>(
    endpoint: &str,
) -> String {
    let services = format!(
        "{}\n{}",
        T::service("boxed", "anything:1", ""),
        whoami_service("plain", "plain.localhost", "")
    );
    let w = Wakeway::start_config(&format!(
        "{LISTEN_ANY}\n[{}]\nendpoint = \"{endpoint}\"\n{services}",
        T::RUNTIME
    ))
    .await;
    assert_eq!(w.get("plain.localhost", "/").await.status, StatusCode::OK);
    let resp = w.get("boxed.localhost", "/").await;
    assert_unavailable(&resp, &[endpoint, "unreachable"]);
    assert_eq!(w.get("plain.localhost", "/").await.status, StatusCode::OK);
    services
}

/// With `DOCKER_HOST` naming the engine instead of the config, the 503 names it.
pub async fn docker_host_names_the_engine(services: &str, endpoint: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wakeway.toml");
    std::fs::write(&path, format!("{LISTEN_ANY}\n{services}")).unwrap();
    let mut proc = Proc::spawn_with_env(
        "wakeway run (DOCKER_HOST)",
        &["run", "-c", path_str(&path)],
        &[("DOCKER_HOST", endpoint)],
    );
    let proxy = proc.listening_addr("proxy").await;
    let resp = get(proxy, "boxed.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.text().contains(endpoint), "{}", resp.text());
}

/// While the engine is away, running instances keep serving and a start is a clear 503
/// naming the endpoint; an instance that died meanwhile is replaced once it is back.
pub async fn engine_outage_keeps_instances_serving_and_exits_are_seen_after_it<T: EngineTest>(
    t: &T,
    extra: &str,
) {
    let Some(mut engine) = FlakyEngine::new() else {
        eprintln!("SKIPPING engine outage test: it stands in for a unix socket engine only");
        return;
    };
    let services = format!(
        "{}\n{}",
        T::service(
            "warm",
            &t.test().image,
            &format!("{extra}\n[service.scaling]\nmin_instances = 1")
        ),
        T::service("lazy", &t.test().image, extra)
    );
    let w = Wakeway::start_config(&t.engine_config(
        &format!("endpoint = \"{}\"\nstop_on_exit = true", engine.endpoint()),
        &services,
    ))
    .await;
    let before = wait_ready_count(&w, "warm", 1).await;
    let victim = before.iter().next().unwrap().clone();
    let container = t.container_of("warm", &victim).await;

    engine.down();
    // Running instances do not need the engine.
    let resp = w.get_ok("warm.localhost", "/").await;
    assert_eq!(resp.instance(), Some(victim.clone()));
    // Starting one does: a clear 503 naming the endpoint.
    let resp = w.get("lazy.localhost", "/").await;
    assert_unavailable(&resp, &[&engine.endpoint()]);

    // The container dies while wakeway cannot hear the engine.
    t.test()
        .docker
        .kill_container(&container, None::<KillContainerOptions>)
        .await
        .expect("docker kill");

    engine.up();
    let after = wait_for("warm replaced after the outage", DEADLINE, || async {
        let ids = ready_ids(&w, "warm").await;
        (ids.len() == 1 && !ids.contains(&victim)).then_some(ids)
    })
    .await;
    t.wait_engine_instances("warm", &after).await;
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

/// A new build behind the tag of a `deploy.auto` service deploys: one new instance runs the
/// new image, the old one is gone. Returns wakeway, its config and the new instance.
pub async fn new_image_behind_the_tag_deploys<T: EngineTest>(
    t: &T,
    keys: &str,
    extra: &str,
) -> (Wakeway, String, String) {
    let test = t.test();
    let tag = test
        .own_tag(&format!("wakeway-test-{}:live", test.scope))
        .await;
    let service = T::service(
        "auto",
        &tag,
        &format!("{extra}\n[service.scaling]\nmin_instances = 1\n\n[service.deploy]\nauto = true"),
    );
    let config = t.engine_config(keys, &service);
    let w = Wakeway::start_config(&config).await;
    let before = wait_ready_count(&w, "auto", 1).await;

    // A new build of the same tag.
    let variant = format!("{DOCKERFILE}ENV WAKEWAY_TEST_VARIANT=2\n");
    build_image(&test.docker, &tag, &variant)
        .await
        .expect("build the new image");
    let new_image = test.docker.inspect_image(&tag).await.unwrap().id.unwrap();

    let after = wait_for("one new instance, the old one gone", DEADLINE, || async {
        let ids = ready_ids(&w, "auto").await;
        (ids.len() == 1 && ids.is_disjoint(&before)).then_some(ids)
    })
    .await;
    t.wait_engine_instances("auto", &after).await;
    let instance = after.into_iter().next().unwrap();
    let info = test.inspect(&t.container_of("auto", &instance).await).await;
    assert_eq!(info.image.as_deref(), Some(new_image.as_str()));
    let events = w.events("auto").await;
    assert_eq!(
        events_of_kind(&events, "deploy_switched").len(),
        1,
        "{events:?}"
    );
    (w, config, instance)
}
