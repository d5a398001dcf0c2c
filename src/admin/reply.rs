//! The admin API's JSON answers: a view with its status, or `{"error": ...}`.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    with_body(
        status,
        serde_json::to_vec_pretty(value).expect("views serialize"),
    )
}

/// Without the indentation: for long series (a history of hundreds of steps), where it would
/// triple the size.
pub(super) fn json_compact<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    with_body(status, serde_json::to_vec(value).expect("views serialize"))
}

fn with_body(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}
