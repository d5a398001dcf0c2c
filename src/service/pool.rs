//! The routable instances of a service. Immutable: the controller builds a new pool and stores it
//! in the service's `ArcSwap`, so the request path reads it without a lock.

use std::cell::Cell;
use std::sync::Arc;

use super::instance::Instance;

/// Above this many instances a full scan costs more than it gains: sample two instead.
const FULL_SCAN_MAX: usize = 16;

thread_local! {
    /// Rotates the start of a scan and seeds the two random choices, so ties spread evenly. Per
    /// thread: a shared cursor would be a cache line every worker writes per request.
    static CURSOR: Cell<usize> = const { Cell::new(0) };
}

#[derive(Default)]
pub struct Pool {
    pub instances: Vec<Arc<Instance>>,
}

impl Pool {
    pub fn new(instances: Vec<Arc<Instance>>) -> Pool {
        Pool { instances }
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Picks the least-loaded ready instance below `max` and takes a slot on it. Returns `None`
    /// when every instance is full or not ready.
    pub fn acquire(&self, max: u32) -> Option<Arc<Instance>> {
        let n = self.instances.len();
        if n == 0 {
            return None;
        }
        let start = CURSOR.with(|c| {
            let v = c.get().wrapping_add(1);
            c.set(v);
            v
        });
        if n > FULL_SCAN_MAX {
            // Power of two choices; fall back to a scan when both are full.
            let a = &self.instances[start.wrapping_mul(0x9E37_79B9) % n];
            let b = &self.instances[(start.wrapping_mul(0x85EB_CA6B) >> 7) % n];
            let first = if a.in_flight() <= b.in_flight() { a } else { b };
            if first.try_acquire(max) {
                return Some(first.clone());
            }
        }
        // A failed acquire means another request took the slot or the instance left: scan again,
        // a bounded number of times (each failure is someone else's success).
        for _ in 0..n + 1 {
            let mut best: Option<&Arc<Instance>> = None;
            let mut best_load = u32::MAX;
            for k in 0..n {
                let inst = &self.instances[(start + k) % n];
                let load = inst.in_flight();
                if load < max && load < best_load && inst.is_routable() {
                    best = Some(inst);
                    best_load = load;
                    if load == 0 {
                        break;
                    }
                }
            }
            let inst = best?;
            if inst.try_acquire(max) {
                return Some(inst.clone());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::instance::InstanceState;

    fn pool(n: usize) -> Pool {
        Pool::new(
            (0..n)
                .map(|k| {
                    let i = Instance::new(
                        format!("i{k}"),
                        "r".into(),
                        format!("127.0.0.1:{}", 1000 + k).parse().unwrap(),
                        None,
                    );
                    i.set_state(InstanceState::Ready);
                    Arc::new(i)
                })
                .collect(),
        )
    }

    #[test]
    fn spreads_to_least_loaded() {
        let p = pool(3);
        let picked: Vec<_> = (0..6).map(|_| p.acquire(10).unwrap().id.clone()).collect();
        for i in &p.instances {
            assert_eq!(i.in_flight(), 2, "{picked:?}");
        }
    }

    #[test]
    fn full_pool_refuses() {
        let p = pool(2);
        assert!(p.acquire(1).is_some());
        assert!(p.acquire(1).is_some());
        assert!(p.acquire(1).is_none());
        p.instances[0].release();
        assert_eq!(p.acquire(1).unwrap().id, "i0");
    }

    #[test]
    fn skips_draining() {
        let p = pool(2);
        p.instances[0].set_state(InstanceState::Draining);
        for _ in 0..4 {
            assert_eq!(p.acquire(10).unwrap().id, "i1");
        }
    }

    #[test]
    fn large_pool_fills_every_slot() {
        let p = pool(40);
        for _ in 0..80 {
            assert!(p.acquire(2).is_some());
        }
        assert!(p.acquire(2).is_none());
        assert!(p.instances.iter().all(|i| i.in_flight() == 2));
    }
}
