//! What this replica does as leadership moves. Leading: it loads the stored state, then its
//! controllers run (adopting the fleet's instances) and act. Not leading because another
//! replica leads: its controllers are dropped, leaving every instance running, and it routes by
//! the published views. Not knowing
//! (etcd unreachable): whatever runs keeps serving, and nothing starts or stops.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Cluster, follow, store};
use crate::State;

/// How long a draining instance stays up after leaving the view, for the followers to drop it.
const FOLLOWERS_DROP_WITHIN: Duration = Duration::from_millis(300);
/// How soon a replica that leads but could not read the stored state tries again.
const LOAD_AGAIN: Duration = Duration::from_millis(200);

pub(super) async fn run(cluster: Arc<Cluster>, state: Arc<State>, stop: CancellationToken) {
    let mut role = cluster.role.subscribe();
    loop {
        let now = role.borrow_and_update().clone();
        let services = state.services.load_full();
        match (now.leading, now.leader) {
            (Some(lease), _) => {
                if cluster.following.load(SeqCst) {
                    // What the previous leader recorded comes first: its revisions, traffic
                    // and pins are what the adopted instances run.
                    if let Err(e) = store::load(&cluster, &state).await {
                        tracing::warn!("cluster: cannot load the stored state: {e}; trying again");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(LOAD_AGAIN) => continue,
                        }
                    }
                    cluster.loaded_for.store(lease, SeqCst);
                    cluster.lead_loaded.notify_one();
                }
                for svc in services.iter() {
                    svc.remote.set_drain_delay(FOLLOWERS_DROP_WITHIN);
                    svc.remote.set_acting(true);
                }
                if cluster.following.swap(false, SeqCst) {
                    state.start_controllers();
                }
                cluster.acting.send_replace(true);
            }
            (None, Some(other)) if other != cluster.config.name => {
                cluster.acting.send_replace(false);
                for svc in services.iter() {
                    svc.remote.set_acting(false);
                }
                if !cluster.following.swap(true, SeqCst) {
                    state.stop_controllers();
                    follow::apply_all(&cluster, &state);
                }
            }
            _ => {
                cluster.acting.send_replace(false);
                for svc in services.iter() {
                    svc.remote.set_acting(false);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = role.changed() => if r.is_err() { return },
        }
    }
}
