//! `scaling.idle_ignore`: health checkers and crawlers are served, but a service whose only
//! traffic they are still scales to zero.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

/// Short enough to watch scale to zero happen; the stable window holds a scale-up no longer.
const SCALING: &str = r#"
[service.scaling]
min_instances = 0
max_instances = 1
idle_timeout = "1s"
stable_window = "2s"
panic_window = "1s"
"#;

/// How often the prober sends: several times per idle timeout.
const CADENCE: Duration = Duration::from_millis(200);

/// How long ordinary traffic runs in the control: several idle timeouts.
const CONTROL_RUN: Duration = Duration::from_secs(4);

fn probed_service(name: &str, ignore: &str) -> String {
    whoami_service(
        name,
        &format!("{name}.localhost"),
        &format!("{SCALING}\n[service.scaling.idle_ignore]\n{ignore}"),
    )
}

/// A service ignoring kube-probe and its health paths, woken by one ordinary request; wakeway and
/// the instance that answered it.
async fn warm_probed_service(name: &str) -> (Wakeway, String) {
    let wk = Wakeway::start(&probed_service(
        name,
        r#"user_agents = ["kube-probe/"]
paths = ["/healthz", "/status/*"]
"#,
    ))
    .await;
    let first = wk.get_ok(&format!("{name}.localhost"), "/").await;
    let warm = first.instance().expect("whoami names its instance");
    (wk, warm)
}

/// The three ways a request is ignored below, in turn: by user agent (HTTP/1.1), by exact path
/// (h2c), by path prefix with a query (HTTP/1.1).
/// Whether `events` show the autoscaler scaling to zero for idleness.
fn scaled_to_zero_for_idleness(events: &[serde_json::Value]) -> bool {
    events
        .iter()
        .any(|e| e["kind"] == "scale" && e["to"] == 0 && e["clamped_by"] == "idle")
}

async fn ignored_request(proxy: std::net::SocketAddr, host: &str, n: usize) -> Resp {
    let sent = match n % 3 {
        0 => {
            let mut req = request(Method::GET, host, "/", Bytes::new());
            req.headers_mut()
                .insert("user-agent", "kube-probe/1.29".parse().unwrap());
            send(proxy, req).await
        }
        1 => {
            let req = Request::builder()
                .method(Method::GET)
                .uri(format!("http://{host}/healthz"))
                .version(http::Version::HTTP_2)
                .header("user-agent", "Mozilla/5.0")
                .body(Full::new(Bytes::new()))
                .unwrap();
            send_h2(proxy, req).await
        }
        _ => {
            let mut req = request(Method::GET, host, "/status/db?full=1", Bytes::new());
            req.headers_mut()
                .insert("user-agent", "Mozilla/5.0".parse().unwrap());
            send(proxy, req).await
        }
    };
    sent.unwrap_or_else(|e| panic!("ignored request {n}: {e}"))
}

/// One answered request: when it was sent and what came back.
struct Answer {
    n: usize,
    sent: Instant,
    resp: Resp,
}

