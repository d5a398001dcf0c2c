//! `wakeway traffic` and `wakeway promote`: the split of a service's traffic among its
//! revisions, tags that give a revision its own host name, and the stepwise rollout of a new
//! revision. Arguments are checked here before anything is sent; the API checks the sums.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{table, text};
use crate::config::format_duration;

/// The body of `PUT /v1/services/{name}/traffic` from `REVISION=PERCENT` shares (`latest=N`
/// follows whatever revision is newest) and `--tag TAG=REVISION` tags. A tagged revision without
/// a share gets 0 %: reachable on its tag's host only.
pub fn traffic_body(shares: &[String], tags: &[String]) -> Result<Value, String> {
    if shares.is_empty() {
        return Err(
            "give the whole split, e.g. `web-00002=90 latest=10`: setting traffic \
                    replaces every share (tags alone cannot be set)"
                .into(),
        );
    }
    // (target, percent, tag) in the order given; a target is a revision id or `latest`.
    let mut entries: Vec<(String, u8, Option<String>)> = Vec::new();
    for share in shares {
        let (target, percent) = share.split_once('=').ok_or_else(|| {
            format!("`{share}`: expected REVISION=PERCENT, e.g. web-00002=90 or latest=10")
        })?;
        let target = check_target(share, target)?;
        let percent = parse_percent(percent).ok_or_else(|| {
            format!("`{share}`: the percent must be a whole number from 0 to 100")
        })?;
        if entries.iter().any(|(t, _, _)| *t == target) {
            return Err(format!(
                "`{share}`: {} has a share already",
                describe(&target)
            ));
        }
        entries.push((target, percent, None));
    }
    let mut named: Vec<String> = Vec::new();
    for tag_arg in tags {
        let (tag, target) = tag_arg.split_once('=').ok_or_else(|| {
            format!(
                "--tag `{tag_arg}`: expected TAG=REVISION, e.g. canary=web-00003 or canary=latest"
            )
        })?;
        check_tag(tag).map_err(|e| format!("--tag `{tag_arg}`: {e}"))?;
        let target = check_target(tag_arg, target).map_err(|e| format!("--tag {e}"))?;
        if named.iter().any(|t| t == tag) {
            return Err(format!("--tag `{tag_arg}`: the tag `{tag}` is given twice"));
        }
        named.push(tag.to_string());
        match entries.iter_mut().find(|(t, _, _)| *t == target) {
            Some((_, _, Some(other))) => {
                return Err(format!(
                    "--tag `{tag_arg}`: {} is tagged `{other}` already (one tag each)",
                    describe(&target)
                ));
            }
            Some((_, _, slot)) => *slot = Some(tag.to_string()),
            None => entries.push((target, 0, Some(tag.to_string()))),
        }
    }
    let traffic: Vec<Value> = entries
        .into_iter()
        .map(|(target, percent, tag)| {
            let mut e = Map::new();
            if target == "latest" {
                e.insert("latest".into(), json!(true));
            } else {
                e.insert("revision".into(), json!(target));
            }
            e.insert("percent".into(), json!(percent));
            if let Some(tag) = tag {
                e.insert("tag".into(), json!(tag));
            }
            Value::Object(e)
        })
        .collect();
    Ok(json!({ "traffic": traffic }))
}

fn check_target(arg: &str, target: &str) -> Result<String, String> {
    if target.is_empty() || target.contains(char::is_whitespace) {
        return Err(format!(
            "`{arg}`: name a revision (e.g. web-00003) or `latest`"
        ));
    }
    Ok(target.to_string())
}

fn describe(target: &str) -> String {
    if target == "latest" {
        "`latest`".into()
    } else {
        format!("revision {target}")
    }
}

/// `90` or `90%`.
fn parse_percent(s: &str) -> Option<u8> {
    let n: u8 = s.strip_suffix('%').unwrap_or(s).parse().ok()?;
    (n <= 100).then_some(n)
}

/// A tag becomes the first label of a host name (`canary--web.localhost`): a DNS label that
/// starts with a letter, as Knative's tags are.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 40
        && tag.starts_with(|c: char| c.is_ascii_lowercase())
        && !tag.ends_with('-')
        && !tag.contains("--")
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the tag `{tag}` must be lowercase letters, digits and single hyphens, start with a \
             letter and be at most 40 characters: it becomes part of a host name"
        ))
    }
}

