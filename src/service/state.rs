//! Revisions that outlive wakeway: one JSON file beside the config holds, per service, the
//! file's source as last applied, every revision (the last is live) and the image id each
//! docker revision is pinned to (see `runtime/docker/pin.rs`). It is rewritten whole on
//! each change, to a temporary file then renamed over the old one, so a crash leaves either the
//! old state or the new, never half of one.
//!
//! The model: the deployed revision stands until the file's own source for the service changes.
//! At start, a service whose file source equals the one last applied resumes its live revision
//! (an API deployment included); one whose file source changed while wakeway was stopped gets a
//! new revision of the file.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ServiceConfig, Source, TrafficTarget};
use crate::runtime::docker::PinStore;
use crate::service::deployment::{Deployment, Deployments};
use crate::service::revision::{Revision, revision_id, source_changes};

/// Bumped when the shape changes incompatibly; a file of another version is refused.
const VERSION: u32 = 1;

/// What defines a revision: the source and its environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    pub source: Source,
    pub env: BTreeMap<String, String>,
}

impl SourceState {
    pub fn of(config: &ServiceConfig) -> SourceState {
        SourceState {
            source: config.source.clone(),
            env: config.env.clone(),
        }
    }

    /// `base` (the file's settings) running this source.
    pub fn apply_to(&self, base: &ServiceConfig) -> ServiceConfig {
        let mut c = base.clone();
        c.source = self.source.clone();
        c.env = self.env.clone();
        c
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionState {
    pub number: u32,
    pub created_at: SystemTime,
    pub changes: Vec<String>,
    #[serde(flatten)]
    pub source: SourceState,
}

impl RevisionState {
    pub fn of(r: &Revision) -> RevisionState {
        RevisionState {
            number: r.number,
            created_at: r.created_at,
            changes: r.changes.clone(),
            source: SourceState::of(&r.config),
        }
    }

    /// The revision again, with the file's current settings around its source.
    pub fn revision(&self, service: &str, base: &ServiceConfig) -> Revision {
        Revision {
            id: revision_id(service, self.number),
            number: self.number,
            config: Arc::new(self.source.apply_to(base)),
            created_at: self.created_at,
            changes: self.changes.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceState {
    /// The file's source for the service when a file was last applied.
    pub applied: Option<SourceState>,
    /// Oldest first; the last is live.
    pub revisions: Vec<RevisionState>,
    pub next_revision: u32,
    /// The number of the last deployment id handed out, and the deployments, oldest first.
    #[serde(default)]
    pub last_deployment: u32,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    /// The traffic as last set (file, API or rollout); `None` before any was recorded.
    #[serde(default)]
    pub traffic: Option<Vec<TrafficTarget>>,
    /// The file's `[[service.traffic]]` when a file was last applied.
    #[serde(default)]
    pub applied_traffic: Option<Vec<TrafficTarget>>,
    /// The image id each docker revision runs, by revision id; only of revisions in
    /// `revisions`, and of one whose deployment is under way.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
}

/// Forgets the oldest revisions beyond the newest `keep`, except the live one (the last) and any
/// the traffic names (a share or a tag, even at 0%).
pub fn prune_history(history: &mut Vec<Revision>, keep: usize, traffic: &[TrafficTarget]) {
    let held = |r: &Revision| {
        traffic
            .iter()
            .any(|t| t.revision.as_deref() == Some(r.id.as_str()))
    };
    // The newest `keep` (the live one among them) stay whatever the traffic says.
    let first_kept = history.len().saturating_sub(keep.max(1));
    let mut i = 0;
    history.retain(|r| {
        let kept = i >= first_kept || held(r);
        i += 1;
        kept
    });
}

/// What a service starts from: its revisions, oldest first (the last is live), and the next
/// revision number.
pub struct Resumed {
    pub history: Vec<Revision>,
    pub next_revision: u32,
    pub last_deployment: u32,
    pub deployments: Vec<Deployment>,
    /// The traffic as last set, while the file's own traffic is the one last applied (the same
    /// model as the source); `None`: the file's.
    pub traffic: Option<Vec<TrafficTarget>>,
}

impl ServiceState {
    /// Drops the pins of revisions no longer in the history. At open this includes the pin of
    /// a deployment a previous wakeway did not finish: its revision id is handed out again.
    fn keep_pins_of_history(&mut self, service: &str) {
        let ids: HashSet<String> = self
            .revisions
            .iter()
            .map(|r| revision_id(service, r.number))
            .collect();
        self.pins.retain(|revision, _| ids.contains(revision));
    }

    /// The revisions `file` (the service as the file has it now) starts with: the remembered
    /// live one while the file's source is the one last applied, else a new revision of the file.
    pub fn resume(&self, file: &ServiceConfig) -> Option<Resumed> {
        let mut history: Vec<Revision> = self
            .revisions
            .iter()
            .map(|r| r.revision(&file.name, file))
            .collect();
        // A file written before `deploy.keep_revisions` (or with a larger one) shrinks now.
        prune_history(
            &mut history,
            file.deploy.keep_revisions,
            self.traffic.as_deref().unwrap_or_default(),
        );
        let live = history.last()?;
        let mut next_revision = self.next_revision.max(live.number + 1);
        let from_file = SourceState::of(file);
        if self.applied.as_ref() != Some(&from_file) && SourceState::of(&live.config) != from_file {
            let changes = source_changes(&live.config, file);
            history.push(Revision::new(
                &file.name,
                next_revision,
                Arc::new(file.clone()),
                changes,
            ));
            next_revision += 1;
        }
        let traffic = self
            .traffic
            .clone()
            .filter(|_| self.applied_traffic.as_ref() == Some(&file.traffic));
        Some(Resumed {
            history,
            next_revision,
            last_deployment: self.last_deployment,
            deployments: self.deployments.clone(),
            traffic,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    version: u32,
    services: BTreeMap<String, ServiceState>,
}

/// The state file and its contents in memory. Writes are rare (a switch, a reload) and small,
/// so they happen in place under the lock, which also keeps them in order.
pub struct StateFile {
    /// `None`: kept in memory only (a cluster replica, whose leader keeps it in etcd).
    path: Option<PathBuf>,
    doc: Mutex<Document>,
    /// Told after every change (a cluster leader copies the state to etcd).
    changed: tokio::sync::Notify,
}

impl StateFile {
    /// Reads the file; a missing one is an empty state. An unreadable or malformed one is an
    /// error naming the file and line: starting without it would forget every deployment.
    pub fn open(path: &Path) -> Result<Arc<StateFile>, ConfigError> {
        let error = |line: Option<usize>, message: String| ConfigError {
            file: Some(path.to_path_buf()),
            line,
            key: None,
            message,
        };
        let doc = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut doc: Document = serde_json::from_str(&text).map_err(|e| {
                    error(
                        Some(e.line()),
                        format!(
                            "the state file is not valid: {e} (move it away to start from the \
                             config file alone)"
                        ),
                    )
                })?;
                if doc.version != VERSION {
                    return Err(error(
                        None,
                        format!(
                            "state file version {} is not {VERSION}, the one this wakeway reads",
                            doc.version
                        ),
                    ));
                }
                for (name, service) in &mut doc.services {
                    service.keep_pins_of_history(name);
                }
                doc
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Document {
                version: VERSION,
                services: BTreeMap::new(),
            },
            Err(e) => return Err(error(None, format!("cannot read the state file: {e}"))),
        };
        Ok(Arc::new(StateFile {
            path: Some(path.to_path_buf()),
            doc: Mutex::new(doc),
            changed: tokio::sync::Notify::new(),
        }))
    }

    /// An empty state that no file backs.
    pub fn in_memory() -> Arc<StateFile> {
        Arc::new(StateFile {
            path: None,
            doc: Mutex::new(Document {
                version: VERSION,
                services: BTreeMap::new(),
            }),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// Resolves after the next change (or at once if one happened since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Every service's state, as it is now.
    pub fn services(&self) -> BTreeMap<String, ServiceState> {
        self.lock().services.clone()
    }

    /// Sets (or, with `None`, forgets) a service's state as another replica recorded it.
    pub fn set_service(&self, name: &str, state: Option<ServiceState>) {
        self.change(|doc| match state {
            Some(s) => {
                doc.services.insert(name.to_string(), s);
            }
            None => {
                doc.services.remove(name);
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Document> {
        self.doc.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn service(&self, name: &str) -> Option<ServiceState> {
        self.lock().services.get(name).cloned()
    }

    /// Records a service's revisions and deployments (after a deployment ends, or when the
    /// service is first seen).
    pub fn save_revisions(
        &self,
        name: &str,
        history: &[Revision],
        next_revision: u32,
        deployments: &Deployments,
        traffic: &[TrafficTarget],
    ) {
        let (last_deployment, list) = deployments.snapshot();
        self.change(|doc| {
            let s = doc.services.entry(name.to_string()).or_default();
            s.revisions = history.iter().map(RevisionState::of).collect();
            s.next_revision = next_revision;
            s.last_deployment = last_deployment;
            s.deployments = list;
            s.traffic = Some(traffic.to_vec());
            s.keep_pins_of_history(name);
        });
    }

    /// Records the file's source for each of `services` as applied, and forgets services the
    /// file no longer has.
    pub fn save_applied(&self, services: &[ServiceConfig]) {
        let names: HashSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        self.change(|doc| {
            doc.services.retain(|name, _| names.contains(name.as_str()));
            for sc in services {
                let s = doc.services.entry(sc.name.clone()).or_default();
                s.applied = Some(SourceState::of(sc));
                s.applied_traffic = Some(sc.traffic.clone());
            }
        });
    }

    fn change(&self, f: impl FnOnce(&mut Document)) {
        let mut doc = self.lock();
        f(&mut doc);
        self.write(&doc);
    }

    fn write(&self, doc: &Document) {
        self.changed.notify_one();
        let Some(path) = &self.path else {
            return;
        };
        if let Err(e) = write_atomically(path, doc) {
            tracing::error!(file = %path.display(), "cannot write the state file: {e}");
        }
    }
}

impl PinStore for StateFile {
    fn load(&self, service: &str, revision: &str) -> Option<String> {
        self.lock()
            .services
            .get(service)?
            .pins
            .get(revision)
            .cloned()
    }

    /// Ignored for a service the file does not have (one removed from the config meanwhile).
    fn save(&self, service: &str, revision: &str, image: &str) {
        let mut doc = self.lock();
        let Some(s) = doc.services.get_mut(service) else {
            return;
        };
        s.pins.insert(revision.to_string(), image.to_string());
        self.write(&doc);
    }
}

/// Writes beside the target, syncs, then renames over it: readers see the old file or the new.
fn write_atomically(path: &Path, doc: &Document) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(doc).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(env: &str) -> ServiceConfig {
        let mut c = ServiceConfig::new(
            "web",
            vec!["web".into()],
            Source::Command(vec!["app".into()]),
        );
        c.env.insert("MODE".into(), env.into());
        c
    }

    #[test]
    fn pruning_keeps_the_newest_the_live_and_those_the_traffic_names() {
        let mut history: Vec<Revision> = (1..=6)
            .map(|n| Revision::new("web", n, Arc::new(service("x")), vec![]))
            .collect();
        let traffic = [
            TrafficTarget {
                revision: Some("web-00001".into()),
                percent: 0,
                tag: Some("old".into()),
            },
            TrafficTarget {
                revision: None,
                percent: 100,
                tag: None,
            },
        ];
        prune_history(&mut history, 2, &traffic);
        let ids: Vec<&str> = history.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["web-00001", "web-00005", "web-00006"]);
        prune_history(&mut history, 1, &[]);
        let ids: Vec<&str> = history.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["web-00006"], "the live one always stays");
    }

    #[test]
    fn revisions_and_the_applied_source_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wakeway.state.json");
        let state = StateFile::open(&path).unwrap();
        assert!(state.service("web").is_none(), "a missing file is empty");
        let one = Revision::new("web", 1, Arc::new(service("one")), vec![]);
        let two = Revision::new("web", 2, Arc::new(service("two")), vec!["env.MODE".into()]);
        state.save_applied(&[service("one")]);
        let deployments = Deployments::default();
        let id = deployments.begin("web", "web-00002", "web-00001", "api", vec![], 1);
        state.save_revisions("web", &[one, two], 3, &deployments, &[]);

        let again = StateFile::open(&path).unwrap();
        let s = again.service("web").unwrap();
        assert_eq!(s.applied, Some(SourceState::of(&service("one"))));
        assert_eq!(s.next_revision, 3);
        let live = s.revisions.last().unwrap().revision("web", &service("one"));
        assert_eq!(live.id, "web-00002");
        assert_eq!(live.config.env["MODE"], "two");
        assert_eq!(live.changes, vec!["env.MODE".to_string()]);
        let restored = Deployments::default();
        restored.restore(s.last_deployment, s.deployments);
        let d = restored.get(&id).unwrap();
        assert_eq!(
            d.state,
            crate::service::deployment::DeployState::Failed,
            "a deployment left in progress ended with the wakeway that ran it"
        );
        assert_eq!(
            restored.begin("web", "web-00003", "web-00002", "api", vec![], 1),
            "web-d0002",
            "ids go on from where they were"
        );
        assert!(
            !path.with_extension("json.tmp").exists(),
            "no temporary file is left"
        );

        again.save_applied(&[]);
        assert!(
            StateFile::open(&path).unwrap().service("web").is_none(),
            "a service gone from the file is forgotten"
        );
    }

    #[test]
    fn image_pins_survive_a_reopen_while_their_revisions_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wakeway.state.json");
        let state = StateFile::open(&path).unwrap();
        let one = Revision::new("web", 1, Arc::new(service("one")), vec![]);
        let two = Revision::new("web", 2, Arc::new(service("two")), vec!["env.MODE".into()]);
        let history = [one, two];
        let deployments = Deployments::default();
        state.save_applied(&[service("one")]);
        state.save_revisions("web", &history, 3, &deployments, &[]);
        state.save("web", "web-00001", "sha256:a");
        state.save("web", "web-00002", "sha256:b");
        // web-00003 was being deployed when wakeway stopped.
        state.save("web", "web-00003", "sha256:c");
        state.save("gone", "gone-00001", "sha256:d");
        assert_eq!(state.load("web", "web-00003").as_deref(), Some("sha256:c"));

        let again = StateFile::open(&path).unwrap();
        assert_eq!(again.load("web", "web-00001").as_deref(), Some("sha256:a"));
        assert_eq!(again.load("web", "web-00002").as_deref(), Some("sha256:b"));
        assert_eq!(
            again.load("web", "web-00003"),
            None,
            "the unfinished deployment's revision id is handed out again: its pin is not kept"
        );
        assert_eq!(
            again.load("gone", "gone-00001"),
            None,
            "not a service of the file"
        );

        // A deployment that fails leaves no pin behind.
        again.save("web", "web-00003", "sha256:c");
        again.save_revisions("web", &history, 4, &deployments, &[]);
        assert_eq!(again.load("web", "web-00003"), None);
        assert_eq!(again.load("web", "web-00002").as_deref(), Some("sha256:b"));

        again.save_applied(&[]);
        assert_eq!(
            StateFile::open(&path).unwrap().load("web", "web-00001"),
            None,
            "a service gone from the file takes its pins along"
        );
    }

    #[test]
    fn the_deployed_revision_stands_until_the_file_source_changes() {
        let one = Revision::new("web", 1, Arc::new(service("one")), vec![]);
        let two = Revision::new("web", 2, Arc::new(service("two")), vec!["env.MODE".into()]);
        let saved = ServiceState {
            applied: Some(SourceState::of(&service("one"))),
            revisions: vec![RevisionState::of(&one), RevisionState::of(&two)],
            next_revision: 3,
            ..ServiceState::default()
        };
        let same = saved.resume(&service("one")).unwrap();
        assert_eq!(same.history.last().unwrap().id, "web-00002");
        assert_eq!(same.next_revision, 3);

        let changed = saved.resume(&service("three")).unwrap();
        let live = changed.history.last().unwrap();
        assert_eq!(live.id, "web-00003");
        assert_eq!(live.config.env["MODE"], "three");
        assert_eq!(live.changes, vec!["env.MODE".to_string()]);
        assert_eq!(changed.next_revision, 4);
    }

    #[test]
    fn a_malformed_file_is_refused_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, "{\n  \"version\": 1,\n  \"services\": nope\n}").unwrap();
        let err = StateFile::open(&path).err().unwrap();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().contains("s.json"), "{err}");
    }
}
