//! Demand across replicas: each replica serves its own counts on its internal endpoint, and the
//! leader pulls every member's a few times a second, sums them per revision and hands the sum
//! to each service's controller (`service::remote`). No etcd write per request.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::service::Service;
use crate::service::remote::Load;

/// How often the leader pulls; a sum is at most this (plus one answer's time) old.
pub const PULL_EVERY: Duration = Duration::from_millis(300);
/// A member that does not answer within this counts as having no demand.
pub const PULL_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionDemand {
    pub in_flight: u32,
    pub queued: u32,
    /// Milliseconds since a request last started or ended at this revision here.
    pub quiet_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDemand {
    pub revisions: BTreeMap<String, RevisionDemand>,
    /// In-flight requests per instance, where there are any.
    #[serde(default)]
    pub instances: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub member: String,
    pub services: BTreeMap<String, ServiceDemand>,
    /// Requests this replica has served, for each member's share of the traffic.
    pub served: u64,
}

/// This replica's demand.
pub fn collect(member: &str, services: &[Arc<Service>]) -> Report {
    let mut report = Report {
        member: member.to_string(),
        ..Default::default()
    };
    for svc in services {
        let instances = svc.instances.load();
        let mut d = ServiceDemand::default();
        for lane in svc.traffic.load().lanes() {
            let in_flight = instances
                .iter()
                .filter(|i| i.revision == lane.revision)
                .map(|i| i.in_flight())
                .sum();
            d.revisions.insert(
                lane.revision.clone(),
                RevisionDemand {
                    in_flight,
                    queued: lane.queued() as u32,
                    quiet_ms: lane.quiet_for().as_millis() as u64,
                },
            );
            report.served += lane.totals(instances.iter()).0;
        }
        for i in instances.iter().filter(|i| i.in_flight() > 0) {
            d.instances.insert(i.id.clone(), i.in_flight());
        }
        report.services.insert(svc.name.clone(), d);
    }
    report
}

/// Sums the other members' reports into each service's remote load, and marks a revision
/// active here when it was active elsewhere more recently (its idle clock is the fleet's).
pub fn apply(services: &[Arc<Service>], reports: &[Report]) {
    for svc in services {
        let mut loads: HashMap<String, Load> = HashMap::new();
        let mut instances: HashMap<String, u32> = HashMap::new();
        let mut quiet: HashMap<&str, u64> = HashMap::new();
        for r in reports {
            let Some(d) = r.services.get(&svc.name) else {
                continue;
            };
            for (rev, x) in &d.revisions {
                let l = loads.entry(rev.clone()).or_default();
                l.in_flight += x.in_flight;
                l.queued += x.queued;
                let q = quiet.entry(rev.as_str()).or_insert(u64::MAX);
                *q = (*q).min(x.quiet_ms);
            }
            for (id, n) in &d.instances {
                *instances.entry(id.clone()).or_default() += n;
            }
        }
        for lane in svc.traffic.load().lanes() {
            let busy = loads
                .get(&lane.revision)
                .is_some_and(|l| l.in_flight + l.queued > 0);
            let recent = quiet
                .get(lane.revision.as_str())
                .is_some_and(|q| Duration::from_millis(*q) < lane.quiet_for());
            if busy || recent {
                lane.touch();
            }
        }
        svc.remote.set(loads, instances);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_sum_per_revision_and_instance() {
        let mk = |inf, q, inst: &str| {
            let mut d = ServiceDemand::default();
            d.revisions.insert(
                "web-1".into(),
                RevisionDemand {
                    in_flight: inf,
                    queued: q,
                    quiet_ms: 10,
                },
            );
            d.instances.insert(inst.into(), inf);
            let mut r = Report::default();
            r.services.insert("web".into(), d);
            r
        };
        let cfg = crate::config::ServiceConfig::new(
            "web",
            vec!["web".into()],
            crate::config::Source::Command(vec!["app".into()]),
        );
        let svc = Service::new(
            cfg,
            crate::metrics::Metrics::new().service("web"),
            Arc::new(crate::events::EventLog::default()),
        );
        apply(&[svc.clone()], &[mk(2, 1, "web-1-a"), mk(3, 0, "web-1-a")]);
        assert_eq!(
            svc.remote.load_of("web-1"),
            Load {
                in_flight: 5,
                queued: 1
            }
        );
        assert_eq!(svc.remote.in_flight_at("web-1-a"), 5);
        assert_eq!(svc.remote.load_of("web-2"), Load::default());
    }
}
