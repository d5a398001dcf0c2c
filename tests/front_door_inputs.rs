//! Smaller holes in what the front door and the admin API accept: a trailing dot in `Host`
//! routes like the name without it, a TLS client offering only unknown ALPN protocols is served
//! over HTTP/1.1, NUL in a deployed env value or command argument is refused with 400 and
//! changes nothing, and two `Origin` headers on a state-changing admin call are refused.

mod common;

use bytes::Bytes;
use common::tls::{TestCa, certificate_toml, https_get};
use common::*;
use http::{Method, StatusCode};
use serde_json::json;

fn config(extra_proxy: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n{extra_proxy}\n[admin]\nlisten = \"127.0.0.1:0\"\n{}{}",
        whoami_service(
            "web",
            "web.localhost",
            "[service.scaling]\nmin_instances = 1\n"
        ),
        whoami_service("other", "*", "[service.scaling]\nmin_instances = 1\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_dot_in_host_routes_like_the_name_without_it() {
    let wk = Wakeway::start_config(&config("")).await;
    wk.wait_ready("web").await;
    wk.wait_ready("other").await;
    for host in ["web.localhost.", "WEB.localhost.:80"] {
        let r = wk.get(host, "/").await;
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        let instance = r.instance().unwrap_or_default();
        assert!(instance.starts_with("web-"), "{host} reached {instance}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_offering_only_unknown_alpn_protocols_gets_http11() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let leaf = ca.leaf(&["web.localhost"]);
    let tls = format!(
        "[proxy.tls]\nlisten = \"127.0.0.1:0\"\n{}",
        certificate_toml(&["web.localhost"], &leaf.write(dir.path(), "web"), true)
    );
    let mut wk = Wakeway::start_config(&config(&tls)).await;
    let https = wk.proc.listening_addr("https").await;
    wk.wait_ready("web").await;
    let client = ca.client(&["spdy/3", "x-unknown/9"]);
    let r = https_get(https, "web.localhost", "/", &client)
        .await
        .expect("the handshake goes on without ALPN");
    assert_eq!(r.resp.status, 200);
    assert_eq!(r.alpn, None);
    // Known protocols are still agreed on.
    let r = https_get(https, "web.localhost", "/", &ca.client(&["x", "h2"]))
        .await
        .unwrap();
    assert_eq!(r.alpn.as_deref(), Some("h2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_deployed_env_value_or_argument_is_refused_and_changes_nothing() {
    let wk = Wakeway::start_config(&config("")).await;
    wk.wait_ready("web").await;
    let before = wk.revision("web").await;
    for (body, key) in [
        (json!({ "env": { "A": "x\u{0}y" } }), "env.A"),
        (
            json!({ "command": ["wakeway", "whoami", "a\u{0}b"] }),
            "command[2]",
        ),
    ] {
        let (status, v) = wk.admin_post("/v1/services/web/deployments", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(key) && error.contains("NUL"), "{error}");
    }
    assert_eq!(wk.revision("web").await, before);
    assert!(wk.deployments("web").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_origin_headers_on_an_admin_write_are_refused() {
    let wk = Wakeway::start_config(&config("")).await;
    let origin = format!("http://localhost:{}", wk.admin.port());
    let mut req = request(
        Method::POST,
        &format!("localhost:{}", wk.admin.port()),
        "/v1/services/web/pause",
        Bytes::new(),
    );
    let h = req.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.append("origin", origin.parse().unwrap());
    h.append("origin", "https://evil.example".parse().unwrap());
    let r = send(wk.admin, req).await.unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("Origin"), "{}", r.text());
    let svc = wk.service("web").await;
    assert_ne!(svc["paused"], true, "{svc}");
}
