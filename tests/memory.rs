//! Resident memory after a burst of connections: once the clients have left, wakeway gives back
//! what the burst took. Counted in KiB from `/proc/PID/status`, polled with a deadline.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::keepalive::keep_alive_get;
use common::*;
use tokio::net::TcpStream;

/// Concurrent keep-alive clients in the burst (the test's and wakeway's descriptors stay well
/// under the usual 20,000 or 65,536 limit).
const CLIENTS: usize = 3000;
/// Requests each client sends on its connection while all of them are open.
const REQUESTS_PER_CLIENT: usize = 2;
/// Connections opened at once while the burst builds up.
const BATCH: usize = 500;
/// How far above idle the resident set may stay once the clients are gone.
const BOUND_KIB: u64 = 8 * 1024;
/// Bursts in a row, each over within a few seconds: a burst the trimming misses shows in one of
/// them, and memory a burst leaves behind shows up as a rising floor.
const ROUNDS: usize = 4;
/// A quiet spell between bursts, longer than what wakeway does after one (it asks the allocator
/// to give memory back a few times over ten seconds): each burst must be noticed on its own.
const QUIET: Duration = Duration::from_secs(12);
/// How long the resident set may take to come down after the clients left.
const SETTLE: Duration = Duration::from_secs(40);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in status")
}

async fn client(proxy: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(proxy).await.expect("connect");
    for i in 0..REQUESTS_PER_CLIENT {
        let status = keep_alive_get(&mut conn, "mem.localhost", &format!("/burst/{i}"), DEADLINE)
            .await
            .expect("an answer");
        assert_eq!(status, 200);
    }
    conn
}

/// `CLIENTS` keep-alive connections, all open at once, each having had its requests answered.
async fn burst(proxy: SocketAddr) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(CLIENTS);
    while held.len() < CLIENTS {
        let n = BATCH.min(CLIENTS - held.len());
        let batch: Vec<_> = (0..n).map(|_| tokio::spawn(client(proxy))).collect();
        for c in batch {
            held.push(c.await.expect("client task"));
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_near_idle_after_a_burst_of_connections() {
    let (_upstream, upstream) = start_whoami().await;
    let wk = Wakeway::start(&static_service("mem", "mem.localhost", upstream, "", "")).await;
    let pid = wk.proc.pid();
    // What the first requests set up once (routes, the upstream pool, metrics) belongs to idle.
    for _ in 0..20 {
        drop(client(wk.proxy).await);
    }
    wait_for(
        "wakeway to settle after its first requests",
        SETTLE,
        || async {
            let a = rss_kib(pid);
            tokio::time::sleep(Duration::from_secs(2)).await;
            (rss_kib(pid) <= a).then_some(())
        },
    )
    .await;
    let idle = rss_kib(pid);
    for round in 1..=ROUNDS {
        if round > 1 {
            tokio::time::sleep(QUIET).await;
        }
        let started = tokio::time::Instant::now();
        let held = burst(wk.proxy).await;
        let took = started.elapsed();
        let peak = rss_kib(pid);
        assert!(
            peak > idle + BOUND_KIB,
            "round {round}: the burst should take memory beyond the bound to show anything \
             (idle {idle} KiB, holding {CLIENTS}: {peak} KiB)"
        );
        drop(held);
        let settled = tokio::time::Instant::now() + SETTLE;
        let after = loop {
            let now = rss_kib(pid);
            if now <= idle + BOUND_KIB {
                break now;
            }
            assert!(
                tokio::time::Instant::now() < settled,
                "round {round}: {SETTLE:?} after {CLIENTS} clients left, wakeway holds {now} KiB, \
                 more than {BOUND_KIB} KiB over idle ({idle} KiB; {peak} KiB while they were held)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!(
            "round {round}: idle {idle} KiB, holding {CLIENTS} (opened in {took:?}): {peak} KiB, \
             after: {after} KiB"
        );
    }
}
