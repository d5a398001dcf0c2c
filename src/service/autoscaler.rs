//! Turns observed concurrency into a desired instance count (Knative's KPA, simplified): a stable
//! and a panic window over the same samples, panic mode that never scales down, and a scale-down
//! of at most half per decision. Every scale-up (panic, stable or the controller's demand path)
//! holds the count for one stable window: a window that has not yet seen the new load would
//! otherwise undo the scale-up at the next tick and drain busy instances. Pure: time comes in as
//! arguments so tests need no clock.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::ScalingConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Stable,
    Panic,
}

/// Why a count was chosen: everything a user needs to see to trust the decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub desired: u32,
    pub previous: u32,
    pub stable_avg: f64,
    pub panic_avg: f64,
    pub mode: Mode,
    pub ready: u32,
    /// The bound that changed the raw desire, if any: "min_instances", "max_instances",
    /// "scale_down_rate", "panic_hold", "scale_up_hold", "idle".
    pub clamped_by: Option<&'static str>,
}

/// Consecutive samples of one value, taken at a steady interval: an idle service's whole stable
/// window is one run, not 600 samples (1,000 services at zero would otherwise hold 10+ MB of
/// zeros).
#[derive(Debug, Clone, Copy)]
struct Run {
    value: f64,
    first: Instant,
    last: Instant,
    count: u32,
}

impl Run {
    /// The spacing of the run's samples (the controller samples at a fixed interval).
    fn step(&self) -> Duration {
        if self.count > 1 {
            (self.last - self.first) / (self.count - 1)
        } else {
            Duration::ZERO
        }
    }

    /// How many of the run's samples were taken at `cutoff` or later.
    fn since(&self, cutoff: Instant) -> u32 {
        if self.last < cutoff {
            return 0;
        }
        if self.first >= cutoff {
            return self.count;
        }
        let step = self.step().as_nanos();
        let gap = (cutoff - self.first).as_nanos();
        // The first sample index at or after `cutoff`.
        let skip = gap.div_ceil(step.max(1)) as u32;
        self.count.saturating_sub(skip)
    }
}

/// Within a quarter of each other.
fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= b / 4
}

pub struct Autoscaler {
    samples: VecDeque<Run>,
    panic_until: Option<Instant>,
    /// No scale-down before this: one stable window after the last scale-up.
    hold_until: Option<Instant>,
}

impl Default for Autoscaler {
    fn default() -> Self {
        Self::new()
    }
}

impl Autoscaler {
    pub fn new() -> Autoscaler {
        Autoscaler {
            samples: VecDeque::new(),
            panic_until: None,
            hold_until: None,
        }
    }

    /// The desired count went up at `now` (here or on the controller's demand path): it holds
    /// until a full stable window has seen the new load.
    pub fn scaled_up(&mut self, now: Instant, stable_window: Duration) {
        let until = now + stable_window;
        if self.hold_until.is_none_or(|t| t < until) {
            self.hold_until = Some(until);
        }
    }

    /// Records the concurrency (in flight + queued) seen at `now`.
    pub fn record(&mut self, now: Instant, concurrency: f64, stable_window: Duration) {
        match self.samples.back_mut() {
            // Same value at the same spacing: the run grows by one.
            // Same value at about the same spacing (timer ticks jitter by microseconds): the run
            // grows by one.
            Some(run)
                if run.value == concurrency
                    && (run.count == 1 || close(now - run.last, run.step())) =>
            {
                run.last = now;
                run.count += 1;
            }
            _ => self.samples.push_back(Run {
                value: concurrency,
                first: now,
                last: now,
                count: 1,
            }),
        }
        // Forget what fell out of the stable window: whole runs, then the front run's head.
        let cutoff = now.checked_sub(stable_window);
        while let (Some(cutoff), Some(front)) = (cutoff, self.samples.front_mut()) {
            let keep = front.since(cutoff);
            if keep == 0 {
                self.samples.pop_front();
                continue;
            }
            if keep < front.count {
                let step = front.step();
                front.first += step * (front.count - keep);
                front.count = keep;
            }
            break;
        }
        if self.samples.capacity() > 4 * self.samples.len() + 16 {
            self.samples.shrink_to(2 * self.samples.len());
        }
    }

