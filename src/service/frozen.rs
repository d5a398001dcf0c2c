//! What frozen instances hold, over every service of this wakeway: `[scaling] max_frozen_memory`
//! bounds the sum, and the longest-frozen instances are stopped first. Each controller writes
//! only its own instances' entries (one per frozen instance, so nothing is counted twice) and
//! reads the whole to see which of its own are over the line; the app writes the limit.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use crate::config::GlobalScaling;

pub struct FrozenLedger {
    limit: AtomicU64,
    next: AtomicU64,
    /// Oldest first: keys only grow.
    entries: Mutex<Vec<Entry>>,
}

struct Entry {
    key: u64,
    service: String,
    bytes: u64,
}

/// The one ledger of this process, as `[scaling]` is one table of its config.
pub fn ledger() -> &'static FrozenLedger {
    static LEDGER: OnceLock<FrozenLedger> = OnceLock::new();
    LEDGER.get_or_init(|| FrozenLedger::new(GlobalScaling::default().max_frozen_memory))
}

impl FrozenLedger {
    pub fn new(limit: u64) -> FrozenLedger {
        FrozenLedger {
            limit: AtomicU64::new(limit),
            next: AtomicU64::new(1),
            entries: Mutex::new(Vec::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Relaxed);
    }

    /// An instance of `service` froze holding `bytes`; returns its key.
    pub fn insert(&self, service: &str, bytes: u64) -> u64 {
        let key = self.next.fetch_add(1, Relaxed);
        self.entries().push(Entry {
            key,
            service: service.to_string(),
            bytes,
        });
        key
    }

    pub fn update(&self, key: u64, bytes: u64) {
        if let Some(e) = self.entries().iter_mut().find(|e| e.key == key) {
            e.bytes = bytes;
        }
    }

    /// The instance thawed, stopped or exited.
    pub fn remove(&self, key: u64) {
        self.entries().retain(|e| e.key != key);
    }

    /// Bytes held by `service`'s frozen instances.
    pub fn held_by(&self, service: &str) -> u64 {
        self.entries()
            .iter()
            .filter(|e| e.service == service)
            .map(|e| e.bytes)
            .sum()
    }

    /// The keys to stop, longest-frozen first, until the rest fit under the limit.
    pub fn over_limit(&self) -> Vec<u64> {
        let limit = self.limit.load(Relaxed);
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut out = Vec::new();
        for e in entries.iter() {
            if total <= limit {
                break;
            }
            total -= e.bytes;
            out.push(e.key);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_frozen_go_first_until_the_rest_fit() {
        let l = FrozenLedger::new(250);
        let a = l.insert("web", 100);
        let b = l.insert("api", 100);
        let c = l.insert("web", 100);
        assert_eq!(l.over_limit(), vec![a]);
        assert_eq!(l.held_by("web"), 200);
        l.update(c, 200);
        assert_eq!(l.over_limit(), vec![a, b]);
        l.remove(a);
        assert_eq!(l.over_limit(), vec![b]);
        l.set_limit(1000);
        assert!(l.over_limit().is_empty());
        l.remove(b);
        l.remove(c);
        assert_eq!(l.held_by("web"), 0);
    }
}
