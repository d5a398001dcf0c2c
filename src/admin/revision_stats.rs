//! Per-revision figures, read from the services' traffic when `/metrics` is scraped: the share
//! each revision takes, its instances, and its answers (5xx apart). Nothing is kept per revision
//! on the request path beyond the instance counters the lanes sum.

use std::sync::Arc;

use prometheus::proto::{Metric, MetricFamily, MetricType};

use crate::metrics::proto::{self, family};
use crate::metrics::{
    REVISION_DESIRED_INSTANCES, REVISION_ERRORS_TOTAL, REVISION_READY_INSTANCES,
    REVISION_REQUESTS_TOTAL, REVISION_TRAFFIC_PERCENT,
};
use crate::service::Service;
use crate::service::instance::InstanceState;

fn gauge(service: &str, revision: &str, v: f64) -> Metric {
    proto::gauge(&[("revision", revision), ("service", service)], v)
}

fn counter(service: &str, revision: &str, v: u64) -> Metric {
    proto::counter(&[("revision", revision), ("service", service)], v)
}

/// The per-revision families of every revision that takes traffic (or has a tag).
pub fn families(services: &[Arc<Service>]) -> Vec<MetricFamily> {
    let (mut percent, mut ready, mut desired, mut requests, mut errors) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for svc in services {
        let traffic = svc.traffic.load();
        let instances = svc.instances.load();
        for share in &traffic.shares {
            let rev = share.lane.revision.as_str();
            if rev.is_empty() {
                continue; // before the controller's first traffic
            }
            let mine = || instances.iter().filter(move |i| i.revision == rev);
            let n = mine().filter(|i| i.state() == InstanceState::Ready).count();
            let (served, failed) = share.lane.totals(mine());
            percent.push(gauge(&svc.name, rev, share.percent as f64));
            ready.push(gauge(&svc.name, rev, n as f64));
            desired.push(gauge(&svc.name, rev, share.lane.desired() as f64));
            requests.push(counter(&svc.name, rev, served));
            errors.push(counter(&svc.name, rev, failed));
        }
    }
    vec![
        family(
            REVISION_TRAFFIC_PERCENT,
            "The share of the service's requests (without a tag) a revision takes.",
            MetricType::GAUGE,
            percent,
        ),
        family(
            REVISION_READY_INSTANCES,
            "Ready instances of a revision that takes traffic.",
            MetricType::GAUGE,
            ready,
        ),
        family(
            REVISION_DESIRED_INSTANCES,
            "Instances a revision's autoscaler wants.",
            MetricType::GAUGE,
            desired,
        ),
        family(
            REVISION_REQUESTS_TOTAL,
            "Requests (and tunnels) a revision's instances finished.",
            MetricType::COUNTER,
            requests,
        ),
        family(
            REVISION_ERRORS_TOTAL,
            "5xx answers from a revision's instances (or from wakeway for them).",
            MetricType::COUNTER,
            errors,
        ),
    ]
}
