//! What happened to one service's requests under one config (or as recorded): how many, how
//! long they waited for a slot, which waited for a cold start, which were refused.

use std::time::Duration;

use crate::proxy::error::ProxyError;
use crate::service::activator::ActivatorError;

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub requests: u64,
    /// Served without any wait: most requests, kept as a count rather than a million zeros.
    instant: u64,
    /// Waits of the requests that did wait, in microseconds.
    waits: Vec<u64>,
    pub waited_for_cold_start: u64,
    pub refused_503: u64,
    pub refused_504: u64,
}

impl Stats {
    pub fn served(&mut self, waited: Duration, cold: bool) {
        // As the proxy counts it: a wait under a millisecond is the fast path.
        if waited < Duration::from_millis(1) {
            self.instant += 1;
        } else {
            self.waits.push(waited.as_micros() as u64);
        }
        if cold {
            self.waited_for_cold_start += 1;
        }
    }

    pub fn refused(&mut self, e: &ActivatorError) {
        self.refused_status(refusal_status(e));
    }

    pub fn refused_status(&mut self, status: u16) {
        if status == 504 {
            self.refused_504 += 1;
        } else {
            self.refused_503 += 1;
        }
    }

    pub fn refused_total(&self) -> u64 {
        self.refused_503 + self.refused_504
    }

    /// The added wait at quantile `q` (0..=1) of the served requests, in milliseconds.
    pub fn wait_ms(&mut self, q: f64) -> f64 {
        let n = self.instant + self.waits.len() as u64;
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        if rank <= self.instant {
            return 0.0;
        }
        self.waits.sort_unstable();
        self.waits[(rank - self.instant - 1) as usize] as f64 / 1000.0
    }

    pub fn wait_max_ms(&self) -> f64 {
        self.waits.iter().max().copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// What the real proxy answers for a failed `acquire` (503 or 504), from its one mapping.
fn refusal_status(e: &ActivatorError) -> u16 {
    ProxyError::Activator(e.clone()).status().as_u16()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_count_the_requests_that_did_not_wait() {
        let mut s = Stats::default();
        for _ in 0..98 {
            s.served(Duration::ZERO, false);
        }
        s.served(Duration::from_millis(800), true);
        s.served(Duration::from_millis(1200), true);
        assert_eq!(s.wait_ms(0.5), 0.0);
        assert_eq!(s.wait_ms(0.99), 800.0);
        assert_eq!(s.wait_ms(1.0), 1200.0);
        assert_eq!(s.wait_max_ms(), 1200.0);
        assert_eq!(s.waited_for_cold_start, 2);
        s.refused(&ActivatorError::Timeout(Duration::from_secs(30).into()));
        s.refused(&ActivatorError::QueueFull);
        assert_eq!((s.refused_503, s.refused_504), (1, 1));
    }
}
