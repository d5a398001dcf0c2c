//! Polling with a deadline: tests never sleep to synchronise.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{DEADLINE, pid_alive};

/// Polls `check` every 50 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until none of `pids` is alive.
pub async fn wait_pids_gone(pids: &[u32]) {
    wait_for(&format!("pids {pids:?} to exit"), DEADLINE, || async move {
        pids.iter().all(|&p| !pid_alive(p)).then_some(())
    })
    .await
}
