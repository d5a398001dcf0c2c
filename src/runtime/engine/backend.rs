//! What a runtime supplies to the engine core: how it hears of exits (the container events it
//! wants, what it does with one, how it looks again at what it watches) and how it finds and
//! removes leftovers. The core's `follow` and `sweep` do the rest, once for both runtimes.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::EventMessage;

use super::connection::EngineCore;
use super::leftovers::{Leftover, Stale};
use crate::runtime::RuntimeError;

pub(crate) trait Backend: Deref<Target = EngineCore> + Send + Sync + 'static {
    /// The container events it acts on.
    const EVENTS: &'static [&'static str];
    /// How often `recheck` runs besides on each (re)connection: `None`, only then.
    const RECHECK_EVERY: Option<Duration>;
    /// What its spec fingerprint covers, for the log of a leftover whose spec differs.
    const SPEC_COVERS: &'static str;

    /// The client, once the engine answers as this runtime needs it to.
    fn ready_client(&self) -> impl Future<Output = Result<Docker, RuntimeError>> + Send;

    fn on_event(self: &Arc<Self>, ev: EventMessage);

    /// Looks at every watched instance and reports those that ended unheard.
    fn recheck(
        self: &Arc<Self>,
        docker: &Docker,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Everything of the scope on the engine that may be a leftover.
    fn leftovers(
        &self,
        docker: &Docker,
    ) -> impl Future<Output = Result<Vec<Leftover>, RuntimeError>> + Send;

    /// The image a revision of a service is pinned to, if it persists.
    fn pinned(&self, _service: &str, _revision: &str) -> Option<String> {
        None
    }

    /// Removes a leftover (in the background where its stop takes a while).
    fn remove_leftover(
        self: &Arc<Self>,
        docker: &Docker,
        stale: Stale,
    ) -> impl Future<Output = ()> + Send;
}
