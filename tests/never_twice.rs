//! Never twice: an instance killed while it handles a request. A request that may have taken
//! effect (POST, PATCH, and PUT/DELETE unless the service opts in) is answered 502 and carried
//! out once; a safe one (GET, or with an `Idempotency-Key`) is sent to the other instance and
//! answered. The app's own log says what it carried out.

mod common;

use bytes::Bytes;
use common::failures::{Carried, RequestLog};
use common::*;
use http::{Method, StatusCode};

const HOST: &str = "pay.localhost";
/// Long enough to kill the instance in the middle of it.
const ACT: &str = "/act?sleep=2s";

/// Two warm whoami instances behind one worker (so the request takes a kept-alive connection
/// that a warm-up left), a request to `ACT`, and a SIGKILL of the instance carrying it out.
/// Returns the answer and what the instances carried out for `ACT`.
async fn killed_mid_request(
    method: Method,
    idempotency_key: bool,
    service_extra: &str,
) -> (Resp, Vec<Carried>) {
    let dir = tempfile::tempdir().unwrap();
    let log = RequestLog::in_dir(dir.path());
    let service_keys = format!(
        r#"env = {{ WHOAMI_REQUEST_LOG = "{}" }}
{service_extra}

[service.scaling]
min_instances = 2
max_instances = 2

[service.deploy]
stop_grace = "1s"
"#,
        log.path.display()
    );
    let config = format!(
        "{}{}",
        listen_with("workers = 1"),
        whoami_service("pay", HOST, &service_keys)
    );
    let ww = Wakeway::start_config(&config).await;
    wait_for("two ready instances", DEADLINE, || async {
        (ww.ready_count("pay").await == 2).then_some(())
    })
    .await;

    // Concurrent warm-ups reach both instances (least in flight) and leave a kept-alive
    // connection to each in the worker's pool.
    let warm = (0..4).map(|_| ww.get(HOST, "/warm?sleep=300ms"));
    for r in futures_util::future::join_all(warm).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let warmed: std::collections::BTreeSet<String> = log
        .of("/warm?sleep=300ms")
        .into_iter()
        .map(|c| c.instance)
        .collect();
    assert_eq!(warmed.len(), 2, "both instances warmed: {:?}", log.lines());

    let mut req = request(method.clone(), HOST, ACT, Bytes::from_static(b"amount=10"));
    if idempotency_key {
        req.headers_mut()
            .insert("idempotency-key", "order-42".parse().unwrap());
    }
    let proxy = ww.proxy;
    let answer = tokio::spawn(async move { send(proxy, req).await });
    let victim = log.wait_for(ACT).await;
    signal(victim.pid, libc::SIGKILL);
    let resp = answer
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{method} {ACT}: {e}"));
    let carried = log.of(ACT);
    assert_eq!(carried[0].instance, victim.instance);
    (resp, carried)
}

fn assert_not_resent(method: &str, resp: &Resp, carried: &[Carried]) {
    assert_eq!(
        carried.len(),
        1,
        "{method} was carried out once, by the killed instance: {carried:?}"
    );
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text());
    assert!(
        resp.text().contains("not sent again"),
        "the 502 says the request was not sent again: {}",
        resp.text()
    );
}

fn assert_resent(method: &str, resp: &Resp, carried: &[Carried]) {
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(carried.len(), 2, "{method} was sent again: {carried:?}");
    assert_ne!(
        carried[0].instance, carried[1].instance,
        "to the other instance"
    );
    assert_eq!(
        resp.instance().as_deref(),
        Some(carried[1].instance.as_str()),
        "and answered by it"
    );
}

#[tokio::test]
async fn a_post_whose_instance_dies_is_answered_502_and_carried_out_once() {
    let (resp, carried) = killed_mid_request(Method::POST, false, "").await;
    assert_not_resent("POST", &resp, &carried);
}

#[tokio::test]
async fn a_get_whose_instance_dies_is_sent_to_the_other_and_answered() {
    let (resp, carried) = killed_mid_request(Method::GET, false, "").await;
    assert_resent("GET", &resp, &carried);
}

#[tokio::test]
async fn a_put_is_sent_again_only_where_the_service_opts_in() {
    let (resp, carried) = killed_mid_request(Method::PUT, false, "").await;
    assert_not_resent("PUT", &resp, &carried);
    let (resp, carried) = killed_mid_request(Method::PUT, false, "retry_idempotent = true").await;
    assert_resent("PUT with retry_idempotent", &resp, &carried);
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_sent_again() {
    let (resp, carried) = killed_mid_request(Method::POST, true, "").await;
    assert_resent("POST with Idempotency-Key", &resp, &carried);
}