/// `--steps 10,50,100`: the percents of the new revision at each step, rising, ending at 100.
pub fn parse_steps(s: &str) -> Result<Vec<u8>, String> {
    // The caller (clap) names the flag and the value.
    let bad = |why: &str| format!("{why}, e.g. 10,50,100");
    let steps = s
        .split(',')
        .map(|p| parse_percent(p.trim()).filter(|n| *n > 0))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| bad("each step is a whole percent from 1 to 100"))?;
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("the steps must rise"));
    }
    if steps.last() != Some(&100) {
        return Err(bad("the last step must be 100"));
    }
    Ok(steps)
}

/// `GET|PUT /v1/services/{name}/traffic` as a table (the newest revision marked `(latest)`),
/// then the rollout under way, if one is.
pub fn format_traffic(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let mut revision = text(&t["revision"]);
            if t["latest"] == true {
                revision.push_str(" (latest)");
            }
            vec![
                revision,
                format!("{}%", text(&t["percent"])),
                text(&t["tag"]),
                text(&t["host"]),
                format!("{}/{}", text(&t["ready"]), text(&t["desired"])),
            ]
        })
        .collect();
    let mut out = table(&["REVISION", "PERCENT", "TAG", "HOST", "READY"], &rows);
    if v["rollout"].is_object() {
        out.push('\n');
        out.push_str(&format_rollout(&v["rollout"]));
        out.push('\n');
    }
    out
}

/// `rollout web-00002 -> web-00003: step 2/3 (50%), running, a step every 1m`.
pub fn format_rollout(r: &Value) -> String {
    let steps = steps_of(r);
    let step = r["step"].as_u64().unwrap_or(0) as usize;
    let at = steps
        .get(step)
        .map(|p| format!(" ({p}%)"))
        .unwrap_or_default();
    let state = match (r["state"].as_str(), r["reason"].as_str()) {
        (Some("halted"), Some(reason)) => format!("halted: {reason}"),
        (Some("running"), _) => format!("running, a step every {}", interval(r)),
        (state, _) => state.unwrap_or("?").to_string(),
    };
    format!(
        "rollout {} -> {}: step {}/{}{at}, {state}",
        text(&r["from"]),
        text(&r["revision"]),
        step + 1,
        steps.len()
    )
}

