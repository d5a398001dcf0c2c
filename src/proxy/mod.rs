//! The data plane. Per-core workers (`worker`) accept on their own sockets and serve HTTP/1.x with
//! wakeway's own parser (`h1`) over worker-owned upstream connections (`upstream`); h2 goes to
//! hyper (`forward`). Both read requests by the same rules (`headers`) and answer failures in one
//! place (`error`).

pub mod body;
pub mod error;
pub mod forward;
pub mod h1;
pub mod headers;
pub mod rewind;
pub mod route;
pub mod tls;
pub mod upstream;
pub mod worker;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::ProxyConfig;
use h1::request::Limits;
use headers::Underscore;
use route::RouteTable;

/// What every worker reads: the routes (swapped whole on reload), the settings fixed at start,
/// and the shutdown signal.
pub struct Shared {
    pub routes: ArcSwap<RouteTable>,
    pub settings: Settings,
    pub shutdown: CancellationToken,
}

pub struct Settings {
    pub limits: Limits,
    /// A client's first request head must arrive whole within this (silent connections close).
    pub header_read_timeout: Duration,
    /// Client keep-alive between requests, and the longest pause inside a request body.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Peers whose `X-Forwarded-For` and `Forwarded` are kept and appended to.
    pub trusted_proxies: Vec<(IpAddr, u8)>,
}

impl Settings {
    pub fn from_config(p: &ProxyConfig) -> Settings {
        Settings {
            limits: Limits {
                max_uri_bytes: 8 * 1024,
                max_header_line_bytes: 8 * 1024,
                max_header_bytes: 32 * 1024,
                max_headers: 100,
                underscore: Underscore::Drop,
            },
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: p.idle_timeout,
            connect_timeout: p.connect_timeout,
            response_timeout: p.response_timeout,
            shutdown_timeout: p.shutdown_timeout,
            trusted_proxies: Vec::new(),
        }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|(net, bits)| in_network(ip, *net, *bits))
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The workers' listening sockets: for each worker, one per listen address.
pub struct Listeners {
    pub per_worker: Vec<Vec<std::net::TcpListener>>,
    pub addrs: Vec<SocketAddr>,
}

impl Listeners {
    pub fn bind(
        addrs: &[SocketAddr],
        workers: usize,
    ) -> Result<Listeners, (SocketAddr, std::io::Error)> {
        let mut per_worker: Vec<Vec<std::net::TcpListener>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut bound = Vec::new();
        for addr in addrs {
            let socks = worker::bind(*addr, workers).map_err(|e| (*addr, e))?;
            if let Some(s) = socks.first() {
                bound.push(s.local_addr().map_err(|e| (*addr, e))?);
            }
            for (w, s) in socks.into_iter().enumerate() {
                per_worker[w].push(s);
            }
        }
        Ok(Listeners {
            per_worker,
            addrs: bound,
        })
    }
}

/// The number of workers: as configured, else one per core this process may run on.
pub fn worker_count(p: &ProxyConfig) -> usize {
    p.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// Starts the workers; the returned handles finish once `shared.shutdown` fired and their
/// connections closed.
pub fn start(listeners: Listeners, shared: Arc<Shared>) -> Vec<std::thread::JoinHandle<()>> {
    listeners
        .per_worker
        .into_iter()
        .enumerate()
        .map(|(i, socks)| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("wakeway-worker-{i}"))
                .spawn(move || worker::run(i, socks, shared))
                .expect("spawn a worker thread")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("10.1.2.3"), ip("10.0.0.0"), 8));
        assert!(!in_network(ip("11.1.2.3"), ip("10.0.0.0"), 8));
        assert!(in_network(ip("127.0.0.1"), ip("127.0.0.1"), 32));
        assert!(in_network(ip("::1"), ip("::"), 0));
        assert!(!in_network(ip("::1"), ip("127.0.0.1"), 0));
    }
}
