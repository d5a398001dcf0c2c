//! A revision runs one image: the id its tag named when the revision's first container was
//! created (or adopted). Every later container of that revision — a scale-out, a cold start,
//! a rollback to it — is created from that id, so moving the tag changes only revisions made
//! after the move.
//!
//! With a [`PinStore`] (the state file, when wakeway runs from a config file) the pins outlive
//! wakeway: a revision a restarted wakeway starts again, or rolls back to, runs the image it
//! ran before, whatever the tag names by then.

use bollard::Docker;

use super::*;
use crate::runtime::RuntimeError;

/// Where pins persist. The engine asks it for a pin it does not hold in memory and hands it
/// every pin it makes, once.
pub trait PinStore: Send + Sync {
    /// The image id `revision` of `service` was pinned to, if it persists.
    fn load(&self, service: &str, revision: &str) -> Option<String>;
    /// Persists the pin of `revision` of `service`.
    fn save(&self, service: &str, revision: &str, image: &str);
}

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

    /// Records `id` as the image of `revision` unless it has one (in memory or in the store);
    /// returns the one it has.
    pub(super) fn pin(&self, service: &str, revision: &str, id: String) -> String {
        let mut pins = self.pins.lock().expect("pins lock");
        let revisions = pins.entry(service.to_string()).or_default();
        if let Some(pinned) = revisions.get(revision) {
            return pinned.clone();
        }
        let pinned = match self.stored(service, revision) {
            Some(stored) => stored,
            None => {
                tracing::info!("docker: revision {revision} of {service} runs image {id}");
                if let Some(store) = &self.store {
                    store.save(service, revision, &id);
                }
                id
            }
        };
        revisions.insert(revision.to_string(), pinned.clone());
        pinned
    }

    pub(super) fn pinned(&self, service: &str, revision: &str) -> Option<String> {
        let mut pins = self.pins.lock().expect("pins lock");
        if let Some(id) = pins.get(service).and_then(|r| r.get(revision)) {
            return Some(id.clone());
        }
        let id = self.stored(service, revision)?;
        pins.entry(service.to_string())
            .or_default()
            .insert(revision.to_string(), id.clone());
        Some(id)
    }

    /// The pin the store has, without remembering it.
    pub(super) fn stored(&self, service: &str, revision: &str) -> Option<String> {
        self.store.as_ref()?.load(service, revision)
    }

    /// A service starts (again): without a store its revision numbering starts again, and the
    /// images its old revisions ran mean nothing for the new ones of the same ids. The store
    /// keeps only pins of revisions it keeps, so what it still has holds.
    pub(super) fn forget_pins(&self, service: &str) {
        self.pins.lock().expect("pins lock").remove(service);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::PinStore;
    use crate::config::DockerConfig;
    use crate::runtime::docker::DockerEngine;

    fn engine(store: Option<Arc<dyn PinStore>>) -> Arc<DockerEngine> {
        let cfg = DockerConfig {
            endpoint: Some("unix:///nonexistent/wakeway-test/docker.sock".into()),
            ..DockerConfig::default()
        };
        DockerEngine::new(cfg, &[], store)
    }

    /// A store that counts its writes.
    #[derive(Default)]
    struct Saved {
        pins: Mutex<HashMap<String, String>>,
        writes: Mutex<usize>,
    }

    impl PinStore for Saved {
        fn load(&self, service: &str, revision: &str) -> Option<String> {
            let pins = self.pins.lock().unwrap();
            pins.get(&format!("{service}/{revision}")).cloned()
        }

        fn save(&self, service: &str, revision: &str, image: &str) {
            let key = format!("{service}/{revision}");
            self.pins.lock().unwrap().insert(key, image.into());
            *self.writes.lock().unwrap() += 1;
        }
    }

    #[tokio::test]
    async fn a_revision_keeps_its_first_image_until_its_service_starts_again() {
        let engine = engine(None);
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

    #[tokio::test]
    async fn with_a_store_pins_outlive_the_engine() {
        let store = Arc::new(Saved::default());
        let first = engine(Some(store.clone()));
        first.pin("web", "web-00001", "sha256:a".into());
        first.pin("web", "web-00001", "sha256:b".into());
        assert_eq!(*store.writes.lock().unwrap(), 1, "a pin is written once");
        first.close().await;

        let second = engine(Some(store.clone()));
        // What adoption does when the service starts.
        second.forget_pins("web");
        assert_eq!(
            second.pinned("web", "web-00001").as_deref(),
            Some("sha256:a")
        );
        assert_eq!(
            second.pin("web", "web-00001", "sha256:b".into()),
            "sha256:a",
            "the tag moved while wakeway was stopped: the revision runs its image"
        );
        assert_eq!(second.pinned("web", "web-00002"), None);
        assert_eq!(*store.writes.lock().unwrap(), 1, "nothing new to write");
        second.close().await;
    }
}
