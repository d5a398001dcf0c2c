//! The app's assembly: `App::build` binds every listener and returns the real addresses;
//! `App::run` serves until the shutdown future resolves, then drains. `State` is what the admin
//! API, the reloader and the listeners share.

pub mod reload;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ServiceConfig, Source as ConfigSource};
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::proxy::route::RouteTable;
use crate::runtime::docker::{DockerEngine, DockerRuntime};
use crate::runtime::process::ProcessRuntime;
use crate::runtime::swarm::{SwarmEngine, SwarmRuntime};
use crate::service::Service;
use crate::service::controller::{Controller, Source, SourceFactory};

/// What the admin API, the reloader and the listeners share.
pub struct State {
    pub services: ArcSwap<Vec<Arc<Service>>>,
    /// What the data-plane workers share: routes, settings, the shutdown signal.
    pub forwarder: Arc<crate::proxy::Shared>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventLog>,
    /// The config in force: the last one that loaded and applied.
    pub config: ArcSwap<Config>,
    /// Shared by the docker services; made when the first one appears.
    docker: Mutex<Option<Arc<DockerEngine>>>,
    /// Shared by the swarm services; made when the first one appears.
    swarm: Mutex<Option<Arc<SwarmEngine>>>,
    /// Controllers not started yet (before `App::run`), and the running ones by service.
    controllers: Mutex<Controllers>,
    reload_lock: tokio::sync::Mutex<()>,
    /// The TLS listeners' certificates; reloaded in place.
    pub cert_store: Option<crate::tls::CertStore>,
    /// Certificates ordered from an ACME CA (`[proxy.tls.acme]`).
    pub acme: Option<crate::tls::acme::Acme>,
    /// Revisions that outlive a restart; `None` without a config file.
    pub state_file: Option<Arc<crate::service::state::StateFile>>,
}

#[derive(Default)]
struct Controllers {
    pending: Vec<Controller>,
    running: HashMap<String, JoinHandle<()>>,
    stop: Option<CancellationToken>,
}

impl State {
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services
            .load()
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// A config reload: the TLS listeners serve the new certificate list (all or nothing).
    pub fn reload_certificates(&self, config: &Config) {
        if let (Some(store), Some(tls)) = (&self.cert_store, &config.proxy.tls) {
            match store.update(tls) {
                Ok(outcome) => store.report(&outcome, &self.events),
                Err(e) => self.events.emit(
                    "wakeway",
                    "certificate_rejected",
                    format!("reload kept the old certificates: {e}"),
                    serde_json::json!({}),
                ),
            }
        }
        if let Some(acme) = &self.acme {
            acme.set_names(crate::tls::acme::plan_config(config).names);
        }
    }

    /// Sets the gauges the request path does not maintain itself (in flight: the sum of the
    /// instances' exact counts), just before a scrape.
    pub fn sample_gauges(&self) {
        for svc in self.services.load().iter() {
            svc.metrics.in_flight.set(svc.in_flight() as i64);
        }
    }

    fn docker_engine(&self, config: &Config) -> Option<Arc<DockerEngine>> {
        let mut engine = self.docker.lock().unwrap_or_else(|p| p.into_inner());
        let images: Vec<_> = config
            .services
            .iter()
            .filter(|sc| {
                matches!(&sc.source, ConfigSource::Image(i) if i.runtime == crate::config::ImageRuntime::Docker)
            })
            .collect();
        if engine.is_none() && !images.is_empty() {
            let pins = self
                .state_file
                .clone()
                .map(|f| f as Arc<dyn crate::runtime::docker::PinStore>);
            *engine = Some(DockerEngine::new(config.docker.clone(), &images, pins));
        }
        engine.clone()
    }

    fn swarm_engine(&self, config: &Config) -> Option<Arc<SwarmEngine>> {
        let mut engine = self.swarm.lock().unwrap_or_else(|p| p.into_inner());
        let images: Vec<_> = config
            .services
            .iter()
            .filter(|sc| {
                matches!(&sc.source, ConfigSource::Image(i) if i.runtime == crate::config::ImageRuntime::Swarm)
            })
            .collect();
        if engine.is_none() && !images.is_empty() {
            *engine = Some(SwarmEngine::new(config.swarm.clone(), &images));
        }
        engine.clone()
    }

