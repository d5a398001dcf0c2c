//! The front door under hostile connection patterns: silent connections are closed by the
//! header-read timeout, and good clients keep being served meanwhile, even when wakeway's file
//! limit is lower than the number of connections knocking.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SILENT: usize = 2000;

/// One keep-alive request on an open connection; the status line's code.
async fn keep_alive_get(conn: &mut TcpStream) -> u16 {
    conn.write_all(b"GET /ok HTTP/1.1\r\nHost: hello.localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(DEADLINE, conn.read(&mut chunk))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "the good connection was closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length: ")
                        .or(l.strip_prefix("Content-Length: "))
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_good_clients_keep_working_under_a_low_file_limit() {
    // This test holds 2,000 sockets of its own.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 2 * SILENT as u64,
        "the test needs an open-file limit of 4096"
    );

    // wakeway itself may hold 1,024 descriptors, fewer than the connections that will knock:
    // `max_connections` keeps it below, the rest wait in the backlog.
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\nmax_connections = 600\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{}",
        whoami_service(
            "hello",
            "hello.localhost",
            "[service.scaling]\nmin_instances = 1\n"
        )
    );
    let wk = Wakeway::start_with_nofile(&config, 1024).await;
    wk.wait_ready("hello").await;
    let mut good = TcpStream::connect(wk.proxy).await.unwrap();
    assert_eq!(keep_alive_get(&mut good).await, 200);

    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(wk.proxy).await.unwrap());
    }
    // While they sit there, the good client is served.
    for _ in 0..5 {
        assert_eq!(keep_alive_get(&mut good).await, 200);
    }

    // Every silent connection is closed (after a 408 where wakeway had accepted it).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered_408 = 0;
    for mut s in silent {
        let mut buf = Vec::new();
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, s.read_to_end(&mut buf))
            .await
            .expect("a silent connection was never closed")
            .ok();
        if buf.starts_with(b"HTTP/1.1 408") {
            answered_408 += 1;
        }
    }
    assert!(answered_408 > 0, "no silent connection got a 408");

    // And new clients are served again, as the kept-alive one still is.
    assert_eq!(wk.get("hello.localhost", "/").await.status, 200);
    assert_eq!(keep_alive_get(&mut good).await, 200);
}

/// An h2 client that sends the connection preface and then nothing is closed by the
/// header-read timeout too (hyper keeps an idle h2 connection open for good by itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_h2_connection_is_closed() {
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{}",
        whoami_service("hello", "hello.localhost", "")
    );
    let wk = Wakeway::start_config(&config).await;
    let mut s = TcpStream::connect(wk.proxy).await.unwrap();
    // The preface and an empty SETTINGS frame: a valid start, then silence.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut sink))
        .await
        .expect("the silent h2 connection was never closed")
        .ok();
}
