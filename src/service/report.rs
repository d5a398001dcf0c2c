//! What the data plane tells the controller, and the one-deadline acquire. (Interim: the
//! control-plane rework replaces these with the controller's own decisions.)

use std::sync::Arc;

use super::activator::ActivatorError;
use super::instance::{Instance, InstanceState};
use super::{InFlight, Service};

impl Service {
    /// A refused connect proves the instance is gone.
    pub fn report_refused(&self, instance: &Arc<Instance>) {
        if instance.transition(InstanceState::Ready, InstanceState::Unhealthy) {
            self.report_unreachable();
        }
    }

    /// A connect that timed out: the instance may only be busy.
    pub fn report_timeout(&self, _instance: &Arc<Instance>) {}

    pub async fn acquire_by(
        self: &Arc<Self>,
        _deadline: tokio::time::Instant,
    ) -> Result<InFlight, ActivatorError> {
        self.acquire().await
    }
}
