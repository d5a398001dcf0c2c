//! The fleet view: what the leader publishes of each service at `{prefix}/fleet/{service}` —
//! its revisions, its traffic (shares and tags) and its routable instances — and how a follower
//! turns it into its own lanes and pools. An instance that starts draining leaves the view
//! before it is stopped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::service::Service;
use crate::service::instance::{Instance, InstanceState};
use crate::service::lane::Lane;
use crate::service::pool::Pool;
use crate::service::revision::RevisionView;
use crate::service::traffic::{Share, Traffic};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareEntry {
    pub revision: String,
    pub percent: u32,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub latest: bool,
    /// Instances of the revision starting: a follower's waiters know one is coming.
    #[serde(default)]
    pub starting: u32,
    #[serde(default)]
    pub desired: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceEntry {
    pub id: String,
    pub revision: String,
    pub address: SocketAddr,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetView {
    pub traffic: Vec<ShareEntry>,
    /// The routable instances (ready); starting, draining and frozen ones are not.
    pub instances: Vec<InstanceEntry>,
    #[serde(default)]
    pub paused: bool,
}

/// The view of `svc` as its controller left it.
pub fn of(svc: &Service) -> FleetView {
    let traffic = svc.traffic.load();
    let instances = svc.instances.load();
    let starting = |rev: &str| {
        instances
            .iter()
            .filter(|i| i.revision == rev && i.state() == InstanceState::Starting)
            .count() as u32
    };
    FleetView {
        traffic: traffic
            .shares
            .iter()
            .map(|s| ShareEntry {
                revision: s.lane.revision.clone(),
                percent: s.percent,
                tags: s.tags.clone(),
                latest: s.latest,
                starting: starting(&s.lane.revision),
                desired: s.lane.desired(),
            })
            .collect(),
        instances: instances
            .iter()
            .filter(|i| i.state() == InstanceState::Ready)
            .map(|i| InstanceEntry {
                id: i.id.clone(),
                revision: i.revision.clone(),
                address: i.address,
            })
            .collect(),
        paused: svc.is_paused(),
    }
}

pub fn encode(view: &FleetView) -> Vec<u8> {
    serde_json::to_vec(view).unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Result<FleetView, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("fleet view: {e}"))
}

/// Makes `svc` route as `view` says. Lanes and instances this replica already has are kept
/// (their wait queues and in-flight counts go on); new ones are made; the rest leave.
pub fn apply(svc: &Service, view: &FleetView) {
    let old = svc.traffic.load_full();
    let known: HashMap<String, Arc<Instance>> = svc
        .instances
        .load()
        .iter()
        .map(|i| (i.id.clone(), i.clone()))
        .collect();
    let mut instances = Vec::with_capacity(view.instances.len());
    for e in &view.instances {
        let inst = match known.get(&e.id) {
            Some(i) if i.address == e.address && i.revision == e.revision => i.clone(),
            _ => {
                let i = Arc::new(Instance::new(
                    e.id.clone(),
                    e.revision.clone(),
                    e.address,
                    None,
                ));
                i.set_state(InstanceState::Ready);
                i
            }
        };
        instances.push(inst);
    }
    for (id, inst) in &known {
        if !instances.iter().any(|i| Arc::ptr_eq(i, inst)) {
            // Requests that already hold it finish; no new one picks it.
            inst.set_state(InstanceState::Stopped);
            tracing::debug!("cluster: {} left the fleet view of {}", id, svc.name);
        }
    }
    svc.set_paused(view.paused);
    let shares: Vec<Share> = view
        .traffic
        .iter()
        .map(|t| {
            let lane = old
                .lane_of(&t.revision)
                .cloned()
                .unwrap_or_else(|| Lane::new(&t.revision));
            lane.set_starting(t.starting);
            lane.set_desired(t.desired);
            Share {
                lane,
                percent: t.percent,
                tags: t.tags.clone(),
                latest: t.latest,
            }
        })
        .collect();
    for share in &shares {
        let pool: Vec<Arc<Instance>> = instances
            .iter()
            .filter(|i| i.revision == share.lane.revision)
            .cloned()
            .collect();
        share.lane.pool.store(Arc::new(Pool::new(pool)));
        share.lane.wake_waiters();
    }
    let retired: Vec<Arc<Lane>> = old
        .lanes()
        .filter(|l| !shares.iter().any(|s| Arc::ptr_eq(&s.lane, l)))
        .cloned()
        .collect();
    if !shares.is_empty() {
        svc.traffic.store(Arc::new(Traffic::new(shares)));
        for lane in retired {
            lane.retire();
        }
    }
    svc.instances.store(Arc::new(instances));
    let latest = view
        .traffic
        .iter()
        .find(|t| t.latest)
        .map(|t| t.revision.clone());
    if let Some(latest) = latest
        && svc.revision() != latest
    {
        let mut revisions: Vec<RevisionView> = svc.revisions.load().as_ref().clone();
        if !revisions.iter().any(|r| r.id == latest) {
            revisions.push(RevisionView {
                id: latest,
                created_at: String::new(),
                changes: Vec::new(),
                source: String::new(),
            });
        }
        svc.revisions.store(Arc::new(revisions));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_survives_its_encoding() {
        let v = FleetView {
            traffic: vec![ShareEntry {
                revision: "web-2".into(),
                percent: 100,
                tags: vec!["next".into()],
                latest: true,
                starting: 1,
                desired: 2,
            }],
            instances: vec![InstanceEntry {
                id: "web-2-a".into(),
                revision: "web-2".into(),
                address: "127.0.0.1:8080".parse().unwrap(),
            }],
            paused: false,
        };
        assert_eq!(decode(&encode(&v)).unwrap(), v);
        assert!(decode(b"{").unwrap_err().contains("fleet view"));
    }
}
