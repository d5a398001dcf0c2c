//! What the console charts and `wakeway history` prints: each service's figures sampled every
//! second into two bounded rings, the last 10 minutes at 1 s and the last hour at 10 s, for the
//! service as a whole and for each revision that takes traffic. Kept in wakeway's memory, so a
//! page opened now shows the last hour at once; lost on restart.
//!
//! Memory is bounded per service: a step is [`Point`] (56 bytes) for the service and
//! [`RevisionPoint`] (16 bytes) per revision, so at most [`SERVICE_BYTES`] (53,760) for the
//! service and [`REVISION_BYTES`] (15,360) for each of at most [`MAX_REVISIONS`] revisions:
//! [`MAX_BYTES`] (115,200 bytes, 113 KiB) in all. A step in which nothing happened and nothing
//! ran is not stored (it is served as zeros), so an idle service holds next to nothing.

pub mod access;
pub mod point;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::requests::RequestSnapshot;
pub use point::{Buckets, ErrorPercent, Point, PointView, Rates, RevisionPoint, RevisionPointView};

/// The fine ring: one step a second for 10 minutes.
pub const FINE_STEP: u32 = 1;
pub const FINE_POINTS: usize = 600;
/// The coarse ring: one step every 10 seconds for an hour.
pub const COARSE_STEP: u32 = 10;
pub const COARSE_POINTS: usize = 360;
/// Revisions with a series of their own; past it the one longest out of the traffic goes.
pub const MAX_REVISIONS: usize = 4;
pub const SERVICE_BYTES: usize = (FINE_POINTS + COARSE_POINTS) * std::mem::size_of::<Point>();
pub const REVISION_BYTES: usize =
    (FINE_POINTS + COARSE_POINTS) * std::mem::size_of::<RevisionPoint>();
pub const MAX_BYTES: usize = SERVICE_BYTES + MAX_REVISIONS * REVISION_BYTES;

/// The window of [`ServiceHistory::recent`], and how far back a service counts as failing.
const RECENT_SECONDS: u32 = 10;
const FAILING_SECONDS: u32 = 60;

/// What the sampler read from a service at one second: counts since start, gauges now.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub t: u32,
    pub requests: RequestSnapshot,
    pub cold_starts: u64,
    pub in_flight: u32,
    pub queued: u32,
    pub desired: u32,
    pub instances: [u16; 5],
    pub revisions: Vec<RevisionSample>,
}

#[derive(Debug, Clone, Default)]
pub struct RevisionSample {
    pub revision: String,
    /// Answers and 5xx answers since start.
    pub served: u64,
    pub errors: u64,
    pub ready: u16,
    pub percent: u8,
}

/// A ring that grows to `cap` as it fills, then drops its oldest.
#[derive(Debug)]
struct Ring<T> {
    items: VecDeque<T>,
    cap: usize,
}

impl<T> Ring<T> {
    fn new(cap: usize) -> Ring<T> {
        Ring {
            items: VecDeque::new(),
            cap,
        }
    }

    fn push(&mut self, item: T) {
        if self.items.len() == self.cap {
            self.items.pop_front();
        } else if self.items.len() == self.items.capacity() {
            // Grown in steps, never past `cap`: the bound in the module's doc holds.
            let want = (self.items.len() * 2).clamp(16, self.cap);
            self.items.reserve_exact(want - self.items.len());
        }
        self.items.push_back(item);
    }
}

/// The last [`RECENT_SECONDS`] steps' duration buckets: the recent percentiles, and the coarse
/// step's when its window closes.
#[derive(Debug, Default)]
struct Window {
    steps: VecDeque<(u32, Buckets)>,
}

impl Window {
    fn push(&mut self, t: u32, b: Buckets) {
        if self.steps.len() == RECENT_SECONDS as usize {
            self.steps.pop_front();
        }
        self.steps.push_back((t, b));
    }

