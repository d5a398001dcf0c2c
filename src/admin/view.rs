//! The JSON shapes of services and instances that the API serves and the console draws.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::events::rfc3339;
use crate::history::Recent;
use crate::service::Service;
use crate::service::instance::InstanceState;

#[derive(Serialize)]
pub struct ServiceView {
    pub name: String,
    pub runtime: &'static str,
    /// The latest revision.
    pub revision: String,
    /// The revisions that take traffic, with their shares and tags.
    pub traffic: Vec<ShareSummary>,
    pub paused: bool,
    /// `running`, `starting`, `frozen`, `idle`, `paused` or `failing`.
    pub state: &'static str,
    /// Why it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub hosts: Vec<String>,
    pub desired: u32,
    pub in_flight: usize,
    pub queued: usize,
    /// Requests answered since start, every status (the console derives requests/s from it).
    pub requests: u64,
    /// Answers per second, error percentages and latency of the last seconds.
    pub recent: Recent,
    pub instances: Vec<InstanceView>,
}

#[derive(Serialize)]
pub struct ShareSummary {
    pub revision: String,
    pub percent: u32,
    pub tags: Vec<String>,
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

/// What a person would call the service's state. Failing wins over running: instances that
/// answer every request with a 5xx, or that cannot start, are not a service at work.
fn state_of(svc: &Service) -> (&'static str, Option<String>) {
    if svc.is_paused() {
        return ("paused", None);
    }
    let traffic = svc.traffic.load();
    if let Some((rev, why)) = traffic
        .lanes()
        .find_map(|l| l.start_failure().map(|why| (l.revision.clone(), why)))
    {
        return ("failing", Some(format!("{rev} cannot start: {why}")));
    }
    let (answers, errors) = svc.history.last_minute();
    if answers > 0 && errors * 2 >= answers {
        return (
            "failing",
            Some(format!(
                "{errors} of the last minute's {answers} answers were 5xx"
            )),
        );
    }
    // Draining or unhealthy instances alone are on their way out: the service is idle.
    let instances = svc.instances.load();
    let any = |s: InstanceState| instances.iter().any(|i| i.state() == s);
    if any(InstanceState::Ready) {
        ("running", None)
    } else if any(InstanceState::Starting) {
        ("starting", None)
    } else if any(InstanceState::Frozen) {
        ("frozen", None)
    } else {
        ("idle", None)
    }
}

pub fn view(svc: &Service) -> ServiceView {
    let cfg = svc.config.load();
    let (state, state_reason) = state_of(svc);
    ServiceView {
        name: svc.name.clone(),
        runtime: svc.runtime.as_str(),
        revision: svc.revision(),
        traffic: svc
            .traffic
            .load()
            .shares
            .iter()
            .map(|s| ShareSummary {
                revision: s.lane.revision.clone(),
                percent: s.percent,
                tags: s.tags.clone(),
            })
            .collect(),
        paused: svc.is_paused(),
        state,
        state_reason,
        hosts: cfg.hosts.clone(),
        desired: svc.desired.load(Ordering::SeqCst),
        in_flight: svc.in_flight(),
        queued: svc.queued(),
        requests: svc.metrics.requests_total(),
        recent: svc.history.recent(),
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
