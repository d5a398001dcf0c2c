//! What starts and stops instances. The controller speaks only this trait; each runtime hides how
//! an instance is made (a child process, a container) and reports when it exits on its own.

pub mod cgroup;
pub mod docker;
pub mod engine;
#[cfg(test)]
pub mod fake;
pub mod fixed;
pub mod output;
pub mod process;
pub mod socket_activation;
pub mod swarm;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Defined beside the config's `Source`, which it is read from.
pub use crate::config::RuntimeKind;

/// A loopback port that was free a moment ago. Another process may take it before the instance
/// binds: the controller retries an instance that exits at once on a new port.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let probe = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
    Ok(probe.local_addr()?.port())
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
    /// and returns once it is gone. A frozen instance is thawed first, so that it can act on it.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()>;

    /// Stops every process of the instance where it is (cgroup freezer, `docker pause`): it
    /// keeps its memory and sockets and uses no CPU. Returns once it is frozen.
    fn freeze(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async { Err(RuntimeError::unsupported("freezing")) })
    }

    /// Lets a frozen instance run again.
    fn thaw(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async { Err(RuntimeError::unsupported("thawing")) })
    }

    /// Bytes of memory the instance holds, when the runtime can tell.
    fn memory(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async { None })
    }
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

impl RuntimeError {
    pub fn unsupported(what: &str) -> RuntimeError {
        RuntimeError {
            message: format!("{what} is not supported by this runtime"),
            retryable: false,
        }
    }
}

/// An instance a previous wakeway started and left running, found again at start. Like a
/// [`Started`] one it is probed before it is published.
pub struct Adopted {
    /// Its instance id, as the previous wakeway named it.
    pub instance: String,
    pub started: Started,
    /// The previous wakeway froze it (a paused container): it is still frozen.
    pub frozen: bool,
}

pub trait Runtime: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>>;

    /// Whether a started instance is ready at once: its listening socket was bound by wakeway
    /// and handed over (socket activation), so requests wait in its backlog, not for a probe.
    fn ready_on_start(&self) -> bool {
        false
    }

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
