//! Keep-alive clients held open by a test: one request at a time on a connection it keeps.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` with `Host: host` on an open connection, which stays open; the status, or why
/// there is none within `deadline` (closed, timed out).
pub async fn keep_alive_get(
    conn: &mut TcpStream,
    host: &str,
    path: &str,
    deadline: Duration,
) -> Result<u16, String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let n = tokio::time::timeout_at(until, conn.read(&mut chunk))
            .await
            .map_err(|_| format!("no answer within {deadline:?}"))?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before an answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((resp, _)) = super::raw::parse_response(&buf) {
            return Ok(resp.status);
        }
    }
}

/// Whether the peer closed `conn` within `deadline` (bytes it sends first, such as an h2
/// GOAWAY, are skipped).
pub async fn closed_within(conn: &mut TcpStream, deadline: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let until = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(until, conn.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}
