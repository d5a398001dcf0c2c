//! The connection to one engine, shared by every docker service: what the engine core keeps
//! (client, watched containers, leftovers), the image pins and how containers are removed.
//! Exit notices are in `backend.rs`, leftovers of a previous wakeway in `adopt.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    LogsOptions, RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::*;
use crate::config::{DockerConfig, ImageRuntime, ServiceConfig};
use crate::runtime::engine::adopt::expected;
use crate::runtime::engine::connection::{EngineCore, Naming};
use crate::runtime::engine::follow::follow;
use crate::runtime::output;

/// The connection to one engine, shared by every docker service.
pub struct DockerEngine {
    pub(super) cfg: DockerConfig,
    pub(super) core: EngineCore,
    /// Whether containers are reached on their own network address (see `reach.rs`); learned
    /// from the first container.
    pub(super) direct: OnceCell<bool>,
    /// The image id each revision runs, by service and revision (see `pin.rs`).
    pub(super) pins: Mutex<HashMap<String, HashMap<String, String>>>,
    /// Where the pins outlive wakeway; `None` without a state file.
    pub(super) store: Option<Arc<dyn PinStore>>,
}

/// What every engine connection keeps and does (its client, watched containers, leftovers,
/// `begin_exit` and `close`) is the core's.
impl std::ops::Deref for DockerEngine {
    type Target = EngineCore;

    fn deref(&self) -> &EngineCore {
        &self.core
    }
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
        let known = expected(services, ImageRuntime::Docker, |img, svc| {
            spec_fingerprint(&cfg, img, &svc.env)
        });
        let naming = Naming {
            who: "docker engine",
            runtime: "docker",
            instance: "container",
        };
        let core = EngineCore::new(naming, cfg.scope.clone(), resolve_endpoint(&cfg), known);
        let engine = Arc::new(DockerEngine {
            cfg,
            core,
            direct: OnceCell::new(),
            pins: Mutex::new(HashMap::new()),
            store,
        });
        tokio::spawn(follow(engine.clone()));
        engine
    }

    /// What the instances of `services` must look like to be adopted from now on (a cluster
    /// replica that takes the lead: the live revisions are the ones the previous leader ran).
    pub fn expect(&self, services: &[&ServiceConfig]) {
        let known = expected(services, ImageRuntime::Docker, |img, svc| {
            spec_fingerprint(&self.cfg, img, &svc.env)
        });
        self.core.known.store(Arc::new(known));
    }

    /// Reports the exit (first reason wins) and, when `forget`, stops tracking the container.
    pub(super) fn report_exit(&self, id: &str, reason: impl FnOnce(&str) -> String, forget: bool) {
        self.core.watched.report(id, reason, |_| forget);
    }

    /// Removes a container (and its anonymous volumes), stopping it first when `grace` is given.
    pub(super) async fn remove(docker: &Docker, id: &str, name: &str, grace: Option<Duration>) {
        if let Some(grace) = grace {
            // A paused (frozen) container cannot act on its stop signal; one that is not
            // paused answers 409, which changes nothing.
            let _ = docker.unpause_container(id).await;
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
        self.core.spawn_background(async move {
            DockerEngine::remove(&docker, &id, &retired, grace).await;
        });
    }

    /// Removes a container this wakeway watches but will not use, and forgets it.
    pub(super) async fn discard(
        &self,
        docker: &Docker,
        id: &str,
        name: &str,
        grace: Option<Duration>,
    ) {
        self.core.watched.mark_stopping(id);
        DockerEngine::remove(docker, id, name, grace).await;
        self.report_exit(id, |name| format!("container {name} removed"), true);
    }

    /// Mirrors a container's output into wakeway's log, like the process runtime does.
    pub(super) fn follow_logs(&self, id: &str, src: output::Source, from_start: bool) {
        let Some(docker) = self.core.connected() else {
            return;
        };
        let id = id.to_string();
        let stop = self.core.stop_events.clone();
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
