//! The follower's side: every fleet view the leader publishes is applied to this replica's
//! lanes and pools as it arrives (a watch), and requests waiting here at a service without
//! capacity are told to the leader (a wake), which starts what they need.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio_util::sync::CancellationToken;

use super::etcd::{KeyValue, WatchEvent};
use super::fleet;
use super::internal::Wake;
use super::{Cluster, store};
use crate::State;
use crate::service::Service;

/// How often requests still waiting here are told to the leader again.
const WAKE_AGAIN: Duration = Duration::from_millis(300);

/// Keeps the view of `kv` and, while this replica follows, routes by it.
pub(super) fn apply_kv(cluster: &Cluster, state: &State, kv: &KeyValue) {
    let key = String::from_utf8_lossy(&kv.key);
    let Some(name) = key.strip_prefix(&cluster.key("fleet/")) else {
        return;
    };
    let view = match fleet::decode(&kv.value) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("cluster: ignoring the view of {name}: {e}");
            return;
        }
    };
    cluster
        .views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string(), view.clone());
    if cluster.following.load(SeqCst)
        && let Some(svc) = state.service(name)
    {
        fleet::apply(&svc, &view);
    }
}

/// Routes every service by the last view seen (a replica that stops leading).
pub(super) fn apply_all(cluster: &Cluster, state: &State) {
    let views = cluster
        .views
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (name, view) in views {
        if let Some(svc) = state.service(&name) {
            fleet::apply(&svc, &view);
        }
    }
}

pub(super) async fn run(cluster: Arc<Cluster>, state: Arc<State>, stop: CancellationToken) {
    for svc in state.services.load().iter() {
        tokio::spawn(wake_leader(cluster.clone(), svc.clone(), stop.clone()));
    }
    // The fleet views and the stored state, one watch for both.
    let prefix = cluster.key("");
    loop {
        // Listed, then watched from just after: no change falls in between.
        let from = match cluster.etcd.get_prefix(&prefix).await {
            Ok((kvs, revision)) => {
                cluster.etcd_reachable(true);
                for kv in &kvs {
                    apply_kv(&cluster, &state, kv);
                }
                store::apply_listed(&cluster, &state, &kvs);
                revision + 1
            }
            Err(e) => {
                cluster.etcd_reachable(false);
                tracing::debug!("cluster: cannot list the fleet and the state: {e}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        let mut watcher = match cluster.etcd.watch(&prefix, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("cluster: cannot watch the fleet: {e}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        loop {
            let events = tokio::select! {
                _ = stop.cancelled() => return,
                e = watcher.next() => e,
            };
            match events {
                Ok(events) => {
                    for e in events {
                        match e {
                            WatchEvent::Put(kv) => {
                                apply_kv(&cluster, &state, &kv);
                                store::apply(&cluster, &state, &kv.key, Some(&kv.value));
                            }
                            WatchEvent::Deleted { key, .. } => {
                                store::apply(&cluster, &state, &key, None)
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!("cluster: the watch of the fleet and the state ended: {e}");
                    break;
                }
            }
        }
    }
}

/// While this replica follows, requests waiting at `svc` are told to the leader.
async fn wake_leader(cluster: Arc<Cluster>, svc: Arc<Service>, stop: CancellationToken) {
    loop {
        if !cluster.following.load(SeqCst) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = svc.woken() => {}
            _ = tokio::time::sleep(WAKE_AGAIN) => {}
        }
        if !cluster.following.load(SeqCst) {
            // The controller took over meanwhile: the wake is its own.
            svc.poke();
            continue;
        }
        let Some(leader) = cluster.leader_endpoint() else {
            continue;
        };
        let waiting: Vec<Wake> = svc
            .traffic
            .load()
            .lanes()
            .filter(|l| l.queued() > 0)
            .map(|l| Wake {
                service: svc.name.clone(),
                revision: l.revision.clone(),
                queued: l.queued() as u32,
            })
            .collect();
        for wake in waiting {
            let body = Bytes::from(serde_json::to_vec(&wake).unwrap_or_default());
            if let Err(e) = cluster
                .call(
                    &cluster.http,
                    &leader,
                    Method::POST,
                    "/cluster/wake",
                    body,
                    Duration::from_secs(1),
                )
                .await
            {
                tracing::debug!("cluster: cannot wake {} at the leader: {e}", svc.name);
            }
        }
    }
}
