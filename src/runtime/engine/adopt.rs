//! Leftovers of a previous wakeway, sorted once at start: the instances of a known service
//! that run its current spec and image are set aside for its `adopt`, every other one of the
//! scope is removed. A restart neither duplicates nor orphans instances.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::backend::Backend;
use super::connection::{EngineCore, Naming};
use super::labels::{LABEL_INSTANCE, LABEL_REVISION, LABEL_SERVICE, LABEL_SPEC};
use super::leftovers::{Candidate, Expected, Leftover, Stale};
use crate::config::{ImageRuntime, ImageSource, ServiceConfig, Source};
use crate::runtime::RuntimeError;

/// Grace for instances of unknown services, as `docker stop` gives by default.
pub(crate) const UNKNOWN_STOP_GRACE: Duration = Duration::from_secs(10);

/// The image `svc` runs, when `runtime` runs it.
pub(crate) fn image_source(svc: &ServiceConfig, runtime: ImageRuntime) -> Option<&ImageSource> {
    match &svc.source {
        Source::Image(img) if img.runtime == runtime => Some(img),
        _ => None,
    }
}

/// What each of `services` run by `runtime` expects, with its spec fingerprint from `spec`.
pub(crate) fn expected(
    services: &[&ServiceConfig],
    runtime: ImageRuntime,
    spec: impl Fn(&ImageSource, &ServiceConfig) -> String,
) -> HashMap<String, Expected> {
    services
        .iter()
        .filter_map(|svc| {
            let img = image_source(svc, runtime)?;
            let expected = Expected {
                spec: spec(img, svc),
                image: img.image.clone(),
                stop_grace: svc.deploy.stop_grace,
            };
            Some((svc.name.clone(), expected))
        })
        .collect()
}

/// How [`EngineCore::sort_leftovers`] judges.
pub(crate) struct Rules<'a> {
    /// Candidates are wanted (the first look, at start); otherwise every leftover goes.
    pub(crate) adopting: bool,
    /// What a spec covers, for the log of one that differs.
    pub(crate) spec_covers: &'a str,
    /// The image a revision of a service is pinned to, if it persists.
    pub(crate) pinned: &'a (dyn Fn(&str, &str) -> Option<String> + Sync),
}

/// The one look at leftovers, before this wakeway's first instance exists: at the first
/// `adopt` (`adopting`: candidates are set aside) or, when adoption could not run (the engine
/// was down at start), at the first start, after which nothing is adopted any more.
pub(crate) async fn ensure_swept<B: Backend>(
    this: &Arc<B>,
    adopting: bool,
) -> Result<(), RuntimeError> {
    let core: &EngineCore = this;
    let swept = core.swept.load_full();
    swept
        .get_or_try_init(|| sweep(this, adopting))
        .await
        .map(|_| ())
}

async fn sweep<B: Backend>(this: &Arc<B>, adopting: bool) -> Result<(), RuntimeError> {
    let docker = this.ready_client().await?;
    let list = this.leftovers(&docker).await?;
    let rules = Rules {
        adopting,
        spec_covers: B::SPEC_COVERS,
        pinned: &|service, revision| this.pinned(service, revision),
    };
    for stale in this.sort_leftovers(list.into_iter(), &rules).await {
        this.remove_leftover(&docker, stale).await;
    }
    Ok(())
}

impl EngineCore {
    /// Sets the candidates for `adopt` aside and returns the leftovers to remove. Instances
    /// this wakeway watches are no leftovers.
    pub(crate) async fn sort_leftovers(
        &self,
        list: impl Iterator<Item = Leftover>,
        rules: &Rules<'_>,
    ) -> Vec<Stale> {
        // The image id each known service's tag names now; `None` when it cannot be resolved,
        // in which case a matching spec is enough (better the instance we have than none).
        let mut images = HashMap::new();
        let known = self.known.load_full();
        if rules.adopting {
            for (service, exp) in known.iter() {
                images.insert(service.clone(), self.image_id(&exp.image).await);
            }
        }
        let mut stale = Vec::new();
        let mut candidates: HashMap<String, Vec<Candidate>> = HashMap::new();
        for l in list {
            if self.watched.contains(&l.id) {
                continue;
            }
            let service = l.labels.get(LABEL_SERVICE).cloned().unwrap_or_default();
            let expected = known.get(&service);
            match verdict(&l, &service, expected, &images, rules) {
                Ok((instance, current)) => candidates.entry(service).or_default().push(Candidate {
                    id: l.id,
                    name: l.name,
                    instance,
                    image: l.image,
                    current,
                    paused: l.paused,
                }),
                Err(why) => {
                    let Naming {
                        runtime, instance, ..
                    } = self.naming;
                    tracing::info!("{runtime}: removing leftover {instance} {}: {why}", l.name);
                    stale.push(Stale {
                        grace: (l.running || l.paused)
                            .then(|| expected.map_or(UNKNOWN_STOP_GRACE, |e| e.stop_grace)),
                        id: l.id,
                        name: l.name,
                    })
                }
            }
        }
        *self.candidates.lock().expect("candidates lock") = candidates;
        stale
    }
}

