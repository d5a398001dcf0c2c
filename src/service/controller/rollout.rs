//! Gradual rollouts (`wakeway promote`): a revision's share of the traffic rises step by step,
//! and the rollout halts, putting the traffic back where it was, as soon as the revision's 5xx
//! rate or its failed probes, starts and exits pass the plan's thresholds.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::Controller;
use crate::config::TrafficTarget;
use crate::service::command::{RolloutPlan, Trigger};
use crate::service::instance::Instance;

/// Fewer answers than this in a step say too little to halt on their error rate until the
/// step ends.
const MIN_ANSWERS: u64 = 5;

/// A rollout as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub revision: String,
    /// The revision with the largest share when the rollout began.
    pub from: String,
    pub steps: Vec<u32>,
    /// The index of the step applied now.
    pub step: usize,
    pub interval_ms: u64,
    /// `running`, `halted` or `done`.
    pub state: &'static str,
    pub reason: Option<String>,
    pub max_error_rate: f64,
    pub max_probe_failures: u32,
    /// The revision's answers and 5xx answers since the current step began.
    pub answers: u64,
    pub errors: u64,
    pub probe_failures: u32,
}

pub(super) struct Rollout {
    view: RolloutView,
    /// The traffic before the rollout: where a halt goes back to.
    before: Vec<TrafficTarget>,
    next_at: Instant,
    /// The revision's (answers, 5xx) when the current step began.
    base: (u64, u64),
    last_failure: Option<String>,
}

