//! `idle_action = "freeze"` against the fake runtime, on paused time.

use super::*;
use crate::config::IdleAction;

fn freezing() -> Arc<Service> {
    service(|c| {
        c.scaling.idle_action = IdleAction::Freeze;
        c.scaling.idle_timeout = Duration::from_secs(30);
        c.scaling.frozen_timeout = Duration::from_secs(600);
    })
}

fn state_of(svc: &Service, id: &str) -> Option<&'static str> {
    svc.instances
        .load()
        .iter()
        .find(|i| i.id == id)
        .map(|i| i.state().as_str())
}

/// Serves one request and returns the instance that served it.
async fn serve_one(svc: &Arc<Service>) -> String {
    let g = svc.acquire().await.expect("a slot");
    let id = g.instance().id.clone();
    drop(g);
    id
}

/// A freezing service whose one instance served a request and froze: the service, the
/// runtime, the controller, the instance.
async fn one_frozen() -> (Arc<Service>, FakeRuntime, Running, String) {
    let svc = freezing();
    let rt = FakeRuntime::new();
    let r = run(svc.clone(), rt.clone());
    let first = serve_one(&svc).await;
    until("frozen", || rt.frozen().len() == 1).await;
    (svc, rt, r, first)
}

#[tokio::test(start_paused = true)]
async fn idle_freezes_the_next_request_thaws_and_frozen_timeout_stops() {
    let svc = freezing();
    let rt = FakeRuntime::new();
    rt.set_memory(50 << 20);
    let r = run(svc.clone(), rt.clone());
    let first = serve_one(&svc).await;
    until("frozen after idle_timeout", || {
        rt.frozen() == vec![first.clone()]
    })
    .await;
    assert_eq!(state_of(&svc, &first), Some("frozen"));
    assert!(
        ready_ids(&svc).is_empty(),
        "a frozen instance holds no pool slot"
    );
    let frozen = events(&svc, "instance_frozen");
    assert_eq!(frozen[0].fields["memory_bytes"], 50 << 20);

    // The next request thaws it: the same instance, no new start, no cold start counted.
    let again = serve_one(&svc).await;
    assert_eq!(again, first);
    assert_eq!(rt.started(), 1, "thawed, not started");
    assert!(rt.frozen().is_empty());
    assert_eq!(events(&svc, "instance_thawed").len(), 1);
    assert!(
        events(&svc, "cold_start").len() == 1,
        "only the first request was cold"
    );

    // Frozen again, then stopped after frozen_timeout.
    until("frozen again", || rt.frozen().len() == 1).await;
    tokio::time::sleep(Duration::from_secs(601)).await;
    until("stopped after frozen_timeout", || rt.alive().is_empty()).await;
    let drained = events(&svc, "instance_draining");
    assert!(
        drained
            .iter()
            .any(|e| e.fields["reason"] == "frozen_timeout"),
        "{drained:?}"
    );
    r.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_thaw_falls_back_to_a_cold_start() {
    let (svc, rt, r, _) = one_frozen().await;
    rt.fail_next_thaw();
    let served = serve_one(&svc).await;
    assert_eq!(events(&svc, "thaw_failed").len(), 1);
    assert_eq!(rt.started(), 2, "a new instance was started");
    assert_eq!(
        rt.alive(),
        vec![served.clone()],
        "the one that failed to thaw is gone"
    );
    assert_eq!(state_of(&svc, &served), Some("ready"));
    r.finish().await;
    assert!(rt.alive().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_frozen_instance_killed_from_outside_is_seen_as_exited() {
    let (svc, rt, r, first) = one_frozen().await;
    rt.kill(&first);
    until("seen as exited", || state_of(&svc, &first).is_none()).await;
    assert_eq!(events(&svc, "instance_exited").len(), 1);
    let served = serve_one(&svc).await;
    assert_ne!(served, first, "a new instance replaces it");
    r.finish().await;
    assert!(rt.alive().is_empty(), "shutdown stops everything");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_frozen_instances() {
    let (_svc, rt, r, _) = one_frozen().await;
    r.finish().await;
    assert!(rt.alive().is_empty());
}
