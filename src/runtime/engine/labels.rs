//! Names and labels of wakeway's instances on an engine (containers, swarm services and their
//! tasks), the text their spec fingerprints hash, and what their exits mean.

use std::collections::{BTreeMap, HashMap};

use crate::config::{self, DockerConfig, ImageSource};

pub const LABEL_MANAGED: &str = "wakeway.managed";
pub const LABEL_SCOPE: &str = "wakeway.scope";
pub const LABEL_SERVICE: &str = "wakeway.service";
pub const LABEL_REVISION: &str = "wakeway.revision";
pub const LABEL_INSTANCE: &str = "wakeway.instance";
/// The image the instance's revision was deployed from. On a container, the reference (tag):
/// the container itself is created from the image id the revision pinned, which `docker ps`
/// shows instead. On a swarm service, the image id the tag named on the manager: a service
/// whose image id differs from the tag's current one is stale.
pub const LABEL_IMAGE: &str = "wakeway.image";
/// A fingerprint of everything that shapes an instance (image reference, port, limits, env,
/// network, placement): one whose fingerprint differs from the config's is stale.
pub const LABEL_SPEC: &str = "wakeway.spec";

/// The label the engine puts on every swarm task's container.
pub(crate) const SWARM_SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";

/// `wakeway-<service>-<instance>`, with the scope after `wakeway-` when it is not the default,
/// so two scopes on one engine never fight over a name.
pub fn instance_name(scope: &str, service: &str, instance: &str) -> String {
    if scope == DockerConfig::DEFAULT_SCOPE {
        format!("wakeway-{service}-{instance}")
    } else {
        format!("wakeway-{scope}-{service}-{instance}")
    }
}

/// The labels that select what wakeway made in `scope`, as a filter takes them.
pub(crate) fn scope_labels(scope: &str) -> Vec<String> {
    vec![
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_SCOPE}={scope}"),
    ]
}

/// The list filter that selects what wakeway made in `scope`.
pub(crate) fn scope_filter(scope: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), scope_labels(scope))])
}

/// Whether `labels` mark something wakeway made in `scope`.
pub(crate) fn in_scope(labels: &HashMap<String, String>, scope: &str) -> bool {
    labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
        && labels.get(LABEL_SCOPE).map(String::as_str) == Some(scope)
}

/// What one instance is labelled with: the scope, and what it is an instance of.
pub(crate) struct InstanceLabels<'a> {
    pub scope: &'a str,
    pub service: &'a str,
    pub revision: &'a str,
    pub instance: &'a str,
    /// Its spec fingerprint.
    pub spec: &'a str,
}

impl InstanceLabels<'_> {
    /// The labels, plus [`LABEL_IMAGE`] when `image` is known.
    pub(crate) fn to_map(&self, image: Option<&str>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_SCOPE.to_string(), self.scope.to_string()),
            (LABEL_SERVICE.to_string(), self.service.to_string()),
            (LABEL_REVISION.to_string(), self.revision.to_string()),
            (LABEL_INSTANCE.to_string(), self.instance.to_string()),
            (LABEL_SPEC.to_string(), self.spec.to_string()),
        ]);
        if let Some(image) = image {
            labels.insert(LABEL_IMAGE.to_string(), image.to_string());
        }
        labels
    }
}

/// The part of a spec fingerprint's text that the image source shapes. Changing what it writes
/// changes every fingerprint, and a restarted wakeway then replaces every running instance.
pub(crate) fn source_text(img: &ImageSource) -> String {
    format!(
        "image={}\nport={}\ncpus={:?}\nmemory={:?}\nstop_signal={:?}\n",
        img.image,
        img.port,
        img.cpus,
        img.memory,
        img.stop_signal
            .as_deref()
            .and_then(config::canonical_signal),
    )
}

/// The environment's part of a spec fingerprint's text.
pub(crate) fn env_text(env: &BTreeMap<String, String>) -> String {
    env.iter().map(|(k, v)| format!("env {k}={v}\n")).collect()
}

/// The environment an instance's container gets, as the engine API takes it.
pub(crate) fn env_list(env: BTreeMap<String, String>) -> Vec<String> {
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// FNV-1a of `text`, as 16 hex digits: stable across Rust releases, unlike `DefaultHasher`,
/// whose output may change and would then orphan every instance on upgrade.
pub(crate) fn fnv1a(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// A human reason for a container's exit code.
pub(crate) fn exit_reason(name: &str, code: Option<i64>) -> String {
    match code {
        Some(c) if c > 128 && c < 128 + 65 => {
            let sig = nix::sys::signal::Signal::try_from((c - 128) as i32)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {}", c - 128));
            format!("container {name} exited with code {c} ({sig})")
        }
        Some(c) => format!("container {name} exited with code {c}"),
        None => format!("container {name} exited"),
    }
}

/// An image source with every setting that shapes an instance, for tests.
#[cfg(test)]
pub(crate) fn sample_image(runtime: config::ImageRuntime) -> ImageSource {
    ImageSource {
        image: "web:1".into(),
        port: 8080,
        cpus: Some(0.5),
        memory: Some(64 << 20),
        stop_signal: Some("term".into()),
        runtime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_scope_unless_default() {
        assert_eq!(
            instance_name("default", "web", "web-00001-a"),
            "wakeway-web-web-00001-a"
        );
        assert_eq!(
            instance_name("staging", "web", "web-00001-a"),
            "wakeway-staging-web-web-00001-a"
        );
    }

    #[test]
    fn scope_is_read_from_both_labels() {
        let labels = InstanceLabels {
            scope: "prod",
            service: "web",
            revision: "web-00001",
            instance: "web-00001-a",
            spec: "0123",
        }
        .to_map(None);
        assert!(in_scope(&labels, "prod"));
        assert!(!in_scope(&labels, "staging"));
        assert!(!labels.contains_key(LABEL_IMAGE));
        let mut unmanaged = labels.clone();
        unmanaged.remove(LABEL_MANAGED);
        assert!(!in_scope(&unmanaged, "prod"));
    }

    #[test]
    fn exit_reasons_name_the_signal() {
        assert_eq!(
            exit_reason("c", Some(137)),
            "container c exited with code 137 (SIGKILL)"
        );
        assert_eq!(exit_reason("c", Some(1)), "container c exited with code 1");
        assert_eq!(exit_reason("c", None), "container c exited");
    }
}