impl Controller {
    pub(super) fn begin_rollout(&mut self, plan: RolloutPlan) -> Result<RolloutView, String> {
        if let Some(r) = &self.rollout {
            return Err(format!(
                "a rollout of {} is in progress (step {} of {})",
                r.view.revision,
                r.view.step + 1,
                r.view.steps.len()
            ));
        }
        if self.svc.is_paused() {
            return Err(format!(
                "service `{}` is paused; resume it first",
                self.svc.name
            ));
        }
        let revision = plan
            .revision
            .clone()
            .unwrap_or_else(|| self.revision.id.clone());
        if revision != self.revision.id && !self.history.iter().any(|r| r.id == revision) {
            return Err(format!(
                "service `{}` has no revision `{revision}`",
                self.svc.name
            ));
        }
        let steps = if plan.steps.is_empty() {
            vec![100]
        } else {
            plan.steps.clone()
        };
        if steps.iter().any(|&p| p == 0 || p > 100) || steps.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "steps {steps:?}: give rising percentages between 1 and 100, such as 10,50,100"
            ));
        }
        if !(0.0..=1.0).contains(&plan.max_error_rate) {
            return Err(format!(
                "max_error_rate {}: give a fraction between 0 and 1",
                plan.max_error_rate
            ));
        }
        let from = self
            .serving
            .iter()
            .filter(|s| s.revision.id != revision && s.percent > 0)
            .max_by_key(|s| s.percent)
            .map(|s| s.revision.id.clone())
            .ok_or_else(|| format!("{revision} already takes all the traffic"))?;
        let before = self.effective_traffic();
        let first = traffic_at(&before, &revision, &self.revision.id, steps[0]);
        self.set_traffic(first, Trigger::Rollout)?;
        let view = RolloutView {
            revision: revision.clone(),
            from: from.clone(),
            steps: steps.clone(),
            step: 0,
            interval_ms: plan.interval.as_millis() as u64,
            state: "running",
            reason: None,
            max_error_rate: plan.max_error_rate,
            max_probe_failures: plan.max_probe_failures,
            answers: 0,
            errors: 0,
            probe_failures: 0,
        };
        self.rollout = Some(Box::new(Rollout {
            view: view.clone(),
            before,
            next_at: Instant::now() + plan.interval,
            base: self.answers_of(&revision),
            last_failure: None,
        }));
        self.svc.emit("rollout_started",
            format!(
                "rollout of {revision} from {from}: steps {steps:?} every {:?}, now at {}%",
                plan.interval, steps[0]
            ),
            json!({ "revision": revision, "from": from, "steps": steps, "interval_ms": view.interval_ms, "max_error_rate": plan.max_error_rate, "max_probe_failures": plan.max_probe_failures }),
        );
        self.show_rollout();
        Ok(view)
    }

    /// The traffic as entries, the default (all to the latest) spelled out.
    fn effective_traffic(&self) -> Vec<TrafficTarget> {
        if self.traffic.is_empty() {
            vec![TrafficTarget {
                revision: None,
                percent: 100,
                tag: None,
            }]
        } else {
            self.traffic.clone()
        }
    }

    /// Each second: halt on failures, else move to the next step when its interval is over.
    pub(super) fn check_rollout(&mut self) {
        let Some(r) = &self.rollout else {
            return;
        };
        if r.view.state != "running" {
            return;
        }
        let revision = r.view.revision.clone();
        let (answers, errors) = self.answers_of(&revision);
        let r = self.rollout.as_mut().expect("checked above");
        r.view.answers = answers.saturating_sub(r.base.0);
        r.view.errors = errors.saturating_sub(r.base.1);
        let step_over = Instant::now() >= r.next_at;
        let rate = r.view.errors as f64 / r.view.answers.max(1) as f64;
        let halt = if r.view.probe_failures > r.view.max_probe_failures {
            Some(format!(
                "{} failed probe(s), start(s) or exit(s) of {revision} (at most {} allowed); the last: {}",
                r.view.probe_failures,
                r.view.max_probe_failures,
                r.last_failure.as_deref().unwrap_or("?")
            ))
        } else if r.view.errors > 0
            && (r.view.answers >= MIN_ANSWERS || step_over)
            && rate > r.view.max_error_rate
        {
            Some(format!(
                "{revision} answered {} of {} requests with 5xx ({:.1}%, at most {:.1}% allowed)",
                r.view.errors,
                r.view.answers,
                rate * 100.0,
                r.view.max_error_rate * 100.0
            ))
        } else {
            None
        };
        if let Some(reason) = halt {
            self.halt_rollout(reason);
            return;
        }
        if !step_over {
            self.show_rollout();
            return;
        }
        let r = self.rollout.as_mut().expect("checked above");
        if r.view.step + 1 >= r.view.steps.len() {
            r.view.state = "done";
            let view = r.view.clone();
            self.svc.emit(
                "rollout_done",
                format!(
                    "rollout of {} done: it takes {}% of the traffic",
                    view.revision,
                    view.steps.last().copied().unwrap_or(100)
                ),
                json!({ "revision": view.revision, "steps": view.steps }),
            );
            self.show_rollout();
            self.rollout = None;
            return;
        }
        r.view.step += 1;
        let percent = r.view.steps[r.view.step];
        let interval = Duration::from_millis(r.view.interval_ms);
        r.next_at = Instant::now() + interval;
        let before = r.before.clone();
        let traffic = traffic_at(&before, &revision, &self.revision.id, percent);
        if let Err(e) = self.set_traffic(traffic, Trigger::Rollout) {
            self.halt_rollout(format!("cannot move to {percent}%: {e}"));
            return;
        }
        let base = self.answers_of(&revision);
        let r = self.rollout.as_mut().expect("checked above");
        r.base = base;
        r.view.answers = 0;
        r.view.errors = 0;
        let step = r.view.step;
        self.svc.emit(
            "rollout_step",
            format!("rollout of {revision}: step {} now at {percent}%", step + 1),
            json!({ "revision": revision, "step": step, "percent": percent }),
        );
        self.show_rollout();
    }

    /// Puts the traffic back where it was before the rollout.
    fn halt_rollout(&mut self, reason: String) {
        let Some(r) = self.rollout.as_mut() else {
            return;
        };
        r.view.state = "halted";
        r.view.reason = Some(reason.clone());
        let (before, revision) = (r.before.clone(), r.view.revision.clone());
        let restored = self.set_traffic(before, Trigger::Rollout);
        self.svc.emit(
            "rollout_halted",
            format!(
                "rollout of {revision} halted: {reason}; {}",
                match &restored {
                    Ok(()) => "the traffic is back where it was before the rollout".to_string(),
                    Err(e) => format!("the traffic could not be put back: {e}"),
                }
            ),
            json!({ "revision": revision, "reason": reason, "restored": restored.is_ok() }),
        );
        self.show_rollout();
        self.rollout = None;
    }

    /// Traffic set by hand ends a rollout where it stands.
    pub(super) fn end_rollout_by_hand(&mut self) {
        self.end_rollout("the traffic was set by hand");
    }

    /// Ends a rollout where it stands (traffic set by hand, a pause, a new latest revision).
    pub(super) fn end_rollout(&mut self, why: &str) {
        if let Some(r) = self.rollout.as_mut() {
            r.view.state = "halted";
            r.view.reason = Some(why.to_string());
            let revision = r.view.revision.clone();
            self.svc.emit(
                "rollout_halted",
                format!("rollout of {revision} ended where it stands: {why}"),
                json!({ "revision": revision, "reason": why, "restored": false }),
            );
            self.show_rollout();
            self.rollout = None;
        }
    }

    /// A failed probe, start or exit of `revision`'s instances counts against its rollout.
    pub(super) fn note_rollout_failure(&mut self, revision: &str, what: &str) {
        if let Some(r) = self.rollout.as_mut()
            && r.view.revision == revision
        {
            r.view.probe_failures += 1;
            r.last_failure = Some(what.to_string());
        }
    }

    fn answers_of(&self, revision: &str) -> (u64, u64) {
        let instances: Vec<&Arc<Instance>> = self
            .members
            .iter()
            .filter(|m| m.instance.revision == revision)
            .map(|m| &m.instance)
            .collect();
        match self.lane_of(revision) {
            Some(lane) => lane.totals(instances.into_iter()),
            None => instances
                .iter()
                .fold((0, 0), |(a, e), i| (a + i.served(), e + i.errors())),
        }
    }

    fn show_rollout(&self) {
        self.svc
            .rollout
            .store(Arc::new(self.rollout.as_ref().map(|r| r.view.clone())));
    }
}