    /// The buckets of the steps after `from` up to `to` (unix seconds), summed.
    fn between(&self, from: u32, to: u32) -> Buckets {
        let mut sum = Buckets::default();
        for (_, b) in self.steps.iter().filter(|(t, _)| *t > from && *t <= to) {
            for (s, n) in sum.iter_mut().zip(b) {
                *s = s.saturating_add(*n);
            }
        }
        sum
    }
}

#[derive(Debug)]
struct RevisionSeries {
    revision: String,
    fine: Ring<RevisionPoint>,
    coarse: Ring<RevisionPoint>,
    /// Answers and 5xx answers at the last sample.
    last: (u64, u64),
    /// The coarse step being summed.
    pending: RevisionPoint,
    /// The last second the revision took traffic (or had a tag).
    seen: u32,
}

#[derive(Debug)]
struct Inner {
    last: Option<Sample>,
    /// The first sample's second: views begin after it.
    first: u32,
    fine: Ring<Point>,
    coarse: Ring<Point>,
    window: Window,
    /// The coarse step being summed (its `t` is the window's end), and its gauges' maxima.
    pending: Option<Point>,
    revisions: Vec<RevisionSeries>,
}

/// One service's history; the sampler writes it once a second, the admin API reads it.
#[derive(Debug)]
pub struct ServiceHistory {
    inner: Mutex<Inner>,
}

impl Default for ServiceHistory {
    fn default() -> Self {
        ServiceHistory {
            inner: Mutex::new(Inner {
                last: None,
                first: 0,
                fine: Ring::new(FINE_POINTS),
                coarse: Ring::new(COARSE_POINTS),
                window: Window::default(),
                pending: None,
                revisions: Vec::new(),
            }),
        }
    }
}

fn delta(now: u64, before: u64) -> u32 {
    now.saturating_sub(before).min(u32::MAX as u64) as u32
}

fn coarse_end(t: u32) -> u32 {
    t.div_ceil(COARSE_STEP) * COARSE_STEP
}

