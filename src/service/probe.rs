//! Health probes. Each probe uses a fresh connection, never the pooled client: a pooled
//! connection proves nothing about whether the instance accepts new ones.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{HealthConfig, HealthKind};

/// One probe, bounded by `health.timeout`.
pub async fn probe(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), String> {
    match tokio::time::timeout(cfg.timeout, probe_once(addr, cfg)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", cfg.timeout)),
    }
}

async fn probe_once(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), String> {
    if cfg.kind == HealthKind::Grpc {
        return super::probe_grpc::check(addr, cfg).await;
    }
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    if cfg.kind == HealthKind::Tcp {
        return Ok(());
    }
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(cfg.path.as_str())
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "wakeway-health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad probe request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {}: {e}", cfg.path))?;
    conn.abort();
    let status = resp.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("{}{status}", answered_prefix(&cfg.path)))
    }
}

/// A fresh connect within `within`: what tells, after a reset on the request path, an instance
/// that dropped one connection from one that is gone.
pub async fn connects(addr: SocketAddr, within: Duration) -> Result<(), String> {
    match tokio::time::timeout(within, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
        Err(_) => Err(format!("connect {addr}: no answer within {within:?}")),
    }
}

/// Whether the app behind `addr` answers anything to a tiny request within `health.timeout`:
/// any byte back, or a close, is an answer (a 404, a non-HTTP app that hangs up). Nothing at all
/// is not: the kernel completed the handshake for an app that never reads (stopped, frozen,
/// wedged), which a TCP probe cannot tell from a healthy one. Run only after requests got no
/// first byte in time, so an app that never answers a probe of its own is never asked this.
pub async fn answers(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), String> {
    let asked = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: wakeway-health\r\nConnection: close\r\n\r\n",
            cfg.path
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write {addr}: {e}"))?;
        let mut one = [0u8; 1];
        // A reset after the app read the request is an answer too: it is not frozen.
        let _ = stream.read(&mut one).await;
        Ok(())
    };
    match tokio::time::timeout(cfg.timeout, asked).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "accepted a connection but answered nothing within {:?}",
            cfg.timeout
        )),
    }
}

/// The probe reached the app and the app answered, just not with a success: the app is up but
/// has no such route, or says it is not healthy. Told apart from a connect failure (still booting).
pub fn is_http_refusal(cfg: &HealthConfig, error: &str) -> bool {
    cfg.kind == HealthKind::Http && error.starts_with(&answered_prefix(&cfg.path))
}

fn answered_prefix(path: &str) -> String {
    format!("GET {path} answered ")
}

#[derive(Debug, Clone, PartialEq)]
pub enum NotReady {
    /// The instance went away while being probed.
    Exited(String),
    /// Not ready within `startup_timeout`; carries the last probe's error.
    Timeout(String),
    Cancelled,
}

/// The startup probe schedule. An app that binds in a few milliseconds should not wait for a
/// sparse probe: the first probe goes right after the spawn, then one every millisecond for the
/// first `FAST_FOR` (a refused loopback connect costs microseconds), then the interval doubles
/// up to `SLOW_MAX` for apps that take seconds.
const FAST_EVERY: Duration = Duration::from_millis(1);
const FAST_FOR: Duration = Duration::from_millis(100);
const SLOW_MAX: Duration = Duration::from_millis(250);

/// The delay before the next startup probe, `since` the first one.
fn next_delay(since: Duration, last: Duration) -> Duration {
    if since < FAST_FOR {
        FAST_EVERY
    } else {
        (last.max(FAST_EVERY * 5) * 2).min(SLOW_MAX)
    }
}

/// Probes with `probe` from the moment of the call (see `next_delay`) until the first pass, an
/// exit, a cancel, or `startup_timeout`.
pub async fn wait_ready<F, Fut>(
    probe: F,
    cfg: &HealthConfig,
    mut exited: watch::Receiver<Option<String>>,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), NotReady>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let began = Instant::now();
    let deadline = began + cfg.startup_timeout;
    let mut delay = Duration::ZERO;
    let mut last = String::from("no probe finished");
    loop {
        if let Some(reason) = exited.borrow().clone() {
            return Err(NotReady::Exited(reason));
        }
        let attempt = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(NotReady::Cancelled),
            _ = exited.wait_for(|e| e.is_some()) => continue,
            _ = tokio::time::sleep_until(deadline) => return Err(NotReady::Timeout(last)),
            r = probe() => r,
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        delay = next_delay(began.elapsed(), delay);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(NotReady::Cancelled),
            _ = exited.wait_for(|e| e.is_some()) => {}
            _ = tokio::time::sleep_until(deadline) => return Err(NotReady::Timeout(last)),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: HealthKind) -> HealthConfig {
        HealthConfig {
            kind,
            startup_timeout: Duration::from_millis(300),
            ..HealthConfig::default()
        }
    }

    #[tokio::test]
    async fn tcp_probe_passes_on_listener_and_fails_on_closed_port() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert!(probe(addr, &cfg(HealthKind::Tcp)).await.is_ok());
        drop(l);
        assert!(probe(addr, &cfg(HealthKind::Tcp)).await.is_err());
    }

    #[tokio::test]
    async fn an_app_that_never_reads_does_not_answer_but_one_that_hangs_up_does() {
        let c = HealthConfig {
            timeout: Duration::from_millis(200),
            ..cfg(HealthKind::Tcp)
        };
        // A listener nobody accepts from: the kernel completes the handshake, as for a
        // stopped app.
        let frozen = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = frozen.local_addr().unwrap();
        assert!(probe(addr, &c).await.is_ok(), "a TCP probe cannot tell");
        let err = answers(addr, &c).await.unwrap_err();
        assert!(err.contains("answered nothing"), "{err}");

        let rude = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = rude.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = rude.accept().await {
                drop(s);
            }
        });
        assert_eq!(answers(addr, &c).await, Ok(()));
        drop(frozen);
    }

    /// Why an HTTP startup probe of a closed port gives up, with `exited` for the exit notice.
    async fn not_ready(exited: watch::Receiver<Option<String>>) -> NotReady {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let cancel = tokio_util::sync::CancellationToken::new();
        let c = cfg(HealthKind::Http);
        wait_ready(|| probe(addr, &c), &c, exited, &cancel)
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn startup_times_out_with_last_error() {
        let (_tx, rx) = watch::channel(None);
        match not_ready(rx).await {
            NotReady::Timeout(last) => assert!(last.contains("connect"), "{last}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn probes_every_millisecond_at_first_then_back_off() {
        let mut d = Duration::ZERO;
        let mut t = Duration::ZERO;
        let mut first = Vec::new();
        while t < Duration::from_secs(2) {
            d = next_delay(t, d);
            t += d;
            first.push(d);
        }
        assert!(first[..50].iter().all(|d| *d == FAST_EVERY), "{first:?}");
        assert_eq!(*first.last().unwrap(), SLOW_MAX);
    }

    #[tokio::test]
    async fn exit_during_startup_is_reported() {
        let (tx, rx) = watch::channel(None);
        tx.send(Some("exit status: 1".into())).unwrap();
        let err = not_ready(rx).await;
        assert_eq!(err, NotReady::Exited("exit status: 1".into()));
    }
}
