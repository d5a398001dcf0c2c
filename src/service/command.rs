//! What the admin API, the reloader and the request path ask of a service's controller.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::instance::Instance;
use crate::config::ServiceConfig;

pub type Reply<T> = oneshot::Sender<Result<T, String>>;

pub enum Command {
    /// Make a new revision from `config`'s source and switch to it blue/green. Replies with the
    /// deployment id once the deployment has begun.
    Deploy {
        config: Box<ServiceConfig>,
        trigger: &'static str,
        reply: Reply<String>,
    },
    /// Deploy the revision before the current one, the same way.
    Rollback {
        reply: Reply<String>,
    },
    /// Drain every instance and answer 503 until resumed.
    Pause {
        reply: Reply<()>,
    },
    Resume {
        reply: Reply<()>,
    },
    /// Settings that are not part of a revision (scaling, health, queue, deploy, hosts).
    Update {
        config: Box<ServiceConfig>,
    },
    /// The service left the config: drain and stop everything, then end the controller.
    Remove,
    /// The request path's connect was refused: the instance is gone.
    Refused(Arc<Instance>),
    /// The request path's connect timed out: one strike toward the unhealthy threshold.
    ConnectTimeout(Arc<Instance>),
}
