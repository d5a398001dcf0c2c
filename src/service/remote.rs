//! What a service's controller learns from the other replicas of a cluster (`src/cluster/`):
//! their demand per revision and their requests at each instance, and whether this replica may
//! act at all. In a single process nothing is remote and the controller always acts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
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
    loads: Mutex<HashMap<String, Load>>,
    /// In-flight requests at each instance, at the other replicas.
    instances: Mutex<HashMap<String, u32>>,
}

impl Default for Remote {
    fn default() -> Remote {
        Remote {
            acting: AtomicBool::new(true),
            drain_delay_ms: AtomicU64::new(0),
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
