//! HTTPS on `[proxy.tls]`: each name gets its own certificate (SNI), h2 and HTTP/1.1 by ALPN, a
//! renewed certificate is served without a restart and a broken one is refused (a warning) while
//! the old one keeps serving, its fix is an event, and `redirect_https` sends plain HTTP to HTTPS.
//!
//! wakeway prints `https listening on ADDR` for each `proxy.tls.listen` address.

mod common;

use common::tls::{TestCa, certificate_toml, connect, curl_https, https_get, replace_file};
use common::{DEADLINE, Wakeway, body_field, wait_for};

/// Starts wakeway with `[proxy.tls]` holding `certificates` (TOML tables) and a whoami service
/// for `hosts`; returns it with its HTTPS address.
async fn start(
    certificates: &str,
    hosts: &[&str],
    service_extra: &str,
) -> (Wakeway, std::net::SocketAddr) {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n\n[proxy.tls]\nlisten = \"127.0.0.1:0\"\n{certificates}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[service]]\nname = \"web\"\nhosts = [{}]\ncommand = [\"wakeway\", \"whoami\"]\n{service_extra}\n\
         [service.scaling]\nmin_instances = 1\n",
        hosts.join(", ")
    );
    let mut wakeway = Wakeway::start_config(&config).await;
    let https = wakeway.proc.listening_addr("https").await;
    wakeway.wait_ready("web").await;
    (wakeway, https)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_name_gets_its_certificate_over_h2_and_http11() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let a = ca.leaf(&["a.test"]);
    let b = ca.leaf(&["b.test", "*.b.test"]);
    let certs = certificate_toml(&["a.test"], &a.write(dir.path(), "a"), false)
        + &certificate_toml(&["b.test", "*.b.test"], &b.write(dir.path(), "b"), false);
    let (_wakeway, https) = start(&certs, &["a.test", "b.test", "x.b.test"], "").await;

    let r = https_get(https, "a.test", "/", &ca.client(&["h2", "http/1.1"]))
        .await
        .unwrap();
    assert_eq!(r.served, a.der, "a.test got another certificate");
    assert_eq!(r.alpn.as_deref(), Some("h2"));
    assert_eq!(r.resp.status, 200, "{}", r.resp.text());
    assert_eq!(
        body_field(&r.resp.text(), "X-Forwarded-Proto").as_deref(),
        Some("https"),
        "{}",
        r.resp.text()
    );

    let r = https_get(https, "x.b.test", "/", &ca.client(&["http/1.1"]))
        .await
        .unwrap();
    assert_eq!(r.served, b.der, "the wildcard certificate was not served");
    assert_eq!(r.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(r.resp.status, 200, "{}", r.resp.text());

    let ca_file = ca.write_ca(dir.path());
    for (name, flag, version) in [("a.test", "--http2", "2"), ("b.test", "--http1.1", "1.1")] {
        let out = curl_https(https, name, "/", &ca_file, &[flag]).await;
        assert!(out.ok, "curl {flag} https://{name}: {}", out.stderr);
        assert_eq!(
            (out.status, out.http_version.as_str()),
            (200, version),
            "{name}"
        );
    }

    // No certificate for this name and no default: the handshake fails, and wakeway stays up.
    let e = connect(https, "c.test", ca.client(&["h2"]))
        .await
        .map(drop)
        .unwrap_err();
    assert!(e.contains("handshake"), "{e}");
    let r = https_get(https, "a.test", "/", &ca.client(&["h2"]))
        .await
        .unwrap();
    assert_eq!(r.resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_is_served_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let first = ca.leaf(&["a.test"]);
    let files = first.write(dir.path(), "a");
    let certs = certificate_toml(&["a.test"], &files, true);
    let (wakeway, https) = start(&certs, &["a.test"], "").await;
    let client = ca.client(&["h2"]);
    let served = || async {
        https_get(https, "a.test", "/", &client)
            .await
            .map(|r| r.served)
            .ok()
    };
    assert_eq!(served().await, Some(first.der.clone()));

    // Renewal: new files, same paths, no restart.
    let renewed = ca.leaf(&["a.test"]);
    renewed.write(dir.path(), "a");
    wait_for("the renewed certificate to be served", DEADLINE, || async {
        (served().await == Some(renewed.der.clone())).then_some(())
    })
    .await;

    // A broken renewal: a truncated certificate. Refused with an event; the old one serves.
    let next = ca.leaf(&["a.test"]);
    replace_file(
        &files.0,
        &next.cert_pem.as_bytes()[..next.cert_pem.len() / 2],
    );
    let event = wakeway
        .wait_event("wakeway", "certificate_rejected")
        .await
        .remove(0);
    let message = event["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&files.0.display().to_string()),
        "the event does not name the file: {event}"
    );
    assert_eq!(event["level"], "warn", "{event}");
    assert!(
        wakeway
            .proc
            .stderr()
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("certificate_rejected")),
        "a rejected certificate is logged at WARN"
    );
    assert_eq!(served().await, Some(renewed.der.clone()));

    // Fixed: the good file written back is news, though the certificate served is the same.
    replace_file(&files.0, renewed.cert_pem.as_bytes());
    let fixed = wakeway
        .wait_event("wakeway", "certificate_fixed")
        .await
        .remove(0);
    assert_eq!(fixed["level"], "info", "{fixed}");
    assert_eq!(fixed["certificate"], 0, "{fixed}");
    assert_eq!(served().await, Some(renewed.der.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_https_sends_plain_http_to_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let a = ca.leaf(&["a.test"]);
    let certs = certificate_toml(&["a.test"], &a.write(dir.path(), "a"), false);
    let (wakeway, https) = start(&certs, &["a.test"], "redirect_https = true").await;

    let r = wakeway.get("a.test", "/x?y=1").await;
    assert_eq!(r.status, 308, "{}", r.text());
    let location = r.header("location").unwrap_or_default();
    assert!(
        location.starts_with("https://a.test") && location.ends_with("/x?y=1"),
        "Location: {location}"
    );
    let r = https_get(https, "a.test", "/x?y=1", &ca.client(&["h2"]))
        .await
        .unwrap();
    assert_eq!(
        r.resp.status,
        200,
        "HTTPS is not redirected: {}",
        r.resp.text()
    );
}
