//! The record of a deployment: what a user sees in `GET /v1/services/{name}/deployments`.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::events::rfc3339;

/// Deployments kept per service; older ones are forgotten.
const KEEP: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployState {
    InProgress,
    Succeeded,
    Failed,
    RolledBack,
}

impl DeployState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::InProgress => "in_progress",
            DeployState::Succeeded => "succeeded",
            DeployState::Failed => "failed",
            DeployState::RolledBack => "rolled_back",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// `web-d0003`.
    pub id: String,
    pub revision: String,
    pub previous_revision: String,
    pub state: DeployState,
    /// What started it: `api`, `rollback`, `reload`, `auto`.
    pub trigger: String,
    pub changes: Vec<String>,
    /// Instances started for the new revision before the switch.
    pub instances: u32,
    pub reason: Option<String>,
    pub started_at: String,
    pub switched_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    #[serde(skip)]
    started: Option<SystemTime>,
}

#[derive(Default)]
pub struct Deployments {
    list: Mutex<(u32, Vec<Deployment>)>,
}

impl Deployments {
    /// Records a new deployment in progress and returns its id.
    pub fn begin(
        &self,
        service: &str,
        revision: &str,
        previous_revision: &str,
        trigger: &str,
        changes: Vec<String>,
        instances: u32,
    ) -> String {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let id = format!("{service}-d{:04}", g.0);
        let now = SystemTime::now();
        g.1.push(Deployment {
            id: id.clone(),
            revision: revision.into(),
            previous_revision: previous_revision.into(),
            state: DeployState::InProgress,
            trigger: trigger.into(),
            changes,
            instances,
            reason: None,
            started_at: rfc3339(now),
            switched_at: None,
            finished_at: None,
            duration_ms: None,
            started: Some(now),
        });
        if g.1.len() > KEEP {
            g.1.remove(0);
        }
        id
    }

    pub fn switched(&self, id: &str) {
        self.update(id, |d| d.switched_at = Some(rfc3339(SystemTime::now())));
    }

    pub fn finish(&self, id: &str, state: DeployState, reason: Option<String>) {
        self.update(id, |d| {
            let now = SystemTime::now();
            d.state = state;
            d.reason = reason;
            d.finished_at = Some(rfc3339(now));
            d.duration_ms = d
                .started
                .and_then(|s| now.duration_since(s).ok())
                .map(|e| e.as_millis() as u64);
        });
    }

    /// Marks the latest succeeded deployment of `revision` as rolled back.
    pub fn mark_rolled_back(&self, revision: &str) {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) =
            g.1.iter_mut()
                .rev()
                .find(|d| d.revision == revision && d.state == DeployState::Succeeded)
        {
            d.state = DeployState::RolledBack;
        }
    }

    /// The next id's number and the deployments, for the state file.
    pub fn snapshot(&self) -> (u32, Vec<Deployment>) {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes back what a previous wakeway recorded. A deployment it left in progress ended
    /// with it: that one is marked failed, saying so.
    pub fn restore(&self, last_id: u32, mut list: Vec<Deployment>) {
        for d in &mut list {
            if d.state == DeployState::InProgress {
                d.state = DeployState::Failed;
                d.reason = Some("wakeway stopped before the deployment finished".into());
            }
        }
        *self.list.lock().unwrap_or_else(|p| p.into_inner()) = (last_id, list);
    }

    pub fn list(&self) -> Vec<Deployment> {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    pub fn get(&self, id: &str) -> Option<Deployment> {
        self.list().into_iter().find(|d| d.id == id)
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Deployment)) {
        let mut g = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = g.1.iter_mut().find(|d| d.id == id) {
            f(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_rollback_marking() {
        let d = Deployments::default();
        let a = d.begin(
            "web",
            "web-00002",
            "web-00001",
            "api",
            vec!["image".into()],
            2,
        );
        assert_eq!(a, "web-d0001");
        d.switched(&a);
        d.finish(&a, DeployState::Succeeded, None);
        let b = d.begin("web", "web-00003", "web-00002", "api", vec![], 2);
        d.finish(&b, DeployState::Failed, Some("health".into()));
        d.mark_rolled_back("web-00002");
        let l = d.list();
        assert_eq!(l[0].state, DeployState::RolledBack);
        assert_eq!(l[1].state, DeployState::Failed);
        assert_eq!(l[1].reason.as_deref(), Some("health"));
        assert!(l[0].duration_ms.is_some());
    }
}
