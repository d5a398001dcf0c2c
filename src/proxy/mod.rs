//! The client-facing listeners: accept, HTTP/1.1 and h2c on the same port, hand each request to
//! the forwarder, and on shutdown stop accepting and let open requests finish.

pub mod body;
pub mod error;
pub mod forward;
pub mod route;
pub mod tls;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use forward::Forwarder;

/// Serves one listener until `shutdown`, then waits (up to `grace`) for its connections to finish
/// the requests they have in flight.
pub async fn serve(
    listener: TcpListener,
    forwarder: Arc<Forwarder>,
    client_idle_timeout: Duration,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(client_idle_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(client_idle_timeout / 2));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let fwd = forwarder.clone();
        let svc = service_fn(move |req| {
            let fwd = fwd.clone();
            async move { Ok::<_, Infallible>(fwd.handle(req, remote).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!("connection from {remote} ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {grace:?}; closing them");
    }
}
