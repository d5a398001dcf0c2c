//! Where wakeway reaches a container: its own address on its network when wakeway can get
//! there (a local engine on Linux), else the port the engine published.
//!
//! The own address comes first because the engine's userland proxy (`docker-proxy`) accepts
//! every connection on a published port from the moment the container starts, whatever
//! listens inside: a TCP probe there passes before the app listens, and the first request then
//! fails. Connecting to the container itself is refused until the app listens, and it skips the
//! proxy's extra copy of every byte.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, PortBinding};
use std::collections::HashMap;
use tokio::net::TcpStream;

use super::*;
use crate::runtime::RuntimeError;

/// How long the one look at whether container addresses are reachable may take. A reachable
/// container answers at once (accepted, or refused while its app starts); silence means the
/// address leads nowhere from here.
const REACH_TIMEOUT: Duration = Duration::from_secs(1);

impl DockerEngine {
    /// Where wakeway reaches a running container, and its main process's host pid.
    /// `container_port` is the port the app listens on inside the container.
    pub(super) async fn address_of(
        &self,
        info: &ContainerInspectResponse,
        host_network: bool,
        container_port: u16,
    ) -> Result<(SocketAddr, Option<u32>), RuntimeError> {
        let state = info.state.clone().unwrap_or_default();
        let name = info.name.as_deref().unwrap_or("").trim_start_matches('/');
        if state.running != Some(true) {
            return Err(RuntimeError {
                message: exit_reason(name, state.exit_code),
                retryable: false,
            });
        }
        let pid = state.pid.filter(|p| *p > 0).map(|p| p as u32);
        if host_network {
            let port = info
                .config
                .as_ref()
                .and_then(|c| c.env.as_ref())
                .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PORT=")))
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| RuntimeError {
                    message: format!("container {name} has no PORT in its environment"),
                    retryable: false,
                })?;
            return Ok((SocketAddr::from((Ipv4Addr::LOCALHOST, port)), pid));
        }
        if let Some(ip) = self.container_ip(info) {
            let own = SocketAddr::new(ip, container_port);
            if self.reaches_containers(own).await {
                return Ok((own, pid));
            }
        }
        let ports = info
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.clone())
            .unwrap_or_default();
        let port = published_port(&ports).ok_or_else(|| RuntimeError {
            message: format!(
                "container {name} has no port published on {}",
                self.cfg.publish_address
            ),
            retryable: false,
        })?;
        Ok((
            SocketAddr::new(connect_ip(self.cfg.publish_address), port),
            pid,
        ))
    }

    /// The container's address on `docker.network`.
    fn container_ip(&self, info: &ContainerInspectResponse) -> Option<IpAddr> {
        let networks = info.network_settings.as_ref()?.networks.as_ref()?;
        let endpoint = networks.get(&self.cfg.network)?;
        [&endpoint.ip_address, &endpoint.global_ipv6_address]
            .into_iter()
            .flatten()
            .find_map(|a| a.parse::<IpAddr>().ok())
    }

    /// Whether containers' own addresses lead to them from here, learned once from the first
    /// container: yes for a local engine on Linux (the bridge is a host interface); no for a
    /// remote engine (its container addresses are its host's, and may even exist here too) or
    /// Docker Desktop (the containers live in a VM).
    async fn reaches_containers(&self, sample: SocketAddr) -> bool {
        *self
            .direct
            .get_or_init(|| async {
                let direct = is_local(&self.core.endpoint) && reaches(sample).await;
                if direct {
                    tracing::info!(
                        "docker: reaching containers on their own addresses on network {} (probes reach the app itself, past the engine's userland proxy)",
                        self.cfg.network
                    );
                } else {
                    tracing::warn!(
                        "docker: container addresses on network {} are not reachable from wakeway (engine {}); using published ports, where a tcp probe passes before the app listens: prefer an http probe",
                        self.cfg.network,
                        self.core.endpoint
                    );
                }
                direct
            })
            .await
    }
}

/// Whether an engine endpoint is on this host.
fn is_local(endpoint: &str) -> bool {
    if endpoint.starts_with("unix://") {
        return true;
    }
    let rest = endpoint
        .strip_prefix("tcp://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .unwrap_or(endpoint);
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An address reaches a host when a connection is accepted or refused there.
async fn reaches(addr: SocketAddr) -> bool {
    match tokio::time::timeout(REACH_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.kind() == ErrorKind::ConnectionRefused,
        Err(_) => false,
    }
}

/// The host port the engine published (the first binding with a port).
pub(super) fn published_port(ports: &HashMap<String, Option<Vec<PortBinding>>>) -> Option<u16> {
    ports
        .values()
        .flatten()
        .flatten()
        .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
        .filter(|p| *p != 0)
}

/// A port published on every address is reached on loopback.
pub(super) fn connect_ip(publish: IpAddr) -> IpAddr {
    match publish {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_port_and_connect_address() {
        let ports = HashMap::from([(
            "8080/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("49153".into()),
            }]),
        )]);
        assert_eq!(published_port(&ports), Some(49153));
        assert_eq!(published_port(&HashMap::new()), None);
        let unbound = HashMap::from([("8080/tcp".to_string(), None)]);
        assert_eq!(published_port(&unbound), None);
        assert_eq!(
            connect_ip("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            connect_ip("::".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            connect_ip("10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn only_engines_on_this_host_have_reachable_containers() {
        for local in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
            "http://[::1]:2375",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in ["tcp://10.0.0.5:2376", "tcp://docker.example:2375"] {
            assert!(!is_local(remote), "{remote}");
        }
    }

    #[tokio::test]
    async fn an_address_is_reached_when_it_accepts_or_refuses() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert!(reaches(addr).await, "accepted");
        drop(l);
        assert!(reaches(addr).await, "refused: a host is there");
    }
}
