//! Leftovers of a previous wakeway: the containers of a known service at its current spec and
//! image (the one its revision is pinned to, else the one behind the tag) are adopted, every
//! other one of the scope is removed. The rules are the engine core's (`engine/adopt.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::container::DockerHandle;
use super::*;
use crate::runtime::engine::adopt::ensure_swept;
use crate::runtime::{Adopted, RuntimeError, Started};

impl DockerEngine {
    pub(super) async fn adopt(
        self: &Arc<Self>,
        service: &str,
        revision: &str,
        host_network: bool,
        container_port: u16,
    ) -> Result<Vec<Adopted>, RuntimeError> {
        ensure_swept(self, true).await?;
        // Called once per start of the service: without a store its revision numbers begin
        // again.
        self.forget_pins(service);
        let pinned = self.pinned(service, revision);
        let mine = self.core.take_candidates(service);
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
                    .core
                    .known
                    .load()
                    .get(service)
                    .map_or(UNKNOWN_STOP_GRACE, |e| e.stop_grace);
                self.retire(&docker, c.id, c.name, Some(grace)).await;
                continue;
            }
            // Watched before inspecting: an exit from here on is reported, not lost.
            let exited = self.core.watched.watch(&c.id, &c.name);
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
                "docker: adopting {}container {} of {service} ({revision}) at {address}",
                if c.paused { "paused " } else { "" },
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
                frozen: c.paused,
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
