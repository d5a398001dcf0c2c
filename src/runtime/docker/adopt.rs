//! Leftovers of a previous wakeway: the containers of a known service at its current spec and
//! image (the one its revision is pinned to, else the one behind the tag) are adopted, every
//! other one of the scope is removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::ListContainersOptions;

use super::container::DockerHandle;
use super::*;
use crate::runtime::{Adopted, RuntimeError, Started};

/// What wakeway expects of a service's containers. Not the revision label: without a state
/// file revision numbers start again with each wakeway, while spec and image say what a
/// container runs.
pub(super) struct Expected {
    pub(super) spec: String,
    pub(super) image: String,
    pub(super) stop_grace: Duration,
}

/// A container left running by a previous wakeway, kept for its service's `adopt`.
pub(super) struct Candidate {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) instance: String,
    /// The image id it runs.
    pub(super) image: Option<String>,
    /// It runs what the tag names now (or the tag names nothing this engine has).
    pub(super) current: bool,
}

impl DockerEngine {
    /// Lists this scope's containers once. When `adopting`, running ones of a known service
    /// that match its spec and run the image behind the tag or the one their revision is
    /// pinned to are kept as candidates for `adopt`; every other
    /// one that this wakeway does not watch is removed (in the background: a stale container's
    /// stop grace must not delay anything).
    pub(super) async fn sweep(self: &Arc<Self>, adopting: bool) -> Result<(), RuntimeError> {
        let docker = self.client().await?.clone();
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), scope_filter(&self.cfg.scope));
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
                Some(exp) => {
                    let current = match images.get(service.as_str()) {
                        Some(Some(image_id)) => c.image_id.as_ref() == Some(image_id),
                        _ => true,
                    };
                    // After the tag moved, a container of a revision that persists with its pin
                    // still runs what that revision ran.
                    let pinned = labels
                        .get(LABEL_REVISION)
                        .and_then(|revision| self.stored(&service, revision));
                    if !current && pinned.is_none_or(|p| c.image_id.as_ref() != Some(&p)) {
                        Err(format!("{} now names another image", exp.image))
                    } else {
                        match labels.get(LABEL_INSTANCE) {
                            Some(instance) if adopting => Ok((instance.clone(), current)),
                            Some(_) => Err("its service started without it".to_string()),
                            None => Err(format!("it has no {LABEL_INSTANCE} label")),
                        }
                    }
                }
            };
            match verdict {
                Ok((instance, current)) => candidates.entry(service).or_default().push(Candidate {
                    id,
                    name,
                    instance,
                    image: c.image_id.clone(),
                    current,
                }),
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

    pub(super) async fn adopt(
        self: &Arc<Self>,
        service: &str,
        revision: &str,
        host_network: bool,
        container_port: u16,
    ) -> Result<Vec<Adopted>, RuntimeError> {
        self.swept.get_or_try_init(|| self.sweep(true)).await?;
        // Called once per start of the service: without a store its revision numbers begin
        // again.
        self.forget_pins(service);
        let pinned = self.pinned(service, revision);
        let mine = self
            .candidates
            .lock()
            .expect("candidates lock")
            .remove(service)
            .unwrap_or_default();
        let docker = self.client().await?.clone();
        let mut adopted = Vec::new();
        for c in mine {
            let runs_revision = match &pinned {
                Some(id) => c.image.as_ref() == Some(id),
                None => c.current,
            };
            if !runs_revision {
                tracing::info!(
                    "docker: removing leftover container {}: it does not run the image of {revision} ({})",
                    c.name,
                    pinned.as_deref().unwrap_or("the one behind the tag")
                );
                let grace = self
                    .known
                    .get(service)
                    .map_or(UNKNOWN_STOP_GRACE, |e| e.stop_grace);
                self.retire(&docker, c.id, c.name, Some(grace)).await;
                continue;
            }
            // Watched before inspecting: an exit from here on is reported, not lost.
            let exited = self.watch(&c.id, &c.name);
            let found = match docker.inspect_container(&c.id, None).await {
                Ok(info) => self.address_of(&info, host_network, container_port).await,
                Err(e) => Err(self.api_error("inspect", e)),
            };
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
            if let Some(image) = c.image {
                self.pin(service, revision, image);
            }
            let src = crate::runtime::output::Source {
                service: service.to_string(),
                revision: revision.to_string(),
                instance: c.instance.clone(),
            };
            self.follow_logs(&c.id, src, false);
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
}
