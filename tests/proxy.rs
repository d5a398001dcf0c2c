//! The data plane: routing, headers, streaming, h2c, upgrades, upstream failures.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_404_naming_the_host() {
    let wk = Wakeway::whoami("hello", "").await;
    let resp = wk.get("nope.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.text());
    assert!(
        resp.text().contains("nope.localhost"),
        "the 404 body names the host: {}",
        resp.text()
    );
    // The port is ignored when routing.
    wk.get_ok("hello.localhost:1234", "/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let wk = Wakeway::whoami("hello", "").await;
    let req = Request::builder()
        .method(Method::GET)
        .uri("http://hello.localhost/over-h2?x=1")
        .version(http::Version::HTTP_2)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send_h2(wk.proxy, req).await.expect("h2c request");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert!(
        resp.text().contains("GET /over-h2?x=1 "),
        "whoami saw the request line: {}",
        resp.text()
    );
    assert!(resp.instance().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_set_and_hop_by_hop_removed() {
    let wk = Wakeway::whoami("hello", "").await;
    let req = get_with(
        "hello.localhost",
        "/headers",
        &[
            ("connection", "x-custom"),
            ("x-custom", "1"),
            ("proxy-connection", "keep-alive"),
            ("x-keep", "yes"),
        ],
    );
    let resp = send(wk.proxy, req).await.expect("request");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let body = resp.text();
    assert_eq!(
        resp.field("X-Forwarded-For").as_deref(),
        Some("127.0.0.1"),
        "{body}"
    );
    assert_eq!(
        resp.field("X-Forwarded-Proto").as_deref(),
        Some("http"),
        "{body}"
    );
    assert_eq!(
        resp.field("X-Forwarded-Host").as_deref(),
        Some("hello.localhost"),
        "{body}"
    );
    assert_eq!(resp.field("X-Keep").as_deref(), Some("yes"), "{body}");
    assert_eq!(
        resp.field("X-Custom"),
        None,
        "a header named in Connection is hop-by-hop: {body}"
    );
    assert_eq!(resp.field("Proxy-Connection"), None, "{body}");

    // A client-supplied X-Forwarded-For ends with the real peer.
    let req = get_with(
        "hello.localhost",
        "/xff",
        &[("x-forwarded-for", "10.9.8.7")],
    );
    let resp = send(wk.proxy, req).await.expect("request");
    let xff = resp.field("X-Forwarded-For").unwrap_or_default();
    assert!(
        xff.rsplit(',').next().map(str::trim) == Some("127.0.0.1"),
        "X-Forwarded-For ends with the client address: {xff:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_streams_back_byte_identical() {
    let wk = Wakeway::whoami("hello", "").await;
    // 4 MiB of pseudo-random bytes.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let payload: Vec<u8> = (0..4 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let payload = Bytes::from(payload);
    let resp = send(
        wk.proxy,
        request(Method::POST, "hello.localhost", "/echo", payload.clone()),
    )
    .await
    .expect("echo request");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body.len(), payload.len(), "same length");
    assert!(resp.body == payload, "same bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_upstream_closed_port_is_502() {
    let port = closed_port();
    let upstream = format!("127.0.0.1:{port}");
    let queue = "[service.queue]\ntimeout = \"3s\"";
    let wk = Wakeway::start(&upstreams_service(
        "dead",
        "dead.localhost",
        &[&upstream],
        queue,
    ))
    .await;
    let resp = wk.get("dead.localhost", "/").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_timeout_is_504() {
    let wk = Wakeway::start_config(&format!(
        "{}{}",
        listen_with("response_timeout = \"300ms\""),
        whoami_service("slow", "slow.localhost", MIN_ONE)
    ))
    .await;
    wk.wait_ready("slow").await;
    let resp = wk.get("slow.localhost", "/?sleep=2s").await;
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT, "{}", resp.text());
    // The instance is fine for fast requests.
    wk.get_ok("slow.localhost", "/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_fails_only_its_request() {
    let wk = Wakeway::whoami(
        "fragile",
        r#"
[service.scaling]
min_instances = 1
max_instances = 2
"#,
    )
    .await;
    let ready = wk.wait_ready("fragile").await;
    let proxy = wk.proxy;
    // A POST: a GET would be sent again to the replacement (docs/failure-policy.md).
    let slow = tokio::spawn(async move {
        send(
            proxy,
            request(Method::POST, "fragile.localhost", "/?sleep=5s", "x"),
        )
        .await
    });

    let victim = wk
        .holding_one("fragile")
        .await
        .or_else(|| ready.first().cloned())
        .expect("the busy instance");
    let pid = victim.pid.expect("pid");
    signal(pid, libc::SIGKILL);

    let resp = slow.await.unwrap().expect("the proxy answers the client");
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text());

    let next = wk.get_ok("fragile.localhost", "/after").await;
    let by = next.instance().unwrap();
    assert_ne!(
        by, victim.id,
        "a replacement instance serves the next request"
    );
    wait_pids_gone(&[pid]).await;
    wait_for("the killed instance leaves the list", DEADLINE, || async {
        (!wk.instances("fragile")
            .await
            .iter()
            .any(|i| i.id == victim.id))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnel_keeps_its_instance() {
    let wk = Wakeway::whoami(
        "ws",
        r#"
[service.scaling]
min_instances = 0
max_instances = 2
idle_timeout = "1s"
stable_window = "2s"
panic_window = "1s"
"#,
    )
    .await;

    let stream = TcpStream::connect(wk.proxy).await.unwrap();
    let (mut ws, _resp) = tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::client_async("ws://ws.localhost/ws", stream),
    )
    .await
    .expect("handshake within the deadline")
    .expect("websocket handshake through the proxy");

    ws.send(Message::text("first")).await.unwrap();
    let echoed = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
    assert_eq!(echoed.unwrap().unwrap(), Message::text("first"));

    let instances = wk.instances("ws").await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    let inst = instances[0].clone();
    let pid = inst.pid.expect("pid");

    // Silent for well over idle_timeout + stable_window: the instance must stay.
    let quiet_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < quiet_until {
        let now = wk.instances("ws").await;
        assert!(
            now.iter().any(|i| i.id == inst.id && i.state == "ready"),
            "the instance holding an open tunnel stays ready: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(pid_alive(pid));

    ws.send(Message::text("still here")).await.unwrap();
    let echoed = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
    assert_eq!(echoed.unwrap().unwrap(), Message::text("still here"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
    assert_eq!(
        echoed.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    let now = wk.instances("ws").await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].id, inst.id);
    assert!(pid_alive(pid));

    // Close; then the service goes to zero.
    ws.close(None).await.unwrap();
    let _ = tokio::time::timeout(DEADLINE, async { while ws.next().await.is_some() {} }).await;
    drop(ws);
    wk.wait_scaled_to_zero("ws", "after the tunnel closed")
        .await;
    wait_pids_gone(&[pid]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_all_host_takes_unknown_hosts() {
    let (_whoami, upstream) = start_whoami().await;
    let wk = Wakeway::start(&format!(
        r#"
{}
[[service]]
name = "fallback"
hosts = ["*"]
upstreams = ["{upstream}"]
"#,
        whoami_service("hello", "hello.localhost", "")
    ))
    .await;
    let resp = wk.get_ok("anything.example", "/").await;
    assert_eq!(
        resp.instance().as_deref(),
        Some("whoami"),
        "served by the static upstream"
    );
    let resp = wk.get_ok("hello.localhost", "/").await;
    assert_eq!(
        resp.field("Service").as_deref(),
        Some("hello"),
        "exact names win over *"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_is_retried_on_another_instance() {
    let (_whoami, upstream) = start_whoami().await;
    let port = closed_port();
    let (closed, open) = (format!("127.0.0.1:{port}"), upstream.to_string());
    let wk = Wakeway::start(&upstreams_service(
        "half",
        "half.localhost",
        &[&closed, &open],
        "",
    ))
    .await;
    for i in 0..10 {
        let resp = send(
            wk.proxy,
            request(
                Method::POST,
                "half.localhost",
                &format!("/echo?i={i}"),
                "payload",
            ),
        )
        .await
        .expect("request");
        assert_eq!(resp.status, StatusCode::OK, "request {i}: {}", resp.text());
        assert_eq!(
            &resp.body[..],
            b"payload",
            "a POST is safe to retry when nothing was sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_until_the_response_body_ends() {
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use hyper_util::rt::TokioIo;

    let wk = Wakeway::start_warm("hello", "hello.localhost").await;

    let stream = TcpStream::connect(wk.proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    }));
    let req = Request::post("/echo")
        .header("host", "hello.localhost")
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { sender.send_request(req).await });
    tx.send(Bytes::from_static(b"first chunk")).await.unwrap();
    let resp = tokio::time::timeout(DEADLINE, pending)
        .await
        .expect("response headers")
        .unwrap()
        .expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < b"first chunk".len() {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("echoed chunk")
            .expect("body open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
    assert_eq!(got, b"first chunk");

    // Headers and a chunk went back, the body is still open: the request is in flight.
    let svc = wk.service("hello").await;
    assert_eq!(
        svc["in_flight"].as_u64(),
        Some(1),
        "held until end of body: {svc}"
    );

    tx.send(Bytes::from_static(b" and the rest")).await.unwrap();
    drop(tx);
    let rest = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .expect("body ends")
        .expect("body")
        .to_bytes();
    assert_eq!(&rest[..], b" and the rest");
    wk.wait_load("hello", 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_released_when_the_client_goes_away() {
    use tokio::io::AsyncWriteExt;

    let wk = Wakeway::start_warm("hello", "hello.localhost").await;

    let mut stream = TcpStream::connect(wk.proxy).await.unwrap();
    stream
        .write_all(b"GET /?sleep=60s HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        .await
        .unwrap();
    wk.wait_load("hello", 1, 0).await;
    drop(stream);
    wk.wait_load("hello", 0, 0).await;
}
