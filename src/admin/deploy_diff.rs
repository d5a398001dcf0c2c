//! What a deployment would change in a service's source, field by field with the old and new
//! values, for `wakeway deploy --dry-run` and the diff `wakeway deploy` prints before it applies.

use serde::Serialize;

use crate::config::{ServiceConfig, Source};
use crate::service::revision::source_changes;

#[derive(Debug, Serialize, PartialEq)]
pub struct Change {
    /// `image`, `command`, `env.KEY`, ...
    pub field: String,
    /// Absent when the field was not set (a new variable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Absent when the field is removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// The changes from `old` to `new`, in `source_changes`' order (the fields that make a revision).
pub fn changes(old: &ServiceConfig, new: &ServiceConfig) -> Vec<Change> {
    source_changes(old, new)
        .into_iter()
        .map(|field| {
            let (from, to) = match field.strip_prefix("env.") {
                Some(key) => (old.env.get(key).cloned(), new.env.get(key).cloned()),
                None => (value(old, &field), value(new, &field)),
            };
            Change { field, from, to }
        })
        .collect()
}

/// One source field as text.
fn value(cfg: &ServiceConfig, field: &str) -> Option<String> {
    match (&cfg.source, field) {
        (Source::Command(c), "command") => Some(serde_json::to_string(c).unwrap_or_default()),
        (Source::Upstreams(u), "upstreams") => Some(u.join(", ")),
        (Source::Image(i), "image") => Some(i.image.clone()),
        (Source::Image(i), "port") => Some(i.port.to_string()),
        (Source::Image(i), "cpus") => i.cpus.map(|c| c.to_string()),
        (Source::Image(i), "memory") => i.memory.map(|m| m.to_string()),
        (Source::Image(i), "stop_signal") => i.stop_signal.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(cmd: &[&str], env: &[(&str, &str)]) -> ServiceConfig {
        let mut c = ServiceConfig::new(
            "web",
            vec!["web.localhost".into()],
            Source::Command(cmd.iter().map(|s| s.to_string()).collect()),
        );
        c.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c
    }

    #[test]
    fn command_and_each_variable_with_old_and_new_values() {
        let old = svc(
            &["app", "--v1"],
            &[("KEEP", "1"), ("GONE", "x"), ("CHANGED", "a")],
        );
        let new = svc(
            &["app", "--v2"],
            &[("KEEP", "1"), ("CHANGED", "b"), ("NEW", "n")],
        );
        let got = changes(&old, &new);
        let fields: Vec<_> = got.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["command", "env.CHANGED", "env.GONE", "env.NEW"]);
        assert_eq!(got[0].to.as_deref(), Some(r#"["app","--v2"]"#));
        assert_eq!(
            (got[1].from.as_deref(), got[1].to.as_deref()),
            (Some("a"), Some("b"))
        );
        assert_eq!(
            (got[2].from.as_deref(), got[2].to.as_deref()),
            (Some("x"), None)
        );
        assert_eq!(
            (got[3].from.as_deref(), got[3].to.as_deref()),
            (None, Some("n"))
        );
        assert!(changes(&old, &old).is_empty());
    }
}
