//! Per-worker request counters and latency histograms, summed when Prometheus scrapes: a request's
//! counts stay in its worker's own cache lines, so none bounces between cores per request.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

use crate::metrics::proto::{PerService, counter, desc, family_of, histogram};

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Marks the current thread as data-plane worker `index`.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// Shards: one per core (workers beyond that share), plus one for threads off the data plane.
fn shard_count() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(64)
            + 1
    })
}

fn shard_index() -> usize {
    let n = shard_count();
    WORKER.with(|w| match w.get() {
        usize::MAX => n - 1,
        i => i % (n - 1),
    })
}

/// Status codes with their own series; anything else is folded into its class so the `code`
/// label stays bounded.
pub const TRACKED_CODES: [u16; 16] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 429, 500, 502, 503, 504, 101,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const CODE_SLOTS: usize = TRACKED_CODES.len() + CLASSES.len();

/// Upper bounds of the request-duration buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BUCKET_MICROS: [u64; 15] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

#[repr(align(128))]
#[derive(Default)]
struct Shard {
    codes: [AtomicU64; CODE_SLOTS],
    /// Non-cumulative: a sample counts in the first bucket that holds it; the last slot is +Inf.
    buckets: [AtomicU64; BUCKET_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

/// One service's request counts and durations.
pub struct RequestStats {
    shards: Box<[Shard]>,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            shards: (0..shard_count()).map(|_| Shard::default()).collect(),
        }
    }
}

fn code_slot(code: u16) -> usize {
    match TRACKED_CODES.iter().position(|c| *c == code) {
        Some(i) => i,
        None => TRACKED_CODES.len() + (code / 100).clamp(1, 5) as usize - 1,
    }
}

impl RequestStats {
    pub fn observe_status(&self, code: u16) {
        self.shards[shard_index()].codes[code_slot(code)].fetch_add(1, Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let shard = &self.shards[shard_index()];
        let b = BUCKET_MICROS
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKET_MICROS.len());
        shard.buckets[b].fetch_add(1, Relaxed);
        shard.sum_micros.fetch_add(us, Relaxed);
    }

    fn codes(&self) -> [u64; CODE_SLOTS] {
        let mut out = [0; CODE_SLOTS];
        for s in self.shards.iter() {
            for (o, c) in out.iter_mut().zip(&s.codes) {
                *o += c.load(Relaxed);
            }
        }
        out
    }

    /// Requests answered so far, every status summed.
    pub fn total(&self) -> u64 {
        self.codes().iter().sum()
    }

    /// Requests answered with `code` so far (a tracked code; others count in their class).
    pub fn count(&self, code: u16) -> u64 {
        self.codes()[code_slot(code)]
    }

    /// Every count so far, by status class and by duration bucket (the console's history
    /// takes the difference of two).
    pub fn snapshot(&self) -> RequestSnapshot {
        let mut snap = RequestSnapshot::default();
        let codes = self.codes();
        for (slot, n) in codes.iter().enumerate() {
            let class = match TRACKED_CODES.get(slot) {
                Some(code) => (*code / 100) as usize - 1,
                None => slot - TRACKED_CODES.len(),
            };
            snap.classes[class] += n;
        }
        for s in self.shards.iter() {
            for (o, b) in snap.buckets.iter_mut().zip(&s.buckets) {
                *o += b.load(Relaxed);
            }
        }
        snap
    }
}

/// Requests answered so far by status class (`1xx` to `5xx`), and their durations in the
/// non-cumulative buckets of [`LATENCY_BUCKETS`] (the last one is past 60 s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestSnapshot {
    pub classes: [u64; 5],
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
}

/// Exports every service's `RequestStats` as `wakeway_requests_total` and
/// `wakeway_request_duration_seconds`.
pub struct RequestsCollector {
    descs: Vec<Desc>,
    /// Each service's figures, by name.
    pub(super) services: PerService<RequestStats>,
}

impl RequestsCollector {
    pub fn new() -> RequestsCollector {
        RequestsCollector {
            descs: vec![
                desc(
                    crate::metrics::REQUESTS_TOTAL,
                    "Requests answered, by status code.",
                    &["service", "code"],
                ),
                desc(
                    crate::metrics::REQUEST_DURATION_SECONDS,
                    "Time from request arrival to response headers.",
                    &["service"],
                ),
            ],
            services: PerService::default(),
        }
    }
}

impl Default for RequestsCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for RequestsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let services = self.services.lock();
        let mut requests = Vec::new();
        let mut durations = Vec::new();
        for (name, stats) in services.iter() {
            let codes = stats.codes();
            let names = TRACKED_CODES
                .iter()
                .map(|c| c.to_string())
                .chain(CLASSES.iter().map(|c| c.to_string()));
            for (code, n) in names.zip(codes) {
                requests.push(counter(&[("service", name), ("code", &code)], n));
            }
            let mut counts = [0u64; BUCKET_MICROS.len() + 1];
            let mut sum = 0u64;
            for s in stats.shards.iter() {
                for (o, b) in counts.iter_mut().zip(&s.buckets) {
                    *o += b.load(Relaxed);
                }
                sum += s.sum_micros.load(Relaxed);
            }
            let labels = [("service", name.as_str())];
            durations.push(histogram(
                &labels,
                &LATENCY_BUCKETS,
                counts,
                sum as f64 / 1e6,
            ));
        }
        vec![
            family_of(&self.descs[0], MetricType::COUNTER, requests),
            family_of(&self.descs[1], MetricType::HISTOGRAM, durations),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn shards_sum_across_threads() {
        let stats = Arc::new(RequestStats::default());
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    set_worker(w);
                    for _ in 0..1000 {
                        stats.observe_status(200);
                        stats.observe_status(418);
                        stats.observe_duration(Duration::from_millis(3));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(stats.count(200), 4000);
        assert_eq!(stats.count(499), 4000, "418 folds into 4xx");
        assert_eq!(stats.total(), 8000);
        let snap = stats.snapshot();
        assert_eq!(
            snap.classes,
            [0, 4000, 0, 4000, 0],
            "200s and 418s by class"
        );
        assert_eq!(snap.buckets[2], 4000, "3 ms falls in the 5 ms bucket");
        let c = RequestsCollector::new();
        c.services.lock().insert("s".into(), stats);
        let fams = c.collect();
        let h = fams[1].get_metric()[0].get_histogram();
        assert_eq!(h.get_sample_count(), 4000);
        let b = h.get_bucket();
        assert_eq!(b[1].cumulative_count(), 0, "2.5 ms bucket");
        assert_eq!(b[2].cumulative_count(), 4000, "5 ms bucket");
        assert!((h.get_sample_sum() - 12.0).abs() < 1e-9);
    }
}