impl ServiceHistory {
    /// Adds the step that ends at `s.t`: the difference from the last sample. The first sample
    /// only sets the baseline.
    pub fn record(&self, s: Sample) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *g;
        let Some(last) = inner.last.take() else {
            inner.first = s.t;
            for r in &s.revisions {
                inner.series(r, s.t);
            }
            inner.last = Some(s);
            return;
        };
        if s.t <= last.t {
            // Two samples in one second (a late tick): the next one covers both.
            inner.last = Some(last);
            return;
        }
        let mut p = Point::empty(s.t);
        for (c, (now, before)) in p
            .classes
            .iter_mut()
            .zip(s.requests.classes.iter().zip(&last.requests.classes))
        {
            *c = delta(*now, *before);
        }
        let mut buckets = Buckets::default();
        for (b, (now, before)) in buckets
            .iter_mut()
            .zip(s.requests.buckets.iter().zip(&last.requests.buckets))
        {
            *b = delta(*now, *before);
        }
        p.set_latency(&buckets);
        p.in_flight = s.in_flight;
        p.queued = s.queued;
        p.instances = s.instances;
        p.desired = s.desired.min(u16::MAX as u32) as u16;
        p.cold_starts = delta(s.cold_starts, last.cold_starts).min(u16::MAX as u32) as u16;
        // Before the step joins the window: a coarse step closes on the first sample past it.
        inner.add_coarse(&p);
        inner.window.push(s.t, buckets);
        if !p.is_empty() {
            inner.fine.push(p);
        }
        inner.record_revisions(&s);
        inner.last = Some(s);
    }

    /// The steps of `range` after unix second `after`, every step present (those not stored
    /// as zeros), oldest first, and each revision's.
    pub fn view(&self, range: Range, after: u32) -> HistoryView {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (step, span) = (range.step(), range.span());
        let Some(now) = g.last.as_ref().map(|l| l.t) else {
            return HistoryView::empty(range);
        };
        // The coarse ring's last step is the last closed window.
        let end = match range {
            Range::Fine => now,
            Range::Coarse => coarse_end(now) - COARSE_STEP,
        };
        let from = end
            .saturating_sub(span - step)
            .max(after.saturating_add(1))
            .max(g.first + 1);
        let ring = match range {
            Range::Fine => &g.fine,
            Range::Coarse => &g.coarse,
        };
        let points = dense(&ring.items, from, end, step, |p| p.t, Point::empty)
            .iter()
            .map(|p| p.view(step))
            .collect();
        let revisions = g
            .revisions
            .iter()
            .map(|r| {
                let ring = match range {
                    Range::Fine => &r.fine,
                    Range::Coarse => &r.coarse,
                };
                let empty = |t| RevisionPoint {
                    t,
                    ..RevisionPoint::default()
                };
                RevisionHistory {
                    revision: r.revision.clone(),
                    points: dense(&ring.items, from, end, step, |p| p.t, empty)
                        .iter()
                        .map(|p| p.view(step))
                        .collect(),
                }
            })
            .collect();
        HistoryView {
            range: range.name(),
            step_seconds: step,
            points,
            revisions,
        }
    }

    /// The last [`RECENT_SECONDS`]: answers per second, error percentages, p50 and p99.
    pub fn recent(&self) -> Recent {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = g.last.as_ref().map_or(0, |l| l.t);
        let from = now.saturating_sub(RECENT_SECONDS);
        let mut p = Point::empty(now);
        for q in g.fine.items.iter().rev().take_while(|q| q.t > from) {
            for (c, n) in p.classes.iter_mut().zip(q.classes) {
                *c = c.saturating_add(n);
            }
        }
        p.set_latency(&g.window.between(from, now));
        let v = p.view(RECENT_SECONDS);
        Recent {
            window_seconds: RECENT_SECONDS,
            rates: v.rates,
        }
    }

    /// Answers and 5xx answers in the last [`FAILING_SECONDS`].
    pub fn last_minute(&self) -> (u64, u64) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = g.last.as_ref().map_or(0, |l| l.t);
        let from = now.saturating_sub(FAILING_SECONDS);
        g.fine
            .items
            .iter()
            .rev()
            .take_while(|q| q.t > from)
            .fold((0, 0), |(all, bad), q| {
                (all + q.requests(), bad + q.classes[4] as u64)
            })
    }
}

impl Inner {
    fn add_coarse(&mut self, p: &Point) {
        let end = coarse_end(p.t);
        if let Some(pending) = self.pending.take_if(|q| q.t != end) {
            self.close_coarse(pending);
        }
        let acc = self.pending.get_or_insert_with(|| Point::empty(end));
        for (c, n) in acc.classes.iter_mut().zip(p.classes) {
            *c = c.saturating_add(n);
        }
        acc.in_flight = acc.in_flight.max(p.in_flight);
        acc.queued = acc.queued.max(p.queued);
        acc.instances = p.instances;
        acc.desired = p.desired;
        acc.cold_starts = acc.cold_starts.saturating_add(p.cold_starts);
    }

    fn close_coarse(&mut self, mut p: Point) {
        p.set_latency(&self.window.between(p.t - COARSE_STEP, p.t));
        if !p.is_empty() {
            self.coarse.push(p);
        }
    }

    fn record_revisions(&mut self, s: &Sample) {
        let end = coarse_end(s.t);
        for r in &s.revisions {
            let Some(series) = self.series(r, s.t) else {
                continue;
            };
            let p = RevisionPoint {
                t: s.t,
                served: delta(r.served, series.last.0),
                errors: delta(r.errors, series.last.1),
                ready: r.ready,
                percent: r.percent,
            };
            series.last = (r.served, r.errors);
            series.seen = s.t;
            if series.pending.t != end {
                let closed = std::mem::take(&mut series.pending);
                if closed.t != 0 && !closed.is_empty() {
                    series.coarse.push(closed);
                }
                series.pending.t = end;
            }
            let acc = &mut series.pending;
            acc.served = acc.served.saturating_add(p.served);
            acc.errors = acc.errors.saturating_add(p.errors);
            acc.ready = p.ready;
            acc.percent = p.percent;
            if !p.is_empty() {
                series.fine.push(p);
            }
        }
    }

