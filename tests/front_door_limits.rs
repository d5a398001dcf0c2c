//! `proxy.max_connections` against idle keep-alive clients: idle connections never lock a new
//! client out (the longest-idle one is closed to make room, HTTP/1 or h2), and the limit is the
//! process-wide total, whatever share of the connections each worker's socket received.

mod common;

use std::time::Duration;

use common::h2c::{self, H2Reply};
use common::keepalive::{closed_within, keep_alive_get};
use common::*;
use tokio::net::TcpStream;

const LIMIT: usize = 100;
/// The test's own bound for one answer; the check is that the first try succeeds.
const ANSWER: Duration = Duration::from_secs(5);

fn config(workers: usize) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = {workers}\nmax_connections = {LIMIT}\n\
         idle_timeout = \"5m\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{}",
        whoami_service(
            "hello",
            "hello.localhost",
            "[service.scaling]\nmin_instances = 1\n"
        )
    )
}

/// `n` connections, each answered once and then held open, idle.
async fn idle_clients(wk: &Wakeway, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = TcpStream::connect(wk.proxy).await.unwrap();
        let status = keep_alive_get(&mut c, "hello.localhost", "/", ANSWER).await;
        assert_eq!(status, Ok(200), "client {i} of {n}");
        held.push(c);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_up_to_the_limit_is_served_however_the_workers_split_them() {
    let wk = Wakeway::start_config(&config(2)).await;
    wk.wait_ready("hello").await;
    // With a fixed share per worker, the worker that got more than half of these would leave
    // the rest in its backlog although the other had room.
    let held = idle_clients(&wk, LIMIT).await;
    assert_eq!(held.len(), LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_clients_at_the_limit_do_not_lock_out_a_new_one() {
    let wk = Wakeway::start_config(&config(2)).await;
    wk.wait_ready("hello").await;
    let mut held = idle_clients(&wk, LIMIT).await;

    // The first try answers: a new client does not wait for an idle one to time out.
    for round in 0..3 {
        let mut new = TcpStream::connect(wk.proxy).await.unwrap();
        let status = keep_alive_get(&mut new, "hello.localhost", "/", ANSWER).await;
        assert_eq!(status, Ok(200), "new client {round}");
        held.push(new);
    }

    // Room was made by closing idle connections, the longest-idle ones first.
    let mut closed = 0;
    for c in held.iter_mut().take(10) {
        if closed_within(c, Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 1,
        "none of the longest-idle connections was closed"
    );
}

/// HEADERS (END_HEADERS | END_STREAM) on stream 1: `GET /` for `host`.
fn h2_get(host: &str) -> Vec<u8> {
    let fields = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", host),
        (":path", "/"),
    ];
    h2c::frame(0x1, 0x4 | 0x1, 1, &h2c::block(&fields))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_gets_goaway_to_make_room() {
    // One worker: its longest-idle connection is the h2 one.
    let wk = Wakeway::start_config(&config(1)).await;
    wk.wait_ready("hello").await;
    // The longest idle: an h2 connection that finished its one request.
    let mut h2 = TcpStream::connect(wk.proxy).await.unwrap();
    let got = h2c::h2_exchange_on(&mut h2, &h2_get("hello.localhost"), 1, ANSWER).await;
    assert!(
        matches!(got, H2Reply::Response { status: 200, .. }),
        "{got:?}"
    );
    let _held = idle_clients(&wk, LIMIT - 1).await;

    let mut new = TcpStream::connect(wk.proxy).await.unwrap();
    assert_eq!(
        keep_alive_get(&mut new, "hello.localhost", "/", ANSWER).await,
        Ok(200)
    );
    assert!(
        closed_within(&mut h2, ANSWER).await,
        "the idle h2 connection was not told to go away"
    );
}
