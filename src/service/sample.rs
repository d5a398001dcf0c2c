//! What the console's history reads from a service each second.

use crate::history::{RevisionSample, Sample};

use super::Service;
use super::instance::InstanceState;

impl Service {
    /// Reads this service's counts and gauges for its history, as of unix second `t`.
    pub fn sample(&self, t: u32) -> Sample {
        let instances = self.instances.load();
        let mut by_state = [0u16; 5];
        for i in instances.iter() {
            let slot = match i.state() {
                InstanceState::Starting => 0,
                InstanceState::Ready => 1,
                InstanceState::Draining => 2,
                InstanceState::Unhealthy => 3,
                InstanceState::Frozen => 4,
                InstanceState::Stopped => continue,
            };
            by_state[slot] = by_state[slot].saturating_add(1);
        }
        let revisions = self
            .traffic
            .load()
            .shares
            .iter()
            .filter(|s| !s.lane.revision.is_empty())
            .map(|s| {
                let rev = s.lane.revision.as_str();
                let mine = || instances.iter().filter(move |i| i.revision == rev);
                let (served, errors) = s.lane.totals(mine());
                RevisionSample {
                    revision: rev.to_string(),
                    served,
                    errors,
                    ready: mine()
                        .filter(|i| i.state() == InstanceState::Ready)
                        .count()
                        .min(u16::MAX as usize) as u16,
                    percent: s.percent.min(100) as u8,
                }
            })
            .collect();
        Sample {
            t,
            requests: self.metrics.requests_snapshot(),
            cold_starts: self.metrics.cold_starts.get(),
            in_flight: self.in_flight().min(u32::MAX as usize) as u32,
            queued: self.queued().min(u32::MAX as usize) as u32,
            desired: self.desired.load(std::sync::atomic::Ordering::SeqCst),
            instances: by_state,
            revisions,
        }
    }
}