    /// The factory that makes a revision's instance source.
    fn factory(&self, config: &Config) -> SourceFactory {
        let engine = self.docker_engine(config);
        let swarm = self.swarm_engine(config);
        Arc::new(move |sc: &ServiceConfig| make_source(engine.as_ref(), swarm.as_ref(), sc))
    }

    /// Makes a service and its controller; the controller runs at once if the app runs.
    fn add_service(
        &self,
        sc: &ServiceConfig,
        factory: &SourceFactory,
    ) -> Result<Arc<Service>, String> {
        let resumed = self
            .state_file
            .as_ref()
            .and_then(|f| f.service(&sc.name))
            .and_then(|saved| saved.resume(sc));
        let live = match resumed.as_ref().and_then(|r| r.history.last()) {
            Some(r) => r.config.as_ref().clone(),
            None => sc.clone(),
        };
        let source = factory(&live)?;
        let svc = Service::new(live, self.metrics.service(&sc.name), self.events.clone());
        let mut controller = Controller::new(svc.clone(), source, factory.clone());
        if let Some(resumed) = resumed {
            controller = controller.resumed_from(resumed);
        }
        if let Some(store) = &self.state_file {
            controller = controller.persist_to(store.clone());
        }
        let mut c = self.controllers.lock().unwrap_or_else(|p| p.into_inner());
        match c.stop.clone() {
            Some(stop) => {
                let handle = tokio::spawn(controller.run(stop));
                c.running.insert(sc.name.clone(), handle);
            }
            None => c.pending.push(controller),
        }
        Ok(svc)
    }

    /// Drains and stops a service that left the config, then forgets its metrics.
    fn remove_service(self: &Arc<Self>, svc: &Arc<Service>) {
        let _ = svc.command(crate::service::command::Command::Remove);
        let handle = self
            .controllers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .remove(&svc.name);
        let state = self.clone();
        let name = svc.name.clone();
        tokio::spawn(async move {
            if let Some(h) = handle {
                let _ = h.await;
            }
            state.metrics.remove_service(&name);
            crate::runtime::output::forget(&name);
        });
    }
}

pub(crate) fn make_source(
    engine: Option<&Arc<DockerEngine>>,
    swarm: Option<&Arc<SwarmEngine>>,
    sc: &ServiceConfig,
) -> Result<Source, String> {
    match &sc.source {
        ConfigSource::Image(img) if img.runtime == crate::config::ImageRuntime::Swarm => {
            let swarm = swarm.ok_or("no swarm manager is configured")?;
            let rt = SwarmRuntime::new(swarm.clone(), sc).ok_or("not a swarm image source")?;
            Ok(Source::Managed(Arc::new(rt)))
        }
        ConfigSource::Command(cmd) => {
            Ok(Source::Managed(Arc::new(ProcessRuntime::new(cmd.clone()))))
        }
        ConfigSource::Image(_) => {
            let engine = engine.ok_or("no docker engine is configured")?;
            let rt = DockerRuntime::new(engine.clone(), sc).ok_or("not an image source")?;
            Ok(Source::Managed(Arc::new(rt)))
        }
        ConfigSource::Upstreams(u) => crate::runtime::fixed::resolve(u)
            .map(Source::Fixed)
            .map_err(|m| format!("service `{}`: {m}", sc.name)),
    }
}

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
            BuildError::Tls(m) | BuildError::AccessLog(m) => write!(f, "{m}"),
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
            Some(tls) => {
                Some(crate::tls::CertStore::load(tls).map_err(|e| BuildError::Tls(e.to_string()))?)
            }
            None => None,
        };
        let mut settings = crate::proxy::Settings::from_config(&config.proxy);
        settings.https_port = proxy_listeners.tls_addrs.first().map(|a| a.port());
        settings.start_trace = config.log.start_trace;
        settings.server_timing = config.log.server_timing;
        let state_file = match &config.state_file {
            Some(path) => {
                Some(crate::service::state::StateFile::open(path).map_err(BuildError::Config)?)
            }
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let events = Arc::new(EventLog::default());
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
                crate::tls::acme::plan_config(&config).names,
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
            for ctl in std::mem::take(&mut c.pending) {
                let name = ctl.service_name().to_string();
                c.running
                    .insert(name, tokio::spawn(ctl.run(stop_controllers.clone())));
            }
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
        if let Some(a) = admin {
            let _ = a.await;
        }
        tracing::info!("stopped");
    }
}