/// `before` with `revision` at `percent`: the other shares shrink in proportion (the largest
/// takes the rounding), tags stay where they were.
fn traffic_at(
    before: &[TrafficTarget],
    revision: &str,
    latest: &str,
    percent: u32,
) -> Vec<TrafficTarget> {
    let is_candidate = |t: &TrafficTarget| t.revision.as_deref().unwrap_or(latest) == revision;
    let mut others: Vec<TrafficTarget> = before
        .iter()
        .filter(|t| !is_candidate(t))
        .cloned()
        .collect();
    let total: u32 = others.iter().map(|t| t.percent).sum();
    let rest = 100 - percent;
    for t in &mut others {
        t.percent = (t.percent * rest).checked_div(total).unwrap_or(0);
    }
    let given: u32 = others.iter().map(|t| t.percent).sum();
    if let Some(largest) = others.iter_mut().max_by_key(|t| t.percent) {
        largest.percent += rest - given;
    }
    others.retain(|t| t.percent > 0 || t.tag.is_some());
    let tags: Vec<String> = before
        .iter()
        .filter(|t| is_candidate(t))
        .filter_map(|t| t.tag.clone())
        .collect();
    let name = (revision != latest).then(|| revision.to_string());
    let mut next = vec![TrafficTarget {
        revision: name.clone(),
        percent,
        tag: tags.first().cloned(),
    }];
    next.extend(tags.iter().skip(1).map(|tag| TrafficTarget {
        revision: name.clone(),
        percent: 0,
        tag: Some(tag.clone()),
    }));
    next.extend(others);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(revision: Option<&str>, percent: u32, tag: Option<&str>) -> TrafficTarget {
        TrafficTarget {
            revision: revision.map(String::from),
            percent,
            tag: tag.map(String::from),
        }
    }

    #[test]
    fn a_step_shrinks_the_others_and_keeps_tags() {
        // web-00002 takes everything, web-00003 (the latest) is tagged and at 0%.
        let before = [t(Some("web-00002"), 100, None), t(None, 0, Some("next"))];
        let at = traffic_at(&before, "web-00003", "web-00003", 10);
        assert_eq!(
            at,
            vec![t(None, 10, Some("next")), t(Some("web-00002"), 90, None)]
        );
        let done = traffic_at(&before, "web-00003", "web-00003", 100);
        assert_eq!(done, vec![t(None, 100, Some("next"))]);
    }

    #[test]
    fn rounding_goes_to_the_largest_share() {
        let before = [
            t(Some("web-00001"), 50, None),
            t(Some("web-00002"), 25, Some("old")),
            t(Some("web-00003"), 25, None),
        ];
        let at = traffic_at(&before, "web-00004", "web-00004", 33);
        let sum: u32 = at.iter().map(|t| t.percent).sum();
        assert_eq!(sum, 100);
        assert_eq!(at[0], t(None, 33, None));
        assert_eq!(at[1].percent, 35);
    }
}