    fn average(&self, now: Instant, window: Duration) -> f64 {
        let cutoff = now.checked_sub(window);
        let (sum, n) = self.samples.iter().rev().fold((0.0, 0u32), |(s, n), run| {
            let k = cutoff.map_or(run.count, |c| run.since(c));
            (s + run.value * k as f64, n + k)
        });
        if n == 0 { 0.0 } else { sum / n as f64 }
    }

    /// `current` is the desired count now, `ready` the instances serving. `idle` says the service
    /// had no request and nothing in flight for its idle timeout: only then may it go below one.
    pub fn decide(
        &mut self,
        now: Instant,
        cfg: &ScalingConfig,
        current: u32,
        ready: u32,
        idle: bool,
    ) -> Decision {
        let stable_avg = self.average(now, cfg.stable_window);
        let panic_avg = self.average(now, cfg.panic_window);
        let want = |avg: f64| (avg / cfg.target_concurrency).ceil() as u32;
        let (stable_want, panic_want) = (want(stable_avg), want(panic_avg));

        let panicking =
            panic_want as f64 >= cfg.panic_threshold * ready.max(1) as f64 && panic_want > ready;
        if panicking {
            self.panic_until = Some(now + cfg.stable_window);
        } else if self.panic_until.is_some_and(|until| now >= until) {
            self.panic_until = None;
        }
        let mode = if self.panic_until.is_some() {
            Mode::Panic
        } else {
            Mode::Stable
        };

        let mut clamped_by = None;
        let mut desired = match mode {
            Mode::Panic => {
                let d = panic_want.max(stable_want);
                if d < current {
                    clamped_by = Some("panic_hold");
                    current
                } else {
                    d
                }
            }
            Mode::Stable => stable_want,
        };
        if desired < current && self.hold_until.is_some_and(|until| now < until) {
            desired = current;
            clamped_by = Some("scale_up_hold");
        }
        let floor = current.div_ceil(2);
        if desired < floor {
            desired = floor;
            clamped_by = Some("scale_down_rate");
        }
        if idle {
            // Demand is gone for the idle timeout: only min_instances remain.
            if desired > 0 {
                desired = 0;
                clamped_by = Some("idle");
            }
        } else if desired == 0 && (current > 0 || panic_avg > 0.0) {
            // Not idle yet: keep one until idle_timeout passes.
            desired = 1;
            clamped_by = Some("idle_timeout");
        }
        if desired < cfg.min_instances {
            desired = cfg.min_instances;
            clamped_by = Some("min_instances");
        }
        if desired > cfg.max_instances {
            desired = cfg.max_instances;
            clamped_by = Some("max_instances");
        }
        if desired > current {
            self.scaled_up(now, cfg.stable_window);
        }
        Decision {
            desired,
            previous: current,
            stable_avg,
            panic_avg,
            mode,
            ready,
            clamped_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScalingConfig {
        ScalingConfig {
            min_instances: 0,
            max_instances: 10,
            target_concurrency: 5.0,
            max_concurrency: 10,
            idle_timeout: Duration::from_secs(30),
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            panic_threshold: 2.0,
            ..ScalingConfig::default()
        }
    }

    /// Feeds `value` every 100 ms for `secs`.
    fn feed(a: &mut Autoscaler, t: &mut Instant, secs: u64, value: f64) {
        for _ in 0..secs * 10 {
            *t += Duration::from_millis(100);
            a.record(*t, value, Duration::from_secs(60));
        }
    }

    #[test]
    fn steady_load_gives_ceil_of_avg_over_target() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        feed(&mut a, &mut t, 70, 12.0);
        let d = a.decide(t, &cfg(), 3, 3, false);
        assert_eq!(d.desired, 3);
        assert_eq!(d.mode, Mode::Stable);
    }

    #[test]
    fn burst_enters_panic_and_scales_at_once() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        feed(&mut a, &mut t, 60, 5.0);
        feed(&mut a, &mut t, 6, 40.0);
        let d = a.decide(t, &cfg(), 1, 1, false);
        assert_eq!(d.mode, Mode::Panic);
        assert_eq!(d.desired, 8, "{d:?}");
    }

