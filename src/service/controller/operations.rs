//! What an operator asks of a service: pause, resume, live settings, and the final stop.

use std::sync::Arc;

use serde_json::json;

use super::{Controller, Source};
use crate::config::ServiceConfig;
use crate::service::autoscaler::Autoscaler;
use crate::service::instance::InstanceState;
use crate::service::state::SourceState;

impl Controller {
    pub(super) fn pause(&mut self) {
        if self.svc.is_paused() {
            return;
        }
        self.svc.set_paused(true);
        self.fail_deploy("the service was paused".into());
        self.end_rollout("the service was paused");
        for s in &mut self.serving {
            s.desired = 0;
        }
        self.sync_desired();
        self.stop_all("paused");
        // Static upstreams are not stopped, only taken out of the pool.
        self.publish();
        self.svc.emit(
            "paused",
            "paused: every instance drains; requests get 503 until resumed",
            json!({}),
        );
    }

    pub(super) fn resume(&mut self) -> Result<(), String> {
        if !self.svc.is_paused() {
            return Err(format!("service `{}` is not paused", self.svc.name));
        }
        self.svc.set_paused(false);
        self.publish();
        let min = match &self.source {
            Source::Fixed(addrs) => addrs.len() as u32,
            Source::Managed(_) => self.svc.config.load().scaling.min_instances,
        };
        for s in &mut self.serving {
            s.desired = min;
            s.autoscaler = Autoscaler::new();
        }
        self.sync_desired();
        self.svc.emit(
            "resumed",
            format!("resumed at {min} instance(s)"),
            json!({ "min_instances": min }),
        );
        self.reconcile();
        Ok(())
    }

    /// Applies settings that are not part of a revision, live; returns whether any changed.
    pub(super) fn update(&mut self, settings: ServiceConfig) -> bool {
        let live = self.svc.config.load_full();
        let mut config = SourceState::of(&live).apply_to(&settings);
        // The traffic stands as set; a changed `[[service.traffic]]` comes as its own command.
        config.traffic = live.traffic.clone();
        if config == *live {
            return false;
        }
        self.svc.config.store(Arc::new(config.clone()));
        self.svc.emit(
            "config_updated",
            "scaling, health, queue, deploy or hosts settings applied",
            json!({}),
        );
        if self.managed() && !self.svc.is_paused() {
            let changes: Vec<(String, u32)> = self
                .serving
                .iter()
                .filter_map(|s| {
                    let d = s
                        .desired
                        .clamp(config.scaling.min_instances, config.scaling.max_instances);
                    (d != s.desired).then(|| (s.revision.id.clone(), d))
                })
                .collect();
            for (revision, d) in changes {
                self.change_desired(&revision, d, "config", json!({}));
            }
            self.reconcile();
        }
        true
    }

    /// The end: requests still queued are answered at once (503, `why`), every start is
    /// cancelled and every instance drained and stopped; returns when all are gone.
    pub(super) async fn shutdown(mut self, why: &str) {
        self.stopping = true;
        self.svc.close(why);
        self.cancel.cancel();
        self.fail_deploy(why.to_string());
        self.stop_all(why);
        while !self.starts.is_empty() || self.members.iter().any(|m| m.handle.is_some()) {
            let Some(msg) = self.rx.recv().await else {
                break;
            };
            self.handle(msg);
        }
        for m in &self.members {
            if let Some(h) = &m.health {
                h.abort();
            }
            if m.handle.is_none() {
                m.instance.set_state(InstanceState::Stopped);
            }
        }
        self.publish();
        while self.tasks.join_next().await.is_some() {}
    }
}
