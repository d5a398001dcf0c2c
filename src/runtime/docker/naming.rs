//! Names, labels and fingerprints of wakeway's containers, and what their exits mean.

use std::collections::BTreeMap;

use crate::config::{self, DockerConfig, ImageSource};

pub const LABEL_MANAGED: &str = "wakeway.managed";
pub const LABEL_SCOPE: &str = "wakeway.scope";
pub const LABEL_SERVICE: &str = "wakeway.service";
pub const LABEL_REVISION: &str = "wakeway.revision";
pub const LABEL_INSTANCE: &str = "wakeway.instance";
/// The image reference (tag) the container's revision was deployed from; the container itself
/// is created from the image id the revision pinned, which `docker ps` shows instead.
pub const LABEL_IMAGE: &str = "wakeway.image";
/// A fingerprint of everything that shapes a container (image reference, port, limits, env,
/// network): a container whose fingerprint differs from the config's is stale.
pub const LABEL_SPEC: &str = "wakeway.spec";

/// The label the engine puts on every swarm task's container.
pub(crate) const SWARM_SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";
/// `wakeway-<service>-<instance>`, with the scope after `wakeway-` when it is not the default,
/// so two scopes on one engine never fight over a name.
pub fn container_name(scope: &str, service: &str, instance: &str) -> String {
    if scope == DockerConfig::DEFAULT_SCOPE {
        format!("wakeway-{service}-{instance}")
    } else {
        format!("wakeway-{scope}-{service}-{instance}")
    }
}

/// The fingerprint stored in [`LABEL_SPEC`]. FNV-1a rather than `DefaultHasher`, whose output
/// may change between Rust releases and would then orphan every container on upgrade.
pub fn spec_fingerprint(
    docker: &DockerConfig,
    img: &ImageSource,
    env: &BTreeMap<String, String>,
) -> String {
    let mut text = format!(
        "image={}\nport={}\ncpus={:?}\nmemory={:?}\nstop_signal={:?}\nnetwork={}\npublish={}\n",
        img.image,
        img.port,
        img.cpus,
        img.memory,
        img.stop_signal
            .as_deref()
            .and_then(config::canonical_signal),
        docker.network,
        docker.publish_address,
    );
    for (k, v) in env {
        text.push_str(&format!("env {k}={v}\n"));
    }
    fnv1a(&text)
}

/// FNV-1a of `text`, as 16 hex digits: stable across Rust releases, unlike `DefaultHasher`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageRuntime;

    #[test]
    fn names_carry_the_scope_unless_default() {
        assert_eq!(
            container_name("default", "web", "web-00001-a"),
            "wakeway-web-web-00001-a"
        );
        assert_eq!(
            container_name("staging", "web", "web-00001-a"),
            "wakeway-staging-web-web-00001-a"
        );
    }

    #[test]
    fn fingerprint_changes_with_what_shapes_a_container() {
        let docker = DockerConfig::default();
        let img = ImageSource {
            image: "web:1".into(),
            port: 8080,
            cpus: Some(0.5),
            memory: Some(64 << 20),
            stop_signal: Some("term".into()),
            runtime: ImageRuntime::Docker,
        };
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let base = spec_fingerprint(&docker, &img, &env);
        assert_eq!(base, spec_fingerprint(&docker, &img, &env), "stable");
        // The same signal, spelled differently, is the same container.
        let same = ImageSource {
            stop_signal: Some("SIGTERM".into()),
            ..img.clone()
        };
        assert_eq!(base, spec_fingerprint(&docker, &same, &env));
        let changed = [
            ImageSource {
                image: "web:2".into(),
                ..img.clone()
            },
            ImageSource {
                port: 8081,
                ..img.clone()
            },
            ImageSource {
                cpus: Some(1.0),
                ..img.clone()
            },
            ImageSource {
                memory: None,
                ..img.clone()
            },
        ];
        for c in changed {
            assert_ne!(base, spec_fingerprint(&docker, &c, &env), "{c:?}");
        }
        let env2 = BTreeMap::from([("A".to_string(), "2".to_string())]);
        assert_ne!(base, spec_fingerprint(&docker, &img, &env2));
        let host = DockerConfig {
            network: "host".into(),
            ..DockerConfig::default()
        };
        assert_ne!(base, spec_fingerprint(&host, &img, &env));
    }

    /// The text hashed must not change between releases: a new fingerprint for the same
    /// config would make a restarted wakeway replace every running container.
    #[test]
    fn fingerprint_of_a_known_config_stays_the_same() {
        let img = ImageSource {
            image: "web:1".into(),
            port: 8080,
            cpus: Some(0.5),
            memory: Some(64 << 20),
            stop_signal: Some("term".into()),
            runtime: ImageRuntime::Docker,
        };
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(
            spec_fingerprint(&DockerConfig::default(), &img, &env),
            "647d3d807f3d5e7e"
        );
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
