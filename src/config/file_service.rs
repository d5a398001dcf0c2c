//! The TOML shape of two per-service tables: `[[service.traffic]]` (how traffic splits between
//! revisions) and `[service.scaling.idle_ignore]` (requests that do not count as activity), of
//! `idle_action`, and of the global `[scaling]`.
//! What the values mean is checked in `validate_service.rs`.

use serde::Deserialize;

use super::ConfigError;
use super::types::{GlobalScaling, IdleIgnore, PathPattern};
use super::types_service::{IdleAction, TrafficTarget};
use super::values::Cidr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTraffic {
    revision: Option<String>,
    latest: Option<bool>,
    percent: u32,
    tag: Option<String>,
}

/// Each entry names exactly one of `revision = "web-00002"` or `latest = true`.
pub(super) fn convert_traffic(
    i: usize,
    name: &str,
    raw: Vec<RawTraffic>,
) -> Result<Vec<TrafficTarget>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(j, t)| {
            let at = |k: &str| format!("service[{i}].traffic[{j}].{k}");
            let example = format!("revision = \"{name}-00001\"");
            let revision = match (t.revision, t.latest) {
                (Some(r), None) => Some(r),
                (None, Some(true)) => None,
                (Some(_), Some(_)) => {
                    return Err(ConfigError::at_key(
                        at("latest"),
                        "set `revision` or `latest = true`, not both",
                    ));
                }
                (None, Some(false)) => {
                    return Err(ConfigError::at_key(
                        at("latest"),
                        format!(
                            "`latest = false` names no revision: set `{example}` or `latest = true`"
                        ),
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::at_key(
                        format!("service[{i}].traffic[{j}]"),
                        format!(
                            "this traffic entry names no revision: set `{example}` or `latest = true`"
                        ),
                    ));
                }
            };
            Ok(TrafficTarget {
                revision,
                percent: t.percent,
                tag: t.tag,
            })
        })
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdleIgnore {
    #[serde(default)]
    user_agents: Vec<String>,
    #[serde(default)]
    paths: Vec<PathPattern>,
    #[serde(default)]
    networks: Vec<Cidr>,
    wake: Option<bool>,
}

pub(super) fn convert_idle_ignore(raw: RawIdleIgnore) -> IdleIgnore {
    IdleIgnore {
        user_agents: raw.user_agents,
        paths: raw.paths,
        networks: raw.networks.into_iter().map(|c| c.0).collect(),
        wake: raw.wake.unwrap_or(false),
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawIdleAction {
    Stop,
    Freeze,
}

impl From<RawIdleAction> for IdleAction {
    fn from(raw: RawIdleAction) -> IdleAction {
        match raw {
            RawIdleAction::Stop => IdleAction::Stop,
            RawIdleAction::Freeze => IdleAction::Freeze,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobalScaling {
    max_frozen_memory: Option<super::values::Size>,
}

pub(super) fn convert_global_scaling(raw: Option<RawGlobalScaling>) -> GlobalScaling {
    let d = GlobalScaling::default();
    let raw = raw.unwrap_or_default();
    GlobalScaling {
        max_frozen_memory: raw.max_frozen_memory.map_or(d.max_frozen_memory, |s| s.0),
    }
}
