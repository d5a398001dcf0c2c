//! Blue/green deployments: a new revision's instances start beside the live ones, one store of
//! the pool switches traffic once every one of them passed its probe, then the old ones drain.
//! Any failure before the switch stops the new instances and keeps the old pool.

use std::sync::Arc;

use serde_json::json;
use tokio::time::Instant;

use super::{Controller, Green, Source};
use crate::config::{ServiceConfig, TrafficTarget, check_tag};
use crate::service::command::{DeployOptions, Trigger};
use crate::service::deployment::DeployState;
use crate::service::instance::InstanceState;
use crate::service::lane::Lane;
use crate::service::revision::{Revision, source_changes};
use crate::service::state::SourceState;

impl Controller {
    /// Starts a blue/green deployment of `config`'s source as a new revision (or, for a
    /// rollback, as the earlier revision `reuse`). Returns the deployment id.
    pub(super) fn begin_deploy(
        &mut self,
        config: ServiceConfig,
        trigger: Trigger,
        reuse: Option<Revision>,
        options: DeployOptions,
    ) -> Result<String, String> {
        if let Some(tag) = &options.tag {
            check_tag(tag)?;
        }
        if let Some(g) = &self.green {
            return Err(format!(
                "deployment {} of {} is in progress",
                g.deployment, g.revision.id
            ));
        }
        if self.svc.is_paused() {
            return Err(format!(
                "service `{}` is paused; resume it first",
                self.svc.name
            ));
        }
        // Settings outside the source stay the live ones; only the source and env deploy.
        let live = self.svc.config.load_full();
        let config = SourceState::of(&config).apply_to(&live);
        let source = (self.factory)(&config)?;
        let revision = match reuse {
            Some(r) => r,
            None => {
                let mut changes = source_changes(&self.revision.config, &config);
                if changes.is_empty() && trigger == Trigger::Auto {
                    changes.push("source changed underneath".into());
                }
                let r = Revision::new(
                    &self.svc.name,
                    self.next_revision,
                    Arc::new(config),
                    changes,
                );
                self.next_revision += 1;
                r
            }
        };
        let min = live.scaling.min_instances;
        let latest = self.revision.id.clone();
        let ready = self.ready_count(&latest);
        // Even at zero a new revision proves itself on one instance before it takes traffic
        // (as Knative does); once switched, the autoscaler takes it back to zero when idle. A
        // revision that takes no traffic yet needs only to prove itself.
        let want = match &source {
            // Every fixed address of the new revision is an instance of it.
            Source::Fixed(addrs) => addrs.len() as u32,
            Source::Managed(_) if options.no_traffic => min.max(1),
            Source::Managed(_) if ready == 0 && self.desired(&latest) == 0 => min.max(1),
            Source::Managed(_) => ready
                .max(min)
                .max(1)
                .min(live.scaling.max_instances.max(min)),
        };
        let deployment = self.svc.deployments.begin(
            &self.svc.name,
            &revision.id,
            &self.revision.id,
            trigger.as_str(),
            revision.changes.clone(),
            want,
        );
        self.svc.emit("deploy_started",
            format!(
                "deployment {deployment}: {} -> {} ({trigger}), starting {want} instance(s)",
                self.revision.id, revision.id
            ),
            json!({ "deployment": deployment, "from": self.revision.id, "to": revision.id, "changes": revision.changes, "instances": want, "trigger": trigger }),
        );
        self.green = Some(Green {
            revision: revision.clone(),
            source: source.clone(),
            lane: Lane::new(&revision.id),
            deployment: deployment.clone(),
            trigger,
            want,
            deadline: Instant::now() + live.deploy.timeout,
            no_traffic: options.no_traffic,
            tag: options.tag,
        });
        match source {
            Source::Managed(runtime) => {
                for _ in 0..want {
                    self.start(runtime.clone(), &revision);
                }
            }
            Source::Fixed(addrs) => self.add_fixed(&addrs, &revision.id),
        }
        self.check_green();
        Ok(deployment)
    }

    /// Switches when every new instance is ready.
    pub(super) fn check_green(&mut self) {
        let Some(g) = &self.green else {
            return;
        };
        let ready = self
            .members
            .iter()
            .filter(|m| {
                m.instance.revision == g.revision.id && m.instance.state() == InstanceState::Ready
            })
            .count() as u32;
        if ready >= g.want {
            self.switch();
        }
    }

