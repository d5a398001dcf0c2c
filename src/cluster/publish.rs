//! The leader's side of the fleet view: each service's view is written to etcd when it changes
//! (checked every few tens of milliseconds, written only on a change), in a transaction fenced
//! on the leader key still being this replica's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::etcd::{proto::TxnRequest, txn};
use super::fleet::{self, FleetView};
use crate::State;

const LOOK_EVERY: Duration = Duration::from_millis(25);
/// After taking over, a service's view is held back until the adopted instances are ready
/// again (or this long passed), so followers do not drop instances that are still there.
const ADOPTION_HOLD: Duration = Duration::from_secs(5);

pub(super) async fn run(cluster: Arc<Cluster>, state: Arc<State>, stop: CancellationToken) {
    let mut published: HashMap<String, FleetView> = HashMap::new();
    let mut since: Option<(i64, Instant)> = None;
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let lease = cluster.role.borrow().leading;
        let Some(lease) = lease.filter(|_| !cluster.following.load(SeqCst)) else {
            since = None;
            continue;
        };
        let took_over = match since {
            Some((l, at)) if l == lease => at,
            _ => {
                // What followers route by now is what this leader last saw published.
                published = cluster
                    .views
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let now = Instant::now();
                since = Some((lease, now));
                now
            }
        };
        for svc in state.services.load().iter() {
            let view = fleet::of(svc);
            let before = published.get(&svc.name);
            if before == Some(&view) {
                continue;
            }
            let holding = took_over.elapsed() < ADOPTION_HOLD
                && before.is_some_and(|b| view.instances.len() < b.instances.len());
            if holding {
                continue;
            }
            match write(&cluster, lease, &svc.name, &view).await {
                Ok(true) => {
                    published.insert(svc.name.clone(), view);
                }
                Ok(false) => {
                    tracing::warn!(
                        "cluster: the leader key is no longer this replica's; stepping down"
                    );
                    cluster.role.send_modify(|r| r.leading = None);
                    break;
                }
                Err(e) => {
                    tracing::debug!("cluster: cannot publish the view of {}: {e}", svc.name);
                    break;
                }
            }
        }
    }
}

/// The fenced write: `Ok(false)` when this replica no longer holds the leader key.
async fn write(
    cluster: &Cluster,
    lease: i64,
    service: &str,
    view: &FleetView,
) -> super::etcd::Result<bool> {
    let key = cluster.key(&format!("fleet/{service}"));
    let r = cluster
        .etcd
        .txn(TxnRequest {
            compare: vec![txn::held_by(&cluster.key("leader"), lease)],
            // Not under the lease: the view outlives a leader that dies.
            success: vec![txn::put(&key, fleet::encode(view), 0)],
            failure: vec![],
        })
        .await?;
    if r.succeeded {
        cluster
            .views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.to_string(), view.clone());
    }
    Ok(r.succeeded)
}
