//! The app's assembly: `App::build` binds every listener and returns the real addresses;
//! `App::run` serves until the shutdown future resolves, then drains. `State` (state.rs) is what
//! the admin API, the reloader and the listeners share; factory.rs makes the runtimes.

mod factory;
pub mod reload;
mod state;

use state::Controllers;
pub use state::State;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::proxy::route::RouteTable;

#[derive(Debug)]
pub enum BuildError {
    Config(crate::config::ConfigError),
    Bind {
        what: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    Upstream {
        service: String,
        message: String,
    },
    Tls(String),
    AccessLog(String),
    Cluster(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Config(e) => write!(f, "{e}"),
            BuildError::Bind { what, addr, error } => {
                write!(f, "cannot listen on {addr} ({what}): {error}")
            }
            BuildError::Upstream { service, message } => {
                write!(f, "service `{service}`: {message}")
            }
            BuildError::Tls(m) | BuildError::AccessLog(m) | BuildError::Cluster(m) => {
                write!(f, "{m}")
            }
        }
    }
}

impl std::error::Error for BuildError {}

pub struct App {
    proxy_listeners: crate::proxy::Listeners,
    admin_listener: Option<TcpListener>,
    state: Arc<State>,
}

impl App {
    pub async fn build(config: Config) -> Result<App, BuildError> {
        crate::config::validate(&config).map_err(BuildError::Config)?;
        crate::service::frozen::ledger().set_limit(config.scaling.max_frozen_memory);
        let workers = crate::proxy::worker_count(&config.proxy);
        let tls_listen = config.proxy.tls.as_ref().map_or(&[][..], |t| &t.listen[..]);
        let proxy_listeners =
            crate::proxy::Listeners::bind(&config.proxy.listen, tls_listen, workers).map_err(
                |(addr, error)| BuildError::Bind {
                    what: "proxy",
                    addr,
                    error,
                },
            )?;
        let admin_listener = match config.admin.listen {
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|error| BuildError::Bind {
                            what: "admin",
                            addr,
                            error,
                        })?,
                )
            }
            None => None,
        };

        let cert_store = match &config.proxy.tls {
            Some(tls) => Some(
                crate::tls::CertStore::load(&tls.certificates)
                    .map_err(|e| BuildError::Tls(e.to_string()))?,
            ),
            None => None,
        };
        let mut settings = crate::proxy::Settings::from_config(&config.proxy);
        settings.https_port = proxy_listeners.tls_addrs.first().map(|a| a.port());
        settings.start_trace = config.log.start_trace;
        settings.server_timing = config.log.server_timing;
        let metrics = Arc::new(Metrics::new());
        let events = Arc::new(EventLog::default());
        let cluster = match &config.cluster {
            Some(c) => Some(
                crate::cluster::Cluster::new(c.clone(), &metrics)
                    .await
                    .map_err(BuildError::Cluster)?,
            ),
            None => None,
        };
        let state_file = match &config.state_file {
            // A cluster's revisions are the leader's, kept in etcd, not a file's on each replica.
            _ if cluster.is_some() => Some(crate::service::state::StateFile::in_memory()),
            Some(path) => {
                Some(crate::service::state::StateFile::open(path).map_err(BuildError::Config)?)
            }
            None => None,
        };

        let access_log =
            crate::proxy::access_log::AccessLog::start(&config.log, metrics.access_log_dropped())
                .map_err(BuildError::AccessLog)?;
        let shutdown = CancellationToken::new();
        let acme = match (
            &cert_store,
            config.proxy.tls.as_ref().and_then(|t| t.acme.as_ref()),
        ) {
            (Some(store), Some(acme)) => Some(crate::tls::acme::Acme::start(
                acme,
                store.clone(),
                events.clone(),
                metrics.certificate_expiry(),
                crate::config::acme_plan(&config).names,
                shutdown.clone(),
            )),
            _ => None,
        };
        let state = Arc::new(State {
            services: ArcSwap::from_pointee(Vec::new()),
            forwarder: Arc::new(crate::proxy::Shared {
                routes: ArcSwap::from_pointee(RouteTable::default()),
                settings,
                shutdown,
                tls: cert_store.as_ref().map(crate::tls::Acceptor::new),
                admission: crate::proxy::admission::Admission::new(
                    config.proxy.max_connections,
                    workers,
                ),
                acme: acme.as_ref().map(|a| a.http01.clone()),
                access_log,
            }),
            cert_store,
            acme,
            metrics,
            events,
            config: ArcSwap::from_pointee(config.clone()),
            docker: Mutex::new(None),
            swarm: Mutex::new(None),
            controllers: Mutex::new(Controllers::default()),
            reload_lock: tokio::sync::Mutex::new(()),
            state_file,
            cluster,
            proxy_addrs: proxy_listeners.addrs.clone(),
            https_addrs: proxy_listeners.tls_addrs.clone(),
        });
        let factory = state.factory(&config);
        let mut services = Vec::new();
        for sc in &config.services {
            let svc = state
                .add_service(sc, &factory)
                .map_err(|message| BuildError::Upstream {
                    service: sc.name.clone(),
                    message,
                })?;
            services.push(svc);
        }
        let routes = config
            .services
            .iter()
            .map(|sc| &sc.hosts[..])
            .zip(&services);
        state
            .forwarder
            .routes
            .store(Arc::new(RouteTable::with_hosts(routes)));
        state.services.store(Arc::new(services));
        if let Some(store) = &state.state_file {
            store.save_applied(&config.services);
        }
        if let Some(cluster) = &state.cluster {
            // A replica that starts late serves the fleet as it is, not nothing.
            cluster.catch_up(&state).await;
        }
        Ok(App {
            proxy_listeners,
            admin_listener,
            state,
        })
    }

    pub fn proxy_addrs(&self) -> Vec<SocketAddr> {
        self.proxy_listeners.addrs.clone()
    }

    /// The HTTPS listeners' addresses (`proxy.tls.listen`).
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.proxy_listeners.tls_addrs.clone()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets requests in flight finish
    /// (up to `proxy.shutdown_timeout`), and stops every instance it started.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let stop_controllers = CancellationToken::new();
        let stop_admin = CancellationToken::new();
        let config = self.state.config.load_full();
        let grace = config.proxy.shutdown_timeout;

        {
            let mut c = self
                .state
                .controllers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            c.stop = Some(stop_controllers.clone());
            let pending = std::mem::take(&mut c.pending);
            // In a cluster only the leader's controllers run (`cluster::roles` starts them).
            let pending = if self.state.cluster.is_some() {
                Vec::new()
            } else {
                pending
            };
            for ctl in pending {
                let name = ctl.service_name().to_string();
                c.running
                    .insert(name, tokio::spawn(ctl.run(stop_controllers.clone())));
            }
        }
        let stop_cluster = CancellationToken::new();
        if let Some(cluster) = &self.state.cluster {
            let admin: crate::cluster::AdminAnswer =
                Arc::new(|state, method, path, query, body| {
                    Box::pin(async move {
                        crate::admin::answer(&state, method, &path, &query, body).await
                    })
                });
            cluster.start(self.state.clone(), admin, stop_cluster.clone());
        }
        let workers = crate::proxy::start(self.proxy_listeners, self.state.forwarder.clone());
        tokio::spawn(crate::proxy::return_memory(self.state.forwarder.clone()));
        let stop_watch = CancellationToken::new();
        if let Some(store) = &self.state.cert_store {
            tokio::spawn(store.clone().watch(
                self.state.events.clone(),
                crate::tls::WATCH_INTERVAL,
                stop_watch.clone(),
            ));
        }
        tokio::spawn(crate::history::run(self.state.clone(), stop_watch.clone()));
        let admin = self.admin_listener.map(|l| {
            tokio::spawn(crate::admin::serve(
                l,
                self.state.clone(),
                stop_admin.clone(),
            ))
        });

        shutdown.await;
        tracing::info!("shutting down: no new connections; waiting for requests in flight");
        let deadline = tokio::time::Instant::now() + grace;
        self.state.forwarder.shutdown.cancel();
        // Requests in flight (tunnels too) and queued ones get until the deadline. Past it the
        // controllers stop: queued requests get their 503 ("wakeway is stopping") from the
        // workers, which wait a little beyond the deadline to write it (`worker::ANSWER_GRACE`).
        let services = self.state.services.load_full();
        let _ = tokio::time::timeout_at(deadline, async {
            while services.iter().any(|s| s.in_flight() > 0 || s.queued() > 0) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        let engine = self
            .state
            .docker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let swarm = self
            .state
            .swarm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(engine) = &engine {
            // Before the controllers stop their instances: it decides whether containers stay.
            engine.begin_exit();
        }
        if let Some(swarm) = &swarm {
            swarm.begin_exit();
        }
        stop_controllers.cancel();
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
        let running: Vec<JoinHandle<()>> = self
            .state
            .controllers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in running {
            let _ = h.await;
        }
        if let Some(engine) = &engine {
            engine.close().await;
        }
        if let Some(swarm) = &swarm {
            swarm.close().await;
        }
        stop_admin.cancel();
        stop_watch.cancel();
        // Last: the lease is given up, so another replica leads at once.
        stop_cluster.cancel();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if let Some(a) = admin {
            let _ = a.await;
        }
        tracing::info!("stopped");
    }
}
