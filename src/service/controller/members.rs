//! The controller's own books: which members and serving revisions it has, how many of each it
//! wants, the load it samples for the autoscaler, and `publish`, which hands the request path
//! each lane's pool of ready instances.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use tokio::time::Instant;

use super::{Controller, Member, Serving, Source, suffix};
use crate::service::instance::{Instance, InstanceState};
use crate::service::pool::Pool;

impl Controller {
    pub(super) fn managed(&self) -> bool {
        matches!(self.source, Source::Managed(_))
    }

    pub(super) fn serving_of(&self, revision: &str) -> Option<&Serving> {
        self.serving.iter().find(|s| s.revision.id == revision)
    }

    pub(super) fn serving_mut(&mut self, revision: &str) -> Option<&mut Serving> {
        self.serving.iter_mut().find(|s| s.revision.id == revision)
    }

    pub(super) fn is_green(&self, inst: &Instance) -> bool {
        self.green
            .as_ref()
            .is_some_and(|g| g.revision.id == inst.revision)
    }

    /// Ready instances of `revision`.
    pub(super) fn ready_count(&self, revision: &str) -> u32 {
        self.members
            .iter()
            .filter(|m| {
                m.instance.state() == InstanceState::Ready && m.instance.revision == revision
            })
            .count() as u32
    }

    /// Starts of `revision` still wanted (not cancelled).
    pub(super) fn live_starts(&self, revision: &str) -> u32 {
        self.starts
            .values()
            .filter(|s| s.revision == revision && !s.cancel.is_cancelled())
            .count() as u32
    }

    /// Requests in flight at `revision`'s instances (draining ones included).
    pub(super) fn in_flight_of(&self, revision: &str) -> usize {
        self.members
            .iter()
            .filter(|m| m.instance.revision == revision)
            .map(|m| m.instance.in_flight() as usize)
            .sum()
    }

    pub(super) fn set_desired(&mut self, revision: &str, n: u32) {
        if let Some(s) = self.serving_mut(revision) {
            s.desired = n;
        }
        self.sync_desired();
    }

    /// The service's desired count is the sum over its serving revisions.
    pub(super) fn sync_desired(&self) {
        for s in &self.serving {
            s.lane.set_desired(s.desired);
        }
        let n: u32 = self.serving.iter().map(|s| s.desired).sum();
        self.svc.desired.store(n, SeqCst);
        self.svc.metrics.desired.set(n as i64);
    }

    pub(super) fn desired(&self, revision: &str) -> u32 {
        self.serving_of(revision).map_or(0, |s| s.desired)
    }

    /// One load sample per serving revision: its in-flight plus its queued requests, here and
    /// (in a cluster) at the other replicas.
    pub(super) fn sample(&mut self) {
        let now = Instant::now();
        let window = self.svc.config.load().scaling.stable_window;
        let loads: Vec<f64> = self
            .serving
            .iter()
            .map(|s| {
                let elsewhere = self.svc.remote.load_of(&s.revision.id);
                (self.in_flight_of(&s.revision.id)
                    + s.lane.queued()
                    + (elsewhere.in_flight + elsewhere.queued) as usize) as f64
            })
            .collect();
        for (s, load) in self.serving.iter_mut().zip(loads) {
            s.autoscaler.record(now, load, window);
        }
    }

    pub(super) fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.instance.id == id)
    }

    /// The member that is this very instance (ids repeat across a start's attempts).
    pub(super) fn member_of(&mut self, inst: &Arc<Instance>) -> Option<&mut Member> {
        self.members
            .iter_mut()
            .find(|m| Arc::ptr_eq(&m.instance, inst))
    }

    pub(super) fn next_id(&mut self, revision: &str) -> String {
        loop {
            let id = format!("{revision}-{}", suffix(self.next_instance));
            self.next_instance += 1;
            // Adopted instances keep their ids: a new one must not take one.
            if self.member(&id).is_none() && !self.starts.contains_key(&id) {
                return id;
            }
        }
    }

    /// Stores each lane's pool (its revision's ready instances) and the admin snapshot, and
    /// updates the state gauges.
    pub(super) fn publish(&self) {
        let all: Vec<Arc<Instance>> = self.members.iter().map(|m| m.instance.clone()).collect();
        let paused = self.svc.is_paused();
        let pool_of = |revision: &str| {
            Pool::new(
                all.iter()
                    .filter(|i| {
                        i.state() == InstanceState::Ready && i.revision == revision && !paused
                    })
                    .cloned()
                    .collect(),
            )
        };
        for s in &self.serving {
            s.lane.pool.store(Arc::new(pool_of(&s.revision.id)));
        }
        // A deployment's instances wait in their own lane, which takes no traffic until the
        // switch.
        if let Some(g) = &self.green {
            g.lane.pool.store(Arc::new(pool_of(&g.revision.id)));
        }
        let count = |s: InstanceState| all.iter().filter(|i| i.state() == s).count() as i64;
        let m = &self.svc.metrics;
        m.starting.set(count(InstanceState::Starting));
        m.ready.set(count(InstanceState::Ready));
        m.draining.set(count(InstanceState::Draining));
        m.frozen.set(count(InstanceState::Frozen));
        self.svc.instances.store(Arc::new(all));
    }
}
