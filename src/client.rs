//! The CLI's admin client: `wakeway status`, `deploy`, `rollback`, `events` talk to a running
//! wakeway's admin API.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

mod progress;
mod reads;
mod status;
mod traffic;

pub use progress::{DeployProgress, Outcome, deploy_outcome};
pub use reads::{format_access, format_deployments, format_history, format_revisions};
pub use status::format_status;
pub use traffic::{
    RolloutState, RolloutWatch, check_tag, format_rollout, format_traffic, parse_steps,
    traffic_body,
};

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// `admin` is `host:port` or a URL; `token` the admin bearer token, if one is set.
    pub fn new(admin: &str, token: Option<String>) -> AdminClient {
        let base = if admin.contains("://") {
            admin.trim_end_matches('/').to_string()
        } else {
            format!("http://{admin}")
        };
        AdminClient {
            base,
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request; returns the status and the JSON body. Transport failures name the
    /// admin address.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        // The admin refuses state-changing calls not declared JSON (a browser's cross-site
        // form post cannot declare it), even those without a body.
        if method != Method::GET {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let body = match body {
            Some(v) => Full::new(Bytes::from(v.to_string())),
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.http.request(req))
            .await
            .map_err(|_| format!("{} did not answer within 30s", self.base))?
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.base))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }

    /// Like `call`, but a non-2xx answer is an error carrying the API's message.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if status.is_success() {
            return Ok(v);
        }
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        Err(format!("{method} {path}: {status}: {msg}"))
    }
}

/// The elements of a JSON array; none when the API left it out (or sent something else).
pub fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Lays `rows` out under `headers` in columns two spaces apart, like `kubectl get`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            l.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The header line of [`format_event`]'s columns.
pub const EVENT_HEADER: &str =
    "TIME          SERVICE       KIND                MESSAGE  [DECISION INPUTS]";

/// One event on one line: time of day, service, kind, message, then the decision's inputs
/// (`[from=1 to=3 trigger=autoscaler mode=panic stable_avg=2.5 ...]`).
pub fn format_event(e: &Value) -> String {
    let time = e["time"].as_str().unwrap_or("");
    // `2026-11-27T08:55:37.123Z` -> `08:55:37.123`: the day is rarely what one looks for.
    let time = time.get(11..23).unwrap_or(time);
    let mut line = format!(
        "{:<13} {:<13} {:<19} {}",
        time,
        e["service"].as_str().unwrap_or(""),
        e["kind"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or("")
    );
    let inputs = format_inputs(e);
    if !inputs.is_empty() {
        line.push_str("  [");
        line.push_str(&inputs);
        line.push(']');
    }
    line
}

/// Inputs read first, in the order one reads a decision; the others follow alphabetically.
const FIRST_INPUTS: &[&str] = &[
    "instance",
    "revision",
    "deployment",
    "from",
    "to",
    "trigger",
    "mode",
    "stable_avg",
    "panic_avg",
    "ready",
    "starting",
    "queued",
    "clamped_by",
    "probe",
    "reason",
];

/// An event's fields past the common ones, as `key=value` pairs: numbers to two decimals,
/// text with spaces quoted, lists comma-separated, nested objects as `key.inner=value`, and no
/// field said twice (a scale decision's `desired`/`previous` are its `to`/`from`).
fn format_inputs(e: &Value) -> String {
    let Some(fields) = e.as_object() else {
        return String::new();
    };
    let mut inputs: Vec<(&String, &Value)> = fields
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "seq" | "time" | "service" | "kind" | "level" | "message"
            )
        })
        .filter(|(k, v)| match k.as_str() {
            "desired" => fields.get("to") != Some(v),
            "previous" => fields.get("from") != Some(v),
            _ => true,
        })
        .collect();
    let rank = |k: &str| {
        FIRST_INPUTS
            .iter()
            .position(|f| *f == k)
            .unwrap_or(usize::MAX)
    };
    inputs.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)).then(a.0.cmp(b.0)));
    let mut out = Vec::new();
    for (k, v) in inputs {
        flatten(k, v, &mut out);
    }
    out.join(" ")
}

