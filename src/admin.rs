//! The admin listener: health, Prometheus metrics, and the JSON view of services and events.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::events::rfc3339;
use crate::service::Service;

#[derive(Serialize)]
pub struct ServiceView {
    pub name: String,
    pub runtime: &'static str,
    pub hosts: Vec<String>,
    pub desired: u32,
    pub in_flight: usize,
    pub queued: usize,
    pub instances: Vec<InstanceView>,
}

#[derive(Serialize)]
pub struct InstanceView {
    pub id: String,
    pub revision: String,
    pub address: String,
    pub state: &'static str,
    pub in_flight: u32,
    pub started_at: String,
    pub pid: Option<u32>,
}

pub fn view(svc: &Service) -> ServiceView {
    let cfg = svc.config.load();
    ServiceView {
        name: svc.name.clone(),
        runtime: svc.runtime,
        hosts: cfg.hosts.clone(),
        desired: svc.desired.load(std::sync::atomic::Ordering::SeqCst),
        in_flight: svc.in_flight(),
        queued: svc.queued(),
        instances: svc
            .instances
            .load()
            .iter()
            .map(|i| InstanceView {
                id: i.id.clone(),
                revision: i.revision.clone(),
                address: i.address.to_string(),
                state: i.state().as_str(),
                in_flight: i.in_flight(),
                started_at: rfc3339(i.started_at),
                pid: i.pid,
            })
            .collect(),
    }
}

pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: CancellationToken) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
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
        let state = state.clone();
        let svc = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(&state, req)) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        tokio::spawn(conn);
    }
}

fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/');
    let query = req.uri().query().unwrap_or("");
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here\n");
    }
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["", "healthz"] => text(StatusCode::OK, "ok\n"),
        ["", "metrics"] => {
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        ["", "v1", "services"] => {
            let services = state.services.load();
            json(StatusCode::OK, &services.iter().map(|s| view(s)).collect::<Vec<_>>())
        }
        ["", "v1", "services", name] => match state.service(name) {
            Some(s) => json(StatusCode::OK, &view(&s)),
            None => json_error(StatusCode::NOT_FOUND, &format!("no service named `{name}`")),
        },
        ["", "v1", "events"] => {
            let service = query_param(query, "service");
            let after = match query_param(query, "after").map(|a| a.parse::<u64>()) {
                None => 0,
                Some(Ok(a)) => a,
                Some(Err(_)) => {
                    return json_error(StatusCode::BAD_REQUEST, "`after` must be a sequence number");
                }
            };
            json(StatusCode::OK, &state.events.list(service.as_deref(), after))
        }
        _ => json_error(StatusCode::NOT_FOUND, &format!("no admin endpoint at `{path}`")),
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).expect("views serialize");
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}
