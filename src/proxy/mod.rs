//! The data plane. Per-core workers (`worker`) accept on their own sockets and serve HTTP/1.x with
//! wakeway's own parser (`h1`) over worker-owned upstream connections (`upstream`); h2 goes to
//! hyper (`forward`). Both read requests by the same rules (`headers`) and answer failures in one
//! place (`error`).

pub mod access_line;
pub mod access_log;
pub mod admission;
pub mod attempt;
pub mod body;
pub mod ctx;
pub mod error;
pub mod forward;
pub mod grpc;
pub mod h1;
pub mod headers;
pub mod rewind;
pub mod route;
pub mod trace;
pub mod upstream;
pub mod worker;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::{IpNet, ProxyConfig};
use h1::request::Limits;
use route::RouteTable;

/// What every worker reads: the routes (swapped whole on reload), the settings fixed at start,
/// and the shutdown signal.
pub struct Shared {
    pub routes: ArcSwap<RouteTable>,
    pub settings: Settings,
    pub shutdown: CancellationToken,
    /// The TLS listeners' acceptor; its certificate store reloads in place.
    pub tls: Option<crate::tls::Acceptor>,
    /// Client connections open now over all workers, against `max_connections` (one write per
    /// connection, not per request); the allocator is asked to return memory after a burst of
    /// them closed.
    pub admission: admission::Admission,
    /// HTTP-01 answers of the ACME orders in flight (`[proxy.tls.acme]`).
    pub acme: Option<std::sync::Arc<crate::tls::acme::Http01>>,
    /// One line per request, written off the request path (`log.access`).
    pub access_log: Option<crate::proxy::access_log::AccessLog>,
}

pub struct Settings {
    pub limits: Limits,
    /// A client's first request head must arrive whole within this (silent connections close).
    pub header_read_timeout: Duration,
    /// Client keep-alive between requests, and the longest pause inside a request body.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// The longest pause between two reads of an upstream's response body.
    pub upstream_read_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Peers whose `X-Forwarded-For` and `Forwarded` are kept and appended to.
    pub trusted_proxies: Vec<IpNet>,
    /// Where `redirect_https` sends plain-HTTP clients: the first TLS listener's port.
    pub https_port: Option<u16>,
    /// Start a W3C trace for requests that arrive without one (`log.start_trace`).
    pub start_trace: bool,
    /// Which responses carry `Server-Timing` (`log.server_timing`).
    pub server_timing: crate::config::ServerTimingMode,
}

impl Settings {
    pub fn from_config(p: &ProxyConfig) -> Settings {
        Settings {
            limits: Limits {
                max_uri_bytes: p.max_uri_bytes,
                max_header_line_bytes: p.max_header_line_bytes,
                max_header_bytes: p.max_header_bytes,
                max_headers: p.max_headers,
                underscore: p.underscore_headers,
            },
            header_read_timeout: p.header_read_timeout,
            idle_timeout: p.idle_timeout,
            connect_timeout: p.connect_timeout,
            response_timeout: p.response_timeout,
            upstream_read_timeout: p.upstream_read_timeout,
            shutdown_timeout: p.shutdown_timeout,
            trusted_proxies: p.trusted_proxies.clone(),
            https_port: None,
            start_trace: true,
            server_timing: crate::config::ServerTimingMode::ColdStart,
        }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

/// A listening socket and whether it speaks TLS.
pub struct Listener {
    pub socket: std::net::TcpListener,
    pub tls: bool,
}

/// The workers' listening sockets: for each worker, one per listen address.
pub struct Listeners {
    pub per_worker: Vec<Vec<Listener>>,
    pub addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
}

impl Listeners {
    pub fn bind(
        plain: &[SocketAddr],
        tls: &[SocketAddr],
        workers: usize,
    ) -> Result<Listeners, (SocketAddr, std::io::Error)> {
        let mut l = Listeners {
            per_worker: (0..workers).map(|_| Vec::new()).collect(),
            addrs: Vec::new(),
            tls_addrs: Vec::new(),
        };
        for (addrs, is_tls) in [(plain, false), (tls, true)] {
            for addr in addrs {
                let socks = worker::bind(*addr, workers).map_err(|e| (*addr, e))?;
                if let Some(s) = socks.first() {
                    let bound = s.local_addr().map_err(|e| (*addr, e))?;
                    if is_tls {
                        l.tls_addrs.push(bound);
                    } else {
                        l.addrs.push(bound);
                    }
                }
                for (w, socket) in socks.into_iter().enumerate() {
                    l.per_worker[w].push(Listener {
                        socket,
                        tls: is_tls,
                    });
                }
            }
        }
        Ok(l)
    }
}

/// After a burst of connections closed, asks the allocator to give their memory back to the
/// system: glibc keeps freed memory in its arenas otherwise, and a proxy's resident memory would
/// stay at its peak for good.
pub async fn return_memory(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut peak = 0;
    // Trims still to do: the workers free their idle buffers over the next seconds, after the
    // connections closed.
    let mut pending = 0;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = shared.admission.open();
        // The high-water mark since the last tick, not a sample: a burst of a few seconds
        // between two ticks is seen too.
        peak = peak.max(shared.admission.take_peak());
        // Half gone after a large burst, or all gone after a smaller one (the tail of a slow
        // departure that the first rule already trimmed for once).
        if (peak >= now + 1000 && now < peak / 2) || (now == 0 && peak >= 100) {
            pending = 3;
            peak = now;
        }
        if pending > 0 {
            pending -= 1;
            trim_allocator();
        }
    }
}

fn trim_allocator() {
    // SAFETY: malloc_trim has no preconditions; it only gives free memory back to the system.
    unsafe {
        libc::malloc_trim(0);
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
