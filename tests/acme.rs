//! Automatic HTTPS against a real ACME server: Let's Encrypt's test CA `pebble`, on loopback,
//! validating on wakeway's own listeners. A real TLS client that trusts only pebble's root checks
//! each certificate. Without pebble a test is skipped; under `CI=true` it fails.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::pebble::{Pebble, Ports, Site, site_config};
use common::tls::{TestCa, certificate_toml, https_get};
use common::{DEADLINE, admin_call, get, metric, run_to_exit, wait_for};
use rustls::pki_types::CertificateDer;

/// The certificate files under the site's state directory, with their modes.
fn stored_files(dir: &std::path::Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.join("acme")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string();
                found.push((rel, meta.permissions().mode() & 0o777));
            }
        }
    }
    found.sort();
    found
}

/// A pebble validating on the ports of a new wakeway whose service has `hosts_line`.
struct Setup {
    ports: Ports,
    pebble: Pebble,
    root: CertificateDer<'static>,
    site: Site,
}

async fn setup(
    hosts_line: &str,
    acme_extra: &str,
    env: &[(&str, &str)],
    validity: Option<u64>,
) -> Option<Setup> {
    let ports = Ports::reserve();
    let pebble = Pebble::start(&ports, env, validity).await?;
    let root = pebble.root().await;
    let site = Site::start(&site_config(&pebble, &ports, hosts_line, acme_extra, "")).await;
    Some(Setup {
        ports,
        pebble,
        root,
        site,
    })
}