    /// The blue/green switch: the new revision becomes the latest, and one store of the
    /// traffic moves every new request the `latest` entries had to it; revisions that leave the
    /// traffic drain.
    /// Keeps `deploy.keep_revisions` of the history, plus the revisions the traffic names:
    /// memory, the revisions view and the state file stay bounded however many deploys come.
    fn forget_old_revisions(&mut self) {
        let keep = self.svc.config.load().deploy.keep_revisions;
        crate::service::state::prune_history(&mut self.history, keep, &self.traffic);
        let mut views = self.svc.revisions.load().as_ref().clone();
        views.retain(|v| self.history.iter().any(|r| r.id == v.id));
        self.svc.revisions.store(Arc::new(views));
    }

    pub(super) fn switch(&mut self) {
        let Some(g) = self.green.take() else {
            return;
        };
        if !g.no_traffic {
            // Its steps were computed against the traffic this deployment moves.
            self.end_rollout(&format!("deployment {} moved the traffic", g.deployment));
        }
        let old = std::mem::replace(&mut self.revision, g.revision.clone());
        self.source = g.source.clone();
        // A rollback makes the revision the newest live one again.
        self.history.retain(|r| r.id != g.revision.id);
        self.history.push(g.revision.clone());
        let mut revisions: Vec<_> = self.svc.revisions.load().as_ref().clone();
        revisions.retain(|r| r.id != g.revision.id);
        revisions.push(g.revision.view());
        self.svc.revisions.store(Arc::new(revisions));
        let live = SourceState::of(&g.revision.config).apply_to(&self.svc.config.load());
        self.svc.config.store(Arc::new(live));
        self.svc.deployments.switched(&g.deployment);
        self.svc.metrics.set_revision(Some(&old.id), &g.revision.id);

        let traffic = traffic_after_deploy(&self.traffic, &old.id, &g);
        let drained = match self.apply_traffic(&traffic, Some((&g.lane, g.want))) {
            Ok(drained) => {
                self.traffic = traffic;
                drained
            }
            // Only a revision missing from the history fails to resolve; the latest alone
            // always does.
            Err(_) => {
                self.traffic = Vec::new();
                self.apply_traffic(&[], Some((&g.lane, g.want)))
                    .unwrap_or_default()
            }
        };
        if !self.is_serving_revision(&g.revision.id) {
            // `--no-traffic` without a tag: it proved itself; its instances go.
            self.drain_revision(&g.revision.id, "its revision takes no traffic yet");
        }
        // Counted before the deployment reads as finished: whoever sees it finished sees it
        // counted.
        self.svc.metrics.deployments_succeeded.inc();
        self.svc
            .deployments
            .finish(&g.deployment, DeployState::Succeeded, None);
        if g.trigger == Trigger::Rollback {
            self.svc.deployments.mark_rolled_back(&old.id);
        }
        self.forget_old_revisions();
        self.persist();
        let message = if g.no_traffic {
            format!(
                "deployment {}: {} is ready and is the latest revision; it takes no traffic yet{}",
                g.deployment,
                g.revision.id,
                g.tag
                    .as_ref()
                    .map(|t| format!(" (tag {t})"))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "deployment {}: traffic switched {} -> {}; draining {} old instance(s)",
                g.deployment,
                old.id,
                g.revision.id,
                drained.len()
            )
        };
        self.svc.emit("deploy_switched",
            message,
            json!({ "deployment": g.deployment, "from": old.id, "to": g.revision.id, "draining": drained, "no_traffic": g.no_traffic, "tag": g.tag }),
        );
        if let Some(s) = self.serving_mut(&g.revision.id) {
            s.failures = 0;
            s.backoff_until = None;
            s.lane.set_failing(false);
        }
        if g.revision.config.source != old.config.source {
            // A new executable or image: its version is read afresh. An automatic deployment
            // keeps the version it was made from, so a change during it is not missed.
            self.source_version = None;
        }
        self.reconcile();
    }