fn flatten(key: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, inner) in m {
                flatten(&format!("{key}.{k}"), inner, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let items: Vec<String> = items.iter().map(compact).collect();
            out.push(format!("{key}={}", items.join(",")));
        }
        other => out.push(format!("{key}={}", compact(other))),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) if n.is_f64() => {
            let s = format!("{:.2}", n.as_f64().unwrap_or_default());
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        Value::String(s) if s.is_empty() || s.contains([' ', '"', ',', '=']) => format!("{s:?}"),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Object(m) if m.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

/// What `POST /v1/services/{name}/pause|resume` did, as a sentence.
pub fn format_pause(verb: &str, service: &Value) -> String {
    let name = service["name"].as_str().unwrap_or("the service");
    if verb == "pause" {
        let n = service["instances"].as_array().map_or(0, Vec::len);
        format!(
            "{name} is paused: {n} instance{} draining, requests get 503 until `wakeway resume {name}`.",
            if n == 1 { "" } else { "s" }
        )
    } else {
        format!("{name} is resumed: requests reach it again, starting instances as needed.")
    }
}

/// A deployment's diff (`changes` of a dry run), one line per field: `  env.KEY: a -> b`, with
/// `(unset)` for a side that has no value.
pub fn format_changes(changes: &Value) -> String {
    let list = items(changes);
    if list.is_empty() {
        return "no change to the source: the new revision runs what the live one runs\n".into();
    }
    let side = |v: &Value| v.as_str().map_or("(unset)".to_string(), str::to_string);
    let mut out = String::from("changes:\n");
    for c in list {
        out.push_str(&format!(
            "  {}: {} -> {}\n",
            text(&c["field"]),
            side(&c["from"]),
            side(&c["to"])
        ));
    }
    out
}

/// What `POST /v1/reload` changed, one sentence per kind of change.
pub fn format_reload(report: &Value) -> String {
    let names = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default()
    };
    let mut lines = Vec::new();
    for (key, what) in [
        ("added", "added"),
        ("removed", "removed (draining)"),
        ("updated", "settings updated"),
    ] {
        let n = names(key);
        if !n.is_empty() {
            lines.push(format!("{what}: {}", n.join(", ")));
        }
    }
    for d in report["deployed"].as_array().into_iter().flatten() {
        let service = text(&d["service"]);
        match (&d["deployment"]["Ok"], &d["deployment"]["Err"]) {
            (Value::String(id), _) => {
                lines.push(format!("{service}: source changed, deployment {id} began"))
            }
            (_, Value::String(e)) => {
                lines.push(format!("{service}: source changed, but no deployment: {e}"))
            }
            _ => lines.push(format!("{service}: source changed")),
        }
    }
    let restart = names("needs_restart");
    if !restart.is_empty() {
        lines.push(format!(
            "needs a restart to take effect: {}",
            restart.join(", ")
        ));
    }
    if lines.is_empty() {
        return "reloaded: nothing changed.".into();
    }
    format!("reloaded:\n  {}", lines.join("\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_show_their_decision_inputs() {
        // A `scale` event as the autoscaler emits it: its trigger and the Decision's fields.
        let e = json!({"seq": 7, "time": "2026-11-27T08:55:37.123Z", "service": "web",
                       "kind": "scale", "message": "desired instances 1 -> 3 (autoscaler)",
                       "from": 1, "to": 3, "trigger": "autoscaler", "desired": 3,
                       "previous": 1, "stable_avg": 0.7333333333, "panic_avg": 2.5,
                       "mode": "panic", "ready": 1, "clamped_by": null});
        let line = format_event(&e);
        assert_eq!(
            line,
            "08:55:37.123  web           scale               desired instances 1 -> 3 \
             (autoscaler)  [from=1 to=3 trigger=autoscaler mode=panic stable_avg=0.73 \
             panic_avg=2.5 ready=1 clamped_by=-]"
        );
        let e = json!({"seq": 8, "time": "2026-11-27T08:55:38.000Z", "service": "web",
                       "kind": "deploy_switched", "message": "m", "deployment": "web-d0002",
                       "draining": ["web-00001-a", "web-00001-b"], "changes": [],
                       "reason": "connection refused on the request path",
                       "limits": {"max": 4}});
        let line = format_event(&e);
        assert!(
            line.ends_with(
                "[deployment=web-d0002 reason=\"connection refused on the request path\" \
                 changes=- draining=web-00001-a,web-00001-b limits.max=4]"
            ),
            "{line}"
        );
        let bare = json!({"seq": 9, "time": "2026-11-27T08:55:38.000Z", "service": "web",
                          "kind": "paused", "message": "paused"});
        assert!(format_event(&bare).ends_with("paused"), "no empty brackets");
    }

    #[test]
    fn pause_resume_and_reload_read_as_sentences() {
        let paused = json!({"name": "web", "instances": [{}, {}]});
        assert_eq!(
            format_pause("pause", &paused),
            "web is paused: 2 instances draining, requests get 503 until `wakeway resume web`."
        );
        assert!(format_pause("resume", &paused).starts_with("web is resumed"));
        let report = json!({"added": ["new"], "removed": [], "updated": ["web"],
            "deployed": [{"service": "api", "deployment": {"Ok": "d-3"}},
                         {"service": "db", "deployment": {"Err": "paused"}}],
            "needs_restart": ["admin.listen"]});
        let s = format_reload(&report);
        assert!(s.contains("added: new"), "{s}");
        assert!(s.contains("settings updated: web"), "{s}");
        assert!(
            s.contains("api: source changed, deployment d-3 began"),
            "{s}"
        );
        assert!(
            s.contains("db: source changed, but no deployment: paused"),
            "{s}"
        );
        assert!(
            s.contains("needs a restart to take effect: admin.listen"),
            "{s}"
        );
        assert!(!s.contains("removed"), "{s}");
        let nothing = json!({"added": [], "removed": [], "updated": [], "deployed": [],
                             "needs_restart": []});
        assert_eq!(format_reload(&nothing), "reloaded: nothing changed.");
    }
}
