//! The controller against a fake runtime, on paused time: each fault of issue 9 replayed in
//! milliseconds, deterministically.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{self, ServiceConfig};
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::runtime::fake::{FakeRuntime, Plan};
use crate::service::InFlight;
use crate::service::activator::ActivatorError;
use crate::service::command::Report;
use crate::service::instance::InstanceState;

fn service(tweak: impl FnOnce(&mut ServiceConfig)) -> Arc<Service> {
    let mut cfg = ServiceConfig::new(
        "svc",
        vec!["svc.localhost".into()],
        config::Source::Command(vec!["app".into()]),
    );
    cfg.scaling.max_concurrency = 10;
    cfg.scaling.target_concurrency = 5.0;
    cfg.health.interval = Duration::from_secs(3600);
    cfg.queue.max_pending = 1000;
    tweak(&mut cfg);
    Service::new(
        cfg,
        Metrics::new().service("svc"),
        Arc::new(EventLog::default()),
    )
}

struct Running {
    svc: Arc<Service>,
    rt: FakeRuntime,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn run(svc: Arc<Service>, rt: FakeRuntime) -> Running {
    let source = {
        let rt = rt.clone();
        move || Source::Managed(Arc::new(rt.clone()))
    };
    let factory: SourceFactory = {
        let source = source.clone();
        Arc::new(move |_: &ServiceConfig| Ok(source()))
    };
    let mut c = Controller::new(svc.clone(), source(), factory);
    let probe_rt = rt.clone();
    c.prober = Arc::new(move |addr, _| {
        let r = probe_rt.probe(addr);
        Box::pin(async move { r })
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(c.run(stop.clone()));
    Running {
        svc,
        rt,
        stop,
        task,
    }
}

impl Running {
    /// Stops the controller and waits until it has.
    async fn finish(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Edits the service's live config as a reload would; returns the config it now runs.
async fn update(svc: &Service, edit: impl FnOnce(&mut ServiceConfig)) -> ServiceConfig {
    let mut cfg = svc.config.load().as_ref().clone();
    edit(&mut cfg);
    let config = Box::new(cfg.clone());
    svc.ask(|reply| Command::Update { config, reply })
        .await
        .unwrap();
    cfg
}

/// Waits (in paused time, so instantly) until `check` holds; fails after 10 virtual minutes.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn events(svc: &Service, kind: &str) -> Vec<crate::events::Event> {
    svc.events
        .list(Some(&svc.name), 0)
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

fn ready_ids(svc: &Service) -> Vec<String> {
    svc.lane()
        .pool
        .load()
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect()
}

/// Holds `n` requests (each acquires and keeps its slot) until `release` is cancelled.
fn hold(svc: &Arc<Service>, n: usize, release: &CancellationToken) -> Vec<JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let svc = svc.clone();
            let release = release.clone();
            tokio::spawn(async move {
                let g: InFlight = svc.acquire().await.expect("a slot");
                release.cancelled().await;
                drop(g);
            })
        })
        .collect()
}

/// Defect 1: a burst after a quiet minute scales up on demand; the next ticks, whose stable
/// window is still full of the quiet, must not scale it back down (it went 4 -> 2 -> 1 and
/// drained busy instances).
#[tokio::test(start_paused = true)]
async fn a_burst_is_not_undone_by_a_window_that_has_not_seen_it() {
    let r = run(
        service(|c| {
            c.scaling.panic_threshold = 100.0; // the stable path alone must hold
        }),
        FakeRuntime::new(),
    );
    let release = CancellationToken::new();
    let mut held = hold(&r.svc, 1, &release);
    until("one instance serves", || r.svc.in_flight() == 1).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    held.extend(hold(&r.svc, 39, &release));
    until("the burst is served", || r.svc.in_flight() == 40).await;
    assert!(r.svc.desired.load(SeqCst) >= 4, "demand scaled out");
    tokio::time::sleep(Duration::from_secs(30)).await;
    for e in events(&r.svc, "scale") {
        let (from, to) = (e.fields["from"].as_u64(), e.fields["to"].as_u64());
        assert!(to >= from, "scale-down inside the hold: {}", e.message);
    }
    assert_eq!(r.svc.in_flight(), 40, "no request lost its instance");
    release.cancel();
    for h in held {
        h.await.unwrap();
    }
    let rt = r.rt.clone();
    r.finish().await;
    assert!(rt.alive().is_empty());
}

/// Defect 2: desired 1 with one ready and one starting instance: the start is cancelled, the warm
/// instance keeps serving.
#[tokio::test(start_paused = true)]
async fn excess_cancels_a_start_not_the_warm_instance() {
    let svc = service(|c| c.scaling.min_instances = 1);
    let rt = FakeRuntime::new();
    let r = run(svc.clone(), rt.clone());
    until("the first instance is ready", || ready_ids(&svc).len() == 1).await;
    let warm = ready_ids(&svc)[0].clone();
    rt.plan(Plan::ReadyAfter(Duration::from_secs(10)));
    update(&svc, |c| c.scaling.min_instances = 2).await;
    until("a second instance starts", || rt.alive().len() == 2).await;
    update(&svc, |c| {
        c.scaling.min_instances = 1;
        c.scaling.max_instances = 1;
    })
    .await;
    until("the start is stopped", || rt.alive().len() == 1).await;
    assert_eq!(rt.alive(), vec![warm.clone()], "the warm one stays");
    assert_eq!(ready_ids(&svc), vec![warm.clone()]);
    assert!(
        events(&svc, "instance_draining").is_empty(),
        "nothing ready was drained"
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(rt.alive(), vec![warm], "and nothing came back");
    r.finish().await;
}

/// Defect 3: a connect timeout on the request path is one strike toward unhealthy_threshold; a
/// refusal takes the instance out at once. Either way the controller decides and replaces it.
#[tokio::test(start_paused = true)]
async fn the_request_path_reports_and_the_controller_decides() {
    let svc = service(|c| {
        c.scaling.min_instances = 1;
        c.health.unhealthy_threshold = 3;
    });
    let rt = FakeRuntime::new();
    let r = run(svc.clone(), rt.clone());
    until("ready", || ready_ids(&svc).len() == 1).await;
    let busy = svc.lane().pool.load().instances[0].clone();
    svc.report(&busy, Report::ConnectTimeout);
    svc.report(&busy, Report::ConnectTimeout);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        busy.state(),
        InstanceState::Ready,
        "two timeouts of three: still serving"
    );
    assert_eq!(ready_ids(&svc), vec![busy.id.clone()]);
    svc.report(&busy, Report::ConnectTimeout);
    until("the third strike takes it out", || {
        busy.state() != InstanceState::Ready
    })
    .await;
    until("a replacement serves", || {
        ready_ids(&svc).len() == 1 && ready_ids(&svc)[0] != busy.id
    })
    .await;

    let dead = svc.lane().pool.load().instances[0].clone();
    svc.report(&dead, Report::Refused);
    until("a refusal takes it out at once", || {
        dead.state() != InstanceState::Ready
    })
    .await;
    let reasons: Vec<String> = events(&svc, "instance_unhealthy")
        .iter()
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("timed out"), "{reasons:?}");
    assert!(reasons[1].contains("refused"), "{reasons:?}");
    until("another replacement", || {
        ready_ids(&svc).len() == 1 && !rt.alive().contains(&dead.id)
    })
    .await;
    r.finish().await;
}

/// Defect 4: queued requests are answered 503 with the reason the moment the service is removed,
/// while the instance still finishes its request in flight (not after the drain, not 504).
#[tokio::test(start_paused = true)]
async fn removal_answers_every_queued_request_at_once() {
    let svc = service(|c| {
        c.scaling.min_instances = 1;
        c.scaling.max_instances = 1;
        c.scaling.max_concurrency = 1;
        c.queue.timeout = Duration::from_secs(5);
    });
    let r = run(svc.clone(), FakeRuntime::new());
    until("ready", || ready_ids(&svc).len() == 1).await;
    let busy = svc.acquire().await.unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.acquire().await.map(drop) })
        })
        .collect();
    until("three wait", || svc.queued() == 3).await;
    svc.command(Command::Remove).unwrap();
    for w in waiters {
        match w.await.unwrap() {
            Err(ActivatorError::Unavailable(why)) => assert!(why.contains("removed"), "{why}"),
            other => panic!("expected 503 Unavailable, got {other:?}"),
        }
    }
    assert_eq!(
        svc.in_flight(),
        1,
        "answered while the busy request still runs"
    );
    assert!(
        matches!(svc.acquire().await, Err(ActivatorError::Unavailable(_))),
        "a late request is answered at once too"
    );
    drop(busy);
    r.task.await.unwrap();
    assert!(r.rt.alive().is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_queued_requests_with_the_reason() {
    let svc = service(|c| c.queue.timeout = Duration::from_secs(600));
    let rt = FakeRuntime::new();
    rt.plan(Plan::NeverReady);
    let r = run(svc.clone(), rt.clone());
    let waiter = tokio::spawn({
        let svc = svc.clone();
        async move { svc.acquire().await.map(drop) }
    });
    until("a start is under way", || rt.alive().len() == 1).await;
    r.stop.cancel();
    match waiter.await.unwrap() {
        Err(ActivatorError::Unavailable(why)) => assert!(why.contains("stopping"), "{why}"),
        other => panic!("expected 503 Unavailable, got {other:?}"),
    }
    r.task.await.unwrap();
    assert!(rt.alive().is_empty(), "the starting instance was stopped");
}

/// Defect 7: a deploy switches while a live instance is still starting. Its start is cancelled:
/// the instance is stopped, reported stopped once, after it is gone, and never comes up later
/// (it used to be re-spawned as a "port race" and became ready, untracked).
#[tokio::test(start_paused = true)]
async fn a_starting_instance_that_is_stopped_stays_stopped() {
    let svc = service(|c| c.scaling.min_instances = 1);
    let rt = FakeRuntime::new();
    rt.plan(Plan::ReadyAfter(Duration::from_millis(10)));
    let r = run(svc.clone(), rt.clone());
    until("ready", || ready_ids(&svc).len() == 1).await;
    // A second live instance, slow to start.
    rt.plan(Plan::ReadyAfter(Duration::from_secs(1)));
    let cfg = update(&svc, |c| c.scaling.min_instances = 2).await;
    until("the slow one is spawned", || rt.alive().len() == 2).await;
    let slow = svc
        .instances
        .load()
        .iter()
        .find(|i| i.state() == InstanceState::Starting)
        .expect("a starting instance")
        .id
        .clone();
    // The deployment's instances are ready at once; the switch stops the old, starting one.
    let mut new = cfg;
    new.env.insert("V".into(), "2".into());
    let (tx, rx) = tokio::sync::oneshot::channel();
    svc.command(Command::Deploy {
        config: Box::new(new),
        trigger: crate::service::command::Trigger::Api,
        options: Default::default(),
        reply: tx,
    })
    .unwrap();
    rx.await.unwrap().unwrap();
    until("the slow one is reported stopped", || {
        events(&svc, "instance_stopped")
            .iter()
            .any(|e| e.fields["instance"] == slow.as_str())
    })
    .await;
    assert!(
        !rt.alive().contains(&slow),
        "reported stopped while running"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!rt.alive().contains(&slow), "it came back");
    let ready: Vec<_> = events(&svc, "instance_ready")
        .into_iter()
        .filter(|e| e.fields["instance"] == slow.as_str())
        .collect();
    assert!(
        ready.is_empty(),
        "it became ready after its stop: {ready:?}"
    );
    let stopped: Vec<_> = events(&svc, "instance_stopped")
        .into_iter()
        .filter(|e| e.fields["instance"] == slow.as_str())
        .collect();
    assert_eq!(stopped.len(), 1, "reported once: {stopped:?}");
    r.finish().await;
    assert!(rt.alive().is_empty());
}

/// A failed start backs off without counting a cancelled one as a failure.
#[tokio::test(start_paused = true)]
async fn a_failing_start_answers_503_and_backs_off() {
    let svc = service(|_| {});
    let rt = FakeRuntime::new();
    rt.plan(Plan::Fail("no such image".into()));
    let r = run(svc.clone(), rt.clone());
    match svc.acquire().await {
        Err(ActivatorError::Unavailable(why)) => assert!(why.contains("no such image"), "{why}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(events(&svc, "start_failed").len(), 1);
    // After the backoff a request starts it again, and it comes up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g = svc.acquire().await.expect("served after the backoff");
    drop(g);
    r.finish().await;
    assert!(rt.alive().is_empty());
}

#[test]
fn suffixes_are_distinct_and_short() {
    let v: Vec<String> = (1..=30).map(suffix).collect();
    let set: std::collections::HashSet<_> = v.iter().collect();
    assert_eq!(set.len(), 30);
    assert_eq!(v[0], "b");
    assert_eq!(suffix(0), "a");
}

#[test]
fn backoff_doubles_and_caps() {
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(2), Duration::from_secs(2));
    assert_eq!(backoff(10), Duration::from_secs(30));
}

mod freeze;
