//! What `wakeway deploy` and `rollback` print while they wait: a line per instance of the new
//! revision as it starts, turns ready or fails (with the probe's answer), read from the event
//! log, then the deployment's outcome.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::text;
use crate::config::format_duration;

/// Turns the events of one deployment into progress lines. Events of other revisions (the live
/// one scaling meanwhile, another service) print nothing.
pub struct DeployProgress {
    deployment: String,
    revision: String,
    /// Each new instance and when its start began (ms since the epoch, from its event).
    starts: HashMap<String, Option<i64>>,
}

impl DeployProgress {
    pub fn new(deployment: &str, revision: &str) -> DeployProgress {
        DeployProgress {
            deployment: deployment.to_string(),
            revision: revision.to_string(),
            starts: HashMap::new(),
        }
    }

    /// The line `e` adds to the progress, if it is one of this deployment's.
    pub fn line(&mut self, e: &Value) -> Option<String> {
        let kind = e["kind"].as_str()?;
        if kind == "deploy_switched" {
            if e["deployment"] != self.deployment.as_str() {
                return None;
            }
            if e["no_traffic"] == true {
                return Some(format!(
                    "{} is ready beside {}, which keeps the traffic",
                    text(&e["to"]),
                    text(&e["from"])
                ));
            }
            let draining = e["draining"].as_array().map_or(0, Vec::len);
            return Some(format!(
                "traffic switched {} -> {}; draining {draining} old instance{}",
                text(&e["from"]),
                text(&e["to"]),
                plural(draining)
            ));
        }
        let id = self.new_instance(e)?.to_string();
        let status = match kind {
            "instance_starting" => {
                self.starts.insert(id.clone(), event_millis(e));
                format!("starting ({})", text(&e["runtime"]))
            }
            "instance_ready" => {
                let took = self
                    .starts
                    .get(&id)
                    .copied()
                    .flatten()
                    .zip(event_millis(e))
                    .and_then(|(from, to)| u64::try_from(to - from).ok())
                    .map(|ms| format!(" after {}", format_duration(Duration::from_millis(ms))))
                    .unwrap_or_default();
                format!("ready{took} at {}", text(&e["address"]))
            }
            "probe_failing" => format!(
                "failing: the probe {}; not ready until it passes",
                text(&e["probe"])
            ),
            "start_failed" => format!("failed to start: {}", text(&e["reason"])),
            "instance_exited" => format!("exited: {}", text(&e["reason"])),
            "instance_unhealthy" => format!("unhealthy: {}", text(&e["reason"])),
            _ => return None,
        };
        Some(format!("  {id}  {status}"))
    }

    /// The instance `e` is about, when it is one of the new revision's. Some events carry the
    /// revision; the others name an instance whose id begins with it (`web-00003-a`).
    fn new_instance<'e>(&self, e: &'e Value) -> Option<&'e str> {
        let id = e["instance"].as_str()?;
        let ours = match e["revision"].as_str() {
            Some(r) => r == self.revision,
            None => {
                self.starts.contains_key(id)
                    || id
                        .rsplit_once('-')
                        .is_some_and(|(rev, _)| rev == self.revision)
            }
        };
        ours.then_some(id)
    }
}

/// Where a deployment record (`GET /v1/services/{name}/deployments/{id}`) stands.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    InProgress,
    /// The new revision is live (or, deployed without traffic, ready); the sentence says which.
    Succeeded(String),
    /// The reason, and what stays live.
    Failed(String),
}

