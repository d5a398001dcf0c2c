//! The JSON shapes of services and instances that the API serves and the console draws.

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::events::rfc3339;
use crate::service::Service;

#[derive(Serialize)]
pub struct ServiceView {
    pub name: String,
    pub runtime: &'static str,
    /// The latest revision.
    pub revision: String,
    /// The revisions that take traffic, with their shares and tags.
    pub traffic: Vec<ShareSummary>,
    pub paused: bool,
    pub hosts: Vec<String>,
    pub desired: u32,
    pub in_flight: usize,
    pub queued: usize,
    /// Requests answered since start, every status (the console derives requests/s from it).
    pub requests: u64,
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

pub fn view(svc: &Service) -> ServiceView {
    let cfg = svc.config.load();
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
        hosts: cfg.hosts.clone(),
        desired: svc.desired.load(Ordering::SeqCst),
        in_flight: svc.in_flight(),
        queued: svc.queued(),
        requests: svc.metrics.requests_total(),
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
