//! The admin API: health, Prometheus metrics, the JSON view of services and events, and the
//! release operations (deploy, rollback, pause/resume, reload).

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::State;
use crate::config::{ServiceConfig, Source};
use crate::service::Service;
use crate::service::command::{Command, DeployOptions};

use super::certificates;
use super::history::{number, query_param};
use super::reply::{json, json_error};
use super::traffic::{self, traffic_view};
use super::view::view;

/// Largest admin request body (a deployment's JSON).
const MAX_BODY: usize = 1 << 20;
/// A request body must arrive within this long: the header-read timeout does not cover it, and
/// a client trickling a body would otherwise hold its connection open for good.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) async fn handle(state: &Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let collect = http_body_util::Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return json_error(StatusCode::BAD_REQUEST, &format!("request body: {e}")),
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
            );
        }
    };
    dispatch(state, method, &path, &query, body).await
}

/// Answers one API call whose body has arrived: a local one, or (in a cluster) one a follower
/// forwarded to the leader, which applies it as its own.
pub(crate) async fn dispatch(
    state: &Arc<State>,
    method: Method,
    path: &str,
    query: &str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    if let Some(forwarded) = crate::cluster::forward_admin(state, &method, path, query, &body).await
    {
        return forwarded;
    }
    answer(state, method, path, query, body).await
}

/// Answers one API call here, whatever the cluster's leader.
pub(crate) async fn answer(
    state: &Arc<State>,
    method: Method,
    path: &str,
    query: &str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let segments: Vec<&str> = path.split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["", "healthz"]) => match crate::cluster::health_detail(state) {
            None => text(StatusCode::OK, "ok\n"),
            Some(detail) => text(StatusCode::OK, &format!("ok\n{detail}\n")),
        },
        (&Method::GET, ["", "v1", "cluster"]) => match &state.cluster {
            Some(c) => json(StatusCode::OK, &c.view()),
            None => json_error(
                StatusCode::NOT_FOUND,
                "this wakeway runs alone: its config has no [cluster]",
            ),
        },
        (&Method::GET, ["", "metrics"]) => {
            state.sample_gauges();
            crate::admin::certificates::sample(state);
            let revisions = crate::admin::revision_stats::families(&state.services.load());
            let mut r = Response::new(Full::new(Bytes::from(state.metrics.render(revisions))));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, ["", "v1", "services"]) => {
            let services = state.services.load();
            json(
                StatusCode::OK,
                &services.iter().map(|s| view(s)).collect::<Vec<_>>(),
            )
        }
        (&Method::GET, ["", "v1", "services", name]) => match state.service(name) {
            Some(s) => json(StatusCode::OK, &view(&s)),
            None => no_service(name),
        },
        (&Method::GET, ["", "v1", "services", name, "deployments"]) => match state.service(name) {
            Some(s) => json(StatusCode::OK, &s.deployments.list()),
            None => no_service(name),
        },
        (&Method::GET, ["", "v1", "services", name, "deployments", id]) => {
            match state.service(name).map(|s| s.deployments.get(id)) {
                Some(Some(d)) => json(StatusCode::OK, &d),
                Some(None) => json_error(StatusCode::NOT_FOUND, &format!("no deployment `{id}`")),
                None => no_service(name),
            }
        }
        (&Method::GET, ["", "v1", "services", name, "revisions"]) => match state.service(name) {
            Some(s) => json(StatusCode::OK, s.revisions.load().as_ref()),
            None => no_service(name),
        },
        (&Method::POST, ["", "v1", "services", name, "deployments"]) => {
            let Some(svc) = state.service(name) else {
                return no_service(name);
            };
            let (config, options, dry_run) = match deployment_request(&svc, &body) {
                Ok(c) => c,
                Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
            };
            if dry_run {
                let changes = super::deploy_diff::changes(&svc.config.load(), &config);
                return json(StatusCode::OK, &serde_json::json!({ "changes": changes }));
            }
            let asked = svc
                .ask(|reply| Command::Deploy {
                    config: Box::new(config),
                    trigger: crate::service::command::Trigger::Api,
                    options,
                    reply,
                })
                .await;
            accepted(&svc, asked)
        }
        (&Method::GET, ["", "v1", "services", name, "traffic"]) => match state.service(name) {
            Some(s) => json(StatusCode::OK, &traffic_view(state, &s)),
            None => no_service(name),
        },
        (&Method::PUT, ["", "v1", "services", name, "traffic"]) => match state.service(name) {
            Some(s) => traffic::set_traffic(state, &s, &body).await,
            None => no_service(name),
        },
        (&Method::POST, ["", "v1", "services", name, "promote"]) => match state.service(name) {
            Some(s) => traffic::promote(&s, &body).await,
            None => no_service(name),
        },
        (&Method::POST, ["", "v1", "services", name, "rollback"]) => {
            let Some(svc) = state.service(name) else {
                return no_service(name);
            };
            let asked = svc.ask(|reply| Command::Rollback { reply }).await;
            accepted(&svc, asked)
        }
        (&Method::POST, ["", "v1", "services", name, verb @ ("pause" | "resume")]) => {
            let Some(svc) = state.service(name) else {
                return no_service(name);
            };
            let asked = if *verb == "pause" {
                svc.ask(|reply| Command::Pause { reply }).await
            } else {
                svc.ask(|reply| Command::Resume { reply }).await
            };
            match asked {
                Ok(()) => json(StatusCode::OK, &view(&svc)),
                Err(e) => json_error(StatusCode::CONFLICT, &e),
            }
        }
        (&Method::GET, ["", "v1", "certificates"]) => {
            json(StatusCode::OK, &certificates::list(state))
        }
        (&Method::POST, ["", "v1", "reload"]) => match state.reload().await {
            Ok(report) => json(StatusCode::OK, &report),
            Err(e) => json_error(StatusCode::BAD_REQUEST, &e),
        },
        (&Method::GET, ["", "v1", "events"]) => {
            let service = query_param(&query, "service");
            let after = match query_param(&query, "after").map(|a| a.parse::<u64>()) {
                None => 0,
                Some(Ok(a)) => a,
                Some(Err(_)) => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "`after` must be a sequence number",
                    );
                }
            };
            json(
                StatusCode::OK,
                &state.events.list(service.as_deref(), after),
            )
        }
        (&Method::GET, ["", "v1", "services", name, "logs"]) => match state.service(name) {
            Some(_) => service_logs(name, &query),
            None => no_service(name),
        },
        (&Method::GET, ["", "v1", "services", name, "history"]) => match state.service(name) {
            Some(s) => super::history::history(&s, &query),
            None => no_service(name),
        },
        (&Method::GET, ["", "v1", "services", name, "access"]) => match state.service(name) {
            Some(s) => super::history::access(state, &s, &query),
            None => no_service(name),
        },
        (_, ["", "healthz"] | ["", "metrics"] | ["", "v1", ..]) if known_path(&segments) => {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} is not allowed on `{path}`"),
            )
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            &format!("no admin endpoint at `{path}`"),
        ),
    }
}

fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["", "healthz"]
            | ["", "metrics"]
            | ["", "v1", "services"]
            | ["", "v1", "services", _]
            | [
                "",
                "v1",
                "services",
                _,
                "deployments"
                    | "rollback"
                    | "pause"
                    | "resume"
                    | "revisions"
                    | "traffic"
                    | "promote"
                    | "logs"
                    | "history"
                    | "access"
            ]
            | ["", "v1", "reload" | "events" | "certificates"]
    )
}

/// Builds the config of a deployment from the live revision and the JSON body's changes, and
/// how it treats the traffic.
fn deployment_request(
    svc: &Service,
    body: &[u8],
) -> Result<(ServiceConfig, DeployOptions, bool), String> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Body {
        image: Option<String>,
        command: Option<Vec<String>>,
        /// The whole environment, replacing the live one.
        env: Option<std::collections::BTreeMap<String, String>>,
        /// Variables set or changed; the others stay.
        #[serde(default)]
        update_env: std::collections::BTreeMap<String, String>,
        /// Variables removed; naming one that is not set is an error (a typo would go unseen).
        #[serde(default)]
        remove_env: Vec<String>,
        #[serde(default)]
        no_traffic: bool,
        tag: Option<String>,
        /// Only say what would change.
        #[serde(default)]
        dry_run: bool,
    }
    let req: Body = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Body::default()
    } else {
        serde_json::from_slice(body).map_err(|e| format!("deployment body: {e}"))?
    };
    let mut cfg = svc.config.load().as_ref().clone();
    match (req.image, req.command, &mut cfg.source) {
        (Some(_), Some(_), _) => return Err("give `image` or `command`, not both".into()),
        (Some(image), None, Source::Image(src)) => src.image = image,
        (Some(_), None, _) => {
            return Err(format!(
                "`image` applies to docker services; `{}` runs on the {} runtime",
                svc.name, svc.runtime
            ));
        }
        (None, Some(cmd), Source::Command(c)) => {
            if cmd.is_empty() || cmd[0].is_empty() {
                return Err("`command` must name a program".into());
            }
            *c = cmd
        }
        (None, Some(_), _) => {
            return Err(format!(
                "`command` applies to process services; `{}` runs on the {} runtime",
                svc.name, svc.runtime
            ));
        }
        (None, None, _) => {}
    }
    if req.env.is_some() && !(req.update_env.is_empty() && req.remove_env.is_empty()) {
        return Err(
            "give `env` (the whole environment) or `update_env`/`remove_env`, not both".into(),
        );
    }
    if let Some(env) = req.env {
        cfg.env = env;
    }
    for key in &req.remove_env {
        if cfg.env.remove(key).is_none() {
            return Err(format!("remove_env: `{key}` is not set"));
        }
    }
    cfg.env.extend(req.update_env);
    crate::config::validate_service(&cfg).map_err(|e| e.to_string())?;
    let options = DeployOptions {
        no_traffic: req.no_traffic,
        tag: req.tag,
    };
    Ok((cfg, options, req.dry_run))
}

fn accepted(svc: &Service, asked: Result<String, String>) -> Response<Full<Bytes>> {
    match asked {
        Ok(id) => match svc.deployments.get(&id) {
            Some(d) => json(StatusCode::ACCEPTED, &d),
            None => json(StatusCode::ACCEPTED, &serde_json::json!({ "id": id })),
        },
        Err(e) => json_error(StatusCode::CONFLICT, &e),
    }
}

/// `GET /v1/services/{name}/logs?instance=&revision=&after=SEQ&tail=N`: what the service's
/// instances wrote, oldest first (`tail` defaults to 100 lines).
fn service_logs(name: &str, query: &str) -> Response<Full<Bytes>> {
    let (after, tail) = match (number(query, "after", 0), number(query, "tail", 100)) {
        (Ok(a), Ok(t)) => (a, t),
        (Err(e), _) | (_, Err(e)) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let instance = query_param(query, "instance");
    let revision = query_param(query, "revision");
    let q = crate::runtime::output::Query {
        instance: instance.as_deref(),
        revision: revision.as_deref(),
        after,
        tail: Some(tail as usize),
    };
    json(StatusCode::OK, &crate::runtime::output::lines(name, &q))
}

fn no_service(name: &str) -> Response<Full<Bytes>> {
    json_error(StatusCode::NOT_FOUND, &format!("no service named `{name}`"))
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r
}
