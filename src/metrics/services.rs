//! A service's control-plane figures — gauges of instances and demand, counts of cold starts,
//! rejections, scale events, upstream errors and deployments, the cold-start and queue-wait
//! histograms — as plain atomics, rendered into Prometheus families when scraped. A
//! `prometheus` child series costs a few hundred bytes (its own copy of the family's description);
//! these cost eight, so 1,000 services at zero stay small.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Metric, MetricFamily, MetricType};

use crate::metrics::proto::{self, PerService, desc, family_of};
use crate::metrics::*;

#[derive(Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Default)]
pub struct Level(AtomicI64);

impl Level {
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Upper bounds, in seconds, of the cold-start histogram's buckets.
pub const COLD_START_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds, in seconds, of the queue-wait histogram's buckets.
pub const QUEUE_WAIT_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Seconds, in non-cumulative buckets (the last is +Inf).
pub struct Hist<const N: usize> {
    bounds: &'static [f64; N],
    buckets: [AtomicU64; N],
    over: AtomicU64,
    sum_micros: AtomicU64,
}

impl<const N: usize> Hist<N> {
    fn new(bounds: &'static [f64; N]) -> Self {
        Hist {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            over: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        match self.bounds.iter().position(|b| seconds <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Relaxed),
            None => self.over.fetch_add(1, Relaxed),
        };
        self.sum_micros
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Relaxed);
    }

    fn metric(&self, labels: &[(&str, &str)]) -> Metric {
        let counts = self.buckets.iter().chain([&self.over]);
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        proto::histogram(labels, self.bounds, counts.map(|n| n.load(Relaxed)), sum)
    }
}

/// One service's figures.
pub struct ServiceStats {
    pub in_flight: Level,
    pub queued: Level,
    pub starting: Level,
    pub ready: Level,
    pub draining: Level,
    pub frozen: Level,
    /// Bytes held by the service's frozen instances.
    pub frozen_memory: Level,
    pub thaws: Count,
    pub desired: Level,
    pub cold_starts: Count,
    pub cold_start_duration: Hist<12>,
    pub queue_wait: Hist<15>,
    pub rejected_queue_full: Count,
    pub rejected_timeout: Count,
    pub rejected_unavailable: Count,
    pub scale_up: Count,
    pub scale_down: Count,
    pub upstream_connect: Count,
    pub upstream_timeout: Count,
    pub upstream_reset: Count,
    pub deployments_succeeded: Count,
    pub deployments_failed: Count,
    /// gRPC calls ended, by `grpc-status` (0-16: a bounded label).
    pub grpc_calls: [Count; 17],
}

impl Default for ServiceStats {
    fn default() -> Self {
        ServiceStats {
            in_flight: Level::default(),
            queued: Level::default(),
            starting: Level::default(),
            ready: Level::default(),
            draining: Level::default(),
            frozen: Level::default(),
            frozen_memory: Level::default(),
            thaws: Count::default(),
            desired: Level::default(),
            cold_starts: Count::default(),
            cold_start_duration: Hist::new(&COLD_START_BUCKETS),
            queue_wait: Hist::new(&QUEUE_WAIT_BUCKETS),
            rejected_queue_full: Count::default(),
            rejected_timeout: Count::default(),
            rejected_unavailable: Count::default(),
            scale_up: Count::default(),
            scale_down: Count::default(),
            upstream_connect: Count::default(),
            upstream_timeout: Count::default(),
            upstream_reset: Count::default(),
            deployments_succeeded: Count::default(),
            deployments_failed: Count::default(),
            grpc_calls: Default::default(),
        }
    }
}

/// Exports every service's `ServiceStats`.
pub struct ServicesCollector {
    descs: Vec<Desc>,
    /// Each service's figures, by name.
    pub(super) services: PerService<ServiceStats>,
}

/// The families, in the order `descs` holds them: name, help, type, extra label.
const FAMILIES: [(&str, &str, MetricType, Option<&str>); 14] = [
    (
        IN_FLIGHT_REQUESTS,
        "Requests (and open tunnels) currently at an instance.",
        MetricType::GAUGE,
        None,
    ),
    (
        QUEUED_REQUESTS,
        "Requests waiting in the activator queue.",
        MetricType::GAUGE,
        None,
    ),
    (
        INSTANCES,
        "Instances by state.",
        MetricType::GAUGE,
        Some("state"),
    ),
    (
        DESIRED_INSTANCES,
        "Instances the autoscaler wants.",
        MetricType::GAUGE,
        None,
    ),
    (
        COLD_STARTS_TOTAL,
        "Starts triggered by a request arriving at a service with no instance.",
        MetricType::COUNTER,
        None,
    ),
    (
        COLD_START_DURATION_SECONDS,
        "From a request arriving at an empty service to an instance being ready.",
        MetricType::HISTOGRAM,
        None,
    ),
    (
        QUEUE_WAIT_SECONDS,
        "Time requests waited in the activator queue for a slot (those that waited).",
        MetricType::HISTOGRAM,
        None,
    ),
    (
        QUEUE_REJECTIONS_TOTAL,
        "Requests refused by the activator queue, by reason.",
        MetricType::COUNTER,
        Some("reason"),
    ),
    (
        SCALE_EVENTS_TOTAL,
        "Changes of the desired instance count, by direction.",
        MetricType::COUNTER,
        Some("direction"),
    ),
    (
        UPSTREAM_ERRORS_TOTAL,
        "Failures talking to instances, by kind.",
        MetricType::COUNTER,
        Some("kind"),
    ),
    (
        DEPLOYMENTS_TOTAL,
        "Blue/green deployments finished, by outcome.",
        MetricType::COUNTER,
        Some("outcome"),
    ),
    (
        FROZEN_MEMORY_BYTES,
        "Memory held by frozen instances (counted once per instance).",
        MetricType::GAUGE,
        None,
    ),
    (
        THAWS_TOTAL,
        "Frozen instances thawed and ready again.",
        MetricType::COUNTER,
        None,
    ),
    (
        GRPC_CALLS_TOTAL,
        "gRPC calls ended, by grpc-status (the instance's, or wakeway's own answer).",
        MetricType::COUNTER,
        Some("grpc_status"),
    ),
];

