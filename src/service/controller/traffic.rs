//! The service's traffic among its revisions: resolving what was asked (`latest` or named
//! revisions, with percentages and tags) to serving revisions, each with its own lane, and the
//! one store that moves new requests. Revisions that leave the traffic drain.

use std::sync::Arc;

use serde_json::json;

use super::{Controller, Serving, Source};
use crate::config::{TrafficTarget, check_traffic};
use crate::service::autoscaler::Autoscaler;
use crate::service::command::Trigger;
use crate::service::lane::Lane;
use crate::service::revision::Revision;
use crate::service::traffic::{Share, Traffic};

/// One revision of the traffic, resolved.
struct Resolved {
    revision: Revision,
    percent: u32,
    tags: Vec<String>,
    latest: bool,
}

/// What is wrong with `traffic` on its own, said without the file's key.
fn check(service: &str, traffic: &[TrafficTarget]) -> Result<(), String> {
    check_traffic(service, traffic).map_err(|(key, why)| {
        if key.is_empty() {
            why
        } else {
            format!("traffic{key}: {why}")
        }
    })
}

impl Controller {
    /// At start: the traffic as asked, or all of it to the latest revision when what was asked
    /// cannot be (an event says why).
    pub(super) fn install_traffic(&mut self) {
        let traffic = self.traffic.clone();
        if let Err(e) =
            check(&self.svc.name, &traffic).and_then(|()| self.apply_traffic(&traffic, None))
        {
            self.svc.emit(
                "traffic_invalid",
                format!(
                    "{e}; all traffic goes to the latest revision {}",
                    self.revision.id
                ),
                json!({ "reason": e, "revision": self.revision.id }),
            );
            self.traffic = Vec::new();
            let _ = self.apply_traffic(&[], None);
        }
    }

    /// Shares the traffic as asked (the admin API, a reload, a rollout step). Nothing changes
    /// when it cannot be done.
    pub(super) fn set_traffic(
        &mut self,
        traffic: Vec<TrafficTarget>,
        trigger: Trigger,
    ) -> Result<(), String> {
        check(&self.svc.name, &traffic)?;
        if self.svc.is_paused() {
            return Err(format!(
                "service `{}` is paused; resume it first",
                self.svc.name
            ));
        }
        if trigger != Trigger::Rollout {
            self.end_rollout_by_hand();
        }
        let drained = self.apply_traffic(&traffic, None)?;
        self.traffic = traffic;
        self.reconcile();
        self.persist();
        let shares: Vec<serde_json::Value> = self
            .serving
            .iter()
            .map(|s| json!({ "revision": s.revision.id, "percent": s.percent, "tags": s.tags }))
            .collect();
        let summary: Vec<String> = self
            .serving
            .iter()
            .map(|s| {
                let tags = if s.tags.is_empty() {
                    String::new()
                } else {
                    format!(" (tag {})", s.tags.join(", "))
                };
                format!("{} {}%{tags}", s.revision.id, s.percent)
            })
            .collect();
        self.svc.emit(
            "traffic_changed",
            format!("traffic ({trigger}): {}", summary.join(", ")),
            json!({ "traffic": shares, "trigger": trigger, "draining": drained }),
        );
        Ok(())
    }

    /// Whether `revision` takes traffic (a share or a tag).
    pub(super) fn is_serving_revision(&self, revision: &str) -> bool {
        self.serving_of(revision).is_some()
    }

