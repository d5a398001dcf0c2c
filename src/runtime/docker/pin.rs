//! A revision runs one image: the id its tag named when the revision's first container was
//! created (or adopted). Every later container of that revision — a scale-out, a cold start,
//! a rollback to it — is created from that id, so moving the tag changes only revisions made
//! after the move.

use bollard::Docker;

use super::*;
use crate::runtime::RuntimeError;

impl DockerEngine {
    /// The image id `revision` of `service` runs, pinning what `image` names now when the
    /// revision has none yet.
    pub(super) async fn image_for(
        &self,
        docker: &Docker,
        service: &str,
        revision: &str,
        image: &str,
    ) -> Result<String, RuntimeError> {
        if let Some(id) = self.pinned(service, revision) {
            return match docker.inspect_image(&id).await {
                Ok(_) => Ok(id),
                Err(e) if status_of(&e) == Some(404) => Err(RuntimeError {
                    message: format!(
                        "image {id} that revision {revision} runs ({image} when it was deployed) is no longer on the engine; deploy again to run what {image} names now"
                    ),
                    retryable: false,
                }),
                Err(e) => Err(self.api_error(&format!("inspect image {id}"), e)),
            };
        }
        let id = match docker.inspect_image(image).await {
            Ok(info) => info.id.ok_or_else(|| RuntimeError {
                message: format!("docker: image {image:?} has no id"),
                retryable: false,
            })?,
            Err(e) if status_of(&e) == Some(404) => {
                return Err(RuntimeError {
                    message: format!(
                        "image {image:?} not found locally; build or pull it (docker build -t {image} . / docker pull {image})"
                    ),
                    retryable: false,
                });
            }
            Err(e) => return Err(self.api_error(&format!("inspect image {image:?}"), e)),
        };
        // Two first starts of one revision may race: the first pin wins, both run it.
        Ok(self.pin(service, revision, id))
    }

    /// Records `id` as the image of `revision` unless it has one; returns the one it has.
    pub(super) fn pin(&self, service: &str, revision: &str, id: String) -> String {
        let mut pins = self.pins.lock().expect("pins lock");
        let revisions = pins.entry(service.to_string()).or_default();
        let pinned = revisions.entry(revision.to_string()).or_insert_with(|| {
            tracing::info!("docker: revision {revision} of {service} runs image {id}");
            id
        });
        pinned.clone()
    }

    fn pinned(&self, service: &str, revision: &str) -> Option<String> {
        self.pins
            .lock()
            .expect("pins lock")
            .get(service)?
            .get(revision)
            .cloned()
    }

    /// A service (re)starts its revision numbering: the images its old revisions ran mean
    /// nothing for the new ones of the same ids.
    pub(super) fn forget_pins(&self, service: &str) {
        self.pins.lock().expect("pins lock").remove(service);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::DockerConfig;
    use crate::runtime::docker::DockerEngine;

    #[tokio::test]
    async fn a_revision_keeps_its_first_image_until_its_service_starts_again() {
        let cfg = DockerConfig {
            endpoint: Some("unix:///nonexistent/wakeway-test/docker.sock".into()),
            ..DockerConfig::default()
        };
        let engine = DockerEngine::new(cfg, &[]);
        assert_eq!(
            engine.pin("web", "web-00001", "sha256:a".into()),
            "sha256:a"
        );
        assert_eq!(
            engine.pin("web", "web-00001", "sha256:b".into()),
            "sha256:a",
            "the tag moved: the revision still runs its image"
        );
        assert_eq!(
            engine.pin("web", "web-00002", "sha256:b".into()),
            "sha256:b"
        );
        assert_eq!(
            engine.pin("api", "web-00001", "sha256:c".into()),
            "sha256:c"
        );
        engine.forget_pins("web");
        assert_eq!(
            engine.pin("web", "web-00001", "sha256:b".into()),
            "sha256:b",
            "a service started again numbers its revisions afresh"
        );
        assert_eq!(
            engine.pinned("api", "web-00001").as_deref(),
            Some("sha256:c")
        );
        engine.close().await;
    }
}