impl ServicesCollector {
    pub fn new() -> ServicesCollector {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, label)| {
                let labels: Vec<&str> = ["service"].into_iter().chain(*label).collect();
                desc(name, help, &labels)
            })
            .collect();
        ServicesCollector {
            descs,
            services: PerService::default(),
        }
    }
}

impl Default for ServicesCollector {
    fn default() -> Self {
        Self::new()
    }
}

fn labels<'a>(service: &'a str, extra: Option<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    [("service", service)].into_iter().chain(extra).collect()
}

fn gauge(service: &str, extra: Option<(&str, &str)>, v: i64) -> Metric {
    proto::gauge(&labels(service, extra), v as f64)
}

fn counter(service: &str, extra: Option<(&str, &str)>, v: u64) -> Metric {
    proto::counter(&labels(service, extra), v)
}

impl Collector for ServicesCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let services = self.services.lock();
        let mut metrics: Vec<Vec<Metric>> = (0..FAMILIES.len()).map(|_| Vec::new()).collect();
        for (n, s) in services.iter() {
            metrics[0].push(gauge(n, None, s.in_flight.get()));
            metrics[1].push(gauge(n, None, s.queued.get()));
            for (state, v) in [
                ("starting", &s.starting),
                ("ready", &s.ready),
                ("draining", &s.draining),
                ("frozen", &s.frozen),
            ] {
                metrics[2].push(gauge(n, Some(("state", state)), v.get()));
            }
            metrics[3].push(gauge(n, None, s.desired.get()));
            metrics[4].push(counter(n, None, s.cold_starts.get()));
            metrics[5].push(s.cold_start_duration.metric(&labels(n, None)));
            metrics[6].push(s.queue_wait.metric(&labels(n, None)));
            for (reason, c) in [
                ("queue_full", &s.rejected_queue_full),
                ("timeout", &s.rejected_timeout),
                ("unavailable", &s.rejected_unavailable),
            ] {
                metrics[7].push(counter(n, Some(("reason", reason)), c.get()));
            }
            for (direction, c) in [("up", &s.scale_up), ("down", &s.scale_down)] {
                metrics[8].push(counter(n, Some(("direction", direction)), c.get()));
            }
            for (kind, c) in [
                ("connect", &s.upstream_connect),
                ("timeout", &s.upstream_timeout),
                ("reset", &s.upstream_reset),
            ] {
                metrics[9].push(counter(n, Some(("kind", kind)), c.get()));
            }
            for (outcome, c) in [
                ("succeeded", &s.deployments_succeeded),
                ("failed", &s.deployments_failed),
            ] {
                metrics[10].push(counter(n, Some(("outcome", outcome)), c.get()));
            }
            metrics[11].push(gauge(n, None, s.frozen_memory.get()));
            metrics[12].push(counter(n, None, s.thaws.get()));
            // Only the codes seen: a service that never served gRPC adds no series.
            // The index is the `grpc-status` code, so its decimal text is the header's.
            for (code, c) in s.grpc_calls.iter().enumerate() {
                if c.get() > 0 {
                    let code = code.to_string();
                    metrics[13].push(counter(n, Some(("grpc_status", &code)), c.get()));
                }
            }
        }
        FAMILIES
            .iter()
            .zip(&self.descs)
            .zip(metrics)
            .map(|(((_, _, t, _), desc), metrics)| family_of(desc, *t, metrics))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_per_service() {
        let c = ServicesCollector::new();
        let s = c.services.add("web");
        s.cold_starts.inc();
        s.cold_start_duration.observe(0.3);
        s.queued.inc();
        s.queued.inc();
        s.queued.dec();
        s.rejected_timeout.inc();
        let fams = c.collect();
        assert_eq!(fams.len(), FAMILIES.len());
        let by = |name: &str| fams.iter().find(|f| f.name() == name).unwrap();
        assert_eq!(
            by(QUEUED_REQUESTS).get_metric()[0].get_gauge().get_value(),
            1.0
        );
        assert_eq!(
            by(COLD_STARTS_TOTAL).get_metric()[0]
                .get_counter()
                .get_value(),
            1.0
        );
        let h = by(COLD_START_DURATION_SECONDS).get_metric()[0].get_histogram();
        assert_eq!(h.get_sample_count(), 1);
        assert_eq!(h.get_bucket()[4].cumulative_count(), 0, "0.25 s bucket");
        assert_eq!(h.get_bucket()[5].cumulative_count(), 1, "0.5 s bucket");
        let rejections = by(QUEUE_REJECTIONS_TOTAL).get_metric();
        assert_eq!(rejections.len(), 3);
        c.services.remove("web");
        assert!(c.collect().iter().all(|f| f.get_metric().is_empty()));
    }
}
