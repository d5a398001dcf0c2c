//! Text for the read verbs the console shares with the CLI: `history`, `deployments`,
//! `revisions` and `logs --access`. Numbers to two decimals with their unit; a value the API
//! left out (nothing measured) is `-`.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use super::{items, table};

/// `1.5833` -> `1.58`, `2.0` -> `2`.
pub fn num(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn opt(v: &Value, f: impl Fn(f64) -> String) -> String {
    v.as_f64().map_or("-".into(), f)
}

/// Milliseconds, as seconds past one.
pub fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", num(ms / 1000.0))
    } else {
        format!("{} ms", num(ms))
    }
}

fn percent(x: f64) -> String {
    format!("{}%", num(x))
}

/// `HH:MM:SS` (UTC) of unix seconds.
fn time_of_day(t: u64) -> String {
    let stamp = crate::events::rfc3339(UNIX_EPOCH + Duration::from_secs(t));
    stamp.get(11..19).unwrap_or(&stamp).to_string()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A service's history (`GET .../history`): its last `tail` steps (all with 0), then each
/// revision's means over those steps.
pub fn format_history(service: &str, h: &Value, tail: usize) -> String {
    let points = items(&h["points"]);
    let shown = &points[points
        .len()
        .saturating_sub(if tail == 0 { usize::MAX } else { tail })..];
    let step = h["step_seconds"].as_u64().unwrap_or(1);
    let mut out = format!(
        "{service}: the last {} steps of {step} s ({} kept)\n",
        shown.len(),
        points.len()
    );
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|p| {
            let errors = |class: &str| opt(&p["error_percent"][class], percent);
            let instances = p["instances"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{v} {k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into());
            vec![
                time_of_day(p["t"].as_u64().unwrap_or(0)),
                opt(&p["requests_per_second"], num),
                errors("4xx"),
                errors("5xx"),
                opt(&p["p50_ms"], millis),
                opt(&p["p99_ms"], millis),
                text(&p["in_flight"]),
                text(&p["queued"]),
                instances,
                text(&p["cold_starts"]),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "TIME (UTC)",
            "REQ/S",
            "4XX",
            "5XX",
            "P50",
            "P99",
            "IN-FLIGHT",
            "QUEUED",
            "INSTANCES",
            "COLD STARTS",
        ],
        &rows,
    ));
    let revisions = items(&h["revisions"]);
    if revisions.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = revisions
        .iter()
        .map(|r| {
            let pts = items(&r["points"]);
            let pts = &pts[pts.len().saturating_sub(shown.len())..];
            let rate = |p: &Value| p["requests_per_second"].as_f64().unwrap_or(0.0);
            let served: f64 = pts.iter().map(rate).sum();
            let failed: f64 = pts
                .iter()
                .map(|p| rate(p) * p["error_percent"].as_f64().unwrap_or(0.0) / 100.0)
                .sum();
            let last = pts.last().cloned().unwrap_or(Value::Null);
            vec![
                text(&r["revision"]),
                num(served / pts.len().max(1) as f64),
                if served > 0.0 {
                    percent(failed * 100.0 / served)
                } else {
                    "-".into()
                },
                text(&last["ready"]),
                format!("{}%", text(&last["percent"])),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["REVISION", "REQ/S", "5XX", "READY", "SHARE"],
        &rows,
    ));
    out
}

/// A service's deployments, oldest first, with why each failed.
pub fn format_deployments(list: &Value) -> String {
    let list = items(list);
    if list.is_empty() {
        return "no deployment yet\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            let keys = ["id", "previous_revision", "revision", "trigger", "state"];
            let mut row: Vec<String> = keys.iter().map(|k| text(&d[k])).collect();
            row.push(text(&d["started_at"]));
            row.push(opt(&d["duration_ms"], millis));
            row.push(d["reason"].as_str().unwrap_or("").to_string());
            row
        })
        .collect();
    table(
        &[
            "DEPLOYMENT",
            "FROM",
            "TO",
            "TRIGGER",
            "OUTCOME",
            "STARTED",
            "TOOK",
            "REASON",
        ],
        &rows,
    )
}

/// A service's revisions (`GET .../revisions`) with the share and tags each has in `traffic`
/// (`GET .../traffic`).
pub fn format_revisions(revisions: &Value, traffic: &Value) -> String {
    let shares = items(&traffic["traffic"]);
    let rows: Vec<Vec<String>> = items(revisions)
        .iter()
        .map(|r| {
            let share = shares.iter().find(|s| s["revision"] == r["id"]);
            let changes: Vec<String> = r["changes"]
                .as_array()
                .map(|c| c.iter().map(text).collect())
                .unwrap_or_default();
            vec![
                text(&r["id"]),
                text(&r["created_at"]),
                share.map_or("-".into(), |s| format!("{}%", text(&s["percent"]))),
                share
                    .and_then(|s| s["tags"].as_array())
                    .map(|t| t.iter().map(text).collect::<Vec<_>>().join(","))
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "-".into()),
                if changes.is_empty() {
                    "-".into()
                } else {
                    changes.join(",")
                },
                text(&r["source"]),
            ]
        })
        .collect();
    table(
        &["REVISION", "CREATED", "SHARE", "TAGS", "CHANGES", "SOURCE"],
        &rows,
    )
}