/// A leftover's instance id and whether it runs the current image, or why it goes.
fn verdict(
    l: &Leftover,
    service: &str,
    expected: Option<&Expected>,
    images: &HashMap<String, Option<String>>,
    rules: &Rules<'_>,
) -> Result<(String, bool), String> {
    let exp = match expected {
        None => return Err(format!("service `{service}` is not in the config")),
        Some(_) if !l.running && !l.paused => return Err("it is not running".to_string()),
        Some(exp) if l.labels.get(LABEL_SPEC) != Some(&exp.spec) => {
            return Err(format!("its {} differ from the config", rules.spec_covers));
        }
        Some(exp) => exp,
    };
    let current = match (images.get(service), &l.image) {
        (Some(Some(now)), Some(runs)) => now == runs,
        _ => true,
    };
    // After the tag moved, an instance of a revision that persists with its pin still runs
    // what that revision ran.
    let pinned = l
        .labels
        .get(LABEL_REVISION)
        .and_then(|revision| (rules.pinned)(service, revision));
    if !current && pinned.is_none_or(|p| l.image.as_ref() != Some(&p)) {
        return Err(format!("{} now names another image", exp.image));
    }
    match l.labels.get(LABEL_INSTANCE) {
        Some(instance) if rules.adopting => Ok((instance.clone(), current)),
        Some(_) => Err("its service started without it".to_string()),
        None => Err(format!("it has no {LABEL_INSTANCE} label")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftover(labels: &[(&str, &str)], image: Option<&str>) -> Leftover {
        Leftover {
            id: "c1".into(),
            name: "wakeway-web-web-00001-a".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            running: true,
            paused: false,
            image: image.map(str::to_string),
        }
    }

    fn judge(l: &Leftover, now: Option<&str>, pin: Option<&str>) -> Result<(String, bool), String> {
        let exp = Expected {
            spec: "s1".into(),
            image: "web:1".into(),
            stop_grace: Duration::from_secs(3),
        };
        let images = HashMap::from([("web".to_string(), now.map(str::to_string))]);
        let pinned = |_: &str, _: &str| pin.map(str::to_string);
        let rules = Rules {
            adopting: true,
            spec_covers: "image or env",
            pinned: &pinned,
        };
        verdict(l, "web", Some(&exp), &images, &rules)
    }

    const OURS: [(&str, &str); 4] = [
        (LABEL_SERVICE, "web"),
        (LABEL_SPEC, "s1"),
        (LABEL_REVISION, "web-00001"),
        (LABEL_INSTANCE, "web-00001-a"),
    ];

    #[test]
    fn the_current_image_or_the_pinned_one_is_adopted() {
        let l = leftover(&OURS, Some("sha256:old"));
        assert_eq!(
            judge(&l, Some("sha256:old"), None),
            Ok(("web-00001-a".into(), true))
        );
        assert_eq!(
            judge(&l, Some("sha256:new"), Some("sha256:old")),
            Ok(("web-00001-a".into(), false)),
            "the tag moved, the revision's pin did not"
        );
        assert!(
            judge(&l, Some("sha256:new"), None)
                .unwrap_err()
                .contains("web:1 now names another image")
        );
        assert_eq!(
            judge(&l, None, None),
            Ok(("web-00001-a".into(), true)),
            "an image the engine cannot resolve: the spec decides"
        );
    }

    #[test]
    fn a_changed_spec_a_stopped_one_or_no_instance_label_goes_a_paused_one_stays() {
        let mut changed = leftover(&OURS, None);
        changed.labels.insert(LABEL_SPEC.into(), "s2".into());
        assert_eq!(
            judge(&changed, None, None),
            Err("its image or env differ from the config".into())
        );
        let mut stopped = leftover(&OURS, None);
        stopped.running = false;
        assert_eq!(judge(&stopped, None, None), Err("it is not running".into()));
        let mut paused = leftover(&OURS, None);
        (paused.running, paused.paused) = (false, true);
        assert_eq!(
            judge(&paused, None, None),
            Ok(("web-00001-a".into(), true)),
            "a frozen one is alive"
        );
        let bare = leftover(&OURS[..3], None);
        assert!(
            judge(&bare, None, None)
                .unwrap_err()
                .contains("no wakeway.instance")
        );
    }
}
