//! Revisions: immutable versions of a service's source. A deploy makes a new one; instances carry
//! the id of the revision they run.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::{ServiceConfig, Source};
use crate::events::rfc3339;

#[derive(Debug, Clone)]
pub struct Revision {
    /// `web-00007`.
    pub id: String,
    pub number: u32,
    /// The whole service config this revision was made from; only its source fields define it.
    pub config: Arc<ServiceConfig>,
    pub created_at: SystemTime,
    /// Which source fields differ from the revision before it (`["image"]`, `["env.MODE"]`).
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevisionView {
    pub id: String,
    pub created_at: String,
    pub changes: Vec<String>,
    pub source: String,
}

impl Revision {
    pub fn new(
        service: &str,
        number: u32,
        config: Arc<ServiceConfig>,
        changes: Vec<String>,
    ) -> Revision {
        Revision {
            id: revision_id(service, number),
            number,
            config,
            created_at: SystemTime::now(),
            changes,
        }
    }

    pub fn view(&self) -> RevisionView {
        RevisionView {
            id: self.id.clone(),
            created_at: rfc3339(self.created_at),
            changes: self.changes.clone(),
            source: describe_source(&self.config.source),
        }
    }
}

pub fn revision_id(service: &str, number: u32) -> String {
    format!("{service}-{number:05}")
}

pub fn describe_source(s: &Source) -> String {
    match s {
        Source::Command(c) => format!("command {c:?}"),
        Source::Upstreams(u) => format!("upstreams {u:?}"),
        Source::Image(i) => format!("image {}", i.image),
    }
}

/// The source fields that differ between two configs of one service: what makes a new revision.
/// Scaling, health, queue, deploy and hosts are not part of a revision; they apply live.
pub fn source_changes(old: &ServiceConfig, new: &ServiceConfig) -> Vec<String> {
    let mut changes = Vec::new();
    match (&old.source, &new.source) {
        (Source::Command(a), Source::Command(b)) if a != b => changes.push("command".into()),
        (Source::Upstreams(a), Source::Upstreams(b)) if a != b => changes.push("upstreams".into()),
        (Source::Image(a), Source::Image(b)) => {
            if a.image != b.image {
                changes.push("image".into());
            }
            if a.port != b.port {
                changes.push("port".into());
            }
            if a.cpus != b.cpus {
                changes.push("cpus".into());
            }
            if a.memory != b.memory {
                changes.push("memory".into());
            }
            if a.stop_signal != b.stop_signal {
                changes.push("stop_signal".into());
            }
        }
        (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            changes.push("source".into())
        }
        _ => {}
    }
    let keys = old.env.keys().chain(new.env.keys());
    let mut env: Vec<String> = keys
        .filter(|k| old.env.get(*k) != new.env.get(*k))
        .map(|k| format!("env.{k}"))
        .collect();
    env.sort();
    env.dedup();
    changes.extend(env);
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(cmd: &[&str]) -> ServiceConfig {
        ServiceConfig::new(
            "web",
            vec!["web.localhost".into()],
            Source::Command(cmd.iter().map(|s| s.to_string()).collect()),
        )
    }

    #[test]
    fn ids_are_zero_padded() {
        assert_eq!(revision_id("web", 7), "web-00007");
    }

    #[test]
    fn only_source_fields_make_a_revision() {
        let a = svc(&["app"]);
        let mut b = a.clone();
        b.scaling.max_instances = 3;
        b.hosts = vec!["other.localhost".into()];
        assert!(source_changes(&a, &b).is_empty());
        b.env.insert("MODE".into(), "prod".into());
        assert_eq!(source_changes(&a, &b), vec!["env.MODE"]);
        let c = svc(&["app", "--fast"]);
        assert_eq!(source_changes(&a, &c), vec!["command"]);
    }
}
