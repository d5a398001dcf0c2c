//! Issue 20 on the docker runtime against the real local engine: `idle_action = "freeze"` is
//! `docker pause` / `docker unpause` of the very container. An idle container is paused, the
//! next request unpauses it (200, the same container, `Server-Timing: thaw`), it is stopped
//! after `frozen_timeout`; a paused container killed from outside is replaced; a restarted
//! wakeway adopts its paused containers, frozen, and thaws them when the service no longer
//! freezes.

mod common;

use bollard::query_parameters::KillContainerOptions;
use common::docker::*;
use common::*;

/// Service `f` on the test image, idle after `idle`.
fn frozen_service(t: &DockerTest, idle: &str, scaling: &str) -> String {
    docker_service(
        "f",
        &t.image,
        &format!(
            "stop_grace = \"1s\"\n\n[service.scaling]\nidle_timeout = \"{idle}\"\n{scaling}\n"
        ),
    )
}

async fn serve(w: &Wakeway) -> Resp {
    w.get_ok("f.localhost", "/").await
}

async fn wait_state(w: &Wakeway, state: &str) -> Instance {
    wait_for(&format!("an instance {state}"), DEADLINE, || async {
        w.instances("f")
            .await
            .into_iter()
            .find(|i| i.state == state)
    })
    .await
}

/// The one container of service `f` (stopped ones too), and whether the engine has it paused.
async fn the_container(t: &DockerTest) -> (String, bool) {
    let all = t.containers(Some("f"), true).await;
    assert_eq!(all.len(), 1, "one container: {all:?}");
    let id = all[0].id.clone().unwrap();
    let paused = t.inspect(&id).await.state.unwrap().paused;
    (id, paused == Some(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_container_is_paused_unpaused_by_a_request_and_stopped_after_frozen_timeout() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let service = frozen_service(
        &t,
        "1s",
        "idle_action = \"freeze\"\nfrozen_timeout = \"6s\"",
    );
    let w = Wakeway::start_config(&t.config("stop_on_exit = true", &service)).await;
    let cold = serve(&w).await;
    assert_eq!(cold.timed_wait(), Some("cold-start"), "{:?}", cold.headers);
    let instance = cold.instance().unwrap();
    let (container, _) = the_container(&t).await;

    let frozen = wait_state(&w, "frozen").await;
    assert_eq!(frozen.id, instance);
    assert_eq!(the_container(&t).await, (container.clone(), true), "paused");
    w.assert_one_frozen("f", 0).await;

    // The next request unpauses the same container; Server-Timing names the wait a thaw.
    let thawed = serve(&w).await;
    assert_eq!(thawed.instance().as_deref(), Some(instance.as_str()));
    assert_eq!(thawed.timed_wait(), Some("thaw"), "{:?}", thawed.headers);
    assert_eq!(the_container(&t).await, (container, false), "unpaused");
    let events = w.events("f").await;
    assert_eq!(events_of_kind(&events, "instance_thawed").len(), 1);
    assert_eq!(events_of_kind(&events, "cold_start").len(), 1, "{events:?}");

    // Paused again, then stopped after frozen_timeout: the container is gone.
    wait_state(&w, "frozen").await;
    wait_for("stopped after frozen_timeout", DEADLINE * 2, || async {
        w.instances("f").await.is_empty().then_some(())
    })
    .await;
    t.wait_containers(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_container_killed_from_outside_is_replaced() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    let service = frozen_service(&t, "1s", "idle_action = \"freeze\"");
    let w = Wakeway::start_config(&t.config("stop_on_exit = true", &service)).await;
    let first = serve(&w).await.instance().unwrap();
    wait_state(&w, "frozen").await;
    let (container, paused) = the_container(&t).await;
    assert!(paused);
    t.docker
        .kill_container(&container, None::<KillContainerOptions>)
        .await
        .expect("docker kill of a paused container");

    let again = serve(&w).await.instance().unwrap();
    assert_ne!(again, first, "the killed instance answered");
    w.assert_frozen_kill_seen("f").await;
    let (now, paused) = the_container(&t).await;
    assert!(now != container && !paused, "a new running container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_wakeway_adopts_its_paused_containers() {
    let Some(t) = DockerTest::new().await else {
        return;
    };
    // stop_on_exit is off by default: containers outlive wakeway, paused ones paused.
    let freezing = t.config("", &frozen_service(&t, "1s", "idle_action = \"freeze\""));
    let mut first = Wakeway::start_config(&freezing).await;
    let instance = serve(&first).await.instance().unwrap();
    wait_state(&first, "frozen").await;
    let (container, _) = the_container(&t).await;
    first.proc.signal(libc::SIGTERM);
    assert!(first.proc.wait_exit(DEADLINE).await.success());
    assert_eq!(
        the_container(&t).await,
        (container.clone(), true),
        "left paused"
    );

    // Adopted frozen: not removed, not thawed, not started again; the next request thaws it.
    let mut second = Wakeway::start_config(&freezing).await;
    let adopted = wait_state(&second, "frozen").await;
    assert_eq!(adopted.id, instance);
    let events = second.events("f").await;
    let said = events_of_kind(&events, "instance_adopted");
    assert_eq!(said.len(), 1, "{events:?}");
    assert_eq!(said[0]["frozen"], true);
    assert_eq!(the_container(&t).await, (container.clone(), true));
    let thawed = serve(&second).await;
    assert_eq!(thawed.instance().as_deref(), Some(instance.as_str()));
    assert_eq!(thawed.timed_wait(), Some("thaw"), "{:?}", thawed.headers);
    assert_eq!(the_container(&t).await, (container.clone(), false));
    let events = second.events("f").await;
    assert!(
        events_of_kind(&events, "cold_start").is_empty(),
        "{events:?}"
    );

    // Frozen again and left so; a wakeway whose service no longer freezes thaws it, adopts it
    // as a running one, and stops it when idle as any other.
    wait_state(&second, "frozen").await;
    second.proc.signal(libc::SIGTERM);
    assert!(second.proc.wait_exit(DEADLINE).await.success());
    assert_eq!(the_container(&t).await, (container.clone(), true));
    let stopping = t.config("", &frozen_service(&t, "3s", "idle_action = \"stop\""));
    let third = Wakeway::start_config(&stopping).await;
    let ready = wait_state(&third, "ready").await;
    assert_eq!(ready.id, instance);
    assert_eq!(the_container(&t).await, (container, false), "unpaused");
    wait_for("stopped when idle", DEADLINE, || async {
        third.instances("f").await.is_empty().then_some(())
    })
    .await;
    t.wait_containers(0).await;
}
