//! What a service's controller learns from the other replicas of a cluster (`src/cluster/`):
//! their demand per revision and their requests at each instance, and whether this replica may
//! act at all. In a single process nothing is remote and the controller always acts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

/// Requests elsewhere at one revision, summed over the other replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub in_flight: u32,
    pub queued: u32,
}

/// Control-plane only: the request path never touches it.
pub struct Remote {
    /// Cleared while this replica does not lead: the controller then starts and stops nothing.
    acting: AtomicBool,
    /// How long a draining instance stays up after leaving the pool before its own drain, so
    /// that the other replicas drop it from their pools first (milliseconds; 0 alone).
    drain_delay_ms: AtomicU64,
    /// Live replicas of the cluster (1 alone): each enforces its share of `max_concurrency`.
    replicas: AtomicU32,
    loads: Mutex<HashMap<String, Load>>,
    /// In-flight requests at each instance, at the other replicas.
    instances: Mutex<HashMap<String, u32>>,
}

impl Default for Remote {
    fn default() -> Remote {
        Remote {
            acting: AtomicBool::new(true),
            drain_delay_ms: AtomicU64::new(0),
            replicas: AtomicU32::new(1),
            loads: Mutex::new(HashMap::new()),
            instances: Mutex::new(HashMap::new()),
        }
    }
}

impl Remote {
    pub fn acting(&self) -> bool {
        self.acting.load(SeqCst)
    }

    pub fn set_acting(&self, acting: bool) {
        self.acting.store(acting, SeqCst);
    }

    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms.load(SeqCst))
    }

    pub fn set_drain_delay(&self, d: Duration) {
        self.drain_delay_ms.store(d.as_millis() as u64, SeqCst);
    }

    pub fn set_replicas(&self, n: usize) {
        self.replicas
            .store(n.clamp(1, u32::MAX as usize) as u32, Relaxed);
    }

    /// This replica's share of a per-instance limit: with N replicas each enforces
    /// `ceil(max / N)` on its own requests, so an instance gets about `max` in all (a little
    /// more when N does not divide it; the sidecar mode is the exact way).
    pub fn share_of(&self, max: u32) -> u32 {
        // Read on every acquire: a plain load; a count a second late is still a fair share.
        max.div_ceil(self.replicas.load(Relaxed).max(1))
    }

    pub fn load_of(&self, revision: &str) -> Load {
        self.loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(revision)
            .copied()
            .unwrap_or_default()
    }

    pub fn in_flight_at(&self, instance: &str) -> u32 {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .copied()
            .unwrap_or(0)
    }

    /// Replaces what is known of the other replicas.
    pub fn set(&self, loads: HashMap<String, Load>, instances: HashMap<String, u32>) {
        *self.loads.lock().unwrap_or_else(|p| p.into_inner()) = loads;
        *self.instances.lock().unwrap_or_else(|p| p.into_inner()) = instances;
    }

    /// Raises the queued count a replica reported with its wake call, until the next pull.
    pub fn add_queued(&self, revision: &str, queued: u32) {
        let mut loads = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        let l = loads.entry(revision.to_string()).or_default();
        l.queued = l.queued.max(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_enforces_its_share_rounded_up() {
        let r = Remote::default();
        assert_eq!(r.share_of(10), 10, "alone: the whole limit");
        r.set_replicas(3);
        assert_eq!(r.share_of(10), 4);
        assert_eq!(r.share_of(1), 1, "never below one");
        r.set_replicas(0);
        assert_eq!(r.share_of(10), 10);
    }
}
