//! The `docker` runtime: each instance is a container on the local engine, reached through a
//! port the engine publishes on `docker.publish_address`.
//!
//! One [`DockerEngine`] per wakeway talks to the engine for every docker service: it follows the
//! engine's event stream (so a container that dies leaves the pool at once), removes containers
//! it no longer wants, and at start finds the containers a previous wakeway left running.
//! A [`DockerRuntime`] per service turns that into the [`Runtime`] the controller speaks.
//!
//! Containers carry labels (`wakeway.managed`, `wakeway.scope`, `wakeway.service`,
//! `wakeway.revision`, `wakeway.instance`, `wakeway.spec`), which is how a restarted wakeway
//! recognises its own: running ones of a known service at its current revision (the same spec
//! and the same image behind the tag) are adopted, all others in its scope are removed, so a
//! restart neither duplicates nor orphans containers.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummaryStateEnum, EventMessage,
    HostConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Adopted, BoxFuture, InstanceHandle, InstanceSpec, Runtime, RuntimeError, Started};
use crate::config::{self, Config, DockerConfig, ImageRuntime, ImageSource, ServiceConfig, Source};

pub const LABEL_MANAGED: &str = "wakeway.managed";
pub const LABEL_SCOPE: &str = "wakeway.scope";
pub const LABEL_SERVICE: &str = "wakeway.service";
pub const LABEL_REVISION: &str = "wakeway.revision";
pub const LABEL_INSTANCE: &str = "wakeway.instance";
/// A fingerprint of everything that shapes a container (image reference, port, limits, env,
/// network): a container whose fingerprint differs from the config's is stale.
pub const LABEL_SPEC: &str = "wakeway.spec";

/// The label the engine puts on every swarm task's container.
pub(crate) const SWARM_SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";
/// Where the engine listens when neither `docker.endpoint` nor `$DOCKER_HOST` says.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// bollard's per-request limit (to response headers); a stop gets its grace on top.
pub(crate) const API_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const EVENTS_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const EVENTS_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Grace for containers of unknown services, as `docker stop` gives by default.
const UNKNOWN_STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `wakeway check` and adoption wait for an engine that accepts but does not answer.
pub(crate) const QUICK_TIMEOUT: Duration = Duration::from_secs(10);

/// The engine address in effect: `docker.endpoint`, else `$DOCKER_HOST`, else the local socket.
pub fn resolve_endpoint(cfg: &DockerConfig) -> String {
    endpoint_or_default(cfg.endpoint.as_deref())
}

