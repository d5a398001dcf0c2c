//! What starts and stops instances. The controller speaks only this trait; each runtime hides how
//! an instance is made (a child process, a container) and reports when it exits on its own.

pub mod docker;
pub mod engine;
#[cfg(test)]
pub mod fake;
pub mod fixed;
pub mod output;
pub mod process;
pub mod swarm;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which runtime a service's source picks: `command` → process, `image` → docker or swarm,
/// `upstreams` → static. Decisions are taken on this, never on its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Process,
    Docker,
    Swarm,
    Static,
}

impl RuntimeKind {
    pub fn of(source: &crate::config::Source) -> RuntimeKind {
        use crate::config::{ImageRuntime, Source};
        match source {
            Source::Command(_) => RuntimeKind::Process,
            Source::Upstreams(_) => RuntimeKind::Static,
            Source::Image(img) => match img.runtime {
                ImageRuntime::Docker => RuntimeKind::Docker,
                ImageRuntime::Swarm => RuntimeKind::Swarm,
            },
        }
    }

    /// The name users read (config docs, admin API, `wakeway check`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Swarm => "swarm",
            RuntimeKind::Static => "static",
        }
    }

    /// Whether wakeway starts instances: a static upstream is only ever there or not, and has
    /// no exit notice.
    pub fn starts_instances(self) -> bool {
        self != RuntimeKind::Static
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a runtime needs to start one instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub service: String,
    pub revision: String,
    pub instance: String,
    /// The service's env plus PORT, WAKEWAY_SERVICE, WAKEWAY_REVISION, WAKEWAY_INSTANCE.
    pub env: BTreeMap<String, String>,
}

/// A started instance. Not yet ready: the controller probes it.
pub struct Started {
    pub address: SocketAddr,
    pub pid: Option<u32>,
    /// Becomes `Some(reason)` when the instance is gone, whether it exited or was stopped.
    pub exited: watch::Receiver<Option<String>>,
    pub handle: Box<dyn InstanceHandle>,
}

pub trait InstanceHandle: Send + Sync {
    /// Asks the instance to stop (SIGTERM or the runtime's equivalent), forces it after `grace`,
    /// and returns once it is gone.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()>;
}

#[derive(Debug, Clone)]
pub struct RuntimeError {
    pub message: String,
    /// A new attempt may succeed (a port race), as opposed to a broken command.
    pub retryable: bool,
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuntimeError {}

/// An instance a previous wakeway started and left running, found again at start. Like a
/// [`Started`] one it is probed before it is published.
pub struct Adopted {
    /// Its instance id, as the previous wakeway named it.
    pub instance: String,
    pub started: Started,
}

pub trait Runtime: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>>;

    /// What the source is right now, as a token that changes when it changes underneath (the
    /// image id behind a tag, the executable's modification time). `deploy.auto` deploys when
    /// it changes. `None`: the runtime cannot tell.
    fn source_version(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }

    /// The running instances of `service` at `revision` left by a previous wakeway. Called once,
    /// before the first start. Runtimes whose instances never outlive wakeway have none.
    fn adopt<'a>(
        &'a self,
        _service: &'a str,
        _revision: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Adopted>, RuntimeError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Fills the environment every instance gets.
pub fn instance_env(
    base: &BTreeMap<String, String>,
    spec_service: &str,
    revision: &str,
    instance: &str,
    port: u16,
) -> BTreeMap<String, String> {
    let mut env = base.clone();
    env.insert("PORT".into(), port.to_string());
    env.insert("WAKEWAY_SERVICE".into(), spec_service.into());
    env.insert("WAKEWAY_REVISION".into(), revision.into());
    env.insert("WAKEWAY_INSTANCE".into(), instance.into());
    env
}
