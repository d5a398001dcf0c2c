//! What a user watching wakeway sees per request: access-log lines in both formats, request ids
//! and W3C trace context passed through and back, and `Server-Timing` on a cold start.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use common::*;
use http::Method;
use serde_json::Value;

fn config(extra_log: &str, services: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\n{extra_log}\n{services}"
    )
}

/// A warm `hello` whoami behind a wakeway whose access log goes to the returned path, with
/// `log_keys` added to `[log]`.
async fn logging_to_a_file(log_keys: &str) -> (tempfile::TempDir, std::path::PathBuf, Wakeway) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let wk = Wakeway::start_config(&config(
        &format!("access = {:?}\n{log_keys}", path.display().to_string()),
        &whoami_service("hello", "hello.localhost", MIN_ONE),
    ))
    .await;
    wk.wait_ready("hello").await;
    (dir, path, wk)
}

/// Waits until the access log holds `n` lines; returns them.
async fn log_lines(path: &Path, n: usize) -> Vec<String> {
    wait_for("access-log lines", DEADLINE, || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
}

/// The header value the upstream (whoami) says it received.
fn upstream_saw(resp: &Resp, name: &str) -> Option<String> {
    resp.field(name)
}

/// `GET path` with extra request headers.
async fn get_with(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = request(Method::GET, host, path, Bytes::new());
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    send(addr, req).await.expect("request")
}

/// Sends raw bytes, reads until the peer closes or a whole response arrived; the status code.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[9..n.clamp(9, 12)])
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_has_a_line_per_request_with_every_field() {
    let (_dir, path, wk) = logging_to_a_file("access_format = \"json\"").await;
    assert_eq!(wk.get("hello.localhost", "/a?secret=1").await.status, 200);
    assert_eq!(wk.get("hello.localhost", "/b").await.status, 200);
    assert_eq!(wk.get("nobody.localhost", "/c").await.status, 404);
    let status = raw_exchange(
        wk.proxy,
        b"POST /d HTTP/1.1\r\nHost: hello.localhost\r\nUser-Agent: probe/1\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(status, 200);

    let lines = log_lines(&path, 4).await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    let json: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for (j, (path, status)) in json
        .iter()
        .zip([("/a", 200), ("/b", 200), ("/c", 404), ("/d", 200)])
    {
        for field in [
            "time",
            "service",
            "revision",
            "instance",
            "method",
            "path",
            "status",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "queue_ms",
            "cold_start",
            "upstream_connect_ms",
            "client",
            "user_agent",
            "request_id",
            "trace_id",
        ] {
            assert!(j.get(field).is_some(), "{field} missing: {j}");
        }
        assert_eq!(j["path"], path, "no query unless configured: {j}");
        assert_eq!(j["status"], status, "{j}");
        assert!(
            j["request_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{j}"
        );
    }
    assert_eq!(json[0]["service"], "hello");
    assert!(
        json[0]["instance"]
            .as_str()
            .is_some_and(|i| i.starts_with("hello-"))
    );
    assert!(json[0]["bytes_out"].as_u64().unwrap() > 0);
    assert!(json[2]["service"].is_null(), "unknown host: {}", json[2]);
    assert_eq!(json[3]["method"], "POST");
    assert_eq!(json[3]["bytes_in"], 5);
    assert_eq!(json[3]["user_agent"], "probe/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_access_log_reads_as_nginx_combined() {
    let (_dir, path, wk) = logging_to_a_file("access_format = \"combined\"").await;
    for p in ["/one", "/two", "/three"] {
        assert_eq!(wk.get("hello.localhost", p).await.status, 200);
    }
    let lines = log_lines(&path, 3).await;
    for (line, p) in lines.iter().zip(["/one", "/two", "/three"]) {
        // 127.0.0.1 - - [27/Nov/2026:09:00:00 +0000] "GET /one HTTP/1.1" 200 123 "-" "ua" ...
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains(&format!("\"GET {p} HTTP/1.1\" 200 ")),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_trace_context_round_trip() {
    let (_dir, path, wk) = logging_to_a_file("").await;

    // A valid id and trace context pass through unchanged and come back.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get_with(
        wk.proxy,
        "hello.localhost",
        "/traced",
        &[
            ("x-request-id", "order-42"),
            ("traceparent", parent),
            ("tracestate", "v=1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("order-42"));
    assert_eq!(
        upstream_saw(&r, "x-request-id").as_deref(),
        Some("order-42")
    );
    assert_eq!(upstream_saw(&r, "traceparent").as_deref(), Some(parent));
    assert_eq!(upstream_saw(&r, "tracestate").as_deref(), Some("v=1"));

    // None sent: wakeway makes both, and the client and the app see the same id.
    let r = wk.get("hello.localhost", "/fresh").await;
    let id = r.header("x-request-id").expect("a request id").to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(
        upstream_saw(&r, "x-request-id").as_deref(),
        Some(id.as_str())
    );
    let tp = upstream_saw(&r, "traceparent").expect("a started trace");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[1].len()),
        (4, "00", 32),
        "{tp}"
    );

    // An invalid id or trace is replaced, not passed on.
    let r = get_with(
        wk.proxy,
        "hello.localhost",
        "/bad",
        &[
            ("x-request-id", "bad id with spaces"),
            ("traceparent", "00-zz"),
        ],
    )
    .await;
    assert_ne!(r.header("x-request-id"), Some("bad id with spaces"));
    assert_ne!(upstream_saw(&r, "traceparent").as_deref(), Some("00-zz"));

    // The access log carries the same ids; an error body names the id too.
    let lines = log_lines(&path, 3).await;
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["request_id"], "order-42");
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let second: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["request_id"], id.as_str());
    assert_eq!(second["trace_id"], parts[1]);
    let r = get_with(
        wk.proxy,
        "nobody.localhost",
        "/",
        &[("x-request-id", "lost-7")],
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("lost-7"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_is_told_in_server_timing() {
    let wk = Wakeway::start_config(&config(
        "",
        &whoami_service(
            "hello",
            "hello.localhost",
            "[service.health]\nkind = \"tcp\"\n",
        ),
    ))
    .await;
    let cold = wk.get("hello.localhost", "/").await;
    assert_eq!(cold.status, 200);
    let timing = cold
        .header("server-timing")
        .expect("Server-Timing on a cold start")
        .to_string();
    let dur = |name: &str| -> Option<f64> {
        timing.split(',').find_map(|m| {
            let m = m.trim();
            m.strip_prefix(&format!("{name};dur="))
                .and_then(|v| v.parse().ok())
        })
    };
    let cold_ms = dur("cold-start").expect("cold-start metric");
    let total_ms = dur("wakeway").expect("wakeway metric");
    assert!(cold_ms <= total_ms, "{timing}");
    let metrics = wk.metrics().await;
    let histogram_ms = metric(
        &metrics,
        "wakeway_cold_start_duration_seconds_sum",
        &[("service", "hello")],
    )
    .expect("cold-start histogram")
        * 1000.0;
    // Both measure the same wait, from the request's arrival (the histogram: from the first
    // request at the empty service) to the instance being ready.
    assert!(
        (cold_ms - histogram_ms).abs() <= (histogram_ms * 0.5).max(50.0),
        "Server-Timing says {cold_ms} ms, the histogram {histogram_ms} ms"
    );
    // A warm request says nothing by default.
    let warm = wk.get("hello.localhost", "/").await;
    assert!(
        warm.header("server-timing").is_none(),
        "{:?}",
        warm.header("server-timing")
    );
    let waits = metric(
        &metrics,
        "wakeway_queue_wait_seconds_count",
        &[("service", "hello")],
    )
    .unwrap_or(0.0);
    assert!(waits >= 1.0, "the cold request waited in the queue");
}
