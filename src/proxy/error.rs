//! Everything that can go wrong with one proxied request, where it came from, whether a retry is
//! safe, and the one place it becomes a status code.

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
    Activator(ActivatorError),
    /// Nothing was sent: the instance refused or reset the connection.
    Connect(String),
    /// The request went out and the instance failed before a response.
    Upstream(String),
    /// No response headers within `response_timeout`.
    ResponseTimeout(Duration),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::UnknownHost(_) | ProxyError::BadRequest(_) => Side::Downstream,
            ProxyError::Activator(ActivatorError::Unavailable(_)) => Side::Runtime,
            ProxyError::Activator(_) => Side::Runtime,
            ProxyError::Connect(_) | ProxyError::Upstream(_) | ProxyError::ResponseTimeout(_) => {
                Side::Upstream
            }
        }
    }

    /// Safe to send again elsewhere: nothing reached the instance.
    pub fn retry_safe(&self) -> bool {
        matches!(self, ProxyError::Connect(_))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownHost(_) => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Activator(ActivatorError::QueueFull)
            | ProxyError::Activator(ActivatorError::Paused)
            | ProxyError::Activator(ActivatorError::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Activator(ActivatorError::Timeout(_)) | ProxyError::ResponseTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Seconds a client should wait before trying again, for the 503s.
    pub fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            ProxyError::Activator(ActivatorError::QueueFull) => Some(HeaderValue::from_static("1")),
            ProxyError::Activator(ActivatorError::Unavailable(_))
            | ProxyError::Activator(ActivatorError::Paused) => Some(HeaderValue::from_static("5")),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ProxyError::UnknownHost(h) => format!("no service for host `{h}`"),
            ProxyError::BadRequest(m) => format!("bad request: {m}"),
            ProxyError::Activator(ActivatorError::QueueFull) => {
                "queue full: too many requests waiting for capacity".into()
            }
            ProxyError::Activator(ActivatorError::Timeout(t)) => {
                format!("no instance had capacity within the queue timeout ({t:?})")
            }
            ProxyError::Activator(ActivatorError::Unavailable(why)) => {
                format!("service unavailable: no instance could start: {why}")
            }
            ProxyError::Activator(ActivatorError::Paused) => {
                "paused: this service is paused".into()
            }
            ProxyError::Connect(m) => format!("instance unreachable: {m}"),
            ProxyError::Upstream(m) => format!("instance failed: {m}"),
            ProxyError::ResponseTimeout(t) => {
                format!("instance sent no response within response_timeout ({t:?})")
            }
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                ProxyError::Activator(ActivatorError::Timeout(Duration::from_secs(1))),
                504,
                false,
            ),
            (ProxyError::Connect("refused".into()), 502, false),
            (ProxyError::Upstream("reset".into()), 502, false),
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
        assert!(ProxyError::Connect("x".into()).retry_safe());
        assert!(!ProxyError::Upstream("x".into()).retry_safe());
    }
}
