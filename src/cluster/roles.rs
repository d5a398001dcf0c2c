//! What this replica does as leadership moves. Leading: its controllers run (adopting the
//! fleet's instances) and act. Not leading because another replica leads: its controllers are
//! dropped, leaving every instance running, and it routes by the published views. Not knowing
//! (etcd unreachable): whatever runs keeps serving, and nothing starts or stops.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Cluster, follow};
use crate::State;

/// How long a draining instance stays up after leaving the view, for the followers to drop it.
const FOLLOWERS_DROP_WITHIN: Duration = Duration::from_millis(300);

pub(super) async fn run(cluster: Arc<Cluster>, state: Arc<State>, stop: CancellationToken) {
    let mut role = cluster.role.subscribe();
    loop {
        let now = role.borrow_and_update().clone();
        let services = state.services.load_full();
        match (now.leading, now.leader) {
            (Some(_), _) => {
                for svc in services.iter() {
                    svc.remote.set_drain_delay(FOLLOWERS_DROP_WITHIN);
                    svc.remote.set_acting(true);
                }
                if cluster.following.swap(false, SeqCst) {
                    state.start_controllers();
                }
            }
            (None, Some(other)) if other != cluster.config.name => {
                for svc in services.iter() {
                    svc.remote.set_acting(false);
                }
                if !cluster.following.swap(true, SeqCst) {
                    state.stop_controllers();
                    follow::apply_all(&cluster, &state);
                }
            }
            _ => {
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
