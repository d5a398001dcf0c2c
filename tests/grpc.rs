//! gRPC through wakeway to a real tonic server (`wakeway whoami`'s gRPC side) over h2c: the four
//! kinds of call, a cold start holding the first call, streams counted as in flight and driving
//! scale-out, a deploy under a stream load, the errors wakeway itself produces in gRPC terms, and
//! the `grpc.health.v1` probe.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::grpc::{Client, call, replies_of};
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tonic::Code;
use wakeway::whoami_grpc::Call;

fn grpc_service(name: &str, extra: &str) -> String {
    whoami_service(
        name,
        &format!("{name}.localhost"),
        &format!("protocol = \"h2c\"\n{extra}"),
    )
}

#[tokio::test]
async fn all_four_kinds_of_call_cold_start_and_count_while_open() {
    let wk = Wakeway::start(&grpc_service(
        "api",
        "[service.scaling]\nidle_timeout = \"60s\"",
    ))
    .await;
    assert!(wk.instances("api").await.is_empty(), "starts at zero");
    let mut c = Client::connect(wk.proxy, "api.localhost").await;

    // The first call waits for the cold start and is answered by the new instance.
    let r = c.unary(call("hello", 0)).await.expect("cold unary call");
    assert_eq!(r.message, "hello");
    let ready = wk.wait_ready("api").await;
    assert_eq!(r.instance, ready[0].id);
    let m = wk.metrics().await;
    assert_eq!(
        metric(&m, "wakeway_cold_starts_total", &[("service", "api")]),
        Some(1.0)
    );

    // Server streaming: each reply as it comes; the call is one request in flight until its
    // trailers, even between replies.
    let mut replies = c
        .server_stream(replies_of("tick", 3, 300))
        .await
        .expect("server-streaming call");
    let first = replies.next().await.unwrap().unwrap();
    assert_eq!((first.message.as_str(), first.seq), ("tick", 0));
    wk.wait_load("api", 1, 0).await;
    let rest: Vec<u32> = replies.map(|r| r.unwrap().seq).collect().await;
    assert_eq!(rest, [1, 2]);
    wk.wait_load("api", 0, 0).await;

    let r = c
        .client_stream(vec![call("a", 0), call("b", 0), call("c", 0)])
        .await
        .expect("client-streaming call");
    assert_eq!((r.message.as_str(), r.seq), ("a,b,c", 3));

    // Bidi: the client sends the next message only after the previous echo came back, so the
    // stream is full duplex end to end (a buffered request body would deadlock here).
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Call>();
    let mut echoes = c.bidi(tokio_stream_of(rx)).await.expect("bidi call starts");
    for (i, word) in ["one", "two", "three"].into_iter().enumerate() {
        tx.send(call(word, 0)).unwrap();
        let e = echoes.next().await.unwrap().unwrap();
        assert_eq!((e.message.as_str(), e.seq), (word, i as u32));
    }
    wk.wait_load("api", 1, 0).await;
    drop(tx);
    assert!(echoes.next().await.is_none(), "the call ends with OK");
    wk.wait_load("api", 0, 0).await;
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Call>,
) -> impl futures_util::Stream<Item = Call> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn fifty_streams_on_one_connection_scale_out_and_a_deploy_fails_no_call() {
    let wk = Wakeway::start(&grpc_service(
        "api",
        "[service.scaling]\ntarget_concurrency = 10\nmax_instances = 8\n\
         idle_timeout = \"60s\"\npanic_window = \"2s\"\nstable_window = \"20s\"",
    ))
    .await;
    let c = Client::connect(wk.proxy, "api.localhost").await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for i in 0..50 {
        let mut c = c.clone();
        let stop = stop.clone();
        callers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match c.unary(call(&format!("c{i}"), 200)).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(format!("{:?}: {}", e.code(), e.message())),
                }
            }
            (ok, failed)
        }));
    }
    let before = wk
        .wait_instances("api", "5 ready instances for 50 streams", |l| {
            l.iter().filter(|i| i.state == "ready").count() >= 5
        })
        .await;
    let old = revision_of_instance(&before[0].id).to_string();

    wk.deploy_ok("api", json!({ "env": { "MODE": "green" } }))
        .await;
    let new = wk.revision("api").await;
    assert_ne!(new, old);
    wk.wait_instances("api", "only the new revision left", |l| {
        !l.is_empty() && l.iter().all(|i| revision_of_instance(&i.id) == new)
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in callers {
        let (ok, failed) = h.await.unwrap();
        assert!(failed.is_empty(), "calls failed: {failed:?}");
        total += ok;
    }
    assert!(total >= 50, "every caller finished calls: {total}");
}

#[tokio::test]
async fn a_full_queue_is_resource_exhausted_and_the_clients_deadline_bounds_the_wait() {
    let wk = Wakeway::start(&grpc_service(
        "api",
        "[service.scaling]\nmax_instances = 1\nmax_concurrency = 1\ntarget_concurrency = 1\nidle_timeout = \"60s\"\n\
         [service.queue]\nmax_pending = 2\ntimeout = \"30s\"",
    ))
    .await;
    let c = Client::connect(wk.proxy, "api.localhost").await;
    let mut held = c.clone();
    let holder = tokio::spawn(async move { held.unary(call("held", 4000)).await });
    wk.wait_load("api", 1, 0).await;

    // The client's 300 ms deadline ends its wait in the queue, long before `queue.timeout`.
    let e = c
        .clone()
        .unary_within(call("late", 0), Duration::from_millis(300))
        .await
        .expect_err("no slot within the client's deadline");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("no instance had capacity"), "{e:?}");

    let queued: Vec<_> = (0..2)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move { c.unary(call(&format!("q{i}"), 0)).await })
        })
        .collect();
    wk.wait_load("api", 1, 2).await;
    let e = c
        .clone()
        .unary(call("one too many", 0))
        .await
        .expect_err("the queue is full");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("queue full"), "{e:?}");

    assert!(holder.await.unwrap().is_ok());
    for q in queued {
        assert!(
            q.await.unwrap().is_ok(),
            "a queued call is served once the slot frees"
        );
    }
}

