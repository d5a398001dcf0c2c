//! The traffic endpoints: how a service's requests are shared among its revisions
//! (`GET`/`PUT /v1/services/{name}/traffic`) and gradual rollouts (`POST .../promote`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use crate::State;
use crate::config::{TrafficTarget, parse_duration};
use crate::service::Service;
use crate::service::command::{Command, RolloutPlan, RolloutView};
use crate::service::instance::InstanceState;

use super::reply::{json, json_error};

const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
const DEFAULT_MAX_ERROR_RATE: f64 = 0.05;

#[derive(Serialize)]
pub struct TrafficView {
    pub service: String,
    /// The latest revision: where `latest` entries send their share.
    pub latest: String,
    pub traffic: Vec<ShareView>,
    pub rollout: Option<RolloutView>,
}

#[derive(Serialize)]
pub struct ShareView {
    pub revision: String,
    /// Reached through a `latest` entry.
    pub latest: bool,
    pub percent: u32,
    /// The first tag, and all of them.
    pub tag: Option<String>,
    pub tags: Vec<String>,
    /// The host the first tag gives the revision (`tag--host`).
    pub host: Option<String>,
    /// That host on the proxy's first listener (HTTPS when there is one).
    pub url: Option<String>,
    pub ready: u32,
    pub desired: u32,
}

/// `http://HOST:PORT/` on the proxy's first listener (`https://` on its first HTTPS one, when
/// it has one), the port left out when it is the scheme's own.
pub fn proxy_url(state: &State, host: &str) -> Option<String> {
    let (scheme, addr, default) = match (state.https_addrs.first(), state.proxy_addrs.first()) {
        (Some(a), _) => ("https", a, 443),
        (None, Some(a)) => ("http", a, 80),
        (None, None) => return None,
    };
    Some(match addr.port() {
        p if p == default => format!("{scheme}://{host}/"),
        p => format!("{scheme}://{host}:{p}/"),
    })
}

pub fn traffic_view(state: &State, svc: &Service) -> TrafficView {
    let traffic = svc.traffic.load();
    let instances = svc.instances.load();
    let host = svc.config.load().hosts.iter().find(|h| *h != "*").cloned();
    let shares = traffic
        .shares
        .iter()
        .map(|s| ShareView {
            revision: s.lane.revision.clone(),
            latest: s.latest,
            percent: s.percent,
            tag: s.tags.first().cloned(),
            tags: s.tags.clone(),
            host: match (s.tags.first(), &host) {
                (Some(t), Some(h)) => Some(format!("{t}--{h}")),
                _ => None,
            },
            url: match (s.tags.first(), &host) {
                (Some(t), Some(h)) => proxy_url(state, &format!("{t}--{h}")),
                _ => None,
            },
            ready: instances
                .iter()
                .filter(|i| i.revision == s.lane.revision && i.state() == InstanceState::Ready)
                .count() as u32,
            desired: s.lane.desired(),
        })
        .collect();
    TrafficView {
        service: svc.name.clone(),
        latest: svc.revision(),
        traffic: shares,
        rollout: svc.rollout.load().as_ref().clone(),
    }
}

/// One entry of a `PUT .../traffic` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    revision: Option<String>,
    #[serde(default)]
    latest: bool,
    percent: u32,
    tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficBody {
    traffic: Vec<Entry>,
}

/// The traffic a `PUT` body asks for; each entry names a revision or `latest`.
pub(super) fn traffic_request(body: &[u8]) -> Result<Vec<TrafficTarget>, String> {
    let req: TrafficBody =
        serde_json::from_slice(body).map_err(|e| format!("traffic body: {e}"))?;
    if req.traffic.is_empty() {
        return Err("traffic body: give at least one entry".into());
    }
    req.traffic
        .into_iter()
        .enumerate()
        .map(|(k, e)| match (e.revision, e.latest) {
            (Some(_), true) => Err(format!(
                "traffic entry {k}: give `revision` or `latest: true`, not both"
            )),
            (None, false) => Err(format!(
                "traffic entry {k}: give `revision` (such as \"web-00002\") or `latest: true`"
            )),
            (revision, _) => Ok(TrafficTarget {
                revision,
                percent: e.percent,
                tag: e.tag,
            }),
        })
        .collect()
}

pub(super) async fn set_traffic(
    state: &State,
    svc: &Service,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let traffic = match traffic_request(body) {
        Ok(t) => t,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    match svc
        .ask(|reply| Command::SetTraffic {
            traffic,
            trigger: crate::service::command::Trigger::Api,
            reply,
        })
        .await
    {
        Ok(()) => json(StatusCode::OK, &traffic_view(state, svc)),
        Err(e) => json_error(StatusCode::CONFLICT, &e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    revision: Option<String>,
    steps: Option<Vec<u32>>,
    interval: Option<String>,
    max_error_rate: Option<f64>,
    max_probe_failures: Option<u32>,
}

pub(super) async fn promote(svc: &Service, body: &[u8]) -> Response<Full<Bytes>> {
    let req: PromoteBody = if body.iter().all(|b| b.is_ascii_whitespace()) {
        PromoteBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("promote body: {e}")),
        }
    };
    let interval = match req.interval.as_deref().map(parse_duration) {
        None => DEFAULT_INTERVAL,
        Some(Ok(d)) => d,
        Some(Err(e)) => return json_error(StatusCode::BAD_REQUEST, &format!("interval: {e}")),
    };
    let plan = RolloutPlan {
        revision: req.revision,
        steps: req.steps.unwrap_or_default(),
        interval,
        max_error_rate: req.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE),
        max_probe_failures: req.max_probe_failures.unwrap_or(0),
    };
    match svc.ask(|reply| Command::Promote { plan, reply }).await {
        Ok(view) => json(StatusCode::ACCEPTED, &view),
        Err(e) => json_error(StatusCode::CONFLICT, &e),
    }
}