    #[test]
    fn panic_never_scales_down_until_calm_for_a_stable_window() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        feed(&mut a, &mut t, 3, 40.0);
        assert_eq!(a.decide(t, &cfg(), 1, 1, false).desired, 8);
        feed(&mut a, &mut t, 10, 0.0);
        let d = a.decide(t, &cfg(), 8, 8, false);
        assert_eq!(
            (d.desired, d.mode, d.clamped_by),
            (8, Mode::Panic, Some("panic_hold"))
        );
        feed(&mut a, &mut t, 60, 0.0);
        let d = a.decide(t, &cfg(), 8, 8, false);
        assert_eq!(d.mode, Mode::Stable);
        assert_eq!(d.desired, 4, "at most halving");
    }

    #[test]
    fn clamps_to_bounds() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        feed(&mut a, &mut t, 70, 500.0);
        let d = a.decide(t, &cfg(), 10, 10, false);
        assert_eq!((d.desired, d.clamped_by), (10, Some("max_instances")));
        let mut c = cfg();
        c.min_instances = 2;
        let mut a = Autoscaler::new();
        feed(&mut a, &mut t, 70, 0.0);
        let d = a.decide(t, &c, 2, 2, true);
        assert_eq!((d.desired, d.clamped_by), (2, Some("min_instances")));
    }

    #[test]
    fn keeps_one_until_idle_then_zero() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        feed(&mut a, &mut t, 70, 0.0);
        assert_eq!(a.decide(t, &cfg(), 1, 1, false).desired, 1);
        let d = a.decide(t, &cfg(), 1, 1, true);
        assert_eq!((d.desired, d.clamped_by), (0, Some("idle")));
    }

    /// The README's burst tour: a demand scale-up to 4, then the next ticks with the stable window
    /// still full of the quiet before the burst. Without the hold this went 4 -> 2 -> 1.
    #[test]
    fn no_scale_down_within_a_stable_window_of_a_scale_up() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        feed(&mut a, &mut t, 50, 0.5);
        a.scaled_up(t, Duration::from_secs(60));
        let mut c = cfg();
        c.panic_threshold = 100.0; // no panic: the stable path alone must hold
        for _ in 0..59 {
            feed(&mut a, &mut t, 1, 4.0);
            let d = a.decide(t, &c, 4, 4, false);
            assert_eq!(d.desired, 4, "scale-down inside the hold: {d:?}");
        }
        feed(&mut a, &mut t, 2, 4.0);
        let d = a.decide(t, &c, 4, 4, false);
        assert_eq!(d.desired, 2, "after a full window of the new load: {d:?}");
    }

    #[test]
    fn a_stable_scale_up_holds_too() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        let mut c = cfg();
        c.panic_threshold = 100.0;
        feed(&mut a, &mut t, 70, 20.0);
        assert_eq!(a.decide(t, &c, 1, 1, false).desired, 4);
        feed(&mut a, &mut t, 30, 0.0);
        let d = a.decide(t, &c, 4, 4, false);
        assert_eq!((d.desired, d.clamped_by), (4, Some("scale_up_hold")));
        // Idle is not a flap: a service without any request for idle_timeout still goes to zero.
        assert_eq!(a.decide(t, &c, 4, 4, true).desired, 0);
    }

    #[test]
    fn an_idle_window_is_one_run_even_with_jittery_ticks() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        for k in 0..2000u64 {
            t += Duration::from_micros(100_000 + (k * 37) % 900);
            a.record(t, 0.0, Duration::from_secs(60));
        }
        assert_eq!(a.samples.len(), 1, "{:?}", a.samples);
        assert!(a.samples[0].count <= 601, "{:?}", a.samples[0]);
        a.record(t + Duration::from_millis(100), 3.0, Duration::from_secs(60));
        assert_eq!(a.samples.len(), 2);
        let avg = a.average(t + Duration::from_millis(100), Duration::from_secs(60));
        assert!(avg > 0.0 && avg < 0.01, "{avg}");
    }

    #[test]
    fn first_demand_at_zero_wants_one() {
        let mut a = Autoscaler::new();
        let mut t = Instant::now();
        feed(&mut a, &mut t, 1, 1.0);
        assert_eq!(a.decide(t, &cfg(), 0, 0, false).desired, 1);
    }
}