/// `configured`, else `$DOCKER_HOST`, else the local socket.
pub(crate) fn endpoint_or_default(configured: Option<&str>) -> String {
    configured
        .map(str::to_string)
        .or_else(|| {
            std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// A client for `endpoint`. Nothing is sent yet, but a missing socket is noticed here.
fn connect(endpoint: &str) -> Result<Docker, DockerError> {
    if endpoint.starts_with("unix://") {
        Docker::connect_with_unix(
            endpoint,
            API_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(
            endpoint,
            API_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
    } else {
        Err(DockerError::UnsupportedURISchemeError {
            uri: endpoint.to_string(),
        })
    }
}

/// A client that has agreed the API version with the engine (which may be older than bollard).
pub(crate) async fn connect_and_negotiate(endpoint: &str) -> Result<Docker, String> {
    let docker = connect(endpoint).map_err(|e| e.to_string())?;
    match tokio::time::timeout(QUICK_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {QUICK_TIMEOUT:?}")),
    }
}

/// `wakeway-<service>-<instance>`, with the scope after `wakeway-` when it is not the default,
/// so two scopes on one engine never fight over a name.
pub fn container_name(scope: &str, service: &str, instance: &str) -> String {
    if scope == DockerConfig::DEFAULT_SCOPE {
        format!("wakeway-{service}-{instance}")
    } else {
        format!("wakeway-{scope}-{service}-{instance}")
    }
}

/// The fingerprint stored in [`LABEL_SPEC`]. FNV-1a rather than `DefaultHasher`, whose output
/// may change between Rust releases and would then orphan every container on upgrade.
pub fn spec_fingerprint(
    docker: &DockerConfig,
    img: &ImageSource,
    env: &BTreeMap<String, String>,
) -> String {
    let mut text = format!(
        "image={}\nport={}\ncpus={:?}\nmemory={:?}\nstop_signal={:?}\nnetwork={}\npublish={}\n",
        img.image,
        img.port,
        img.cpus,
        img.memory,
        img.stop_signal
            .as_deref()
            .and_then(config::canonical_signal),
        docker.network,
        docker.publish_address,
    );
    for (k, v) in env {
        text.push_str(&format!("env {k}={v}\n"));
    }
    fnv1a(&text)
}

/// FNV-1a of `text`, as 16 hex digits: stable across Rust releases, unlike `DefaultHasher`.
pub(crate) fn fnv1a(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// A human reason for a container's exit code.
pub(crate) fn exit_reason(name: &str, code: Option<i64>) -> String {
    match code {
        Some(c) if c > 128 && c < 128 + 65 => {
            let sig = nix::sys::signal::Signal::try_from((c - 128) as i32)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {}", c - 128));
            format!("container {name} exited with code {c} ({sig})")
        }
        Some(c) => format!("container {name} exited with code {c}"),
        None => format!("container {name} exited"),
    }
}

pub(crate) fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// What wakeway expects of a service's containers. Not the revision label: revision numbers
/// start again with each wakeway, while spec and image say what a container runs.
struct Expected {
    spec: String,
    image: String,
    stop_grace: Duration,
}

/// A container left running by a previous wakeway, kept for its service's `adopt`.
struct Candidate {
    id: String,
    name: String,
    instance: String,
}

struct Watched {
    name: String,
    exited: watch::Sender<Option<String>>,
    /// wakeway is stopping it: the stop path removes it, not the event handler.
    stopping: bool,
}

/// The connection to one engine, shared by every docker service.
pub struct DockerEngine {
    cfg: DockerConfig,
    endpoint: String,
    /// Set once the engine has answered; until then every use tries again, so an engine that
    /// comes up after wakeway is found.
    client: OnceCell<Docker>,
    /// Containers of this wakeway, by id: their exits are reported from the event stream.
    watched: Mutex<HashMap<String, Watched>>,
    /// Per service, what its containers must look like to be adopted.
    known: HashMap<String, Expected>,
    /// The one look at leftover containers: adoption candidates are set aside, the rest removed.
    swept: OnceCell<()>,
    candidates: Mutex<HashMap<String, Vec<Candidate>>>,
    /// wakeway is exiting: with `stop_on_exit = false` containers are left running.
    exiting: AtomicBool,
    stop_events: CancellationToken,
    /// Removals that nobody waits for (stale containers, ones that died on their own); `close`
    /// waits for them so wakeway does not exit half-way through one.
    background: Mutex<JoinSet<()>>,
}

impl DockerEngine {
    /// Does not contact the engine: an engine that is down at start only fails docker starts.
    /// `services` are the docker services of the config wakeway starts with.
    pub fn new(cfg: DockerConfig, services: &[&ServiceConfig]) -> Arc<DockerEngine> {
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

    fn unreachable(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError {
            message: format!(
                "docker engine at {} is unreachable: {e}; is the engine running? (set [docker] endpoint or DOCKER_HOST)",
                self.endpoint
            ),
            retryable: false,
        }
    }

    /// An API error: the engine's own message when it answered, "unreachable" when it did not.
    fn api_error(&self, what: &str, e: DockerError) -> RuntimeError {
        match e {
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } => RuntimeError {
                message: format!("docker: {what}: {message} (HTTP {status_code})"),
                retryable: false,
            },
            other => self.unreachable(other),
        }
    }

    /// The client, once the engine has answered and the API version is agreed.
    async fn client(&self) -> Result<&Docker, RuntimeError> {
        self.client
            .get_or_try_init(|| async {
                connect_and_negotiate(&self.endpoint)
                    .await
                    .map_err(|e| self.unreachable(e))
            })
            .await
    }

    /// The client if the engine has ever answered, without waiting for it.
    fn connected(&self) -> Option<Docker> {
        self.client.get().cloned()
    }

    fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.background.lock().expect("background lock").spawn(task);
    }

    fn watch(&self, id: &str, name: &str) -> watch::Receiver<Option<String>> {
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
    fn report_exit(&self, id: &str, reason: impl FnOnce(&str) -> String, forget: bool) {
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
    async fn remove(docker: &Docker, id: &str, name: &str, grace: Option<Duration>) {
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
    async fn retire(&self, docker: &Docker, id: String, name: String, grace: Option<Duration>) {
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
    async fn follow_events(self: Arc<Self>) {
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
            filters.insert(
                "label".to_string(),
                vec![
                    format!("{LABEL_MANAGED}=true"),
                    format!("{LABEL_SCOPE}={}", self.cfg.scope),
                ],
            );
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
    async fn pause(&self, backoff: &mut Duration) -> bool {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(EVENTS_BACKOFF_MAX);
        tokio::select! {
            _ = self.stop_events.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }

    fn on_event(self: &Arc<Self>, ev: EventMessage) {
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
    async fn recheck_watched(self: &Arc<Self>, docker: &Docker) -> Result<(), RuntimeError> {
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

    // -----------------------------------------------------------------------------------------
    // Leftovers and adoption

    /// Lists this scope's containers once. When `adopting`, running ones of a known service
    /// that match its spec and image are kept as candidates for `adopt`; every other
    /// one that this wakeway does not watch is removed (in the background: a stale container's
    /// stop grace must not delay anything).
    async fn sweep(self: &Arc<Self>, adopting: bool) -> Result<(), RuntimeError> {
        let docker = self.client().await?.clone();
        let mut filters = HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_SCOPE}={}", self.cfg.scope),
            ],
        );
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = tokio::time::timeout(QUICK_TIMEOUT, docker.list_containers(Some(opts)))
            .await
            .map_err(|_| self.unreachable(format!("no answer within {QUICK_TIMEOUT:?}")))?
            .map_err(|e| self.api_error("list containers", e))?;

        // The image each known service runs now; `None` when it cannot be resolved, in which
        // case a matching spec is enough (better the container we have than none).
        let mut images: HashMap<&str, Option<String>> = HashMap::new();
        if adopting {
            for (service, exp) in &self.known {
                let id = docker
                    .inspect_image(&exp.image)
                    .await
                    .ok()
                    .and_then(|i| i.id);
                images.insert(service.as_str(), id);
            }
        }

        let watched: Vec<String> = self
            .watched
            .lock()
            .expect("watched lock")
            .keys()
            .cloned()
            .collect();
        let mut candidates: HashMap<String, Vec<Candidate>> = HashMap::new();
        for c in list {
            let Some(id) = c.id.clone() else { continue };
            if watched.contains(&id) {
                continue;
            }
            let labels = c.labels.clone().unwrap_or_default();
            // A swarm task's container: the swarm runtime owns it, through its swarm service.
            if labels.contains_key(SWARM_SERVICE_ID_LABEL) {
                continue;
            }
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| id.clone());
            let service = labels.get(LABEL_SERVICE).cloned().unwrap_or_default();
            let running = c.state == Some(ContainerSummaryStateEnum::RUNNING);
            let expected = self.known.get(&service);
            let verdict = match expected {
                None => Err(format!("service `{service}` is not in the config")),
                Some(_) if !running => Err("it is not running".to_string()),
                Some(exp) if labels.get(LABEL_SPEC) != Some(&exp.spec) => {
                    Err("its image, port, limits or env differ from the config".to_string())
                }
                Some(exp) => match images.get(service.as_str()) {
                    Some(Some(image_id)) if c.image_id.as_ref() != Some(image_id) => {
                        Err(format!("{} now names another image", exp.image))
                    }
                    _ => match labels.get(LABEL_INSTANCE) {
                        Some(instance) if adopting => Ok(instance.clone()),
                        Some(_) => Err("its service started without it".to_string()),
                        None => Err(format!("it has no {LABEL_INSTANCE} label")),
                    },
                },
            };
            match verdict {
                Ok(instance) => {
                    candidates
                        .entry(service)
                        .or_default()
                        .push(Candidate { id, name, instance })
                }
                Err(why) => {
                    tracing::info!("docker: removing leftover container {name}: {why}");
                    let grace =
                        running.then(|| expected.map_or(UNKNOWN_STOP_GRACE, |e| e.stop_grace));
                    self.retire(&docker, id, name, grace).await;
                }
            }
        }
        *self.candidates.lock().expect("candidates lock") = candidates;
        Ok(())
    }

    async fn adopt(
        self: &Arc<Self>,
        service: &str,
        revision: &str,
        host_network: bool,
    ) -> Result<Vec<Adopted>, RuntimeError> {
        self.swept.get_or_try_init(|| self.sweep(true)).await?;
        let mine = self
            .candidates
            .lock()
            .expect("candidates lock")
            .remove(service)
            .unwrap_or_default();
        let docker = self.client().await?.clone();
        let mut adopted = Vec::new();
        for c in mine {
            // Watched before inspecting: an exit from here on is reported, not lost.
            let exited = self.watch(&c.id, &c.name);
            let found = docker
                .inspect_container(&c.id, None)
                .await
                .map_err(|e| self.api_error("inspect", e))
                .and_then(|info| self.address_of(&info, host_network));
            let (address, pid) = match found {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!("docker: not adopting container {}: {e}", c.name);
                    self.discard(&docker, &c.id, &c.name, Some(Duration::from_secs(1)))
                        .await;
                    continue;
                }
            };
            tracing::info!(
                "docker: adopting container {} of {service} ({revision}) at {address}",
                c.name
            );
            self.follow_logs(&c.id, format!("{service}/{}", c.instance), false);
            adopted.push(Adopted {
                instance: c.instance,
                started: Started {
                    address,
                    pid,
                    exited: exited.clone(),
                    handle: Box::new(DockerHandle {
                        engine: self.clone(),
                        id: c.id,
                        name: c.name,
                        exited,
                    }),
                },
            });
        }
        Ok(adopted)
    }

    /// Removes a container this wakeway watches but will not use, and forgets it.
    async fn discard(&self, docker: &Docker, id: &str, name: &str, grace: Option<Duration>) {
        self.mark_stopping(id);
        DockerEngine::remove(docker, id, name, grace).await;
        self.report_exit(id, |name| format!("container {name} removed"), true);
    }

    fn mark_stopping(&self, id: &str) {
        if let Some(w) = self.watched.lock().expect("watched lock").get_mut(id) {
            w.stopping = true;
        }
    }

    /// Where wakeway reaches a running container, and its main process's host pid.
    fn address_of(
        &self,
        info: &ContainerInspectResponse,
        host_network: bool,
    ) -> Result<(SocketAddr, Option<u32>), RuntimeError> {
        let state = info.state.clone().unwrap_or_default();
        let name = info.name.as_deref().unwrap_or("").trim_start_matches('/');
        if state.running != Some(true) {
            return Err(RuntimeError {
                message: exit_reason(name, state.exit_code),
                retryable: false,
            });
        }
        let pid = state.pid.filter(|p| *p > 0).map(|p| p as u32);
        if host_network {
            let port = info
                .config
                .as_ref()
                .and_then(|c| c.env.as_ref())
                .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PORT=")))
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| RuntimeError {
                    message: format!("container {name} has no PORT in its environment"),
                    retryable: false,
                })?;
            return Ok((SocketAddr::from((Ipv4Addr::LOCALHOST, port)), pid));
        }
        let ports = info
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.clone())
            .unwrap_or_default();
        let port = published_port(&ports).ok_or_else(|| RuntimeError {
            message: format!(
                "container {name} has no port published on {}",
                self.cfg.publish_address
            ),
            retryable: false,
        })?;
        Ok((
            SocketAddr::new(connect_ip(self.cfg.publish_address), port),
            pid,
        ))
    }

    /// Mirrors a container's output into wakeway's log, like the process runtime does.
    fn follow_logs(&self, id: &str, prefix: String, from_start: bool) {
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
            let mut pending = String::new();
            loop {
                let chunk = tokio::select! {
                    _ = stop.cancelled() => break,
                    chunk = logs.next() => chunk,
                };
                let Some(Ok(chunk)) = chunk else { break };
                pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    tracing::info!(target: "wakeway::instance", "[{prefix}] {}", line.trim_end());
                }
            }
            if !pending.is_empty() {
                tracing::info!(target: "wakeway::instance", "[{prefix}] {}", pending.trim_end());
            }
        });
    }
}

/// The host port the engine published (the first binding with a port).
fn published_port(ports: &HashMap<String, Option<Vec<PortBinding>>>) -> Option<u16> {
    ports
        .values()
        .flatten()
        .flatten()
        .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
        .filter(|p| *p != 0)
}

/// A port published on every address is reached on loopback.
fn connect_ip(publish: IpAddr) -> IpAddr {
    match publish {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

pub(crate) fn unix_now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// One service

/// The [`Runtime`] of one docker service.
pub struct DockerRuntime {
    engine: Arc<DockerEngine>,
    image: ImageSource,
    spec: String,
    stop_grace: Duration,
}

impl DockerRuntime {
    pub fn new(engine: Arc<DockerEngine>, svc: &ServiceConfig) -> Option<DockerRuntime> {
        let Source::Image(img) = &svc.source else {
            return None;
        };
        if img.runtime != ImageRuntime::Docker {
            return None;
        }
        Some(DockerRuntime {
            spec: spec_fingerprint(&engine.cfg, img, &svc.env),
            engine,
            image: img.clone(),
            stop_grace: svc.deploy.stop_grace,
        })
    }

    fn host_network(&self) -> bool {
        self.engine.cfg.network == "host"
    }

    async fn start_container(&self, spec: InstanceSpec) -> Result<Started, RuntimeError> {
        let engine = &self.engine;
        let docker = engine.client().await?.clone();
        // Leftovers are dealt with before the first container of this wakeway exists; when
        // adoption could not run (engine down at start), nothing is adopted any more.
        engine.swept.get_or_try_init(|| engine.sweep(false)).await?;

        match docker.inspect_image(&self.image.image).await {
            Ok(_) => {}
            Err(e) if status_of(&e) == Some(404) => {
                return Err(RuntimeError {
                    message: format!(
                        "image {:?} not found locally; build or pull it (docker build -t {} . / docker pull {})",
                        self.image.image, self.image.image, self.image.image
                    ),
                    retryable: false,
                });
            }
            Err(e) => {
                return Err(engine.api_error(&format!("inspect image {:?}", self.image.image), e));
            }
        }

        let host_network = self.host_network();
        let port = if host_network {
            free_port().map_err(|e| RuntimeError {
                message: format!("no free port: {e}"),
                retryable: true,
            })?
        } else {
            self.image.port
        };
        let env: Vec<String> = super::instance_env(
            &spec.env,
            &spec.service,
            &spec.revision,
            &spec.instance,
            port,
        )
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
        let labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_SCOPE.to_string(), engine.cfg.scope.clone()),
            (LABEL_SERVICE.to_string(), spec.service.clone()),
            (LABEL_REVISION.to_string(), spec.revision.clone()),
            (LABEL_INSTANCE.to_string(), spec.instance.clone()),
            (LABEL_SPEC.to_string(), self.spec.clone()),
        ]);
        let container_port = format!("{}/tcp", self.image.port);
        let body = ContainerCreateBody {
            image: Some(self.image.image.clone()),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: (!host_network).then(|| vec![container_port.clone()]),
            stop_signal: self
                .image
                .stop_signal
                .as_deref()
                .and_then(config::canonical_signal),
            // So a `docker stop` by hand gives the same grace wakeway does.
            stop_timeout: Some(self.stop_grace.as_secs_f64().ceil() as i64),
            host_config: Some(HostConfig {
                network_mode: Some(engine.cfg.network.clone()),
                port_bindings: (!host_network).then(|| {
                    HashMap::from([(
                        container_port,
                        Some(vec![PortBinding {
                            host_ip: Some(engine.cfg.publish_address.to_string()),
                            // Empty: the engine picks a free port, so there is no race for it.
                            host_port: Some(String::new()),
                        }]),
                    )])
                }),
                nano_cpus: self.image.cpus.map(|c| (c * 1e9).round() as i64),
                memory: self.image.memory.map(|m| m as i64),
                // Equal to `memory`: the limit is hard, the container cannot spill into swap.
                memory_swap: self.image.memory.map(|m| m as i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = container_name(&engine.cfg.scope, &spec.service, &spec.instance);
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            platform: String::new(),
        };
        let t_create = std::time::Instant::now();
        let created = match docker
            .create_container(Some(opts.clone()), body.clone())
            .await
        {
            Err(e) if status_of(&e) == Some(409) && self.clear_stale_name(&docker, &name).await => {
                docker.create_container(Some(opts), body).await
            }
            other => other,
        }
        .map_err(|e| engine.api_error(&format!("create container {name}"), e))?;
        let id = created.id;
        for w in created.warnings {
            tracing::warn!("docker: container {name}: {w}");
        }

        let exited = engine.watch(&id, &name);
        let t_start = std::time::Instant::now();
        if let Err(e) = docker.start_container(&id, None).await {
            engine.discard(&docker, &id, &name, None).await;
            let mut err = engine.api_error(&format!("start container {name}"), e);
            // On the host network the port we picked may have been taken meanwhile.
            err.retryable = host_network && err.message.contains("address already in use");
            return Err(err);
        }
        // What the engine itself costs of a cold start.
        tracing::debug!(
            create_ms = (t_start - t_create).as_millis() as u64,
            start_ms = t_start.elapsed().as_millis() as u64,
            "docker: container {name} created and started"
        );
        self.engine
            .follow_logs(&id, format!("{}/{}", spec.service, spec.instance), true);
        let found = docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| engine.api_error(&format!("inspect container {name}"), e))
            .and_then(|info| engine.address_of(&info, host_network));
        let (address, pid) = match found {
            Ok(found) => found,
            Err(e) => {
                engine.discard(&docker, &id, &name, None).await;
                return Err(e);
            }
        };
        Ok(Started {
            address,
            pid,
            exited: exited.clone(),
            handle: Box::new(DockerHandle {
                engine: engine.clone(),
                id,
                name,
                exited,
            }),
        })
    }

    /// A container of this scope holds the name but nobody watches it (a previous wakeway
    /// stopped before removing it): remove it so the name can be used. Never touches a
    /// container of another scope or one this wakeway runs.
    async fn clear_stale_name(&self, docker: &Docker, name: &str) -> bool {
        let Ok(info) = docker.inspect_container(name, None).await else {
            return false;
        };
        let labels = info
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let ours = labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
            && labels.get(LABEL_SCOPE) == Some(&self.engine.cfg.scope);
        let id = info.id.unwrap_or_default();
        let watched = self
            .engine
            .watched
            .lock()
            .expect("watched lock")
            .contains_key(&id);
        if !ours || watched {
            return false;
        }
        tracing::info!("docker: removing leftover container {name} to reuse its name");
        self.engine
            .retire(docker, id, name.to_string(), Some(UNKNOWN_STOP_GRACE))
            .await;
        true
    }
}

/// A port that was free a moment ago (host network only; the engine picks ports otherwise).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    /// The id of the image behind the tag: a new build or pull of the tag changes it.
    fn source_version(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let docker = self.engine.client().await.ok()?;
            let image = docker.inspect_image(&self.image.image);
            tokio::time::timeout(QUICK_TIMEOUT, image)
                .await
                .ok()?
                .ok()?
                .id
        })
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        Box::pin(self.start_container(spec))
    }

    fn adopt<'a>(
        &'a self,
        service: &'a str,
        revision: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Adopted>, RuntimeError>> {
        Box::pin(self.engine.adopt(service, revision, self.host_network()))
    }
}

struct DockerHandle {
    engine: Arc<DockerEngine>,
    id: String,
    name: String,
    exited: watch::Receiver<Option<String>>,
}

impl InstanceHandle for DockerHandle {
    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let engine = &self.engine;
            if engine.exiting.load(SeqCst) && !engine.cfg.stop_on_exit {
                tracing::info!(
                    "docker: leaving container {} running for the next start to adopt (docker.stop_on_exit = false)",
                    self.name
                );
                engine
                    .watched
                    .lock()
                    .expect("watched lock")
                    .remove(&self.id);
                return;
            }
            engine.mark_stopping(&self.id);
            if let Some(docker) = engine.connected() {
                let gone = self.exited.borrow().is_some();
                let grace = (!gone).then_some(grace);
                DockerEngine::remove(&docker, &self.id, &self.name, grace).await;
            }
            let name = self.name.clone();
            engine.report_exit(&self.id, |_| format!("container {name} stopped"), true);
        })
    }
}