/// The outcome of deployment `d`. `no_traffic`: it was deployed with `--no-traffic`, so success
/// means ready beside the live revision, not live; `host` is its tag's host name, if it has one.
pub fn deploy_outcome(d: &Value, no_traffic: bool, host: Option<&str>) -> Outcome {
    let id = text(&d["id"]);
    let revision = text(&d["revision"]);
    let took = d["duration_ms"]
        .as_u64()
        .map(|ms| format!(" in {}", format_duration(Duration::from_millis(ms))))
        .unwrap_or_default();
    match d["state"].as_str() {
        Some("succeeded") if no_traffic => {
            let reach = host
                .map(|h| format!("; reach it at {h}"))
                .unwrap_or_default();
            Outcome::Succeeded(format!(
                "deployment {id} succeeded{took}: {revision} is ready and takes no traffic yet{reach}"
            ))
        }
        Some("succeeded") => Outcome::Succeeded(format!(
            "deployment {id} succeeded{took}: {revision} is live"
        )),
        Some("rolled_back") => Outcome::Succeeded(format!(
            "deployment {id} succeeded{took} and has since been rolled back"
        )),
        Some("failed") => {
            let live = d["previous_revision"]
                .as_str()
                .map(|p| format!("; {p} stays live"))
                .unwrap_or_default();
            Outcome::Failed(format!(
                "deployment {id} of {revision} failed: {}{live}",
                d["reason"].as_str().unwrap_or("no reason given")
            ))
        }
        _ => Outcome::InProgress,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// An event's `time` (`2026-11-27T08:55:37.123Z`) as milliseconds since the epoch.
fn event_millis(e: &Value) -> Option<i64> {
    let t = e["time"].as_str()?;
    let num = |range: std::ops::Range<usize>| t.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, min, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + s;
    Some(secs * 1000 + ms)
}

/// (year, month 1-12, day 1-31) → days since 1970-01-01: Howard Hinnant's days-from-civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: u64, time: &str, kind: &str, fields: Value) -> Value {
        let mut e = json!({"seq": seq, "time": time, "service": "web", "kind": kind,
                           "message": "..."});
        e.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        e
    }

    #[test]
    fn event_times_are_read_to_the_millisecond() {
        let at = |t: &str| event_millis(&json!({ "time": t }));
        assert_eq!(at("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(at("2024-02-29T23:59:59.123Z"), Some(1_709_251_199_123));
        assert_eq!(
            at("2026-01-01T00:00:00.250Z").unwrap() - at("2025-12-31T23:59:59.000Z").unwrap(),
            1250
        );
        assert_eq!(at("yesterday"), None);
    }

    #[test]
    fn a_good_deploy_reads_starting_ready_switched() {
        let mut p = DeployProgress::new("web-d0002", "web-00002");
        let lines: Vec<String> = [
            event(
                1,
                "2026-11-27T08:55:37.000Z",
                "deploy_started",
                json!({"deployment": "web-d0002", "from": "web-00001", "to": "web-00002"}),
            ),
            event(
                2,
                "2026-11-27T08:55:37.010Z",
                "instance_starting",
                json!({"instance": "web-00002-c", "revision": "web-00002", "runtime": "process"}),
            ),
            // The live revision scaling meanwhile is not this deployment's.
            event(
                3,
                "2026-11-27T08:55:37.020Z",
                "instance_starting",
                json!({"instance": "web-00001-d", "revision": "web-00001", "runtime": "process"}),
            ),
            event(
                4,
                "2026-11-27T08:55:38.260Z",
                "instance_ready",
                json!({"instance": "web-00002-c", "revision": "web-00002",
                         "address": "127.0.0.1:4100", "pid": 42}),
            ),
            event(
                5,
                "2026-11-27T08:55:38.270Z",
                "deploy_switched",
                json!({"deployment": "web-d0002", "from": "web-00001", "to": "web-00002",
                         "draining": ["web-00001-a"]}),
            ),
            event(
                6,
                "2026-11-27T08:55:38.280Z",
                "instance_draining",
                json!({"instance": "web-00001-a", "reason": "replaced by a deployment"}),
            ),
        ]
        .iter()
        .filter_map(|e| p.line(e))
        .collect();
        assert_eq!(
            lines,
            [
                "  web-00002-c  starting (process)",
                "  web-00002-c  ready after 1.25s at 127.0.0.1:4100",
                "traffic switched web-00001 -> web-00002; draining 1 old instance",
            ]
        );
    }

    #[test]
    fn a_failing_instance_shows_the_probe_answer_and_exits_by_id() {
        let mut p = DeployProgress::new("web-d0002", "web-00002");
        let failing = event(
            7,
            "2026-11-27T08:55:38.000Z",
            "probe_failing",
            json!({"instance": "web-00002-a", "revision": "web-00002",
                   "probe": "GET /healthz answered 502 Bad Gateway", "path": "/healthz"}),
        );
        assert_eq!(
            p.line(&failing).unwrap(),
            "  web-00002-a  failing: the probe GET /healthz answered 502 Bad Gateway; not ready until it passes"
        );
        // `instance_exited` carries no revision: the instance id says whose it is.
        let exited = |id: &str| {
            event(
                8,
                "2026-11-27T08:55:39.000Z",
                "instance_exited",
                json!({"instance": id, "reason": "exit status: 1"}),
            )
        };
        assert_eq!(
            p.line(&exited("web-00002-b")).unwrap(),
            "  web-00002-b  exited: exit status: 1"
        );
        assert_eq!(p.line(&exited("web-00001-b")), None);
        assert_eq!(p.line(&exited("web-000021-b")), None);
        let other = event(
            9,
            "2026-11-27T08:55:39.000Z",
            "deploy_switched",
            json!({"deployment": "web-d0001", "draining": []}),
        );
        assert_eq!(p.line(&other), None);
    }

    #[test]
    fn outcomes_say_what_is_live() {
        let d = |state: &str| {
            json!({"id": "web-d0002", "revision": "web-00002", "previous_revision": "web-00001",
                   "state": state, "reason": "instance web-00002-a failed to start: not ready",
                   "duration_ms": 2500})
        };
        assert_eq!(
            deploy_outcome(&d("in_progress"), false, None),
            Outcome::InProgress
        );
        assert_eq!(
            deploy_outcome(&d("succeeded"), false, None),
            Outcome::Succeeded("deployment web-d0002 succeeded in 2.5s: web-00002 is live".into())
        );
        assert_eq!(
            deploy_outcome(&d("succeeded"), true, Some("canary--web.localhost")),
            Outcome::Succeeded(
                "deployment web-d0002 succeeded in 2.5s: web-00002 is ready and takes no \
                 traffic yet; reach it at canary--web.localhost"
                    .into()
            )
        );
        assert_eq!(
            deploy_outcome(&d("failed"), false, None),
            Outcome::Failed(
                "deployment web-d0002 of web-00002 failed: instance web-00002-a failed to \
                 start: not ready; web-00001 stays live"
                    .into()
            )
        );
    }
}
