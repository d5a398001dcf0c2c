//! The spec fingerprint of a docker service's containers: what `wakeway.spec` holds.

use std::collections::BTreeMap;

use crate::config::{DockerConfig, ImageSource};
use crate::runtime::engine::labels::{env_text, fnv1a, source_text};

/// The fingerprint stored in `wakeway.spec`: the image source, the network and where ports
/// are published, and the env.
pub fn spec_fingerprint(
    docker: &DockerConfig,
    img: &ImageSource,
    env: &BTreeMap<String, String>,
) -> String {
    let text = format!(
        "{}network={}\npublish={}\n{}",
        source_text(img),
        docker.network,
        docker.publish_address,
        env_text(env),
    );
    fnv1a(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageRuntime;
    use crate::runtime::engine::labels::sample_image;

    fn image() -> ImageSource {
        sample_image(ImageRuntime::Docker)
    }

    #[test]
    fn fingerprint_changes_with_what_shapes_a_container() {
        let docker = DockerConfig::default();
        let img = image();
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
        let img = image();
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(
            spec_fingerprint(&DockerConfig::default(), &img, &env),
            "647d3d807f3d5e7e"
        );
    }
}
