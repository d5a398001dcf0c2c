//! A complete, faithful access log: every answered request has exactly one line, wakeway's own
//! refusals included (with the reason), and the line says what was forwarded: the target as sent
//! (escaped, never `/` instead), the user agent's bytes (escaped, never null), the revision that
//! served (not the latest), and for h2 the instance and body bytes as for HTTP/1.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::raw::{self, Pace, Reply};
use common::*;
use http::Method;
use http_body_util::StreamBody;
use hyper::body::Frame;
use serde_json::{Value, json};

fn config(log: &Path, format: &str, query: bool) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [log]\naccess = {:?}\naccess_format = \"{format}\"\naccess_query = {query}\n{}{}",
        log.display().to_string(),
        whoami_service(
            "web",
            "web.localhost",
            "max_body_bytes = \"10B\"\n[service.scaling]\nmin_instances = 1\n"
        ),
        whoami_service(
            "cold",
            "cold.localhost",
            "[service.scaling]\nmin_instances = 0\n\
             [service.scaling.idle_ignore]\nuser_agents = [\"probe\"]\n"
        ),
    )
}

/// Wakeway writing its access log in `format` (with the query string if `query`) to a file of
/// its own, once `web` is ready; the file's directory lives as long as the returned guard.
async fn start_logging(format: &str, query: bool) -> (Wakeway, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let wk = Wakeway::start_config(&config(&path, format, query)).await;
    wk.wait_ready("web").await;
    (wk, path, dir)
}

/// The access log's lines once it holds `n`; more than `n` fails (one line per request).
async fn lines(path: &Path, n: usize) -> Vec<String> {
    let lines = wait_for("access-log lines", DEADLINE, || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        (lines.len() >= n).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), n, "one line per request: {lines:#?}");
    lines
}