// ---------------------------------------------------------------------------------------------
// `wakeway check`

/// For `wakeway check`: whether each docker service's image exists locally. Empty when the
/// config has no docker service.
pub async fn check_images(config: &Config) -> String {
    use std::fmt::Write as _;
    let images: Vec<(&str, &str)> = config
        .services
        .iter()
        .filter_map(|s| match &s.source {
            Source::Image(img) => Some((s.name.as_str(), img.image.as_str())),
            _ => None,
        })
        .collect();
    if images.is_empty() {
        return String::new();
    }
    let endpoint = resolve_endpoint(&config.docker);
    let mut out = String::new();
    let docker = match connect_and_negotiate(&endpoint).await {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(
                out,
                "docker engine {endpoint}: unreachable ({e}); cannot check images"
            );
            return out;
        }
    };
    let _ = writeln!(out, "docker engine {endpoint}:");
    let width = images.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    for (service, image) in images {
        let verdict = match docker.inspect_image(image).await {
            Ok(info) => {
                let id = info.id.unwrap_or_default();
                let short = id.trim_start_matches("sha256:");
                format!("present locally ({})", &short[..short.len().min(12)])
            }
            Err(e) if status_of(&e) == Some(404) => {
                "NOT found locally; build or pull it".to_string()
            }
            Err(e) => format!("cannot check: {e}"),
        };
        let _ = writeln!(out, "  {service:<width$}  image {image:?}: {verdict}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_shows_every_docker_key() {
        let text = include_str!("../../config/docker.toml");
        let cfg = config::parse(text, Some(std::path::Path::new("config/docker.toml"))).unwrap();
        assert_eq!(
            cfg.docker,
            DockerConfig::default(),
            "the example shows the defaults"
        );
        let web = &cfg.services[0];
        assert_eq!(
            web.source,
            Source::Image(ImageSource {
                image: "wakeway-whoami:local".into(),
                port: 8080,
                cpus: Some(0.5),
                memory: Some(256 << 20),
                stop_signal: Some("SIGTERM".into()),
                runtime: ImageRuntime::Docker,
            })
        );
        assert_eq!(web.deploy.stop_grace, Duration::from_secs(10));
        for key in [
            "[docker]",
            "endpoint =",
            "network =",
            "publish_address =",
            "stop_on_exit =",
            "scope =",
            "image =",
            "port =",
            "env =",
            "cpus =",
            "memory =",
            "stop_signal =",
            "stop_grace =",
        ] {
            assert!(text.contains(key), "config/docker.toml lacks {key}");
        }
    }

    #[test]
    fn names_carry_the_scope_unless_default() {
        assert_eq!(
            container_name("default", "web", "web-00001-a"),
            "wakeway-web-web-00001-a"
        );
        assert_eq!(
            container_name("staging", "web", "web-00001-a"),
            "wakeway-staging-web-web-00001-a"
        );
    }

    #[test]
    fn fingerprint_changes_with_what_shapes_a_container() {
        let docker = DockerConfig::default();
        let img = ImageSource {
            image: "web:1".into(),
            port: 8080,
            cpus: Some(0.5),
            memory: Some(64 << 20),
            stop_signal: Some("term".into()),
            runtime: ImageRuntime::Docker,
        };
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let base = spec_fingerprint(&docker, &img, &env);
        assert_eq!(base, spec_fingerprint(&docker, &img, &env), "stable");
        // The same signal, spelled differently, is the same container.
        let same = ImageSource {
            stop_signal: Some("SIGTERM".into()),
            ..img.clone()
        };
        assert_eq!(base, spec_fingerprint(&docker, &same, &env));
        let changed = [
            ImageSource {
                image: "web:2".into(),
                ..img.clone()
            },
            ImageSource {
                port: 8081,
                ..img.clone()
            },
            ImageSource {
                cpus: Some(1.0),
                ..img.clone()
            },
            ImageSource {
                memory: None,
                ..img.clone()
            },
        ];
        for c in changed {
            assert_ne!(base, spec_fingerprint(&docker, &c, &env), "{c:?}");
        }
        let env2 = BTreeMap::from([("A".to_string(), "2".to_string())]);
        assert_ne!(base, spec_fingerprint(&docker, &img, &env2));
        let host = DockerConfig {
            network: "host".into(),
            ..DockerConfig::default()
        };
        assert_ne!(base, spec_fingerprint(&host, &img, &env));
    }

    #[test]
    fn exit_reasons_name_the_signal() {
        assert_eq!(
            exit_reason("c", Some(137)),
            "container c exited with code 137 (SIGKILL)"
        );
        assert_eq!(exit_reason("c", Some(1)), "container c exited with code 1");
        assert_eq!(exit_reason("c", None), "container c exited");
    }

    #[test]
    fn published_port_and_connect_address() {
        let ports = HashMap::from([(
            "8080/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("49153".into()),
            }]),
        )]);
        assert_eq!(published_port(&ports), Some(49153));
        assert_eq!(published_port(&HashMap::new()), None);
        let unbound = HashMap::from([("8080/tcp".to_string(), None)]);
        assert_eq!(published_port(&unbound), None);
        assert_eq!(
            connect_ip("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            connect_ip("::".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            connect_ip("10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn endpoint_prefers_config_then_docker_host() {
        let cfg = DockerConfig {
            endpoint: Some("tcp://127.0.0.1:2375".into()),
            ..DockerConfig::default()
        };
        assert_eq!(resolve_endpoint(&cfg), "tcp://127.0.0.1:2375");
        // $DOCKER_HOST is read per call; this test does not set it, so the fallback shows
        // unless the environment running the tests has one.
        let unset = resolve_endpoint(&DockerConfig::default());
        let expected = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        assert_eq!(unset, expected);
        assert!(
            connect("ssh://host")
                .unwrap_err()
                .to_string()
                .contains("ssh://host")
        );
    }
}