#[tokio::test]
async fn an_unreachable_service_is_unavailable_not_an_http_error() {
    let port = closed_port();
    let wk = Wakeway::start(&format!(
        "[[service]]\nname = \"gone\"\nhosts = [\"gone.localhost\"]\n\
         upstreams = [\"127.0.0.1:{port}\"]\nprotocol = \"h2c\"\n"
    ))
    .await;
    let mut c = Client::connect(wk.proxy, "gone.localhost").await;
    let e = c.unary(call("x", 0)).await.expect_err("nothing listens");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let mut c = Client::connect(wk.proxy, "nobody.localhost").await;
    let e = c.unary(call("x", 0)).await.expect_err("no such host");
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");
    assert!(e.message().contains("no service for host"), "{e:?}");
}

#[tokio::test]
async fn grpc_health_probe_gates_readiness() {
    let wk = Wakeway::start(&format!(
        "{}{}",
        grpc_service(
            "api",
            "[service.health]\nkind = \"grpc\"\ngrpc_service = \"wakeway.whoami.v1.Whoami\"",
        ),
        grpc_service(
            "wrong",
            "[service.health]\nkind = \"grpc\"\ngrpc_service = \"no.such.Service\"\n\
             startup_timeout = \"1s\"\n[service.scaling]\nmax_instances = 1",
        ),
    ))
    .await;
    let mut c = Client::connect(wk.proxy, "api.localhost").await;
    c.unary(call("probed", 0))
        .await
        .expect("ready once Health/Check says SERVING");

    // The app answers the probe, but not SERVING for that name: the start fails, and the call
    // waiting for it hears so in gRPC terms.
    let mut c = Client::connect(wk.proxy, "wrong.localhost").await;
    let e = c.unary(call("x", 0)).await.expect_err("never ready");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let events = wk.wait_event("wrong", "start_failed").await;
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        text.contains("grpc-status 5"),
        "the event says what the probe heard: {text}"
    );
}

