//! whoami's parsing and its endpoints, served on a loopback port.

use super::stream::header_has_token;
use super::*;

#[test]
fn parses_durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
    assert_eq!(parse_duration("300"), Some(Duration::from_millis(300)));
    assert_eq!(parse_duration(" 10ms "), Some(Duration::from_millis(10)));
}

#[test]
fn rejects_bad_durations() {
    for bad in ["", "ms", "s", "1x", "-1s", "1.2.3s", "abc", "1 s", "5sec"] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
}

#[test]
fn splits_query() {
    let pairs: Vec<_> = query_pairs("sleep=1s&status=503&&flag").collect();
    assert_eq!(
        pairs,
        vec![("sleep", "1s"), ("status", "503"), ("flag", "")]
    );
}

#[test]
fn canonicalises_header_names() {
    assert_eq!(canonical_name("x-forwarded-for"), "X-Forwarded-For");
    assert_eq!(canonical_name("host"), "Host");
}

#[test]
fn token_lists() {
    let v = HeaderValue::from_static("keep-alive, Upgrade");
    assert!(header_has_token(Some(&v), "upgrade"));
    assert!(!header_has_token(Some(&v), "close"));
    assert!(!header_has_token(None, "upgrade"));
}

#[tokio::test]
async fn serves_and_counts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, async {
        let _ = rx.await;
    }));

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/hello?status=418&sleep=1ms")
        .header("host", "example.test")
        .header("x-probe", "yes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(resp.headers()[INSTANCE_HEADER], "whoami");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("Concurrent: 1\n"), "{body}");
    assert!(
        body.contains("GET /hello?status=418&sleep=1ms HTTP/1.1\n"),
        "{body}"
    );
    assert!(body.contains("Host: example.test\n"), "{body}");
    assert!(body.contains("X-Probe: yes\n"), "{body}");

    let req = Request::post("/echo")
        .header("host", "example.test")
        .body(Full::new(Bytes::from_static(b"ping pong")))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ping pong");

    let req = Request::get("/stats")
        .header("host", "example.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["max_in_flight"], 1);

    let health = |method: Method, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "example.test")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let resp = send
        .send_request(health(Method::GET, "/healthz"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send
        .send_request(health(Method::POST, "/healthz?status=503"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send
        .send_request(health(Method::GET, "/healthz"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    drop(send);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn websocket_echoes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, std::future::pending()));
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .unwrap();
    assert_eq!(resp.headers()[INSTANCE_HEADER], "whoami");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.close(None).await.unwrap();
}
