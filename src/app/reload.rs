//! Config reload (SIGHUP, `POST /v1/reload`): the whole file is parsed and validated first, and
//! every new service's source prepared, so a bad file changes nothing. Then the difference is
//! applied: services added, removed ones drained and stopped, source changes deployed
//! blue/green, everything else applied live, and the route table swapped in one store.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::State;
use crate::config::{self, Config, ServiceConfig};
use crate::proxy::route::RouteTable;
use crate::service::Service;
use crate::service::command::Command;
use crate::service::revision::source_changes;

#[derive(Debug, Default, Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Services whose source changed, with the deployment each one began.
    pub deployed: Vec<Deployed>,
    /// Services whose scaling, health, queue, deploy or hosts settings changed.
    pub updated: Vec<String>,
    /// Changes that need a restart to take effect.
    pub needs_restart: Vec<String>,
    /// Services whose `[[service.traffic]]` changed, and whether it could be applied.
    pub traffic: Vec<TrafficSet>,
}

#[derive(Debug, Serialize)]
pub struct TrafficSet {
    pub service: String,
    pub result: Result<(), String>,
}

#[derive(Debug, Serialize)]
pub struct Deployed {
    pub service: String,
    pub deployment: Result<String, String>,
}

impl State {
    /// Reloads the file the running config came from.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadReport, String> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let current = self.config.load_full();
        let Some(path) = current.path.clone() else {
            return Err("this wakeway was not started from a config file".into());
        };
        let new = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                self.events.emit(
                    "wakeway",
                    "reload_failed",
                    format!("reload rejected, nothing changed: {msg}"),
                    json!({ "file": path.display().to_string(), "line": e.line, "key": e.key, "error": e.message }),
                );
                return Err(msg);
            }
        };
        self.apply(&current, new).await
    }

    async fn apply(
        self: &Arc<Self>,
        current: &Config,
        new: Config,
    ) -> Result<ReloadReport, String> {
        let mut report = ReloadReport::default();
        crate::service::frozen::ledger().set_limit(new.scaling.max_frozen_memory);
        if new.proxy.listen != current.proxy.listen {
            report.needs_restart.push("proxy.listen".into());
        }
        if new.proxy.connect_timeout != current.proxy.connect_timeout {
            report.needs_restart.push("proxy.connect_timeout".into());
        }
        if new.proxy.response_timeout != current.proxy.response_timeout {
            report.needs_restart.push("proxy.response_timeout".into());
        }
        if new.proxy.upstream_read_timeout != current.proxy.upstream_read_timeout {
            report
                .needs_restart
                .push("proxy.upstream_read_timeout".into());
        }
        if new.proxy.idle_timeout != current.proxy.idle_timeout {
            report.needs_restart.push("proxy.idle_timeout".into());
        }
        if new.admin.listen != current.admin.listen {
            report.needs_restart.push("admin.listen".into());
        }
        if new.docker != current.docker {
            report.needs_restart.push("docker".into());
        }
        // Workers read these once, when they start.
        let fixed = |p: &crate::config::ProxyConfig| {
            (
                (p.max_uri_bytes, p.max_header_line_bytes, p.max_header_bytes),
                (
                    p.max_headers,
                    p.header_read_timeout,
                    p.trusted_proxies.clone(),
                ),
                (p.underscore_headers, p.max_connections, p.workers),
                (p.shutdown_timeout, p.tls.as_ref().map(|t| t.listen.clone())),
            )
        };
        if fixed(&new.proxy) != fixed(&current.proxy) {
            report
                .needs_restart
                .push("proxy (limits, workers, shutdown_timeout or tls.listen)".into());
        }
        let acme = |c: &Config| c.proxy.tls.as_ref().and_then(|t| t.acme.clone());
        if acme(&new) != acme(current) {
            report.needs_restart.push("proxy.tls.acme".into());
        }
        if new.swarm != current.swarm {
            report.needs_restart.push("swarm".into());
        }
        if new.log != current.log {
            report.needs_restart.push("log".into());
        }

        // Prepare everything that can fail before anything changes.
        let factory = self.factory(&new);
        let live = self.services.load_full();
        for sc in &new.services {
            if !live.iter().any(|s| s.name == sc.name) {
                factory(sc).map_err(|e| {
                    let msg = format!(
                        "{}: service `{}`: {e}",
                        new.path
                            .as_deref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        sc.name
                    );
                    self.events.emit(
                        "wakeway",
                        "reload_failed",
                        format!("reload rejected, nothing changed: {msg}"),
                        json!({ "error": msg }),
                    );
                    msg
                })?;
            }
        }

        let mut services = Vec::new();
        for sc in &new.services {
            match live.iter().find(|s| s.name == sc.name) {
                None => {
                    let svc = self.add_service(sc, &factory)?;
                    report.added.push(sc.name.clone());
                    services.push(svc);
                }
                Some(svc) => {
                    let applied = current.services.iter().find(|a| a.name == sc.name);
                    reload_service(svc, applied, sc, &mut report).await;
                    services.push(svc.clone());
                }
            }
        }
        for svc in live.iter() {
            if !new.services.iter().any(|sc| sc.name == svc.name) {
                self.remove_service(svc);
                report.removed.push(svc.name.clone());
            }
        }
        // The file's hosts, not the services' live configs: those are their controllers' to
        // write, and may not have caught up yet.
        let routes = new.services.iter().map(|sc| &sc.hosts[..]).zip(&services);
        self.forwarder
            .routes
            .store(Arc::new(RouteTable::with_hosts(routes)));
        self.services.store(Arc::new(services));
        // Certificates change in place: the TLS listeners serve the new list at once.
        self.reload_certificates(&new);
        if let Some(store) = &self.state_file {
            store.save_applied(&new.services);
        }
        self.config.store(Arc::new(new));
        self.events.emit(
            "wakeway",
            "reloaded",
            format!(
                "config reloaded: {} added, {} removed, {} deployed, {} updated",
                report.added.len(),
                report.removed.len(),
                report.deployed.len(),
                report.updated.len()
            ),
            serde_json::to_value(&report).unwrap_or_default(),
        );
        Ok(report)
    }
}