/// One access-log line of `logs --access`: `TIME STATUS METHOD PATH DURATION BYTES REVISION`,
/// then why wakeway answered itself, if it did.
pub fn format_access(l: &Value) -> String {
    let mut line = format!(
        "{} {} {} {} {} {}B {}",
        l["time"].as_str().unwrap_or("?"),
        text(&l["status"]),
        l["method"].as_str().unwrap_or("?"),
        l["path"].as_str().unwrap_or("?"),
        opt(&l["duration_ms"], millis),
        text(&l["bytes_out"]),
        l["revision"].as_str().unwrap_or("-"),
    );
    if l["cold_start"] == true {
        line.push_str(" cold");
    }
    if let Some(why) = l["reason"].as_str() {
        line.push_str(&format!(" reason={why:?}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_rows_read_as_numbers_with_units() {
        let h = json!({"range": "10m", "step_seconds": 1, "points": [
            {"t": 1796207400, "requests_per_second": 0.0, "in_flight": 0, "queued": 0,
             "desired": 0, "instances": {}, "cold_starts": 0},
            {"t": 1796207401, "requests_per_second": 12.5,
             "error_percent": {"4xx": 0.0, "5xx": 8.3333}, "p50_ms": 1.234, "p99_ms": 1520.0,
             "in_flight": 3, "queued": 1, "desired": 2, "instances": {"ready": 2},
             "cold_starts": 1}],
            "revisions": [{"revision": "web-00001", "points": [
                {"t": 1796207400, "requests_per_second": 0.0, "ready": 1, "percent": 90},
                {"t": 1796207401, "requests_per_second": 10.0, "error_percent": 10.0,
                 "ready": 1, "percent": 90}]}]});
        let s = format_history("web", &h, 20);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "web: the last 2 steps of 1 s (2 kept)");
        let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[2]),
            ["10:30:00", "0", "-", "-", "-", "-", "0", "0", "-", "0"],
            "{s}"
        );
        assert_eq!(
            cells(lines[3]),
            [
                "10:30:01", "12.5", "0%", "8.33%", "1.23", "ms", "1.52", "s", "3", "1", "2",
                "ready", "1"
            ],
            "{s}"
        );
        let means = s.lines().find(|l| l.starts_with("web-00001")).unwrap();
        assert_eq!(cells(means), ["web-00001", "5", "10%", "1", "90%"], "{s}");
        let last = format_history("web", &h, 1);
        assert!(last.contains("the last 1 steps"), "{last}");
    }

    #[test]
    fn deployments_show_outcome_duration_and_reason() {
        let d = json!([{"id": "web-d0001", "previous_revision": "web-00001",
            "revision": "web-00002", "trigger": "api", "state": "failed",
            "started_at": "2026-12-02T10:30:00.000Z", "duration_ms": 1520,
            "reason": "instance web-00002-a failed to start: exit status: 3"}]);
        let s = format_deployments(&d);
        assert!(s.contains("failed") && s.contains("1.52 s"), "{s}");
        assert!(s.contains("exit status: 3"), "{s}");
        assert_eq!(format_deployments(&json!([])), "no deployment yet\n");
    }

    #[test]
    fn revisions_carry_their_share_and_tags() {
        let revs = json!([{"id": "web-00001", "created_at": "c1", "changes": [],
                           "source": "command"},
                          {"id": "web-00002", "created_at": "c2", "changes": ["env.V"],
                           "source": "command"}]);
        let traffic = json!({"traffic": [
            {"revision": "web-00001", "percent": 90, "tags": ["stable"]},
            {"revision": "web-00002", "percent": 10, "tags": ["canary"]}]});
        let s = format_revisions(&revs, &traffic);
        let rows: Vec<Vec<&str>> = s.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[1],
            ["web-00001", "c1", "90%", "stable", "-", "command"],
            "{s}"
        );
        assert_eq!(
            rows[2],
            ["web-00002", "c2", "10%", "canary", "env.V", "command"],
            "{s}"
        );
    }

    #[test]
    fn an_access_line_says_why_wakeway_answered() {
        let l = json!({"seq": 4, "time": "2026-12-02T10:30:00.000Z", "method": "GET",
                       "path": "/x", "status": 503, "duration_ms": 2.5, "bytes_out": 40,
                       "client": "127.0.0.1", "reason": "no instance could start"});
        assert_eq!(
            format_access(&l),
            "2026-12-02T10:30:00.000Z 503 GET /x 2.5 ms 40B - reason=\"no instance could start\""
        );
    }
}
