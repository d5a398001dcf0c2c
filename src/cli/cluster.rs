//! `wakeway cluster`: this replica, the leader and the members of a `[cluster]`, with the time
//! since each was last heard from and its share of the requests (`GET /v1/cluster`).

use std::process::ExitCode;

use http::Method;
use serde_json::Value;
use wakeway::client::{AdminClient, items, table};

use super::{Output, show};

pub async fn cluster(client: AdminClient, output: Output) -> ExitCode {
    let answer = client.ok(Method::GET, "/v1/cluster", None).await;
    show(answer, output, |v| format_cluster(&v))
}

fn format_cluster(v: &Value) -> String {
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    let leader = match (v["leading"].as_bool(), v["leader"].as_str()) {
        (Some(true), _) => "this replica".to_string(),
        (_, Some(l)) => l.to_string(),
        _ => "none (scaling and deploys paused)".to_string(),
    };
    let mut out = format!(
        "replica {} ({}), leader: {leader}{}\n",
        s(&v["name"]),
        s(&v["advertise"]),
        if v["etcd_reachable"] == false {
            ", etcd unreachable"
        } else {
            ""
        }
    );
    let rows: Vec<Vec<String>> = items(&v["members"])
        .iter()
        .map(|m| {
            vec![
                format!(
                    "{}{}",
                    s(&m["name"]),
                    if m["leader"] == true { " *" } else { "" }
                ),
                s(&m["advertise"]),
                format!(
                    "{:.1}s",
                    m["last_seen_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
                ),
                m["served"].as_u64().unwrap_or(0).to_string(),
                format!("{:.0}%", m["traffic_share"].as_f64().unwrap_or(0.0) * 100.0),
            ]
        })
        .collect();
    out.push_str(&table(
        &["MEMBER", "ADVERTISE", "LAST SEEN", "SERVED", "SHARE"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_starred_and_shares_are_percent() {
        let v = serde_json::json!({
            "name": "edge-2", "advertise": "10.0.0.6:9181", "leader": "edge-1",
            "leading": false, "etcd_reachable": true,
            "members": [
                {"name": "edge-1", "advertise": "10.0.0.5:9181", "leader": true,
                 "last_seen_ms": 300, "served": 30, "traffic_share": 0.75},
                {"name": "edge-2", "advertise": "10.0.0.6:9181", "leader": false,
                 "last_seen_ms": 0, "served": 10, "traffic_share": 0.25}
            ]
        });
        let out = format_cluster(&v);
        assert!(
            out.starts_with("replica edge-2 (10.0.0.6:9181), leader: edge-1\n"),
            "{out}"
        );
        assert!(out.contains("edge-1 *"), "{out}");
        assert!(out.contains("75%") && out.contains("0.3s"), "{out}");
    }
}
