//! One step of a service's or a revision's history as kept (small, fixed-size numbers) and as
//! served (rates, percentages and milliseconds, two decimals, absent values left out).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::metrics::requests::LATENCY_BUCKETS;

/// Duration buckets of one step: the request stats' non-cumulative buckets (the last is past
/// the largest bound).
pub type Buckets = [u32; LATENCY_BUCKETS.len() + 1];

/// The instance states a point counts, in the order of [`Point::instances`].
pub const STATES: [&str; 5] = ["starting", "ready", "draining", "unhealthy", "frozen"];

/// A p50 or p99 that no request measured.
const NO_LATENCY: u32 = u32::MAX;

/// A service's step. Counts are of the step; gauges are the highest (in flight, queued) or the
/// last (instances, desired) seen in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Unix seconds at the step's end.
    pub t: u32,
    /// Answers by status class, `1xx` to `5xx`.
    pub classes: [u32; 5],
    pub p50_us: u32,
    pub p99_us: u32,
    pub in_flight: u32,
    pub queued: u32,
    /// By state, as [`STATES`] lists them.
    pub instances: [u16; 5],
    pub desired: u16,
    pub cold_starts: u16,
}

impl Point {
    pub fn empty(t: u32) -> Point {
        Point {
            t,
            classes: [0; 5],
            p50_us: NO_LATENCY,
            p99_us: NO_LATENCY,
            in_flight: 0,
            queued: 0,
            instances: [0; 5],
            desired: 0,
            cold_starts: 0,
        }
    }

    /// Sets p50 and p99 from a step's duration buckets.
    pub fn set_latency(&mut self, buckets: &Buckets) {
        self.p50_us = quantile(buckets, 0.50).unwrap_or(NO_LATENCY);
        self.p99_us = quantile(buckets, 0.99).unwrap_or(NO_LATENCY);
    }

    /// Nothing happened and nothing ran: such steps are not stored (an idle service keeps
    /// next to nothing) and are served as zeros.
    pub fn is_empty(&self) -> bool {
        *self == Point::empty(self.t)
    }

    pub fn requests(&self) -> u64 {
        self.classes.iter().map(|&n| n as u64).sum()
    }

    pub fn view(&self, step_seconds: u32) -> PointView {
        let requests = self.requests();
        let ms = |us: u32| (us != NO_LATENCY).then(|| round2(us as f64 / 1e3));
        PointView {
            t: self.t,
            rates: Rates {
                requests_per_second: round2(requests as f64 / step_seconds as f64),
                error_percent: (requests > 0).then(|| ErrorPercent {
                    client: percent(self.classes[3] as u64, requests),
                    server: percent(self.classes[4] as u64, requests),
                }),
                p50_ms: ms(self.p50_us),
                p99_ms: ms(self.p99_us),
            },
            in_flight: self.in_flight,
            queued: self.queued,
            desired: self.desired,
            instances: STATES
                .iter()
                .zip(self.instances)
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| (*s, n))
                .collect(),
            cold_starts: self.cold_starts,
        }
    }
}

/// A revision's step: its answers and 5xx answers, its ready instances and share at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevisionPoint {
    pub t: u32,
    pub served: u32,
    pub errors: u32,
    pub ready: u16,
    pub percent: u8,
}

impl RevisionPoint {
    pub fn is_empty(&self) -> bool {
        *self
            == RevisionPoint {
                t: self.t,
                ..RevisionPoint::default()
            }
    }

    pub fn view(&self, step_seconds: u32) -> RevisionPointView {
        RevisionPointView {
            t: self.t,
            requests_per_second: round2(self.served as f64 / step_seconds as f64),
            error_percent: (self.served > 0)
                .then(|| percent(self.errors as u64, self.served as u64)),
            ready: self.ready,
            percent: self.percent,
        }
    }
}

/// Answers per second, error percentages and latency over a stretch of time (a step, the
/// recent seconds).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rates {
    pub requests_per_second: f64,
    /// Of the stretch's answers; absent when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_percent: Option<ErrorPercent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PointView {
    pub t: u32,
    #[serde(flatten)]
    pub rates: Rates,
    pub in_flight: u32,
    pub queued: u32,
    pub desired: u16,
    /// Instances by state; states with none are left out.
    pub instances: BTreeMap<&'static str, u16>,
    pub cold_starts: u16,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ErrorPercent {
    #[serde(rename = "4xx")]
    pub client: f64,
    #[serde(rename = "5xx")]
    pub server: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RevisionPointView {
    pub t: u32,
    pub requests_per_second: f64,
    /// 5xx answers, of the step's answers; absent when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_percent: Option<f64>,
    pub ready: u16,
    pub percent: u8,
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round2(part as f64 * 100.0 / whole as f64)
    }
}

/// The `q` quantile of the durations in `buckets`, in microseconds, interpolated within its
/// bucket as Prometheus' `histogram_quantile` does; `None` without a duration.
pub fn quantile(buckets: &Buckets, q: f64) -> Option<u32> {
    let total: u64 = buckets.iter().map(|&n| n as u64).sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        let n = n as u64;
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                // Past the largest bound: that bound is all one can say.
                return Some((LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1] * 1e6) as u32);
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let within = (rank - below as f64).max(0.0) / n as f64;
            return Some(((lower + (upper - lower) * within) * 1e6).round() as u32);
        }
        below += n;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let mut b: Buckets = [0; LATENCY_BUCKETS.len() + 1];
        assert_eq!(quantile(&b, 0.5), None);
        // 100 answers between 1 and 2.5 ms: the median is half-way through that bucket.
        b[1] = 100;
        assert_eq!(quantile(&b, 0.5), Some(1_750));
        assert_eq!(quantile(&b, 0.99), Some(2_485));
        // One slow answer past every bound.
        b[LATENCY_BUCKETS.len()] = 1;
        assert_eq!(quantile(&b, 1.0), Some(60_000_000));
    }

    #[test]
    fn a_view_gives_rates_percentages_and_leaves_out_what_was_not_measured() {
        let mut p = Point::empty(100);
        assert!(p.is_empty());
        let v = serde_json::to_value(p.view(1)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"t": 100, "requests_per_second": 0.0, "in_flight": 0,
                               "queued": 0, "desired": 0, "instances": {}, "cold_starts": 0})
        );
        p.classes = [0, 2, 0, 1, 3];
        p.instances = [0, 2, 0, 0, 0];
        let mut b: Buckets = [0; LATENCY_BUCKETS.len() + 1];
        b[0] = 6;
        p.set_latency(&b);
        let v = serde_json::to_value(p.view(10)).unwrap();
        assert_eq!(v["requests_per_second"], 0.6);
        assert_eq!(v["error_percent"]["4xx"], 16.67);
        assert_eq!(v["error_percent"]["5xx"], 50.0);
        assert_eq!(v["p50_ms"], 0.5);
        assert_eq!(v["instances"], serde_json::json!({"ready": 2}));
    }
}
