//! Everything that can go wrong with one proxied request, where it came from, and the one place
//! it becomes a status code (whether it is sent again is `attempt.rs`'s decision).

use std::time::Duration;

use http::{HeaderValue, StatusCode};

use crate::service::activator::ActivatorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Runtime,
}

#[derive(Debug)]
pub enum ProxyError {
    /// No service claims this host.
    UnknownHost(String),
    /// The request itself is unusable (no host, a malformed header).
    BadRequest(String),
    /// TRACE and CONNECT are not proxied.
    MethodNotAllowed(&'static str),
    UriTooLong,
    /// A header line, the whole head, or the number of header lines is over its limit.
    HeadersTooLarge(&'static str),
    /// The body is over the service's `max_body_bytes`.
    BodyTooLarge(u64),
    /// A transfer coding wakeway does not forward.
    NotImplemented(&'static str),
    VersionNotSupported,
    /// The client did not send a whole request head within `header_read_timeout`.
    HeaderTimeout,
    ExpectationFailed,
    /// The client's body broke off or was malformed mid-request: the client's fault.
    ClientBody(String),
    /// The instance answered with a head wakeway cannot forward unambiguously.
    BadResponse(&'static str),
    Activator(ActivatorError),
    /// The request matched `scaling.idle_ignore` at a service with no ready instance, and
    /// `wake = false`: it does not start one.
    IdleIgnored,
    /// Nothing was sent: the instance refused or reset the connection.
    Connect(String),
    /// The request went out and the instance failed before a response; sending it again was
    /// safe but did not help (`attempt.rs`).
    Upstream(String),
    /// The request went out and the instance failed while handling it; it may have taken effect,
    /// so it was not sent again (`attempt.rs`).
    NotResent(String),
    /// No response headers within `response_timeout`.
    ResponseTimeout(Duration),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::UnknownHost(_)
            | ProxyError::BadRequest(_)
            | ProxyError::MethodNotAllowed(_)
            | ProxyError::UriTooLong
            | ProxyError::HeadersTooLarge(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::NotImplemented(_)
            | ProxyError::VersionNotSupported
            | ProxyError::HeaderTimeout
            | ProxyError::ExpectationFailed
            | ProxyError::ClientBody(_) => Side::Downstream,
            ProxyError::Activator(ActivatorError::Unavailable(_)) => Side::Runtime,
            ProxyError::Activator(_) | ProxyError::IdleIgnored => Side::Runtime,
            ProxyError::Connect(_)
            | ProxyError::Upstream(_)
            | ProxyError::NotResent(_)
            | ProxyError::ResponseTimeout(_)
            | ProxyError::BadResponse(_) => Side::Upstream,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownHost(_) | ProxyError::Activator(ActivatorError::NoSuchTag(_)) => {
                StatusCode::NOT_FOUND
            }
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::VersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            ProxyError::HeaderTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            ProxyError::Activator(ActivatorError::QueueFull)
            | ProxyError::Activator(ActivatorError::Paused)
            | ProxyError::Activator(ActivatorError::Retired)
            | ProxyError::Activator(ActivatorError::Unavailable(_))
            | ProxyError::IdleIgnored => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Activator(ActivatorError::Timeout(_)) | ProxyError::ResponseTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Connect(_)
            | ProxyError::Upstream(_)
            | ProxyError::NotResent(_)
            | ProxyError::BadResponse(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The same failure told to a gRPC client (`grpc::error_response`): the codes gRPC maps
    /// HTTP statuses to, except where wakeway knows better (a full queue is exhaustion, the
    /// client's own deadline is a deadline).
    pub fn grpc_status(&self) -> Code {
        match self {
            ProxyError::Activator(ActivatorError::QueueFull) | ProxyError::BodyTooLarge(_) => {
                Code::ResourceExhausted
            }
            _ => match self.status() {
                StatusCode::NOT_FOUND => Code::Unimplemented,
                StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
                // Wakeway could not serve it, or the instance broke (a reset, a malformed frame):
                // UNAVAILABLE, which a gRPC client retries only under a retry policy its owner
                // configured for that method (its own transparent retries cover only calls that
                // never left it); the message says the call was not sent again.
                StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
                // The client's request itself was refused.
                _ => Code::Internal,
            },
        }
    }

    /// Seconds a client should wait before trying again, for the 503s.
    pub fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            ProxyError::Activator(ActivatorError::QueueFull) => Some(HeaderValue::from_static("1")),
            ProxyError::Activator(ActivatorError::Unavailable(_))
            | ProxyError::Activator(ActivatorError::Paused) => Some(HeaderValue::from_static("5")),
            // Nothing will start the service but other traffic: a crawler need not come back soon.
            ProxyError::IdleIgnored => Some(HeaderValue::from_static("60")),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ProxyError::UnknownHost(h) => format!("no service for host `{h}`"),
            ProxyError::BadRequest(m) => format!("bad request: {m}"),
            ProxyError::MethodNotAllowed(m) => format!("method {m} is not allowed through wakeway"),
            ProxyError::UriTooLong => "the request target is too long".into(),
            ProxyError::HeadersTooLarge(why) => format!("request header fields too large: {why}"),
            ProxyError::BodyTooLarge(max) => {
                format!("the request body is larger than this service accepts ({max} bytes)")
            }
            ProxyError::NotImplemented(why) => format!("not implemented: {why}"),
            ProxyError::VersionNotSupported => {
                "HTTP version not supported (HTTP/1.0, HTTP/1.1 and h2 are)".into()
            }
            ProxyError::HeaderTimeout => "the request head did not arrive in time".into(),
            ProxyError::ExpectationFailed => "only `Expect: 100-continue` is supported".into(),
            ProxyError::ClientBody(m) => format!("bad request body: {m}"),
            ProxyError::BadResponse(_) => "the instance sent a malformed response".into(),
            ProxyError::Activator(ActivatorError::QueueFull) => {
                "queue full: too many requests waiting for capacity".into()
            }
            ProxyError::Activator(ActivatorError::Timeout(waited)) => waited.to_string(),
            ProxyError::Activator(ActivatorError::Unavailable(why)) => {
                format!("service unavailable: no instance could start: {why}")
            }
            ProxyError::Activator(ActivatorError::Paused) => {
                "paused: this service is paused".into()
            }
            ProxyError::Activator(ActivatorError::NoSuchTag(tag)) => {
                format!("no revision of this service is tagged `{tag}`")
            }
            ProxyError::Activator(ActivatorError::Retired) => {
                "the revision left the traffic; try again".into()
            }
            ProxyError::IdleIgnored => {
                "no instance is ready: this request matched scaling.idle_ignore, \
                which does not start the service (wake = false)"
                    .into()
            }
            // The detail (with the instance's address) goes to the log, not to the client.
            ProxyError::Connect(_) => "instance unreachable".into(),
            ProxyError::Upstream(_) => "instance failed before it answered".into(),
            ProxyError::NotResent(_) => "the instance failed while handling the request; \
                it was not sent again, as it may already have taken effect"
                .into(),
            ProxyError::ResponseTimeout(t) => {
                format!("instance sent no response within response_timeout ({t:?})")
            }
        }
    }
}

/// For the log: the client's message plus what only the operator should see.
impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Connect(d) | ProxyError::Upstream(d) | ProxyError::NotResent(d) => {
                write!(f, "{}: {d}", self.message())
            }
            ProxyError::BadResponse(d) => write!(f, "{}: {d}", self.message()),
            _ => f.write_str(&self.message()),
        }
    }
}

/// The status codes of gRPC (grpc/doc/statuscodes.md), as tonic names them.
pub use tonic::Code;

/// Every code as its `grpc-status` text.
pub static CODE_TEXT: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];
/// `code` as a `grpc-status` value.
pub fn code_header(code: Code) -> HeaderValue {
    HeaderValue::from_static(CODE_TEXT[code as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_clients_get_the_code_of_each_failure() {
        use ActivatorError as A;
        let s = || String::from("x");
        let cases = [
            (ProxyError::UnknownHost(s()), Code::Unimplemented),
            (
                ProxyError::Activator(A::NoSuchTag(s())),
                Code::Unimplemented,
            ),
            (ProxyError::Activator(A::QueueFull), Code::ResourceExhausted),
            (ProxyError::BodyTooLarge(1), Code::ResourceExhausted),
            (
                ProxyError::Activator(A::Timeout(Duration::from_secs(1).into())),
                Code::DeadlineExceeded,
            ),
            (
                ProxyError::ResponseTimeout(Duration::from_secs(1)),
                Code::DeadlineExceeded,
            ),
            (
                ProxyError::Activator(A::Unavailable(s())),
                Code::Unavailable,
            ),
            (ProxyError::Activator(A::Paused), Code::Unavailable),
            (ProxyError::Activator(A::Retired), Code::Unavailable),
            (ProxyError::IdleIgnored, Code::Unavailable),
            (ProxyError::Connect(s()), Code::Unavailable),
            (ProxyError::Upstream(s()), Code::Unavailable),
            (ProxyError::BadResponse("x"), Code::Unavailable),
            (ProxyError::NotResent(s()), Code::Unavailable),
            (ProxyError::BadRequest(s()), Code::Internal),
            (ProxyError::MethodNotAllowed("x"), Code::Internal),
            (ProxyError::UriTooLong, Code::Internal),
            (ProxyError::HeadersTooLarge("x"), Code::Internal),
            (ProxyError::NotImplemented("x"), Code::Internal),
            (ProxyError::VersionNotSupported, Code::Internal),
            (ProxyError::HeaderTimeout, Code::Internal),
            (ProxyError::ExpectationFailed, Code::Internal),
            (ProxyError::ClientBody(s()), Code::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(e.grpc_status(), code, "{e}");
        }
    }

    #[test]
    fn maps_to_the_documented_codes() {
        let cases = [
            (ProxyError::UnknownHost("x".into()), 404, false),
            (ProxyError::Activator(ActivatorError::QueueFull), 503, true),
            (
                ProxyError::Activator(ActivatorError::Unavailable("boom".into())),
                503,
                true,
            ),
            (
                ProxyError::Activator(ActivatorError::Timeout(Duration::from_secs(1).into())),
                504,
                false,
            ),
            (ProxyError::IdleIgnored, 503, true),
            (ProxyError::Connect("refused".into()), 502, false),
            (ProxyError::Upstream("reset".into()), 502, false),
            (ProxyError::NotResent("reset".into()), 502, false),
            (
                ProxyError::ResponseTimeout(Duration::from_secs(1)),
                504,
                false,
            ),
        ];
        for (e, code, retry_after) in cases {
            assert_eq!(e.status().as_u16(), code, "{e}");
            assert_eq!(e.retry_after().is_some(), retry_after, "{e}");
        }
    }
}