fn steps_of(r: &Value) -> Vec<u64> {
    r["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn interval(r: &Value) -> String {
    r["interval_ms"]
        .as_u64()
        .map(|ms| format_duration(Duration::from_millis(ms)))
        .unwrap_or_else(|| "?".into())
}

/// Where a followed rollout stands.
#[derive(Debug, PartialEq)]
pub enum RolloutState {
    Running,
    /// The new revision takes all traffic.
    Done(String),
    /// Stopped short; the sentence carries the API's reason.
    Halted(String),
}

/// Follows one rollout through snapshots of `GET /v1/services/{name}/traffic`, printing each
/// step once as it is applied (steps applied between two looks are all printed).
pub struct RolloutWatch {
    revision: String,
    /// Steps printed so far.
    printed: usize,
}

impl RolloutWatch {
    /// From the rollout object `POST /v1/services/{name}/promote` answered.
    pub fn new(rollout: &Value) -> RolloutWatch {
        RolloutWatch {
            revision: text(&rollout["revision"]),
            printed: 0,
        }
    }

    /// The first line: what will happen.
    pub fn intro(rollout: &Value) -> String {
        let steps: Vec<String> = steps_of(rollout).iter().map(|p| format!("{p}%")).collect();
        format!(
            "rollout {} -> {}: steps {}, a step every {}",
            text(&rollout["from"]),
            text(&rollout["revision"]),
            steps.join(", "),
            interval(rollout)
        )
    }

    /// The lines for the steps applied since the last look, and where the rollout stands.
    /// `rollout` is the rollout object, `traffic` the whole traffic answer.
    pub fn update(&mut self, rollout: &Value, traffic: &Value) -> (Vec<String>, RolloutState) {
        let mut lines = Vec::new();
        if !rollout.is_object() || text(&rollout["revision"]) != self.revision {
            // The API keeps no rollout once another traffic change replaced it; whether the
            // revision got all traffic says how it ended.
            let full = traffic["traffic"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["revision"] == self.revision.as_str() && t["percent"].as_u64() == Some(100)
                });
            let state = if full {
                RolloutState::Done(format!(
                    "rollout done: {} takes 100% of traffic",
                    self.revision
                ))
            } else {
                RolloutState::Halted(format!(
                    "the rollout of {} is gone: another traffic change replaced it",
                    self.revision
                ))
            };
            return (lines, state);
        }
        let steps = steps_of(rollout);
        let step = rollout["step"].as_u64().unwrap_or(0) as usize;
        let applied = match rollout["state"].as_str() {
            // `done` means the last step is in place, whatever `step` says.
            Some("done") => steps.len(),
            _ => (step + 1).min(steps.len()),
        };
        while self.printed < applied {
            lines.push(format!(
                "step {}/{}: {} takes {}% of traffic",
                self.printed + 1,
                steps.len(),
                self.revision,
                steps[self.printed]
            ));
            self.printed += 1;
        }
        let state = match rollout["state"].as_str() {
            Some("done") => RolloutState::Done(format!(
                "rollout done: {} takes 100% of traffic",
                self.revision
            )),
            Some("halted") => {
                let at = steps
                    .get(step)
                    .map(|p| format!(" at step {}/{} ({p}%)", step + 1, steps.len()))
                    .unwrap_or_default();
                RolloutState::Halted(format!(
                    "rollout of {} halted{at}: {}",
                    self.revision,
                    rollout["reason"].as_str().unwrap_or("no reason given")
                ))
            }
            _ => RolloutState::Running,
        };
        (lines, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shares_and_tags_become_the_put_body() {
        let body = traffic_body(
            &args(&["web-00002=90", "latest=10%"]),
            &args(&["canary=latest", "old=web-00001"]),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"traffic": [
                {"revision": "web-00002", "percent": 90},
                {"latest": true, "percent": 10, "tag": "canary"},
                {"revision": "web-00001", "percent": 0, "tag": "old"},
            ]})
        );
    }

    #[test]
    fn malformed_arguments_are_named() {
        let err =
            |shares: &[&str], tags: &[&str]| traffic_body(&args(shares), &args(tags)).unwrap_err();
        assert!(err(&[], &["canary=latest"]).contains("give the whole split"));
        let e = err(&["web-00002"], &[]);
        assert!(
            e.contains("`web-00002`") && e.contains("REVISION=PERCENT"),
            "{e}"
        );
        let e = err(&["web-00002=ninety"], &[]);
        assert!(
            e.contains("`web-00002=ninety`") && e.contains("0 to 100"),
            "{e}"
        );
        assert!(err(&["web-00002=101"], &[]).contains("0 to 100"));
        assert!(err(&["=50", "latest=50"], &[]).contains("name a revision"));
        let e = err(&["latest=50", "latest=50"], &[]);
        assert!(e.contains("`latest` has a share already"), "{e}");
        let e = err(&["latest=100"], &["canary"]);
        assert!(
            e.contains("--tag `canary`") && e.contains("TAG=REVISION"),
            "{e}"
        );
        let e = err(&["latest=100"], &["Canary=latest"]);
        assert!(
            e.contains("--tag `Canary=latest`") && e.contains("lowercase"),
            "{e}"
        );
        let e = err(&["latest=100"], &["a=latest", "a=web-00001"]);
        assert!(e.contains("given twice"), "{e}");
        let e = err(&["latest=100"], &["a=latest", "b=latest"]);
        assert!(e.contains("tagged `a` already"), "{e}");
    }

    #[test]
    fn tags_are_host_labels() {
        assert!(check_tag("canary").is_ok());
        assert!(check_tag("v2-beta").is_ok());
        for bad in [
            "",
            "2fast",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn steps_rise_to_100() {
        assert_eq!(parse_steps("10,50,100").unwrap(), [10, 50, 100]);
        assert_eq!(parse_steps("100").unwrap(), [100]);
        assert_eq!(parse_steps(" 25, 100 ").unwrap(), [25, 100]);
        assert!(
            parse_steps("10,x,100")
                .unwrap_err()
                .contains("from 1 to 100")
        );
        assert!(parse_steps("0,100").unwrap_err().contains("from 1 to 100"));
        assert!(parse_steps("50,10,100").unwrap_err().contains("must rise"));
        assert!(
            parse_steps("10,50")
                .unwrap_err()
                .contains("last step must be 100")
        );
    }

    fn traffic(rollout: Value) -> Value {
        json!({"service": "web", "latest": "web-00003", "traffic": [
            {"revision": "web-00002", "latest": false, "percent": 90, "tag": null,
             "host": null, "ready": 2, "desired": 2},
            {"revision": "web-00003", "latest": true, "percent": 10, "tag": "canary",
             "host": "canary--web.localhost", "ready": 1, "desired": 1}],
            "rollout": rollout})
    }

    fn rollout(step: u64, state: &str, reason: Value) -> Value {
        json!({"revision": "web-00003", "from": "web-00002", "steps": [10, 50, 100],
               "step": step, "interval_ms": 60000, "state": state, "reason": reason})
    }

    #[test]
    fn the_traffic_table_marks_latest_and_shows_the_rollout() {
        let s = format_traffic(&traffic(Value::Null));
        assert_eq!(
            s,
            "REVISION            PERCENT  TAG     HOST                   READY\n\
             web-00002           90%      -       -                      2/2\n\
             web-00003 (latest)  10%      canary  canary--web.localhost  1/1\n"
        );
        let s = format_traffic(&traffic(rollout(1, "running", Value::Null)));
        assert!(
            s.ends_with(
                "\nrollout web-00002 -> web-00003: step 2/3 (50%), running, a step every 1m\n"
            ),
            "{s}"
        );
        let s = format_traffic(&traffic(rollout(
            1,
            "halted",
            json!("web-00003 is not ready"),
        )));
        assert!(
            s.contains("step 2/3 (50%), halted: web-00003 is not ready"),
            "{s}"
        );
    }

    #[test]
    fn a_rollout_prints_each_step_once_then_its_end() {
        let started = rollout(0, "running", Value::Null);
        assert_eq!(
            RolloutWatch::intro(&started),
            "rollout web-00002 -> web-00003: steps 10%, 50%, 100%, a step every 1m"
        );
        let mut w = RolloutWatch::new(&started);
        let (lines, state) = w.update(&started, &traffic(started.clone()));
        assert_eq!(lines, ["step 1/3: web-00003 takes 10% of traffic"]);
        assert_eq!(state, RolloutState::Running);
        assert_eq!(
            w.update(&started, &Value::Null),
            (vec![], RolloutState::Running)
        );
        // Both remaining steps happened between two looks.
        let done = rollout(2, "done", Value::Null);
        let (lines, state) = w.update(&done, &Value::Null);
        assert_eq!(
            lines,
            [
                "step 2/3: web-00003 takes 50% of traffic",
                "step 3/3: web-00003 takes 100% of traffic"
            ]
        );
        assert_eq!(
            state,
            RolloutState::Done("rollout done: web-00003 takes 100% of traffic".into())
        );

        let mut w = RolloutWatch::new(&started);
        let halted = rollout(1, "halted", json!("instance web-00003-b failed its probe"));
        let (lines, state) = w.update(&halted, &Value::Null);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            state,
            RolloutState::Halted(
                "rollout of web-00003 halted at step 2/3 (50%): instance web-00003-b failed \
                 its probe"
                    .into()
            )
        );

        // No rollout any more: all traffic on the revision means it finished.
        let mut w = RolloutWatch::new(&started);
        let full = json!({"traffic": [{"revision": "web-00003", "percent": 100}], "rollout": null});
        assert!(matches!(
            w.update(&Value::Null, &full).1,
            RolloutState::Done(_)
        ));
        let (_, state) = w.update(&Value::Null, &traffic(Value::Null));
        assert!(matches!(state, RolloutState::Halted(s) if s.contains("replaced")));
    }
}
