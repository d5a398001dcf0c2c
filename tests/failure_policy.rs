//! One failure policy for every protocol: the same upstream failure gets the same answer, the
//! same number of sends and the same report to the controller whether the client spoke HTTP/1.1
//! or h2c. Then the two stuck upstreams: an instance that stops reading (`kill -STOP`) leaves
//! the pool, and a body that stalls is cut after `upstream_read_timeout`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::failures::{Misbehave, RawUpstream};
use common::*;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Proto {
    H1,
    H2c,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Ready, then nothing listens any more.
    Refused,
    Misbehaves(Misbehave),
}

struct Row {
    name: &'static str,
    fault: Fault,
    method: Method,
    status: StatusCode,
    /// Words of the answer's body.
    says: &'static str,
    /// How the upstream's count of this request compares: exactly once, or more than once.
    sent_again: bool,
    /// The event the controller logs after the request path's report.
    event: &'static str,
}

fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        "{}{}",
        listen_with("response_timeout = \"500ms\""),
        static_service("up", "up.localhost", upstream, "timeout = \"200ms\"", "")
    )
}

async fn one(proto: Proto, method: &Method, proxy: std::net::SocketAddr) -> Resp {
    let path = "/case";
    let body = if method == Method::POST {
        Bytes::from_static(b"amount=10")
    } else {
        Bytes::new()
    };
    let r = match proto {
        Proto::H1 => send(proxy, request(method.clone(), "up.localhost", path, body)).await,
        Proto::H2c => {
            let req = Request::builder()
                .method(method.clone())
                .uri(format!("http://up.localhost{path}"))
                .version(Version::HTTP_2)
                .body(Full::new(body))
                .unwrap();
            send_h2(proxy, req).await
        }
    };
    r.unwrap_or_else(|e| panic!("{proto:?} {method} {path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_and_h2_fail_the_same_way() {
    let rows = [
        Row {
            name: "refused",
            fault: Fault::Refused,
            method: Method::GET,
            status: StatusCode::BAD_GATEWAY,
            says: "unreachable",
            sent_again: false,
            event: "instance_unhealthy",
        },
        Row {
            name: "timed out waiting for the first byte",
            fault: Fault::Misbehaves(Misbehave::Hold),
            method: Method::GET,
            status: StatusCode::GATEWAY_TIMEOUT,
            says: "no response within response_timeout",
            sent_again: false,
            event: "instance_no_answer",
        },
        Row {
            name: "reset after a POST went out",
            fault: Fault::Misbehaves(Misbehave::Reset),
            method: Method::POST,
            status: StatusCode::BAD_GATEWAY,
            says: "not sent again",
            sent_again: false,
            event: "",
        },
        Row {
            // A GET may go again, but elsewhere: the one instance here is the one that failed.
            name: "reset after a GET went out",
            fault: Fault::Misbehaves(Misbehave::Reset),
            method: Method::GET,
            status: StatusCode::BAD_GATEWAY,
            says: "failed before it answered",
            sent_again: false,
            event: "",
        },
    ];
    for row in &rows {
        let mut counts = Vec::new();
        for proto in [Proto::H1, Proto::H2c] {
            let what = format!("{} over {proto:?}", row.name);
            let how = match row.fault {
                Fault::Refused => Misbehave::Hold,
                Fault::Misbehaves(m) => m,
            };
            let upstream = RawUpstream::start(how).await;
            let ww = Wakeway::start_config(&config(upstream.addr)).await;
            ww.wait_ready("up").await;
            if let Fault::Refused = row.fault {
                upstream.close().await;
            }
            let resp = one(proto, &row.method, ww.proxy).await;
            assert_eq!(resp.status, row.status, "{what}: {}", resp.text());
            assert!(
                resp.text().contains(row.says),
                "{what}: the answer says {:?}: {}",
                row.says,
                resp.text()
            );
            let sent = upstream.requests("/case");
            match (row.fault, row.sent_again) {
                (Fault::Refused, _) => assert_eq!(sent, 0, "{what}"),
                (_, false) => assert_eq!(sent, 1, "{what}: sent once"),
                (_, true) => assert!(sent > 1, "{what}: sent again ({sent})"),
            }
            counts.push(sent);
            if !row.event.is_empty() {
                ww.wait_event("up", row.event).await;
            }
        }
        assert_eq!(counts[0], counts[1], "{}: as many sends on both", row.name);
    }
}

/// A frozen instance (SIGSTOP: its kernel still completes TCP handshakes, so a TCP probe passes)
/// under load: the requests that get no first byte are counted toward `unhealthy_threshold`, an
/// answer check confirms, and it leaves the pool; the other instance serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_leaves_the_pool() {
    let ww = Wakeway::start_config(&format!(
        "{}{}",
        listen_with("response_timeout = \"1s\""),
        whoami_service(
            "frozen",
            "frozen.localhost",
            r#"
[service.scaling]
min_instances = 2
max_instances = 2

[service.health]
kind = "tcp"
interval = "1s"
timeout = "300ms"
unhealthy_threshold = 2

[service.deploy]
drain_timeout = "1s"
stop_grace = "500ms"
"#,
        )
    ))
    .await;
    let ready = wait_for("two ready instances", DEADLINE, || async {
        let ready: Vec<Instance> = ww
            .instances("frozen")
            .await
            .into_iter()
            .filter(|i| i.state == "ready")
            .collect();
        (ready.len() == 2).then_some(ready)
    })
    .await;
    // One client: light load, so the frozen app's accept backlog (128 for whoami) does not
    // fill, and the TCP probe alone would pass for as long as it is stopped.
    let load = Load::start(ww.proxy, "frozen.localhost", "/", 1);
    let victim = &ready[0];
    signal(victim.pid.expect("pid"), libc::SIGSTOP);

    ww.wait_event("frozen", "instance_unhealthy").await;
    wait_for("the stopped instance out of the pool", DEADLINE, || async {
        let listed = ww.instances("frozen").await;
        let routable = listed
            .iter()
            .any(|i| i.id == victim.id && i.state == "ready");
        (!routable).then_some(())
    })
    .await;
    // From now on every request is answered, by the other instance.
    for i in 0..20 {
        let resp = ww
            .get_ok("frozen.localhost", &format!("/after?i={i}"))
            .await;
        assert_ne!(resp.instance().as_deref(), Some(victim.id.as_str()));
    }
    let samples = load.stop().await;
    assert!(samples.iter().any(|s| s.ok()), "the load was served");
    signal(victim.pid.unwrap(), libc::SIGCONT);
}

/// An upstream that sends its head and 10 of 100 bytes, then nothing: the response is cut after
/// `upstream_read_timeout` (HTTP/1: the connection closes; h2: the stream is reset), well before
/// `response_timeout`, and the client is not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_cut_after_upstream_read_timeout() {
    let upstream = RawUpstream::start(Misbehave::Stall).await;
    let ww = Wakeway::start_config(&format!(
        "{}{}",
        listen_with("response_timeout = \"60s\"\nupstream_read_timeout = \"300ms\""),
        static_service("stall", "stall.localhost", upstream.addr, "", "")
    ))
    .await;
    ww.wait_ready("stall").await;
    // Far below response_timeout: without the read timeout the client would wait for it.
    let patience = Duration::from_secs(10);

    let stream = tokio::net::TcpStream::connect(ww.proxy).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = request(Method::GET, "stall.localhost", "/h1", Bytes::new());
    let resp = sender.send_request(req).await.expect("head");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = tokio::time::timeout(patience, resp.into_body().collect())
        .await
        .expect("HTTP/1: the body ends instead of hanging");
    assert!(body.is_err(), "HTTP/1: the body is cut short, not complete");

    let stream = tokio::net::TcpStream::connect(ww.proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://stall.localhost/h2")
        .version(Version::HTTP_2)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.expect("head");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = tokio::time::timeout(patience, resp.into_body().collect())
        .await
        .expect("h2: the body ends instead of hanging");
    let err = body.expect_err("h2: the stream is reset, not complete");
    assert!(
        format!("{err:?}").contains("Reset") || format!("{err:?}").contains("INTERNAL"),
        "h2: RST_STREAM: {err:?}"
    );
}
