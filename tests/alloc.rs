//! Allocations per proxied GET, counted (not timed): a counting global allocator around the real
//! proxy, a raw client and a raw upstream that themselves allocate nothing per request.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

// Only the config pieces: this test brings its own allocation-free client and upstream.
#[allow(dead_code)]
#[path = "common/configs.rs"]
mod configs;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The budget the data-plane issue set; README states the measured count.
const MAX_ALLOCATIONS_PER_GET: f64 = 10.0;

/// An upstream that answers every request on a connection with the same bytes, from a fixed
/// buffer: no allocation per request.
fn raw_upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut have = 0;
                loop {
                    match s.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello\n";
                        if s.write_all(resp).is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                }
            });
        }
    });
    port
}

fn get(client: &mut TcpStream, buf: &mut [u8]) {
    client
        .write_all(b"GET /alloc?x=1 HTTP/1.1\r\nHost: bench.localhost\r\nUser-Agent: alloc-test\r\nAccept: */*\r\n\r\n")
        .unwrap();
    let mut have = 0;
    loop {
        let n = client.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "proxy closed the connection");
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n")
            && have >= end + 4 + 6
        {
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&buf[..have])
            );
            return;
        }
    }
}

#[test]
fn a_proxied_get_allocates_at_most_ten_times() {
    let up = raw_upstream();
    let config = wakeway::config::parse(
        &format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[admin]\nlisten = \"off\"\n{}",
            configs::static_service(
                "bench",
                "bench.localhost",
                format!("127.0.0.1:{up}"),
                "interval = \"1h\"",
                ""
            )
        ),
        None,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(wakeway::App::build(config)).unwrap();
    let proxy = app.proxy_addrs()[0];
    let state = app.state();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let running = rt.spawn(app.run(async move { stopped.cancelled().await }));

    // Wait for the static upstream to be in the pool.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while state.service("bench").unwrap().is_cold() {
        assert!(std::time::Instant::now() < deadline, "upstream never ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client = TcpStream::connect(proxy).unwrap();
    let mut buf = vec![0u8; 4096];
    // Warm up: connections, buffers and lazily built state exist after this.
    for _ in 0..200 {
        get(&mut client, &mut buf);
    }
    const N: u64 = 2000;
    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..N {
        get(&mut client, &mut buf);
    }
    let per_get = (ALLOCATIONS.load(Relaxed) - before) as f64 / N as f64;
    println!("allocations per proxied GET: {per_get:.2}");
    assert!(
        per_get <= MAX_ALLOCATIONS_PER_GET,
        "{per_get:.2} allocations per proxied GET (budget {MAX_ALLOCATIONS_PER_GET})"
    );

    drop(client);
    stop.cancel();
    rt.block_on(running).unwrap();
}