/// Sends `make(n)` every `CADENCE` until stopped, keeping every answer.
struct Prober {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(proxy: std::net::SocketAddr, host: &str) -> Prober {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let host = host.to_string();
        let task = tokio::spawn({
            let (answers, stop) = (answers.clone(), stop.clone());
            async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    let resp = ignored_request(proxy, &host, n).await;
                    answers.lock().unwrap().push(Answer { n, sent, resp });
                    n += 1;
                    tokio::time::sleep_until(sent + CADENCE).await;
                }
            }
        });
        Prober {
            answers,
            stop,
            task,
        }
    }

    fn count(&self) -> usize {
        self.answers.lock().unwrap().len()
    }

    async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("prober");
        Arc::try_unwrap(self.answers)
            .unwrap_or_else(|_| panic!("prober still running"))
            .into_inner()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_only_traffic_is_ignored_scales_to_zero() {
    let (wk, warm) = warm_probed_service("probed").await;
    let pids: Vec<u32> = wk
        .instances("probed")
        .await
        .iter()
        .flat_map(|i| i.pid)
        .collect();

    let prober = Prober::start(wk.proxy, "probed.localhost");
    wk.wait_scaled_to_zero("probed", "while only ignored requests arrive")
        .await;
    let at_zero = Instant::now();
    wait_pids_gone(&pids).await;
    // Every kind of ignored request meets the service at zero a few times.
    let seen = prober.count();
    wait_for("more ignored requests at zero", DEADLINE, || async {
        (prober.count() >= seen + 6).then_some(())
    })
    .await;
    let answers = prober.stop().await;

    let mut served = 0;
    for a in &answers {
        let r = &a.resp;
        match r.status {
            StatusCode::OK => {
                served += 1;
                // The health route answers itself; the others name the instance.
                if a.n % 3 != 1 {
                    assert_eq!(r.instance().as_deref(), Some(warm.as_str()), "{}", r.text());
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    r.text().contains("idle_ignore"),
                    "request {}: {}",
                    a.n,
                    r.text()
                );
                assert!(
                    r.header("retry-after").is_some(),
                    "request {}: {:?}",
                    a.n,
                    r.headers
                );
            }
            other => panic!("request {}: {other}: {}", a.n, r.text()),
        }
        if a.sent > at_zero {
            assert_eq!(
                r.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "wake = false: an ignored request does not start the service (request {})",
                a.n
            );
        }
    }
    assert!(served > 0, "ignored requests were served while warm");
    for kind in 0..3 {
        assert!(
            answers.iter().any(|a| a.n % 3 == kind && a.sent > at_zero),
            "kind {kind} met the service at zero"
        );
    }
    assert!(wk.instances("probed").await.is_empty());
    let svc = wk.service("probed").await;
    assert_eq!(svc["desired"].as_u64(), Some(0), "{svc}");
    let events = wk.events("probed").await;
    assert!(
        scaled_to_zero_for_idleness(&events),
        "the autoscaler scaled to zero for idleness: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_cadence_of_ordinary_requests_keeps_it_up() {
    let (wk, warm) = warm_probed_service("busy").await;

    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < CONTROL_RUN {
        let sent = Instant::now();
        let resp = wk.get_ok("busy.localhost", &format!("/app?n={n}")).await;
        assert_eq!(
            resp.instance().as_deref(),
            Some(warm.as_str()),
            "ordinary requests kept the first instance"
        );
        n += 1;
        tokio::time::sleep_until(sent + CADENCE).await;
    }
    let now = wk.instances("busy").await;
    assert!(
        now.iter().any(|i| i.id == warm && i.state == "ready"),
        "still up past idle_timeout: {now:?}"
    );

    // With the traffic gone, the same service does go to zero.
    wk.wait_scaled_to_zero("busy", "once ordinary traffic stops")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wake_an_ignored_request_starts_the_service_yet_it_still_goes_idle() {
    // Every test client is on loopback: all of its requests are ignored.
    let wk = Wakeway::start(&probed_service(
        "woken",
        r#"networks = ["127.0.0.0/8", "::1"]
wake = true
"#,
    ))
    .await;
    let first = wk.get("woken.localhost", "/").await;
    assert_eq!(
        first.status,
        StatusCode::OK,
        "wake = true: an ignored request cold-starts the service: {}",
        first.text()
    );
    let woken = first.instance().expect("whoami names its instance");

    let prober = Prober::start(wk.proxy, "woken.localhost");
    let replaced = wait_for(
        "a later ignored request served by a new instance",
        Duration::from_secs(40),
        || async {
            let answers = prober.answers.lock().unwrap();
            answers
                .iter()
                .filter_map(|a| a.resp.instance())
                .find(|id| *id != woken)
        },
    )
    .await;
    let answers = prober.stop().await;
    for a in &answers {
        assert_eq!(
            a.resp.status,
            StatusCode::OK,
            "request {}: {}",
            a.n,
            a.resp.text()
        );
    }
    assert_ne!(replaced, woken);
    let events = wk.events("woken").await;
    assert!(
        scaled_to_zero_for_idleness(&events),
        "the first instance was stopped for idleness: {events:?}"
    );
}
