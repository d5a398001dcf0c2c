//! The connection to one engine, shared by every docker service: container exits from the
//! event stream, and removals.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::EventMessage;
use bollard::query_parameters::{
    EventsOptions, LogsOptions, RemoveContainerOptions, RenameContainerOptions,
    StopContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::adopt::{Candidate, Expected};
use super::*;
use crate::config::{DockerConfig, ImageRuntime, ServiceConfig, Source};
use crate::runtime::RuntimeError;
use crate::runtime::engine::client::unix_now_nanos;
use crate::runtime::output;

pub(super) struct Watched {
    pub(super) name: String,
    pub(super) exited: watch::Sender<Option<String>>,
    /// wakeway is stopping it: the stop path removes it, not the event handler.
    pub(super) stopping: bool,
}

/// The connection to one engine, shared by every docker service.
pub struct DockerEngine {
    pub(super) cfg: DockerConfig,
    pub(super) endpoint: String,
    /// Set once the engine has answered; until then every use tries again, so an engine that
    /// comes up after wakeway is found.
    pub(super) client: OnceCell<Docker>,
    /// Containers of this wakeway, by id: their exits are reported from the event stream.
    pub(super) watched: Mutex<HashMap<String, Watched>>,
    /// Per service, what its containers must look like to be adopted.
    pub(super) known: HashMap<String, Expected>,
    /// The one look at leftover containers: adoption candidates are set aside, the rest removed.
    pub(super) swept: OnceCell<()>,
    pub(super) candidates: Mutex<HashMap<String, Vec<Candidate>>>,
    /// wakeway is exiting: with `stop_on_exit = false` containers are left running.
    pub(super) exiting: AtomicBool,
    pub(super) stop_events: CancellationToken,
    /// Removals that nobody waits for (stale containers, ones that died on their own); `close`
    /// waits for them so wakeway does not exit half-way through one.
    pub(super) background: Mutex<JoinSet<()>>,
    /// Whether containers are reached on their own network address (see `reach.rs`); learned
    /// from the first container.
    pub(super) direct: OnceCell<bool>,
    /// The image id each revision runs, by service and revision (see `pin.rs`).
    pub(super) pins: Mutex<HashMap<String, HashMap<String, String>>>,
    /// Where the pins outlive wakeway; `None` without a state file.
    pub(super) store: Option<Arc<dyn PinStore>>,
}

impl DockerEngine {
    /// Does not contact the engine: an engine that is down at start only fails docker starts.
    /// `services` are the docker services of the config wakeway starts with; `store` keeps
    /// the image pins across restarts.
    pub fn new(
        cfg: DockerConfig,
        services: &[&ServiceConfig],
        store: Option<Arc<dyn PinStore>>,
    ) -> Arc<DockerEngine> {
        let endpoint = resolve_endpoint(&cfg);
        let known = services
            .iter()
            .filter_map(|svc| {
                let Source::Image(img) = &svc.source else {
                    return None;
                };
                if img.runtime != ImageRuntime::Docker {
                    return None;
                }
                Some((
                    svc.name.clone(),
                    Expected {
                        spec: spec_fingerprint(&cfg, img, &svc.env),
                        image: img.image.clone(),
                        stop_grace: svc.deploy.stop_grace,
                    },
                ))
            })
            .collect();
        let engine = Arc::new(DockerEngine {
            cfg,
            endpoint,
            client: OnceCell::new(),
            watched: Mutex::new(HashMap::new()),
            known,
            swept: OnceCell::new(),
            candidates: Mutex::new(HashMap::new()),
            exiting: AtomicBool::new(false),
            stop_events: CancellationToken::new(),
            background: Mutex::new(JoinSet::new()),
            direct: OnceCell::new(),
            pins: Mutex::new(HashMap::new()),
            store,
        });
        tokio::spawn(engine.clone().follow_events());
        engine
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// wakeway is exiting: from now on a stop leaves the container running unless
    /// `stop_on_exit` is set, so the next start adopts it.
    pub fn begin_exit(&self) {
        self.exiting.store(true, SeqCst);
    }

    /// Stops following events and waits for removals in progress.
    pub async fn close(&self) {
        self.stop_events.cancel();
        let mut set = std::mem::take(&mut *self.background.lock().expect("background lock"));
        while set.join_next().await.is_some() {}
    }

    pub(super) fn unreachable(&self, e: impl std::fmt::Display) -> RuntimeError {
        client::unreachable("docker engine", &self.endpoint, "docker", e)
    }

    pub(super) fn api_error(&self, what: &str, e: DockerError) -> RuntimeError {
        client::api_error("docker", what, e, |e| self.unreachable(e))
    }

    /// The client, once the engine has answered and the API version is agreed.
    pub(super) async fn client(&self) -> Result<&Docker, RuntimeError> {
        self.client
            .get_or_try_init(|| async {
                connect_and_negotiate(&self.endpoint)
                    .await
                    .map_err(|e| self.unreachable(e))
            })
            .await
    }

    /// The client if the engine has ever answered, without waiting for it.
    pub(super) fn connected(&self) -> Option<Docker> {
        self.client.get().cloned()
    }

    pub(super) fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.background.lock().expect("background lock").spawn(task);
    }

    pub(super) fn watch(&self, id: &str, name: &str) -> watch::Receiver<Option<String>> {
        let (tx, rx) = watch::channel(None);
        self.watched.lock().expect("watched lock").insert(
            id.to_string(),
            Watched {
                name: name.to_string(),
                exited: tx,
                stopping: false,
            },
        );
        rx
    }

    /// Reports the exit (first reason wins) and, when `forget`, stops tracking the container.
    pub(super) fn report_exit(&self, id: &str, reason: impl FnOnce(&str) -> String, forget: bool) {
        let mut watched = self.watched.lock().expect("watched lock");
        if let Some(w) = watched.get(id) {
            let reason = reason(&w.name);
            w.exited.send_if_modified(|r| {
                if r.is_none() {
                    *r = Some(reason);
                    true
                } else {
                    false
                }
            });
        }
        if forget {
            watched.remove(id);
        }
    }

    /// Removes a container (and its anonymous volumes), stopping it first when `grace` is given.
    pub(super) async fn remove(docker: &Docker, id: &str, name: &str, grace: Option<Duration>) {
        if let Some(grace) = grace {
            let t = grace.as_secs_f64().ceil() as i32;
            let opts = StopContainerOptions {
                t: Some(t),
                signal: None,
            };
            // The engine answers a stop only when the container is gone: the request may take
            // the whole grace, which can exceed the usual API timeout.
            let patient = docker.clone().with_timeout(grace + API_TIMEOUT);
            match patient.stop_container(id, Some(opts)).await {
                Ok(()) => {}
                // 304: already stopped; 404: already gone.
                Err(e) if matches!(status_of(&e), Some(304 | 404)) => {}
                Err(e) => tracing::warn!("docker: cannot stop container {name}: {e}"),
            }
        }
        let opts = RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        match docker.remove_container(id, Some(opts)).await {
            Ok(()) => {}
            // 404: gone; 409: a removal is already in progress.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => {}
            Err(e) => tracing::warn!(
                "docker: cannot remove container {name}: {e}; the next start of wakeway removes it"
            ),
        }
    }

    /// Gets a container out of the way at once and removes it in the background: it is
    /// renamed first, so its name is free for a new instance while it finishes its stop grace.
    pub(super) async fn retire(
        &self,
        docker: &Docker,
        id: String,
        name: String,
        grace: Option<Duration>,
    ) {
        let short = &id[..id.len().min(12)];
        let retired = if name.ends_with(short) {
            name
        } else {
            let retired = format!("{name}-retired-{short}");
            let opts = RenameContainerOptions {
                name: retired.clone(),
            };
            match docker.rename_container(&id, opts).await {
                Ok(()) => retired,
                Err(_) => name,
            }
        };
        let docker = docker.clone();
        self.spawn_background(async move {
            DockerEngine::remove(&docker, &id, &retired, grace).await;
        });
    }

    // -----------------------------------------------------------------------------------------
    // Events

    /// Follows `die`, `oom` and `destroy` of this scope's containers until `close`, reconnecting
    /// with backoff. Instances keep serving while the stream is down; on reconnect the watched
    /// containers are inspected, so an exit missed meanwhile is still reported.
    pub(super) async fn follow_events(self: Arc<Self>) {
        let mut backoff = EVENTS_BACKOFF_MIN;
        let mut down_since_logged = false;
        // Replaying from just before the connection covers a container that dies while the
        // stream is being set up; duplicates are harmless (the first reason wins).
        let mut since = unix_now_nanos().saturating_sub(1_000_000_000);
        loop {
            let docker = match self.client().await {
                Ok(d) => d.clone(),
                Err(e) => {
                    if !down_since_logged {
                        tracing::error!("{e}; docker services answer 503 until it is back");
                        down_since_logged = true;
                    }
                    if self.pause(&mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            let mut filters = HashMap::new();
            filters.insert("type".to_string(), vec!["container".to_string()]);
            filters.insert("label".to_string(), scope_filter(&self.cfg.scope));
            filters.insert(
                "event".to_string(),
                vec!["die".into(), "oom".into(), "destroy".into()],
            );
            let opts = EventsOptions {
                since: Some(format!(
                    "{}.{:09}",
                    since / 1_000_000_000,
                    since % 1_000_000_000
                )),
                until: None,
                filters: Some(filters),
            };
            let mut stream = docker.events(Some(opts));
            match self.recheck_watched(&docker).await {
                Ok(()) => {
                    if down_since_logged {
                        tracing::info!("docker engine at {} is reachable again", self.endpoint);
                        down_since_logged = false;
                    }
                }
                Err(e) => {
                    if !down_since_logged {
                        tracing::error!("{e}; docker services answer 503 until it is back");
                        down_since_logged = true;
                    }
                    if self.pause(&mut backoff).await {
                        return;
                    }
                    continue;
                }
            }
            loop {
                let item = tokio::select! {
                    _ = self.stop_events.cancelled() => return,
                    item = stream.next() => item,
                };
                match item {
                    Some(Ok(ev)) => {
                        backoff = EVENTS_BACKOFF_MIN;
                        if let Some(t) = ev.time_nano {
                            since = since.max(t.max(0) as u64);
                        }
                        self.on_event(ev);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(
                            "docker event stream from {} failed: {e}; reconnecting",
                            self.endpoint
                        );
                        break;
                    }
                    None => {
                        tracing::warn!(
                            "docker event stream from {} ended; reconnecting",
                            self.endpoint
                        );
                        break;
                    }
                }
            }
            if self.pause(&mut backoff).await {
                return;
            }
        }
    }

    /// Sleeps the backoff (doubling it); true when `close` was called meanwhile.
    pub(super) async fn pause(&self, backoff: &mut Duration) -> bool {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(EVENTS_BACKOFF_MAX);
        tokio::select! {
            _ = self.stop_events.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }

    pub(super) fn on_event(self: &Arc<Self>, ev: EventMessage) {
        let Some(actor) = ev.actor else {
            return;
        };
        let Some(id) = actor.id else {
            return;
        };
        let attrs = actor.attributes.unwrap_or_default();
        match ev.action.as_deref() {
            Some("oom") => self.report_exit(
                &id,
                |name| {
                    format!("container {name} ran out of memory (its memory limit) and was killed")
                },
                false,
            ),
            Some("die") => {
                let code = attrs.get("exitCode").and_then(|c| c.parse().ok());
                self.report_exit(&id, |name| exit_reason(name, code), false);
                let stopping = self
                    .watched
                    .lock()
                    .expect("watched lock")
                    .get(&id)
                    .map(|w| (w.stopping, w.name.clone()));
                // A container that died on its own is removed here: nothing else would, and
                // stopped containers must not pile up.
                if let (Some((false, name)), Some(docker)) = (stopping, self.connected()) {
                    self.spawn_background(async move {
                        DockerEngine::remove(&docker, &id, &name, None).await;
                    });
                }
            }
            Some("destroy") => {
                self.report_exit(&id, |name| format!("container {name} was removed"), true)
            }
            _ => {}
        }
    }

    /// Inspects every watched container: reports the ones that stopped or vanished.
    pub(super) async fn recheck_watched(
        self: &Arc<Self>,
        docker: &Docker,
    ) -> Result<(), RuntimeError> {
        let ids: Vec<(String, bool)> = self
            .watched
            .lock()
            .expect("watched lock")
            .iter()
            .map(|(id, w)| (id.clone(), w.stopping))
            .collect();
        for (id, stopping) in ids {
            match docker.inspect_container(&id, None).await {
                Ok(c) => {
                    let state = c.state.unwrap_or_default();
                    if state.running != Some(true) {
                        let code = state.exit_code;
                        self.report_exit(&id, |name| exit_reason(name, code), false);
                        if !stopping {
                            let name = c.name.unwrap_or_default();
                            let docker = docker.clone();
                            self.spawn_background(async move {
                                DockerEngine::remove(&docker, &id, &name, None).await;
                            });
                        }
                    }
                }
                Err(e) if status_of(&e) == Some(404) => {
                    self.report_exit(&id, |name| format!("container {name} is gone"), true)
                }
                Err(e) => return Err(self.api_error("inspect", e)),
            }
        }
        Ok(())
    }

    /// Removes a container this wakeway watches but will not use, and forgets it.
    pub(super) async fn discard(
        &self,
        docker: &Docker,
        id: &str,
        name: &str,
        grace: Option<Duration>,
    ) {
        self.mark_stopping(id);
        DockerEngine::remove(docker, id, name, grace).await;
        self.report_exit(id, |name| format!("container {name} removed"), true);
    }

    pub(super) fn mark_stopping(&self, id: &str) {
        if let Some(w) = self.watched.lock().expect("watched lock").get_mut(id) {
            w.stopping = true;
        }
    }

    /// Mirrors a container's output into wakeway's log, like the process runtime does.
    pub(super) fn follow_logs(&self, id: &str, src: output::Source, from_start: bool) {
        let Some(docker) = self.connected() else {
            return;
        };
        let id = id.to_string();
        let stop = self.stop_events.clone();
        tokio::spawn(async move {
            let opts = LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                tail: if from_start { "all".into() } else { "0".into() },
                ..Default::default()
            };
            let mut logs = docker.logs(&id, Some(opts));
            // Each stream's partial last line, until its newline arrives.
            let mut pending = [String::new(), String::new()];
            loop {
                let chunk = tokio::select! {
                    _ = stop.cancelled() => break,
                    chunk = logs.next() => chunk,
                };
                let Some(Ok(chunk)) = chunk else { break };
                let (stream, i) = match chunk {
                    LogOutput::StdErr { .. } => (output::Stream::Stderr, 1),
                    _ => (output::Stream::Stdout, 0),
                };
                pending[i].push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                while let Some(end) = pending[i].find('\n') {
                    let line: String = pending[i].drain(..=end).collect();
                    output::record(&src, stream, &line);
                }
            }
            for (i, stream) in [output::Stream::Stdout, output::Stream::Stderr]
                .into_iter()
                .enumerate()
            {
                if !pending[i].is_empty() {
                    output::record(&src, stream, &pending[i]);
                }
            }
        });
    }
}
