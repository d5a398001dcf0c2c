//! The admin listener: the JSON API, Prometheus metrics, health, and the console page, behind
//! the token and the cross-site checks of [`guard`].

mod api;
pub mod certificates;
mod console;
pub mod deploy_diff;
pub mod guard;
mod history;
mod reply;
pub mod revision_stats;
mod traffic;
mod view;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::State;

pub(crate) use api::answer;
pub use traffic::{ShareView, TrafficView, proxy_url, traffic_view};
pub use view::{InstanceView, ServiceView, view};

/// Open admin connections at most; beyond it new ones wait in the listen backlog, so a flood of
/// idle sockets cannot take every file descriptor.
const MAX_CONNECTIONS: usize = 256;
/// A request head (request line and headers) larger than this is answered 431.
const MAX_HEADER_BYTES: usize = 32 * 1024;
const MAX_HEADERS: usize = 64;

/// Serves the admin API on `listener` until `shutdown`.
///
/// HTTP/1.1 only: hyper's protocol sniffing for HTTP/2 runs before its header-read timer, so a
/// connection that stays silent would never be closed; the API and the console need no HTTP/2.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("admin listener has no address: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let header_read_timeout = state.config.load().admin.header_read_timeout;
        let state = state.clone();
        let svc = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, local, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS)
            .serve_connection(TokioIo::new(stream), svc);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
}

async fn handle(
    state: &Arc<State>,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    // Probes and scrapers reach these by whatever name their network gives wakeway; they change
    // nothing and need no token.
    let open = matches!(path, "/healthz" | "/metrics");
    let config = state.config.load();
    let admin = &config.admin;
    let checked = (|| {
        if !open {
            guard::check_host(req.uri(), req.headers(), local.ip(), &admin.hosts)?;
        }
        if guard::changes_state(req.method()) {
            guard::check_write(req.headers())?;
        }
        if path.starts_with("/v1")
            && let Some(token) = &admin.token
            && !guard::authorized(req.headers(), token)
        {
            return Err(guard::Refusal::Token);
        }
        Ok(())
    })();
    if let Err(refusal) = checked {
        let mut r = reply::json_error(refusal.status(), &refusal.message());
        if refusal == guard::Refusal::Token {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
        }
        return r;
    }
    if let Some(page) = console::asset(req.method(), path) {
        return page;
    }
    api::handle(state, req).await
}