/// As [`setup`], offering pebble only `challenge`.
async fn offering(hosts_line: &str, challenge: &str) -> Option<Setup> {
    setup(
        hosts_line,
        &format!("challenges = [\"{challenge}\"]"),
        &[],
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_a_certificate_served_by_sni_at_once() {
    let Some(Setup {
        pebble, root, site, ..
    }) = offering("hosts = [\"app.test\", \"*\", \"10.1.2.3\"]", "tls-alpn-01").await
    else {
        return;
    };
    let r = site.wait_issued("app.test", &root).await;
    assert_eq!(r.resp.status, 200, "{}", r.resp.text());
    // Only TLS-ALPN-01 was offered to pebble: no HTTP request validated it.
    assert!(
        !pebble.log().contains("validate w/ HTTP"),
        "pebble used HTTP-01"
    );
    let row = site.certificate("app.test").await;
    assert_eq!(row["source"], "acme", "{row}");
    assert_eq!(row["state"], "issued", "{row}");
    assert!(row["issuer"].as_str().unwrap().contains("Pebble"), "{row}");
    let not_after = row["not_after"].as_u64().unwrap();
    let metrics = common::get(site.admin, "localhost", "/metrics")
        .await
        .text();
    let expiry = metric(
        &metrics,
        "wakeway_certificate_expiry_timestamp_seconds",
        &[("name", "app.test")],
    );
    assert_eq!(expiry, Some(not_after as f64), "{metrics}");
    let issued = site.events("certificate_issued").await;
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["name"], "app.test");

    // The account and the certificate are kept beside the state file, readable by wakeway only.
    let files = stored_files(&site.dir);
    assert!(
        files.iter().any(|(f, _)| f.ends_with("account.json")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|(f, _)| f.ends_with("certs/app.test.pem")),
        "{files:?}"
    );
    assert!(files.iter().all(|(_, mode)| *mode == 0o600), "{files:?}");

    // The catch-all and the IP address are skipped, and `wakeway check` says why.
    let path = site.dir.join("wakeway.toml");
    let (status, out, err) = run_to_exit(&["check", "-c", path.to_str().unwrap()]).await;
    assert!(status.success(), "{err}");
    assert!(out.contains("app.test: ordered from the CA"), "{out}");
    assert!(out.contains("*: skipped: the catch-all"), "{out}");
    assert!(out.contains("10.1.2.3: skipped: an IP address"), "{out}");
    let admin = site.admin.to_string();
    let (status, out, err) = run_to_exit(&["certificates", "--admin", &admin]).await;
    assert!(status.success(), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("app.test"))
        .unwrap_or_default();
    assert!(
        line.contains("acme") && line.contains("issued") && line.contains("Pebble"),
        "{out}"
    );
    assert_eq!(pebble.orders(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_only_issues_without_waking_the_service() {
    let Some(Setup {
        pebble, root, site, ..
    }) = offering("hosts = [\"web.test\"]\nredirect_https = true", "http-01").await
    else {
        return;
    };
    site.wait_event("certificate_issued").await;
    assert!(
        pebble.log().contains("validate w/ HTTP"),
        "pebble did not use HTTP-01"
    );
    // The validation was answered before routing: no redirect, and the service (min 0) never
    // started an instance for it.
    let web = common::admin_json(site.admin, "/v1/services/web").await;
    assert_eq!(web["instances"].as_array().map(Vec::len), Some(0), "{web}");
    site.wait_issued("web.test", &root).await;
    // A token with no order in flight is not answered, and not routed either.
    let r = get(
        site.proxy,
        "web.test",
        "/.well-known/acme-challenge/nothing-in-flight",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    // Everything else on the plain listener still routes (here: to the HTTPS redirect).
    let r = get(site.proxy, "web.test", "/page").await;
    assert_eq!(r.status, 308, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_added_by_reload_gets_one_and_a_restart_reuses_what_is_stored() {
    let Some(Setup {
        ports,
        pebble,
        root,
        site,
    }) = setup("hosts = [\"a.test\"]", "", &[], None).await
    else {
        return;
    };
    let config = |hosts: &str| site_config(&pebble, &ports, hosts, "", "");
    site.wait_issued("a.test", &root).await;
    assert_eq!(pebble.orders(), 1);

    std::fs::write(
        site.dir.join("wakeway.toml"),
        config("hosts = [\"a.test\", \"b.test\"]"),
    )
    .unwrap();
    let (status, report) =
        admin_call(site.admin, http::Method::POST, "/v1/reload", None, None).await;
    assert_eq!(status, 200, "{report}");
    let b = site.wait_issued("b.test", &root).await;
    assert_eq!(pebble.orders(), 2, "the reload ordered again what it had");

    // A restart serves both stored certificates from its first handshake, ordering nothing.
    let (dir, keep) = site.stop().await;
    let site = Site::run_in(&dir, None).await;
    let again = site
        .https("b.test", &root)
        .await
        .expect("the stored certificate is served at once");
    assert_eq!(
        again.served, b.served,
        "b.test got another certificate after the restart"
    );
    site.https("a.test", &root)
        .await
        .expect("a.test after the restart");
    let row = site.certificate("a.test").await;
    assert_eq!(row["state"], "issued", "{row}");
    assert!(site.events("certificate_ordered").await.is_empty());
    assert_eq!(pebble.orders(), 2, "pebble saw an order after the restart");
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_is_renewed_and_served_without_restart() {
    // 24-second certificates: renewal is due 16 s after issuance.
    let Some(Setup {
        pebble, root, site, ..
    }) = setup("hosts = [\"r.test\"]", "", &[], Some(24)).await
    else {
        return;
    };
    let first = site.wait_issued("r.test", &root).await;
    let renewed = site.wait_event("certificate_renewed").await;
    assert_eq!(renewed[0]["name"], "r.test", "{renewed:?}");
    let second = site
        .https("r.test", &root)
        .await
        .expect("the renewed certificate");
    assert_ne!(second.served, first.served, "the renewal is not served");
    assert_eq!(pebble.orders(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ca_down_wakeway_serves_and_issues_once_it_is_back() {
    let ports = Ports::reserve();
    let Some(mut pebble) = Pebble::prepare(&ports, &[], None) else {
        return;
    };
    let default_ca = TestCa::new();
    // Listed for `fallback.test` only, so ACME still orders `down.test`; valid for both, so
    // the client can check what it is served as `down.test`.
    let default = default_ca.leaf(&["fallback.test", "down.test"]);
    let files = tempfile::tempdir().unwrap();
    let entry = certificate_toml(&["fallback.test"], &default.write(files.path(), "d"), true);
    let site = Site::start(&site_config(
        &pebble,
        &ports,
        "hosts = [\"down.test\"]",
        "",
        &entry,
    ))
    .await;

    // Plain HTTP is served, and HTTPS with the default certificate, while orders fail.
    let r = get(site.proxy, "down.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = https_get(
        site.tls,
        "down.test",
        "/",
        &default_ca.client(&["http/1.1"]),
    )
    .await
    .expect("the default certificate while the CA is down");
    assert_eq!(r.served, default.der);
    // Retried on backoff: a second failure comes, each with the reason.
    let failed = wait_for("two certificate_failed events", DEADLINE, || async {
        let e = site.events("certificate_failed").await;
        (e.len() >= 2).then_some(e)
    })
    .await;
    assert!(
        failed[0]["detail"].as_str().unwrap().contains("connect"),
        "{failed:?}"
    );
    let row = site.certificate("down.test").await;
    assert_eq!(row["state"], "failing", "{row}");
    assert!(
        row["last_error"].as_str().unwrap().contains("connect"),
        "{row}"
    );

    pebble.run().await;
    let root = pebble.root().await;
    site.wait_issued("down.test", &root).await;
    assert_eq!(site.certificate("down.test").await["state"], "issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebbles_random_failures_are_survived() {
    // A third of the good nonces are refused (the client retries each request three times, then
    // the order is retried on backoff), and validations wait a random 0-2 s.
    let env = [
        ("PEBBLE_WFE_NONCEREJECT", "30"),
        ("PEBBLE_VA_NOSLEEP", "0"),
        ("PEBBLE_VA_SLEEPTIME", "2"),
        ("PEBBLE_AUTHZREUSE", "50"),
    ];
    let Some(Setup {
        pebble: _pebble,
        root,
        site,
        ..
    }) = setup("hosts = [\"n1.test\", \"n2.test\"]", "", &env, None).await
    else {
        return;
    };
    site.wait_issued("n1.test", &root).await;
    site.wait_issued("n2.test", &root).await;
    // Refused nonces are retried by the client; an order that still failed was retried on
    // backoff. Either way each failure is an event that names the CA's problem.
    for e in site.events("certificate_failed").await {
        assert!(e["detail"].is_string(), "{e}");
    }
}

/// A "CA" that answers every request with 200 and a body that is not an ACME directory.
async fn malformed_ca(dir: &std::path::Path) -> (std::net::SocketAddr, std::path::PathBuf) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject;
    let ca = TestCa::new();
    let leaf = ca.leaf(&["127.0.0.1"]);
    let (cert, key) = leaf.write(dir, "fake-ca");
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let answer = service_fn(|_req| async {
                    let body = http_body_util::Full::new(bytes::Bytes::from_static(
                        b"{\"newNonce\": 5, \"truncated",
                    ));
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), answer)
                    .await;
            });
        }
    });
    (addr, ca.write_ca(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_ca_answer_is_an_event_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = malformed_ca(dir.path()).await;
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[proxy.tls]\nlisten = \"127.0.0.1:0\"\n\
         [proxy.tls.acme]\ndirectory = \"https://{ca}/dir\"\nca_roots = [{:?}]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [[service]]\nname = \"web\"\nhosts = [\"m.test\"]\ncommand = [\"wakeway\", \"whoami\"]\n",
        ca_file.to_str().unwrap()
    );
    let site = Site::start(&config).await;
    let failed = site.wait_event("certificate_failed").await;
    let detail = failed[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("JSON"), "{failed:?}");
    assert_eq!(failed[0]["name"], "m.test");
    assert!(
        failed[0]["retry_in_seconds"].as_u64().is_some(),
        "{failed:?}"
    );
    let row = site.certificate("m.test").await;
    assert_eq!(row["state"], "failing", "{row}");
    let r = get(site.proxy, "m.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
}
