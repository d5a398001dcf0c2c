//! Membership: each replica's key `{prefix}/members/{name}` (its internal endpoint), attached to
//! its lease so that a dead replica leaves by itself, and the list every replica keeps of them.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::State;

/// How often the member list is read again.
pub const LIST_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    /// `host:port` of its internal endpoint.
    pub advertise: String,
}

/// A member as this replica knows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub record: Record,
    /// When this replica last heard from it: its key read from etcd, or its demand answered.
    pub last_seen: Instant,
    /// Requests it has served, as its last demand report said (the leader pulls them).
    pub served: u64,
}

/// Writes this replica's member key under each new lease, and reads the list.
pub async fn run(cluster: Arc<Cluster>, state: Arc<State>, stop: CancellationToken) {
    let mut lease = cluster.lease.subscribe();
    let mut registered: Option<i64> = None;
    let key = cluster.key(&format!("members/{}", cluster.config.name));
    let me = Record {
        name: cluster.config.name.clone(),
        advertise: cluster.config.advertise.clone(),
    };
    let value = serde_json::to_vec(&me).unwrap_or_default();
    loop {
        let held = *lease.borrow_and_update();
        if let Some(l) = held
            && registered != Some(l)
        {
            match cluster.etcd.put(&key, value.clone(), l).await {
                Ok(()) => registered = Some(l),
                Err(e) => tracing::debug!("cluster: cannot register: {e}"),
            }
        }
        match cluster.etcd.get_prefix(&cluster.key("members/")).await {
            Ok((kvs, _)) => {
                cluster.etcd_reachable(true);
                let now = Instant::now();
                let old = cluster.members.load_full();
                let list: Vec<Member> = kvs
                    .iter()
                    .filter_map(|kv| serde_json::from_slice::<Record>(&kv.value).ok())
                    .map(|record| {
                        let served = old
                            .iter()
                            .find(|m| m.record.name == record.name)
                            .map_or(0, |m| m.served);
                        Member {
                            record,
                            last_seen: now,
                            served,
                        }
                    })
                    .collect();
                // Each replica enforces its share of every per-instance limit.
                for svc in state.services.load().iter() {
                    svc.remote.set_replicas(list.len());
                }
                cluster.members.store(Arc::new(list));
            }
            Err(e) => {
                cluster.etcd_reachable(false);
                tracing::debug!("cluster: cannot list members: {e}");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = lease.changed() => {}
            _ = tokio::time::sleep(LIST_EVERY) => {}
        }
    }
}
