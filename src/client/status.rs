//! `wakeway status`: every service with its state, counts and recent figures, then every
//! instance.

use serde_json::Value;

use super::{reads, table, text};

/// The latest revision when it takes all the traffic; else each revision's share (and tags), so
/// a split or a revision deployed with `--no-traffic` is not mistaken for what serves.
fn revision_cell(s: &Value) -> String {
    let latest = text(&s["revision"]);
    let shares = s["traffic"].as_array().cloned().unwrap_or_default();
    match shares.as_slice() {
        [] => latest,
        [one] if one["revision"] == s["revision"] && one["percent"] == 100 => latest,
        many => many
            .iter()
            .map(|sh| {
                let tags: Vec<String> = sh["tags"]
                    .as_array()
                    .map(|t| t.iter().map(text).collect())
                    .unwrap_or_default();
                let mut cell = format!("{} {}%", text(&sh["revision"]), text(&sh["percent"]));
                if !tags.is_empty() {
                    cell.push_str(&format!(" ({})", tags.join(",")));
                }
                cell
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Two tables: the services with their counts, then every instance; then why a service is
/// failing.
pub fn format_status(services: &Value) -> String {
    let list = services.as_array().cloned().unwrap_or_default();
    let count = |s: &Value, state: &str| {
        s["instances"]
            .as_array()
            .map_or(0, |i| i.iter().filter(|i| i["state"] == state).count())
            .to_string()
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            // The API says (failing wins over running); an older wakeway does not.
            let state = s["state"].as_str().unwrap_or(if s["paused"] == true {
                "paused"
            } else if s["instances"].as_array().is_some_and(|i| !i.is_empty()) {
                "running"
            } else {
                "idle"
            });
            let recent = &s["recent"];
            vec![
                text(&s["name"]),
                text(&s["runtime"]),
                revision_cell(s),
                state.into(),
                text(&s["desired"]),
                count(s, "ready"),
                count(s, "starting"),
                count(s, "draining"),
                text(&s["in_flight"]),
                text(&s["queued"]),
                recent["requests_per_second"]
                    .as_f64()
                    .map_or("-".into(), reads::num),
                recent["error_percent"]["5xx"]
                    .as_f64()
                    .map_or("-".into(), |p| format!("{}%", reads::num(p))),
                recent["p99_ms"].as_f64().map_or("-".into(), reads::millis),
                s["hosts"]
                    .as_array()
                    .map(|h| h.iter().map(text).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SERVICE",
            "RUNTIME",
            "REVISION",
            "STATE",
            "DESIRED",
            "READY",
            "STARTING",
            "DRAINING",
            "IN-FLIGHT",
            "QUEUED",
            "REQ/S",
            "5XX",
            "P99",
            "HOSTS",
        ],
        &rows,
    );
    for s in &list {
        if let Some(why) = s["state_reason"].as_str() {
            out.push_str(&format!(
                "{} is {}: {why}\n",
                text(&s["name"]),
                text(&s["state"])
            ));
        }
    }
    let instances: Vec<Vec<String>> = list
        .iter()
        .flat_map(|s| {
            let service = text(&s["name"]);
            s["instances"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |i| {
                    vec![
                        text(&i["id"]),
                        service.clone(),
                        text(&i["revision"]),
                        text(&i["state"]),
                        text(&i["pid"]),
                        text(&i["in_flight"]),
                        text(&i["address"]),
                        text(&i["started_at"]),
                    ]
                })
        })
        .collect();
    if !instances.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &[
                "INSTANCE",
                "SERVICE",
                "REVISION",
                "STATE",
                "PID",
                "IN-FLIGHT",
                "ADDRESS",
                "STARTED",
            ],
            &instances,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_is_two_aligned_tables() {
        let v = json!([{
            "name": "web", "runtime": "process", "revision": "web-00002", "desired": 1,
            "in_flight": 3, "queued": 0, "paused": false, "hosts": ["web.localhost"],
            "instances": [{"id": "web-00002-a", "revision": "web-00002", "state": "ready",
                           "address": "127.0.0.1:4000", "in_flight": 3, "pid": 4242,
                           "started_at": "2026-11-27T08:55:37.123Z"}]
        }, {
            "name": "api", "runtime": "static", "revision": "api-00001", "desired": 0,
            "in_flight": 0, "queued": 0, "paused": true, "hosts": ["api.localhost"],
            "instances": []
        }]);
        let s = format_status(&v);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("SERVICE  RUNTIME  REVISION"), "{s}");
        assert!(
            lines[1].starts_with("web      process  web-00002  running"),
            "{s}"
        );
        assert!(
            lines[2].starts_with("api      static   api-00001  paused"),
            "{s}"
        );
        let col = lines[0].find("IN-FLIGHT").unwrap();
        assert_eq!(&lines[1][col..col + 1], "3", "columns line up: {s}");
        assert!(lines[4].starts_with("INSTANCE"), "{s}");
        assert!(lines[5].starts_with("web-00002-a  web"), "{s}");
        assert!(
            lines[5].contains("4242") && lines[5].contains("ready"),
            "{s}"
        );
    }

    #[test]
    fn status_shows_the_split_when_the_latest_does_not_take_it_all() {
        let svc = |traffic: serde_json::Value| {
            json!([{
                "name": "web", "runtime": "process", "revision": "web-00003", "desired": 2,
                "in_flight": 0, "queued": 0, "paused": false, "hosts": ["web.localhost"],
                "traffic": traffic, "instances": []
            }])
        };
        let all = format_status(&svc(json!([
            {"revision": "web-00003", "percent": 100, "tags": []}
        ])));
        assert!(
            all.lines().nth(1).unwrap().contains(" web-00003  idle"),
            "{all}"
        );
        let split = format_status(&svc(json!([
            {"revision": "web-00002", "percent": 90, "tags": []},
            {"revision": "web-00003", "percent": 10, "tags": ["canary"]}
        ])));
        assert!(
            split.contains("web-00002 90%, web-00003 10% (canary)"),
            "{split}"
        );
    }

    #[test]
    fn a_failing_service_says_so_and_why() {
        let v = json!([{
            "name": "web", "runtime": "process", "revision": "web-00001", "desired": 1,
            "in_flight": 0, "queued": 0, "paused": false, "hosts": ["web.localhost"],
            "state": "failing", "state_reason": "12 of the last minute's 12 answers were 5xx",
            "recent": {"requests_per_second": 1.2, "error_percent": {"4xx": 0.0, "5xx": 100.0},
                       "p99_ms": 2.345},
            "instances": [{"id": "web-00001-a", "revision": "web-00001", "state": "ready"}]
        }]);
        let s = format_status(&v);
        let row: Vec<&str> = s.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&row[..4], ["web", "process", "web-00001", "failing"], "{s}");
        assert!(
            row.contains(&"1.2") && row.contains(&"100%") && row.contains(&"2.35"),
            "{s}"
        );
        assert!(
            s.contains("web is failing: 12 of the last minute's 12 answers were 5xx"),
            "{s}"
        );
    }
}