    /// `r`'s series; `None` when it had none: one is made (in place of the one longest out of
    /// the traffic, when [`MAX_REVISIONS`] are kept), its baseline set from `r`.
    fn series(&mut self, r: &RevisionSample, t: u32) -> Option<&mut RevisionSeries> {
        if let Some(i) = self.revisions.iter().position(|s| s.revision == r.revision) {
            return Some(&mut self.revisions[i]);
        }
        if self.revisions.len() >= MAX_REVISIONS
            && let Some(oldest) = (0..self.revisions.len()).min_by_key(|&i| self.revisions[i].seen)
        {
            self.revisions.remove(oldest);
        }
        self.revisions.push(RevisionSeries {
            revision: r.revision.clone(),
            fine: Ring::new(FINE_POINTS),
            coarse: Ring::new(COARSE_POINTS),
            last: (r.served, r.errors),
            pending: RevisionPoint::default(),
            seen: t,
        });
        None
    }
}

/// Every step from `from` to `end` (unix seconds, `step` apart): the stored ones, and `empty`
/// for those not stored.
fn dense<T: Copy>(
    items: &VecDeque<T>,
    from: u32,
    end: u32,
    step: u32,
    t_of: impl Fn(&T) -> u32,
    empty: impl Fn(u32) -> T,
) -> Vec<T> {
    if from > end {
        return Vec::new();
    }
    // Steps lie on multiples of `step` (the coarse ring's window ends).
    let first = from.div_ceil(step) * step;
    let mut stored = items.iter().filter(|p| t_of(p) >= first).peekable();
    let mut out = Vec::with_capacity(((end - first) / step + 1) as usize);
    let mut t = first;
    while t <= end {
        while stored.next_if(|p| t_of(p) < t).is_some() {}
        match stored.next_if(|p| t_of(p) == t) {
            Some(p) => out.push(*p),
            None => out.push(empty(t)),
        }
        t += step;
    }
    out
}

/// Which ring a view reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The last 10 minutes at 1 s.
    Fine,
    /// The last hour at 10 s.
    Coarse,
}

impl Range {
    pub fn parse(s: &str) -> Result<Range, String> {
        match s {
            "10m" => Ok(Range::Fine),
            "1h" => Ok(Range::Coarse),
            other => Err(format!(
                "`range` is `10m` (1 s steps) or `1h` (10 s steps), not `{other}`"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Range::Fine => "10m",
            Range::Coarse => "1h",
        }
    }

    fn step(self) -> u32 {
        match self {
            Range::Fine => FINE_STEP,
            Range::Coarse => COARSE_STEP,
        }
    }

    fn span(self) -> u32 {
        match self {
            Range::Fine => FINE_POINTS as u32 * FINE_STEP,
            Range::Coarse => COARSE_POINTS as u32 * COARSE_STEP,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub range: &'static str,
    pub step_seconds: u32,
    pub points: Vec<PointView>,
    pub revisions: Vec<RevisionHistory>,
}

impl HistoryView {
    fn empty(range: Range) -> HistoryView {
        HistoryView {
            range: range.name(),
            step_seconds: range.step(),
            points: Vec::new(),
            revisions: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RevisionHistory {
    pub revision: String,
    pub points: Vec<RevisionPointView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recent {
    pub window_seconds: u32,
    #[serde(flatten)]
    pub rates: Rates,
}

pub fn unix_seconds(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(u32::MAX as u64) as u32)
}

/// Samples every service of `state` once a second, on the second, until `cancel`.
pub async fn run(state: Arc<crate::State>, cancel: CancellationToken) {
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // A little past the second, so the step's `t` is the second that just ended.
        let wait = Duration::from_millis(1000 - now.subsec_millis() as u64 + 5);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let t = unix_seconds(SystemTime::now());
        for svc in state.services.load().iter() {
            svc.history.record(svc.sample(t));
        }
    }
}

#[cfg(test)]
mod tests;
