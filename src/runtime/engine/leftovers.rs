//! What adoption sorts: what wakeway expects of a service's instances, what it finds on the
//! engine, and the two piles a leftover goes to (kept for `adopt`, or removed). Plain data, so
//! the engine core, the runtimes' backends and the sorting in `adopt.rs` all read it.

use std::collections::HashMap;
use std::time::Duration;

/// What wakeway expects of a service's instances. Not the revision label: without a state
/// file revision numbers start again with each wakeway, while spec and image say what an
/// instance runs.
pub(crate) struct Expected {
    pub(crate) spec: String,
    pub(crate) image: String,
    pub(crate) stop_grace: Duration,
}

/// An instance found on the engine that this wakeway did not start.
pub(crate) struct Leftover {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) running: bool,
    /// Paused (`docker pause`): a frozen instance, adopted frozen. Not `running` for the
    /// engine's list, but alive.
    pub(crate) paused: bool,
    /// The image id it runs, when known.
    pub(crate) image: Option<String>,
}

/// A leftover kept for its service's `adopt`.
pub(crate) struct Candidate {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) instance: String,
    pub(crate) image: Option<String>,
    /// It runs what the tag names now (or the tag names nothing the engine has).
    pub(crate) current: bool,
    /// A previous wakeway froze it.
    pub(crate) paused: bool,
}

/// A leftover to remove.
pub(crate) struct Stale {
    pub(crate) id: String,
    pub(crate) name: String,
    /// The grace of its stop when it runs.
    pub(crate) grace: Option<Duration>,
}