    /// Gives up a deployment before its switch: the new instances stop, the old pool never
    /// stopped serving.
    pub(super) fn fail_deploy(&mut self, reason: String) {
        let Some(g) = self.green.take() else {
            return;
        };
        self.drain_revision(&g.revision.id, "its deployment failed");
        self.publish();
        self.svc.metrics.deployments_failed.inc();
        self.svc
            .deployments
            .finish(&g.deployment, DeployState::Failed, Some(reason.clone()));
        self.persist();
        self.svc.emit("deploy_failed",
            format!(
                "deployment {} of {} failed: {reason}; {} stays live",
                g.deployment, g.revision.id, self.revision.id
            ),
            json!({ "deployment": g.deployment, "revision": g.revision.id, "reason": reason, "live": self.revision.id }),
        );
    }

    pub(super) fn rollback(&mut self) -> Result<String, String> {
        let Some(previous) = self.history.iter().rev().nth(1).cloned() else {
            return Err(format!(
                "service `{}` has no earlier revision to roll back to",
                self.svc.name
            ));
        };
        self.begin_deploy(
            previous.config.as_ref().clone(),
            Trigger::Rollback,
            Some(previous),
            DeployOptions::default(),
        )
    }

    pub(super) async fn runtime_version(&self) -> Option<String> {
        match &self.source {
            Source::Managed(rt) => rt.source_version().await,
            Source::Fixed(_) => None,
        }
    }

    /// `deploy.auto`: a new image behind the tag, or a changed executable, deploys by itself.
    pub(super) async fn auto_deploy(&mut self) {
        if self.green.is_some() || self.svc.is_paused() {
            return;
        }
        let now = self.runtime_version().await;
        if self.source_version.is_none() {
            // First look since a switch: this is the live revision's version.
            self.source_version = now;
            return;
        }
        if now.is_none() || now == self.source_version {
            return;
        }
        let was = std::mem::replace(&mut self.source_version, now.clone());
        let config = self.revision.config.as_ref().clone();
        self.svc.emit(
            "source_changed",
            format!(
                "the source changed underneath ({} -> {}): deploying",
                was.as_deref().unwrap_or("?"),
                now.as_deref().unwrap_or("?")
            ),
            json!({ "from": was, "to": now }),
        );
        if let Err(e) = self.begin_deploy(config, Trigger::Auto, None, DeployOptions::default()) {
            self.svc.emit(
                "deploy_failed",
                format!("automatic deployment not started: {e}"),
                json!({ "reason": e }),
            );
        }
    }
}

/// The traffic after a deployment of `g` replaced `old` as the latest revision. `latest` entries
/// follow the new revision. Traffic pinned to named revisions only is reset to all of it to the
/// latest (as `gcloud run deploy` does), tags kept. With `--no-traffic`, `latest` entries are
/// pinned to `old` instead, and the new revision gets only its tag.
fn traffic_after_deploy(traffic: &[TrafficTarget], old: &str, g: &Green) -> Vec<TrafficTarget> {
    let all_to_latest = || TrafficTarget {
        revision: None,
        percent: 100,
        tag: None,
    };
    let mut next: Vec<TrafficTarget> = if g.no_traffic {
        if traffic.is_empty() {
            vec![TrafficTarget {
                revision: Some(old.to_string()),
                percent: 100,
                tag: None,
            }]
        } else {
            traffic
                .iter()
                .map(|t| TrafficTarget {
                    revision: Some(t.revision.clone().unwrap_or_else(|| old.to_string())),
                    ..t.clone()
                })
                .collect()
        }
    } else if traffic.is_empty() || traffic.iter().any(|t| t.revision.is_none()) {
        traffic.to_vec()
    } else {
        let mut v = vec![all_to_latest()];
        v.extend(
            traffic
                .iter()
                .filter(|t| t.tag.is_some())
                .map(|t| TrafficTarget {
                    percent: 0,
                    ..t.clone()
                }),
        );
        v
    };
    if let Some(tag) = &g.tag {
        // A tag names one revision: it moves to the new one.
        for t in &mut next {
            if t.tag.as_ref() == Some(tag) {
                t.tag = None;
            }
        }
        next.retain(|t| t.percent > 0 || t.tag.is_some());
        next.push(TrafficTarget {
            revision: Some(g.revision.id.clone()),
            percent: 0,
            tag: Some(tag.clone()),
        });
    }
    if next.iter().all(|t| t.percent == 0) {
        next.push(all_to_latest());
    }
    next
}