#[tokio::test]
async fn metrics_and_the_access_log_carry_the_method_and_grpc_status() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let wk = Wakeway::start_config(&access_log_config(
        &log,
        "access_format = \"json\"",
        &grpc_service(
            "api",
            "[service.scaling]\nmax_instances = 1\nmax_concurrency = 1\n\
                      target_concurrency = 1",
        ),
    ))
    .await;
    let mut c = Client::connect(wk.proxy, "api.localhost").await;
    let mut replies = c.server_stream(replies_of("s", 2, 0)).await.unwrap();
    while replies.next().await.is_some() {}
    // Held, then one queued past its client's 200 ms: DEADLINE_EXCEEDED, from wakeway.
    let mut held = c.clone();
    let holder = tokio::spawn(async move { held.unary(call("held", 1500)).await });
    wk.wait_load("api", 1, 0).await;
    let e = c
        .unary_within(call("late", 0), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    holder.await.unwrap().unwrap();

    let m = wk.metrics().await;
    let calls = |code: &str| {
        metric(
            &m,
            "wakeway_grpc_calls_total",
            &[("service", "api"), ("grpc_status", code)],
        )
    };
    assert_eq!(calls("0"), Some(2.0), "{m}");
    assert_eq!(calls("4"), Some(1.0), "{m}");

    let lines = wait_for("three access-log lines", DEADLINE, || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    let seen: Vec<(String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["grpc_method"].as_str().unwrap_or("none").to_string(),
                l["grpc_status"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    for want in [
        ("/wakeway.whoami.v1.Whoami/ServerStream", 0),
        ("/wakeway.whoami.v1.Whoami/Unary", 0),
        ("/wakeway.whoami.v1.Whoami/Unary", 4),
    ] {
        assert!(
            seen.contains(&(want.0.to_string(), want.1)),
            "{want:?} in {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_misbehaving_h2_instance_fails_its_calls_as_unavailable_and_counts_against_it() {
    use common::grpc::{Misbehaviour, bad_h2_instance};
    let cases = [
        Misbehaviour::MalformedFrame,
        Misbehaviour::GarbageHeaders,
        Misbehaviour::ResetEveryStream,
    ];
    let mut services = String::new();
    for (i, how) in cases.iter().enumerate() {
        let addr = bad_h2_instance(*how).await;
        services.push_str(&format!(
            "[[service]]\nname = \"bad{i}\"\nhosts = [\"bad{i}.localhost\"]\n\
             upstreams = [\"{addr}\"]\nprotocol = \"h2c\"\n"
        ));
    }
    services.push_str(&grpc_service("good", ""));
    let wk = Wakeway::start(&services).await;
    for (i, how) in cases.iter().enumerate() {
        let mut c = Client::connect(wk.proxy, &format!("bad{i}.localhost")).await;
        for _ in 0..2 {
            let e = tokio::time::timeout(DEADLINE, c.unary(call("x", 0)))
                .await
                .unwrap_or_else(|_| panic!("{how:?}: the call hangs"))
                .expect_err("a broken instance");
            assert_eq!(e.code(), Code::Unavailable, "{how:?}: {e:?}");
        }
        let m = wk.metrics().await;
        let resets = metric(
            &m,
            "wakeway_upstream_errors_total",
            &[("service", &format!("bad{i}")), ("kind", "reset")],
        );
        assert!(
            resets >= Some(2.0),
            "{how:?}: counted as the instance failing: {m}"
        );
    }
    // The proxy itself is unharmed: another service's calls still go through.
    let mut c = Client::connect(wk.proxy, "good.localhost").await;
    assert_eq!(c.unary(call("fine", 0)).await.unwrap().message, "fine");
}

#[tokio::test]
async fn an_instance_that_sends_goaway_fails_no_call() {
    let (addr, conns) = common::grpc::recycling_instance(5).await;
    let wk = Wakeway::start(&format!(
        "[[service]]\nname = \"api\"\nhosts = [\"api.localhost\"]\n\
         upstreams = [\"{addr}\"]\nprotocol = \"h2c\"\n"
    ))
    .await;
    let c = Client::connect(wk.proxy, "api.localhost").await;
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for j in 0..6 {
                    let r = c.unary(call(&format!("{i}-{j}"), 30)).await;
                    assert_eq!(r.expect("no call fails").message, format!("{i}-{j}"));
                }
            })
        })
        .collect();
    for h in callers {
        h.await.unwrap();
    }
    // 48 calls, 5 per connection: the instance closed connections under load and wakeway
    // opened new ones.
    let n = conns.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n >= 5, "connections accepted: {n}");
}
