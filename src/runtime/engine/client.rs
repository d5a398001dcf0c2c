//! Reaching an engine (the local docker engine or a swarm manager): which endpoint, a client
//! that agreed the API version, and what an engine's answer says.

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;

use crate::runtime::RuntimeError;

/// Where the engine listens when neither the config's `endpoint` nor `$DOCKER_HOST` says.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// bollard's per-request limit (to response headers); a stop gets its grace on top.
pub(crate) const API_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const EVENTS_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const EVENTS_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long `wakeway check` and adoption wait for an engine that accepts but does not answer.
pub(crate) const QUICK_TIMEOUT: Duration = Duration::from_secs(10);

/// `configured`, else `$DOCKER_HOST`, else the local socket.
pub(crate) fn endpoint_or_default(configured: Option<&str>) -> String {
    configured
        .map(str::to_string)
        .or_else(|| {
            std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// A client for `endpoint`. Nothing is sent yet, but a missing socket is noticed here.
pub(crate) fn connect(endpoint: &str) -> Result<Docker, DockerError> {
    if endpoint.starts_with("unix://") {
        Docker::connect_with_unix(
            endpoint,
            API_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(
            endpoint,
            API_TIMEOUT.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
    } else {
        Err(DockerError::UnsupportedURISchemeError {
            uri: endpoint.to_string(),
        })
    }
}

/// A client that has agreed the API version with the engine (which may be older than bollard).
pub(crate) async fn connect_and_negotiate(endpoint: &str) -> Result<Docker, String> {
    let docker = connect(endpoint).map_err(|e| e.to_string())?;
    match tokio::time::timeout(QUICK_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {QUICK_TIMEOUT:?}")),
    }
}

pub(crate) fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine at `endpoint` did not answer. `who` names it ("docker engine", "swarm manager");
/// `section` is the config table whose `endpoint` points at it.
pub(crate) fn unreachable(
    who: &str,
    endpoint: &str,
    section: &str,
    e: impl std::fmt::Display,
) -> RuntimeError {
    RuntimeError {
        message: format!(
            "{who} at {endpoint} is unreachable: {e}; is the engine running? (set [{section}] endpoint or DOCKER_HOST)"
        ),
        retryable: false,
    }
}

/// An API error: the engine's own message (prefixed `prefix: what:`) when it answered, the
/// `unreachable` error when it did not.
pub(crate) fn api_error(
    prefix: &str,
    what: &str,
    e: DockerError,
    unreachable: impl FnOnce(DockerError) -> RuntimeError,
) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError {
            message: format!("{prefix}: {what}: {message} (HTTP {status_code})"),
            retryable: false,
        },
        other => unreachable(other),
    }
}

/// Now, as the engine's event API counts time.
pub(crate) fn unix_now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_prefers_config_then_docker_host() {
        assert_eq!(
            endpoint_or_default(Some("tcp://127.0.0.1:2375")),
            "tcp://127.0.0.1:2375"
        );
        // $DOCKER_HOST is read per call; this test does not set it, so the fallback shows
        // unless the environment running the tests has one.
        let unset = endpoint_or_default(None);
        let expected = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        assert_eq!(unset, expected);
        assert!(
            connect("ssh://host")
                .unwrap_err()
                .to_string()
                .contains("ssh://host")
        );
    }
}
