//! Revisions, deployments, traffic and image pins in etcd: `{prefix}/state/{service}` holds
//! what the state file holds for a single wakeway (the JSON of `service::state::ServiceState`).
//! Each replica keeps the state in memory (`State::state_file`); the leader's controllers
//! record to it and this module copies every change to etcd in a transaction fenced on the
//! leader's lease. A replica that takes the lead loads it from etcd before its controllers
//! act; followers keep their copy current from the watch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Cluster;
use super::etcd::{KeyValue, proto::TxnRequest, txn};
use crate::State;
use crate::service::state::ServiceState;

/// How long the writer waits before trying a write that failed again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

fn name_of<'a>(cluster: &Cluster, key: &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix(&cluster.key("state/"))
}

fn decode(name: &str, bytes: &[u8]) -> Option<ServiceState> {
    serde_json::from_slice(bytes)
        .inspect_err(|e| tracing::warn!("cluster: ignoring the stored state of {name}: {e}"))
        .ok()
}

/// A replica that now leads: this replica's copy becomes what etcd holds (services etcd has
/// nothing of keep what this replica recorded, e.g. from its file at start).
pub(super) async fn load(cluster: &Cluster, state: &State) -> super::etcd::Result<()> {
    let (kvs, _) = cluster.etcd.get_prefix(&cluster.key("state/")).await?;
    let mut stored = cluster.stored.lock().unwrap_or_else(|p| p.into_inner());
    stored.clear();
    for kv in &kvs {
        let Some(name) = name_of(cluster, &kv.key) else {
            continue;
        };
        stored.insert(name.to_string(), kv.value.clone());
        if let (Some(file), Some(s)) = (&state.state_file, decode(name, &kv.value)) {
            file.set_service(name, Some(s));
        }
    }
    Ok(())
}

/// A watched change of `{prefix}/state/…`: a follower's copy follows it.
pub(super) fn apply(cluster: &Cluster, state: &State, key: &[u8], value: Option<&[u8]>) {
    let Some(name) = name_of(cluster, key) else {
        return;
    };
    if !cluster.following.load(SeqCst) {
        // This replica wrote it: its own copy is as new or newer.
        return;
    }
    let mut stored = cluster.stored.lock().unwrap_or_else(|p| p.into_inner());
    match value {
        Some(v) => {
            stored.insert(name.to_string(), v.to_vec());
        }
        None => {
            stored.remove(name);
        }
    }
    drop(stored);
    let Some(file) = &state.state_file else {
        return;
    };
    match value {
        Some(v) => {
            let Some(s) = decode(name, v) else { return };
            // The admin API of a follower lists the leader's revisions.
            if let Some(svc) = state.service(name) {
                let base = svc.config.load_full();
                let views = s.revisions.iter().map(|r| r.revision(name, &base).view());
                svc.revisions.store(Arc::new(views.collect()));
            }
            file.set_service(name, Some(s));
        }
        None => file.set_service(name, None),
    }
}

/// Applies every listed `{prefix}/state/…` key (a replica that starts or comes back).
pub(super) fn apply_listed(cluster: &Cluster, state: &State, kvs: &[KeyValue]) {
    for kv in kvs {
        apply(cluster, state, &kv.key, Some(&kv.value));
    }
}

/// The leader's writer: after each change of the state (and again while a write failed), the
/// services whose state differs from what etcd holds are written, those gone are deleted.
pub(super) async fn run(cluster: Arc<Cluster>, state: Arc<State>, stop: CancellationToken) {
    let Some(file) = state.state_file.clone() else {
        return;
    };
    let mut pending = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = file.changed() => {}
            _ = tokio::time::sleep(RETRY_AFTER), if pending => {}
            _ = cluster.lead_loaded.notified() => {}
        }
        let lease = cluster.role.borrow().leading;
        let loaded = cluster.loaded_for.load(SeqCst);
        pending = match lease.filter(|l| *l == loaded) {
            Some(lease) => !write_changes(&cluster, lease, file.services()).await,
            None => false,
        };
    }
}

/// Returns whether etcd holds `now`.
async fn write_changes(cluster: &Cluster, lease: i64, now: BTreeMap<String, ServiceState>) -> bool {
    let stored = cluster
        .stored
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut ops: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for (name, s) in &now {
        let bytes = serde_json::to_vec(s).unwrap_or_default();
        if stored.get(name) != Some(&bytes) {
            ops.push((name.clone(), Some(bytes)));
        }
    }
    ops.extend(
        stored
            .keys()
            .filter(|name| !now.contains_key(*name))
            .map(|name| (name.clone(), None)),
    );
    for (name, value) in ops {
        let key = cluster.key(&format!("state/{name}"));
        let op = match &value {
            // Not under the lease: the state outlives a leader that dies.
            Some(v) => txn::put(&key, v.clone(), 0),
            None => txn::delete(&key),
        };
        let r = cluster
            .etcd
            .txn(TxnRequest {
                compare: vec![txn::held_by(&cluster.key("leader"), lease)],
                success: vec![op],
                failure: vec![],
            })
            .await;
        match r {
            Ok(r) if r.succeeded => {
                let mut stored = cluster.stored.lock().unwrap_or_else(|p| p.into_inner());
                match value {
                    Some(v) => stored.insert(name, v),
                    None => stored.remove(&name),
                };
            }
            Ok(_) => {
                tracing::warn!(
                    "cluster: the leader key is no longer this replica's; stepping down"
                );
                cluster.role.send_modify(|r| r.leading = None);
                return true;
            }
            Err(e) => {
                tracing::debug!("cluster: cannot store the state of {name}: {e}");
                return false;
            }
        }
    }
    true
}