/// A service that stays. Its controller is the only writer of its live config: reload sends it
/// the file's settings (it keeps the running source, env and traffic), a deployment when the
/// file's own source changed, and the file's traffic when that changed.
async fn reload_service(
    svc: &Arc<Service>,
    applied: Option<&ServiceConfig>,
    sc: &ServiceConfig,
    report: &mut ReloadReport,
) {
    let before = svc.config.load_full();
    after_read(svc).await;
    let update = svc
        .ask(|reply| Command::Update {
            config: Box::new(sc.clone()),
            reply,
        })
        .await;
    if update == Ok(true) {
        report.updated.push(sc.name.clone());
    }
    // The deployed revision stands until the file's own source for the service changes:
    // compared with the file last applied, not with what runs, so a scaling-only reload does
    // not undo an API deployment.
    let file_changed = applied.is_none_or(|applied| !source_changes(applied, sc).is_empty());
    if file_changed && !source_changes(&before, sc).is_empty() {
        let config = Box::new(sc.clone());
        let deployment = svc
            .ask(|reply| Command::Deploy {
                config,
                trigger: crate::service::command::Trigger::Reload,
                options: Default::default(),
                reply,
            })
            .await;
        report.deployed.push(Deployed {
            service: sc.name.clone(),
            deployment,
        });
    }
    // The same model for the traffic: what the API set stands until the file's own
    // `[[service.traffic]]` changes.
    if applied.is_none_or(|applied| applied.traffic != sc.traffic) {
        let traffic = sc.traffic.clone();
        let result = svc
            .ask(|reply| Command::SetTraffic {
                traffic,
                trigger: crate::service::command::Trigger::Reload,
                reply,
            })
            .await;
        report.traffic.push(TrafficSet {
            service: sc.name.clone(),
            result,
        });
    }
}

#[cfg(not(test))]
async fn after_read(_: &Service) {}

#[cfg(test)]
use tests::after_read;

#[cfg(test)]
mod tests;
