//! Per-worker counters, summed when Prometheus scrapes: a request's counts stay in its worker's
//! own cache lines, so no line bounces between cores per request.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Marks the current thread as data-plane worker `index`.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The current worker's index, or `None` off the data plane.
pub fn worker() -> Option<usize> {
    WORKER.with(|w| {
        let v = w.get();
        (v != usize::MAX).then_some(v)
    })
}
