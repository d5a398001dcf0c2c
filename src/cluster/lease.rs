//! This replica's etcd lease: granted, renewed every third of its TTL, and given up on this
//! machine's monotonic clock the moment it could have expired on etcd's (no wall-clock time is
//! compared with another machine's). Everything this replica holds in etcd (its member key,
//! the leader key) is attached to it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::etcd::Client;

/// When a lease renewed by a keep-alive sent at `sent` with `ttl` counts as lost here: a
/// tenth before etcd's expiry, so that clocks running at slightly different rates still agree
/// that this replica stopped acting before another one starts.
pub fn valid_until(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl.mul_f64(0.9)
}

/// Keeps a lease alive and publishes its id while it holds (`None` when there is none).
pub async fn keep(
    etcd: Arc<Client>,
    ttl: Duration,
    lease: watch::Sender<Option<i64>>,
    stop: CancellationToken,
) {
    let ttl_secs = ttl.as_secs().max(2) as i64;
    let mut retry = Duration::from_millis(100);
    'grant: while !stop.is_cancelled() {
        let sent = Instant::now();
        let (id, granted) = match etcd.grant(ttl_secs).await {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!("cluster: cannot get a lease: {e}");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        retry = Duration::from_millis(100);
        let granted = Duration::from_secs(granted.max(1) as u64);
        let mut until = valid_until(sent, granted);
        lease.send_replace(Some(id));
        // Past `until` the lease is given up here but still renewed: etcd keeps leases across
        // its own restart, so when it answers again this replica holds what it held.
        let mut held = true;
        loop {
            let next = Instant::now() + granted / 3;
            let expiry = held.then_some(until);
            tokio::select! {
                _ = stop.cancelled() => {
                    lease.send_replace(None);
                    let _ = tokio::time::timeout(Duration::from_secs(1), etcd.revoke(id)).await;
                    break 'grant;
                }
                _ = sleep_until_opt(expiry) => {
                    tracing::warn!("cluster: lease {id:x} could not be renewed in time; this replica stops acting");
                    lease.send_replace(None);
                    held = false;
                    continue;
                }
                _ = tokio::time::sleep_until(next) => {}
            }
            let sent = Instant::now();
            let renewed = tokio::select! {
                r = etcd.keep_alive(id) => r,
                _ = sleep_until_opt(held.then_some(until)) => {
                    tracing::warn!("cluster: lease {id:x} could not be renewed in time; this replica stops acting");
                    lease.send_replace(None);
                    held = false;
                    continue;
                }
            };
            match renewed {
                Ok(ttl) if ttl > 0 => {
                    until = valid_until(sent, Duration::from_secs(ttl as u64));
                    if !held {
                        tracing::info!("cluster: lease {id:x} renewed again");
                        held = true;
                        lease.send_replace(Some(id));
                    }
                }
                Ok(_) => {
                    tracing::warn!("cluster: lease {id:x} expired on etcd");
                    lease.send_replace(None);
                    continue 'grant;
                }
                // The next attempt comes a third of a TTL later, still before `until`.
                Err(e) => tracing::debug!("cluster: keep-alive of {id:x} failed: {e}"),
            }
        }
    }
    lease.send_replace(None);
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_counts_as_lost_before_etcd_expires_it() {
        let t = Instant::now();
        let ttl = Duration::from_secs(5);
        assert!(valid_until(t, ttl) < t + ttl);
        assert!(
            valid_until(t, ttl) > t + ttl / 3 * 2,
            "two renewals fit before it"
        );
    }
}
