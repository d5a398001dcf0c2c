//! Wakeway: a request-driven autoscaling reverse proxy. `App::build` binds every listener and
//! returns the real addresses; `App::run` serves until the shutdown future resolves, then drains.

pub mod admin;
pub mod config;
pub mod events;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod runtime;
pub mod service;
pub mod whoami;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::{Config, Source as ConfigSource};
use events::EventLog;
use metrics::Metrics;
use proxy::Forwarder;
use proxy::route::RouteTable;
use runtime::process::ProcessRuntime;
use service::Service;
use service::controller::{Controller, Source};

/// What the admin API and the listeners share.
pub struct State {
    pub services: ArcSwap<Vec<Arc<Service>>>,
    pub forwarder: Arc<Forwarder>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventLog>,
}

impl State {
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services.load().iter().find(|s| s.name == name).cloned()
    }
}

#[derive(Debug)]
pub enum BuildError {
    Config(config::ConfigError),
    Bind { what: &'static str, addr: SocketAddr, error: std::io::Error },
    Upstream { service: String, message: String },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Config(e) => write!(f, "{e}"),
            BuildError::Bind { what, addr, error } => {
                write!(f, "cannot listen on {addr} ({what}): {error}")
            }
            BuildError::Upstream { service, message } => write!(f, "service `{service}`: {message}"),
        }
    }
}

impl std::error::Error for BuildError {}

pub struct App {
    config: Config,
    proxy_listeners: Vec<TcpListener>,
    admin_listener: Option<TcpListener>,
    state: Arc<State>,
    controllers: Vec<Controller>,
}

impl App {
    pub async fn build(config: Config) -> Result<App, BuildError> {
        config::validate(&config).map_err(BuildError::Config)?;
        let mut proxy_listeners = Vec::new();
        for addr in &config.proxy.listen {
            let l = TcpListener::bind(addr).await.map_err(|error| BuildError::Bind {
                what: "proxy",
                addr: *addr,
                error,
            })?;
            proxy_listeners.push(l);
        }
        let admin_listener = match config.admin.listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|error| {
                BuildError::Bind {
                    what: "admin",
                    addr,
                    error,
                }
            })?),
            None => None,
        };

        let metrics = Arc::new(Metrics::new());
        let events = Arc::new(EventLog::default());
        let mut services = Vec::new();
        let mut controllers = Vec::new();
        for sc in &config.services {
            let source = match &sc.source {
                ConfigSource::Command(cmd) => {
                    Source::Managed(Arc::new(ProcessRuntime::new(cmd.clone())))
                }
                ConfigSource::Upstreams(u) => Source::Fixed(
                    runtime::fixed::resolve(u).map_err(|message| BuildError::Upstream {
                        service: sc.name.clone(),
                        message,
                    })?,
                ),
            };
            let svc = Service::new(sc.clone(), metrics.service(&sc.name), events.clone());
            let revision = format!("{}-00001", sc.name);
            controllers.push(Controller::new(svc.clone(), source, revision));
            services.push(svc);
        }
        let forwarder = Arc::new(Forwarder {
            routes: ArcSwap::from_pointee(RouteTable::new(&services)),
            client: proxy::forward::upstream_client(config.proxy.connect_timeout),
            response_timeout: config.proxy.response_timeout,
        });
        let state = Arc::new(State {
            services: ArcSwap::from_pointee(services),
            forwarder,
            metrics,
            events,
        });
        Ok(App {
            config,
            proxy_listeners,
            admin_listener,
            state,
            controllers,
        })
    }

    pub fn proxy_addrs(&self) -> Vec<SocketAddr> {
        self.proxy_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets requests in flight finish
    /// (up to `proxy.shutdown_timeout`), and stops every instance it started.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let stop_proxy = CancellationToken::new();
        let stop_controllers = CancellationToken::new();
        let stop_admin = CancellationToken::new();
        let grace = self.config.proxy.shutdown_timeout;

        let mut controllers = tokio::task::JoinSet::new();
        for c in self.controllers {
            controllers.spawn(c.run(stop_controllers.clone()));
        }
        let mut listeners = tokio::task::JoinSet::new();
        for l in self.proxy_listeners {
            listeners.spawn(proxy::serve(
                l,
                self.state.forwarder.clone(),
                self.config.proxy.idle_timeout,
                stop_proxy.clone(),
                grace,
            ));
        }
        let admin = self
            .admin_listener
            .map(|l| tokio::spawn(admin::serve(l, self.state.clone(), stop_admin.clone())));

        shutdown.await;
        tracing::info!("shutting down: no new connections; waiting for requests in flight");
        let deadline = tokio::time::Instant::now() + grace;
        stop_proxy.cancel();
        while listeners.join_next().await.is_some() {}
        // Tunnels outlive their connection's request: wait for them too.
        let services = self.state.services.load_full();
        let _ = tokio::time::timeout_at(deadline, async {
            while services.iter().any(|s| s.in_flight() > 0) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        stop_controllers.cancel();
        while controllers.join_next().await.is_some() {}
        stop_admin.cancel();
        if let Some(a) = admin {
            let _ = a.await;
        }
        tracing::info!("stopped");
    }
}
