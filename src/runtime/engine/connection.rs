//! One connection to an engine, as both runtimes keep it: the client (made once the engine
//! answers), the instances it watches, what a previous wakeway left for adoption, removals in
//! the background, and the way out (`begin_exit`, `close`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use tokio::sync::OnceCell;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{self, QUICK_TIMEOUT, connect_and_negotiate};
use super::labels::in_scope;
use super::leftovers::{Candidate, Expected};
use super::watch::Watchlist;
use crate::runtime::RuntimeError;

/// What the connection is to, as errors and logs name it.
pub(crate) struct Naming {
    /// The engine: "docker engine", "swarm manager".
    pub(crate) who: &'static str,
    /// The runtime, its config table and the prefix of its logs: "docker", "swarm".
    pub(crate) runtime: &'static str,
    /// What one instance is on the engine: "container", "service".
    pub(crate) instance: &'static str,
}

pub struct EngineCore {
    pub(crate) naming: Naming,
    pub(crate) scope: String,
    pub(crate) endpoint: String,
    /// Set once the engine has answered; until then every use tries again, so an engine that
    /// comes up after wakeway is found.
    client: OnceCell<Docker>,
    /// This wakeway's instances: their exits are reported to their controllers.
    pub(crate) watched: Watchlist,
    /// Per service, what its instances must look like to be adopted (replaced when a cluster
    /// replica takes the lead: the live revisions are then the stored state's).
    pub(crate) known: arc_swap::ArcSwap<HashMap<String, Expected>>,
    /// The one look at leftovers: adoption candidates are set aside, the rest removed.
    pub(crate) swept: arc_swap::ArcSwap<OnceCell<()>>,
    pub(crate) candidates: Mutex<HashMap<String, Vec<Candidate>>>,
    /// wakeway is exiting: unless `stop_on_exit`, a stop leaves the instance running.
    exiting: AtomicBool,
    pub(crate) stop_events: CancellationToken,
    /// Removals nobody waits for (leftovers, instances that ended on their own); `close` waits
    /// for them so wakeway does not exit half-way through one.
    background: Mutex<JoinSet<()>>,
}

impl EngineCore {
    /// Does not contact the engine: an engine that is down at start only fails starts.
    pub(crate) fn new(
        naming: Naming,
        scope: String,
        endpoint: String,
        known: HashMap<String, Expected>,
    ) -> EngineCore {
        EngineCore {
            naming,
            scope,
            endpoint,
            client: OnceCell::new(),
            watched: Watchlist::default(),
            known: arc_swap::ArcSwap::from_pointee(known),
            swept: arc_swap::ArcSwap::from_pointee(OnceCell::new()),
            candidates: Mutex::new(HashMap::new()),
            exiting: AtomicBool::new(false),
            stop_events: CancellationToken::new(),
            background: Mutex::new(JoinSet::new()),
        }
    }

    /// wakeway is exiting: from now on a stop leaves the instance running unless
    /// `stop_on_exit` is set, so the next start adopts it.
    /// The next adoption looks at the engine again (a cluster replica that leads again: the
    /// instances are what other leaders left, not what this one saw before).
    pub fn forget_sweep(&self) {
        self.swept.store(std::sync::Arc::new(OnceCell::new()));
    }

    pub fn begin_exit(&self) {
        self.exiting.store(true, SeqCst);
    }

    /// Stops following events and waits for removals in progress.
    pub async fn close(&self) {
        self.stop_events.cancel();
        let mut set = std::mem::take(&mut *self.background.lock().expect("background lock"));
        while set.join_next().await.is_some() {}
    }

    /// How an instance's handle stops it. When wakeway is exiting and `stop_on_exit` is off,
    /// the instance is left running for the next start to adopt and no longer watched;
    /// otherwise it is marked as being stopped (its exit is no crash), `remove` runs, and the
    /// instance is reported `gone`.
    pub(crate) async fn stop_instance(
        &self,
        stop_on_exit: bool,
        id: &str,
        name: &str,
        remove: impl Future<Output = ()>,
        gone: String,
    ) {
        if self.exiting.load(SeqCst) && !stop_on_exit {
            let Naming {
                runtime, instance, ..
            } = self.naming;
            tracing::info!(
                "{runtime}: leaving {instance} {name} running for the next start to adopt ({runtime}.stop_on_exit = false)"
            );
            self.watched.forget(id);
            return;
        }
        self.watched.mark_stopping(id);
        remove.await;
        self.watched.report(id, |_| gone, |_| true);
    }

    pub(crate) fn unreachable(&self, e: impl std::fmt::Display) -> RuntimeError {
        let Naming { who, runtime, .. } = self.naming;
        client::unreachable(who, &self.endpoint, runtime, e)
    }

    pub(crate) fn api_error(&self, what: &str, e: DockerError) -> RuntimeError {
        client::api_error(self.naming.runtime, what, e, |e| self.unreachable(e))
    }

    /// An engine call that should answer at once: one that does not within `QUICK_TIMEOUT`
    /// finds the engine unreachable.
    pub(crate) async fn quick<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, DockerError>>,
    ) -> Result<T, RuntimeError> {
        tokio::time::timeout(QUICK_TIMEOUT, call)
            .await
            .map_err(|_| self.unreachable(format!("no answer within {QUICK_TIMEOUT:?}")))?
            .map_err(|e| self.api_error(what, e))
    }

    /// The client, once the engine has answered and the API version is agreed.
    pub(crate) async fn client(&self) -> Result<&Docker, RuntimeError> {
        self.client
            .get_or_try_init(|| async {
                connect_and_negotiate(&self.endpoint)
                    .await
                    .map_err(|e| self.unreachable(e))
            })
            .await
    }

    /// The client if the engine has ever answered, without waiting for it.
    pub(crate) fn connected(&self) -> Option<Docker> {
        self.client.get().cloned()
    }

    /// The id of the image `image` names on the engine now; `None` when it cannot tell.
    pub(crate) async fn image_id(&self, image: &str) -> Option<String> {
        let docker = self.client().await.ok()?;
        self.quick("inspect image", docker.inspect_image(image))
            .await
            .ok()?
            .id
    }

    pub(crate) fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.background.lock().expect("background lock").spawn(task);
    }

    /// Whether what holds a name wakeway wants is a leftover of this scope that this wakeway
    /// does not watch (a previous one stopped before removing it), which may then be removed
    /// so the name can be used. Never one of another scope or one this wakeway runs.
    pub(crate) fn holds_name_stale(
        &self,
        name: &str,
        id: &str,
        labels: &HashMap<String, String>,
    ) -> bool {
        if !in_scope(labels, &self.scope) || self.watched.contains(id) {
            return false;
        }
        let Naming {
            runtime, instance, ..
        } = self.naming;
        tracing::info!("{runtime}: removing leftover {instance} {name} to reuse its name");
        true
    }

    /// The candidates the sweep set aside for `service`, handed out once.
    pub(crate) fn take_candidates(&self, service: &str) -> Vec<Candidate> {
        self.candidates
            .lock()
            .expect("candidates lock")
            .remove(service)
            .unwrap_or_default()
    }
}