/// Sends `bytes` on a new connection; the status of the one answer.
async fn status_of(wk: &Wakeway, bytes: &[u8]) -> u16 {
    match raw::exchange(wk.proxy, bytes, &Pace::AtOnce, 1, DEADLINE).await {
        Reply::Responses(r) => r[0].status,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_wakeway_gives_itself_has_one_line_with_its_reason() {
    let (wk, path, _dir) = start_logging("json", false).await;

    let long_target = format!(
        "GET /long{} HTTP/1.1\r\nHost: web.localhost\r\n\r\n",
        "a".repeat(9000)
    );
    let long_line = format!(
        "GET /line HTTP/1.1\r\nHost: web.localhost\r\nX-Long: {}\r\n\r\n",
        "a".repeat(9000)
    );
    // (path the line must carry, bytes, status); each path once.
    let cases: Vec<(&str, Vec<u8>, u16)> =
        vec![
        (
            "/two",
            b"GET /two HTTP/1.1\r\nHost: web.localhost\r\nHost: b\r\n\r\n".to_vec(),
            400,
        ),
        ("/trace", b"TRACE /trace HTTP/1.1\r\nHost: web.localhost\r\n\r\n".to_vec(), 405),
        ("/slow", b"GET /slow HTTP/1.1\r\nHost: web.localhost\r\n".to_vec(), 408),
        (
            "/big",
            b"POST /big HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 11\r\n\r\nhello world"
                .to_vec(),
            413,
        ),
        ("/longaaaa", long_target.into_bytes(), 414),
        ("/line", long_line.into_bytes(), 431),
        (
            "/gz",
            b"POST /gz HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            501,
        ),
        ("/v", b"GET /v HTTP/2.0\r\nHost: web.localhost\r\n\r\n".to_vec(), 505),
        (
            "/health",
            b"GET /health HTTP/1.1\r\nHost: cold.localhost\r\nUser-Agent: probe\r\n\r\n".to_vec(),
            503,
        ),
        ("/nobody", b"GET /nobody HTTP/1.1\r\nHost: nobody.localhost\r\n\r\n".to_vec(), 404),
        ("/fine", b"GET /fine HTTP/1.1\r\nHost: web.localhost\r\n\r\n".to_vec(), 200),
    ];
    for (path, bytes, want) in &cases {
        assert_eq!(status_of(&wk, bytes).await, *want, "{path}");
    }

    // Connections end on different workers: lines are matched by path, not order.
    let lines: Vec<Value> = lines(&path, cases.len())
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (path, _, want) in &cases {
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|v| v["path"].as_str().unwrap_or_default().starts_with(path))
            .collect();
        assert_eq!(mine.len(), 1, "{path}: {mine:?}");
        let v = mine[0];
        assert_eq!(v["status"], *want, "{path}: {v}");
        if *want == 200 {
            assert_eq!(v["reason"], Value::Null, "{path}: {v}");
        } else {
            let reason = v["reason"].as_str().unwrap_or_default();
            assert!(!reason.is_empty(), "{path}: no reason: {v}");
        }
    }
    let line = |p: &str| lines.iter().find(|v| v["path"] == p).unwrap();
    assert_eq!(line("/two")["method"], "GET");
    assert!(
        line("/two")["reason"].as_str().unwrap().contains("Host"),
        "{}",
        line("/two")
    );
    assert_eq!(line("/trace")["method"], "TRACE");
    assert_eq!(line("/health")["service"], "cold");
    assert!(
        line("/health")["reason"]
            .as_str()
            .unwrap()
            .contains("idle_ignore"),
        "{}",
        line("/health")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_says_what_was_forwarded_target_user_agent_and_revision() {
    let (wk, path, _dir) = start_logging("json", true).await;
    // A newer revision that takes no traffic: the latest, yet not the one that serves.
    wk.deploy_ok(
        "web",
        json!({ "env": { "V": "2" }, "no_traffic": true, "tag": "next" }),
    )
    .await;

    let target = b"/a`b<c>d?q=\"x\"";
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(
        b" HTTP/1.1\r\nHost: web.localhost\r\nUser-Agent: caf\xc3\xa9 \xff\r\nReferer: /r\xe9\r\n\r\n",
    );
    // Forwarded; the app may refuse such bytes itself, and its answer is what is logged.
    let odd = status_of(&wk, &req).await;
    let tagged = b"GET /tagged HTTP/1.1\r\nHost: next--web.localhost\r\n\r\n";
    assert_eq!(status_of(&wk, tagged).await, 200);
    // h2c: instance, revision and body bytes as for HTTP/1.
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("http://web.localhost/h2")
        .body(http_body_util::Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    assert_eq!(send_h2(wk.proxy, req).await.unwrap().status, 200);
    // A body streamed with no length each way: the line counts what went, not what was declared.
    let chunks = (0..3)
        .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'x'; 65536]))));
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("http://web.localhost/echo")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let echoed = send_h2(wk.proxy, req).await.unwrap();
    assert_eq!(
        (echoed.status.as_u16(), echoed.body.len()),
        (200, 3 * 65536)
    );

    let lines: Vec<Value> = lines(&path, 4)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |p: &str| {
        lines
            .iter()
            .find(|v| v["path"].as_str().unwrap_or_default().starts_with(p))
            .unwrap_or_else(|| panic!("no line for {p}: {lines:?}"))
    };
    let odd_line = line("/a");
    assert_eq!(odd_line["status"], odd, "{odd_line}");
    assert_eq!(odd_line["path"], "/a`b<c>d?q=\"x\"", "{odd_line}");
    assert_eq!(odd_line["user_agent"], "café \\xFF", "{odd_line}");
    assert_eq!(odd_line["referer"], "/r\\xE9", "{odd_line}");
    assert_eq!(odd_line["revision"], "web-00001", "{odd_line}");
    assert_eq!(line("/tagged")["revision"], "web-00002");
    let h2 = line("/h2");
    assert_eq!(h2["protocol"], "HTTP/2.0", "{h2}");
    assert_eq!(h2["revision"], "web-00001", "{h2}");
    let instance = h2["instance"].as_str().unwrap_or_default();
    assert!(instance.starts_with("web-00001-"), "{h2}");
    assert_eq!(h2["bytes_in"], 5, "{h2}");
    // The h2 forwarder opened its first connection to the instance for this request.
    assert!(h2["upstream_connect_ms"].is_number(), "{h2}");
    let echo = line("/echo");
    assert_eq!(echo["bytes_in"], 3 * 65536, "{echo}");
    assert_eq!(echo["bytes_out"], 3 * 65536, "{echo}");
    assert!(echo["instance"].is_string(), "{echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_lines_escape_the_target_and_headers_as_nginx_does() {
    let (wk, path, _dir) = start_logging("combined", true).await;
    let req = b"GET /a<b>?q=\"x\" HTTP/1.1\r\nHost: web.localhost\r\nUser-Agent: ua\xff\"\r\n\r\n";
    let odd = status_of(&wk, req).await;
    let bad = b"GET /x HTTP/1.1\r\nHost: web.localhost\r\nHost: b\r\n\r\n";
    assert_eq!(status_of(&wk, bad).await, 400);
    let lines = lines(&path, 2).await;
    let line = |p: &str| {
        lines
            .iter()
            .find(|l| l.contains(p))
            .unwrap_or_else(|| panic!("{p}: {lines:?}"))
    };
    let forwarded = line("GET /a");
    let want = format!(r#""GET /a<b>?q=\x22x\x22 HTTP/1.1" {odd} "#);
    assert!(forwarded.contains(&want), "{forwarded}");
    assert!(forwarded.contains(r#""-" "ua\xFF\x22" "#), "{forwarded}");
    let refused = line("GET /x");
    assert!(refused.contains(r#""GET /x HTTP/1.1" 400 "#), "{refused}");
    assert!(refused.contains("more than one Host header\""), "{refused}");
}
