//! What the console charts and tails: a service's history (`GET /v1/services/{name}/history`)
//! and its last access-log lines (`GET /v1/services/{name}/access`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::State;
use crate::config::AccessLogTarget;
use crate::history::access::{self, AccessLine, StatusFilter};
use crate::history::{HistoryView, Range};
use crate::service::Service;

use super::reply::{json, json_compact, json_error};

/// Lines of a tail when the query does not say.
const DEFAULT_TAIL: u64 = 100;

#[derive(Serialize)]
struct History<'a> {
    service: &'a str,
    #[serde(flatten)]
    view: HistoryView,
}

/// `?range=10m|1h&after=UNIX_SECONDS`: every step of the range after `after`, oldest first.
pub(super) fn history(svc: &Service, query: &str) -> Response<Full<Bytes>> {
    let range = match query_param(query, "range").as_deref().map(Range::parse) {
        None => Range::Fine,
        Some(Ok(r)) => r,
        Some(Err(e)) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let after = match number(query, "after", 0) {
        Ok(a) => a.min(u32::MAX as u64) as u32,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    json_compact(
        StatusCode::OK,
        &History {
            service: &svc.name,
            view: svc.history.view(range, after),
        },
    )
}

#[derive(Serialize)]
struct Access {
    /// Where the access log goes (`off`, `stdout` or `file`): with `off` nothing is kept.
    access_log: &'static str,
    lines: Vec<AccessLine>,
}

/// `?status=5xx|404|errors&after=SEQ&tail=N`: the service's last access-log lines.
pub(super) fn access(state: &State, svc: &Service, query: &str) -> Response<Full<Bytes>> {
    let filter = match StatusFilter::parse(&query_param(query, "status").unwrap_or_default()) {
        Ok(f) => f,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let (after, tail) = match (
        number(query, "after", 0),
        number(query, "tail", DEFAULT_TAIL),
    ) {
        (Ok(a), Ok(t)) => (a, t),
        (Err(e), _) | (_, Err(e)) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let access_log = match state.config.load().log.access {
        AccessLogTarget::Off => "off",
        AccessLogTarget::Stdout => "stdout",
        AccessLogTarget::File(_) => "file",
    };
    json(
        StatusCode::OK,
        &Access {
            access_log,
            lines: access::lines(&svc.name, filter, after, tail as usize),
        },
    )
}

/// The whole number `key` of `query`, `default` when absent.
pub(super) fn number(query: &str, key: &str, default: u64) -> Result<u64, String> {
    match query_param(query, key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| format!("`{key}` must be a whole number, not `{v}`")),
    }
}

pub(super) fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}
