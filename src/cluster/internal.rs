//! The internal endpoint, on `cluster.advertise`: what the replicas ask each other. Its demand
//! (the leader pulls it), a wake (a follower has requests waiting at a service at zero), and
//! admin calls a follower forwarded to the leader, which answers them as its own.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::State;

const MAX_BODY: usize = 1 << 20;

/// A follower's wake call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wake {
    pub service: String,
    pub revision: String,
    pub queued: u32,
}

/// How the leader answers an admin call a follower forwarded: the admin API's own handler,
/// handed in by the app so that the cluster does not depend on the admin module.
pub type AdminAnswer = Arc<
    dyn Fn(
            Arc<State>,
            Method,
            String,
            String,
            Bytes,
        ) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    admin: AdminAnswer,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("cluster: internal accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (state, admin) = (state.clone(), admin.clone());
        let svc = service_fn(move |req| {
            let (state, admin) = (state.clone(), admin.clone());
            async move { Ok::<_, Infallible>(handle(&state, &admin, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(std::time::Duration::from_secs(5))
            .serve_connection(TokioIo::new(stream), svc);
        tokio::spawn(conn);
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(
    state: &Arc<State>,
    admin: &AdminAnswer,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(cluster) = state.cluster.clone() else {
        return reply(StatusCode::NOT_FOUND, "no cluster");
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/cluster/demand") => {
            let report = super::demand::collect(&cluster.config.name, &state.services.load_full());
            reply(
                StatusCode::OK,
                serde_json::to_vec(&report).unwrap_or_default(),
            )
        }
        (&Method::POST, "/cluster/wake") => {
            if !cluster.leading() {
                return reply(StatusCode::CONFLICT, "not the leader");
            }
            let Ok(wake) = serde_json::from_slice::<Wake>(&body) else {
                return reply(StatusCode::BAD_REQUEST, "not a wake");
            };
            let Some(svc) = state.service(&wake.service) else {
                return reply(StatusCode::NOT_FOUND, "no such service");
            };
            svc.remote.add_queued(&wake.revision, wake.queued);
            svc.poke();
            reply(StatusCode::OK, "")
        }
        (_, p) if p.starts_with("/cluster/admin/") => {
            if !cluster.leading() {
                return reply(StatusCode::CONFLICT, "not the leader");
            }
            cluster.until_acting().await;
            let path = &p["/cluster/admin".len()..];
            admin(state.clone(), method, path.to_string(), query, body).await
        }
        _ => reply(StatusCode::NOT_FOUND, "no such route"),
    }
}