    fn resolve(&self, traffic: &[TrafficTarget]) -> Result<Vec<Resolved>, String> {
        let all_latest = [TrafficTarget {
            revision: None,
            percent: 100,
            tag: None,
        }];
        let traffic = if traffic.is_empty() {
            &all_latest[..]
        } else {
            traffic
        };
        let mut out: Vec<Resolved> = Vec::new();
        for t in traffic {
            let revision = match &t.revision {
                None => self.revision.clone(),
                Some(id) if *id == self.revision.id => self.revision.clone(),
                Some(id) => self
                    .history
                    .iter()
                    .find(|r| r.id == *id)
                    .cloned()
                    .ok_or_else(|| {
                        let known: Vec<&str> = self.history.iter().map(|r| r.id.as_str()).collect();
                        format!(
                            "service `{}` has no revision `{id}` (it has {})",
                            self.svc.name,
                            known.join(", ")
                        )
                    })?,
            };
            if !self.managed() && revision.id != self.revision.id {
                return Err(format!(
                    "service `{}` has fixed upstreams: only its latest revision can take traffic",
                    self.svc.name
                ));
            }
            let r = match out.iter_mut().find(|r| r.revision.id == revision.id) {
                Some(r) => r,
                None => {
                    out.push(Resolved {
                        revision,
                        percent: 0,
                        tags: Vec::new(),
                        latest: false,
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            r.percent += t.percent;
            r.tags.extend(t.tag.clone());
            r.latest |= t.revision.is_none();
        }
        out.retain(|r| r.percent > 0 || !r.tags.is_empty());
        Ok(out)
    }

    /// Makes the serving revisions match `traffic`: a revision that joins gets a lane (the
    /// deployment's own at a switch, `green`, with the instances it proved itself on), one that
    /// leaves retires its lane (its waiters pick again) and drains. One store of the traffic
    /// moves every new request. Returns the instances drained; the caller reconciles (at start,
    /// after adopting what a previous wakeway left).
    pub(super) fn apply_traffic(
        &mut self,
        traffic: &[TrafficTarget],
        green: Option<(&Arc<Lane>, u32)>,
    ) -> Result<Vec<String>, String> {
        let resolved = self.resolve(traffic)?;
        // Sources first: a revision whose runtime cannot be made changes nothing.
        let mut sources: Vec<Option<Source>> = Vec::new();
        for r in &resolved {
            let source = if r.revision.id == self.revision.id {
                Some(self.source.clone())
            } else if self.serving_of(&r.revision.id).is_some() {
                None
            } else {
                Some((self.factory)(&r.revision.config)?)
            };
            sources.push(source);
        }
        let min = self.svc.config.load().scaling.min_instances;
        let mut old = std::mem::take(&mut self.serving);
        for (r, source) in resolved.into_iter().zip(sources) {
            let serving = match old.iter().position(|s| s.revision.id == r.revision.id) {
                Some(pos) => {
                    let mut s = old.remove(pos);
                    s.percent = r.percent;
                    s.tags = r.tags;
                    s.latest = r.latest;
                    s
                }
                None => {
                    let (lane, desired) = match green {
                        Some((lane, want)) if lane.revision == r.revision.id => {
                            (lane.clone(), want.max(min))
                        }
                        _ => (Lane::new(&r.revision.id), min),
                    };
                    let mut autoscaler = Autoscaler::new();
                    if desired > 0 {
                        let window = self.svc.config.load().scaling.stable_window;
                        autoscaler.scaled_up(tokio::time::Instant::now(), window);
                    }
                    Serving {
                        source: source.unwrap_or_else(|| self.source.clone()),
                        revision: r.revision,
                        lane,
                        percent: r.percent,
                        tags: r.tags,
                        latest: r.latest,
                        desired,
                        autoscaler,
                        failures: 0,
                        backoff_until: None,
                    }
                }
            };
            self.serving.push(serving);
        }
        // Pools first, then the traffic that leads to them.
        self.publish();
        let shares = self
            .serving
            .iter()
            .map(|s| Share {
                lane: s.lane.clone(),
                percent: s.percent,
                tags: s.tags.clone(),
                latest: s.latest,
            })
            .collect();
        let previous = self.svc.traffic.swap(Arc::new(Traffic::new(shares)));
        // Waiters at a lane that left (before the first traffic, the service's placeholder)
        // pick again.
        for lane in previous.lanes() {
            if self
                .serving_of(&lane.revision)
                .is_none_or(|s| !Arc::ptr_eq(&s.lane, lane))
            {
                lane.retire();
            }
        }
        self.sync_desired();
        self.sync_starting();
        let mut drained = Vec::new();
        for s in old {
            s.lane.retire();
            drained.extend(self.drain_revision(&s.revision.id, "its revision left the traffic"));
        }
        self.publish();
        Ok(drained)
    }
}
