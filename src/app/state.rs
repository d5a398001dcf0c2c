//! `State`: what the admin API, the reloader and the listeners share, and how a service and
//! its controller are added to it and taken out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ServiceConfig};
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::runtime::docker::DockerEngine;
use crate::runtime::swarm::SwarmEngine;
use crate::service::Service;
use crate::service::controller::{Controller, SourceFactory};
use crate::service::state::Resumed;

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
    pub(super) docker: Mutex<Option<Arc<DockerEngine>>>,
    /// Shared by the swarm services; made when the first one appears.
    pub(super) swarm: Mutex<Option<Arc<SwarmEngine>>>,
    /// Controllers not started yet (before `App::run`), and the running ones by service.
    pub(super) controllers: Mutex<Controllers>,
    pub(super) reload_lock: tokio::sync::Mutex<()>,
    /// The TLS listeners' certificates; reloaded in place.
    pub cert_store: Option<crate::tls::CertStore>,
    /// Certificates ordered from an ACME CA (`[proxy.tls.acme]`).
    pub acme: Option<crate::tls::acme::Acme>,
    /// Revisions that outlive a restart; `None` without a config file. In a cluster it is kept
    /// in memory and the leader copies it to etcd (`cluster::store`).
    pub state_file: Option<Arc<crate::service::state::StateFile>>,
    /// With `[cluster]`: this replica's membership (see `src/cluster/`).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Where the proxy listens (plain, then HTTPS), as bound: the addresses of tag URLs.
    pub proxy_addrs: Vec<std::net::SocketAddr>,
    pub https_addrs: Vec<std::net::SocketAddr>,
}

#[derive(Default)]
pub(super) struct Controllers {
    pub(super) pending: Vec<Controller>,
    pub(super) running: HashMap<String, JoinHandle<()>>,
    pub(super) stop: Option<CancellationToken>,
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
            match store.update(&tls.certificates) {
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
            acme.set_names(crate::config::acme_plan(config).names);
        }
    }

    /// Sets the gauges the request path does not maintain itself (in flight: the sum of the
    /// instances' exact counts), just before a scrape.
    pub fn sample_gauges(&self) {
        for svc in self.services.load().iter() {
            svc.metrics.in_flight.set(svc.in_flight() as i64);
        }
        if let Some(c) = &self.cluster {
            c.sample_gauges();
        }
    }

    /// A cluster replica that now leads: a new controller for each service, which adopts the
    /// fleet's instances from the engine and acts from now on.
    pub(crate) fn start_controllers(&self) {
        let config = self.config.load_full();
        let factory = self.factory(&config);
        if let Some(engine) = self
            .docker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            // The instances to adopt run the live revisions the previous leader recorded.
            let live: Vec<ServiceConfig> = config
                .services
                .iter()
                .map(|sc| self.resumed(sc).1)
                .collect();
            engine.expect(&live.iter().collect::<Vec<_>>());
            // Another leader may have started and stopped containers since this one last looked.
            engine.forget_sweep();
        }
        let mut c = self.controllers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stop) = c.stop.clone() else {
            return;
        };
        for svc in self.services.load().iter() {
            let Some(sc) = config.services.iter().find(|s| s.name == svc.name) else {
                continue;
            };
            // The state the previous leader left (loaded from etcd): its live revision runs.
            let (resumed, live) = self.resumed(sc);
            let source = match factory(&live) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cluster: cannot run service `{}`: {e}", svc.name);
                    continue;
                }
            };
            svc.config.store(Arc::new(live));
            let controller = self.controller(svc.clone(), source, &factory, resumed);
            if let Some(old) = c
                .running
                .insert(svc.name.clone(), tokio::spawn(controller.run(stop.clone())))
            {
                old.abort();
            }
        }
    }

    /// A cluster replica that no longer leads: its controllers are dropped where they are,
    /// leaving every instance running for the leader, which adopts them.
    pub(crate) fn stop_controllers(&self) {
        let mut c = self.controllers.lock().unwrap_or_else(|p| p.into_inner());
        for (_, h) in c.running.drain() {
            h.abort();
        }
    }

    /// Makes a service and its controller; the controller runs at once if the app runs.
    pub(super) fn add_service(
        &self,
        sc: &ServiceConfig,
        factory: &SourceFactory,
    ) -> Result<Arc<Service>, String> {
        let (resumed, live) = self.resumed(sc);
        let source = factory(&live)?;
        let svc = Service::new(live, self.metrics.service(&sc.name), self.events.clone());
        let controller = self.controller(svc.clone(), source, factory, resumed);
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

    /// What the state holds of `sc` (the service as the file has it), and the config its live
    /// revision runs.
    fn resumed(&self, sc: &ServiceConfig) -> (Option<Resumed>, ServiceConfig) {
        let resumed = self
            .state_file
            .as_ref()
            .and_then(|f| f.service(&sc.name))
            .and_then(|saved| saved.resume(sc));
        let live = match resumed.as_ref().and_then(|r| r.history.last()) {
            Some(r) => r.config.as_ref().clone(),
            None => sc.clone(),
        };
        (resumed, live)
    }

    /// `svc`'s controller, resumed from `resumed` and recording to the state from now on.
    fn controller(
        &self,
        svc: Arc<Service>,
        source: crate::service::controller::Source,
        factory: &SourceFactory,
        resumed: Option<Resumed>,
    ) -> Controller {
        let mut controller = Controller::new(svc, source, factory.clone());
        if let Some(resumed) = resumed {
            controller = controller.resumed_from(resumed);
        }
        if let Some(store) = &self.state_file {
            controller = controller.persist_to(store.clone());
        }
        controller
    }

    /// Drains and stops a service that left the config, then forgets its metrics.
    pub(super) fn remove_service(self: &Arc<Self>, svc: &Arc<Service>) {
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
            crate::history::access::forget(&name);
        });
    }
}
