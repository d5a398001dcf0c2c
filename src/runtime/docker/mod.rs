//! The `docker` runtime: each instance is a container on the local engine, reached on its own
//! address on `docker.network` when wakeway can get there, else through the port the engine
//! publishes on `docker.publish_address`.
//!
//! One [`DockerEngine`] per wakeway talks to the engine for every docker service: it follows the
//! engine's event stream (so a container that dies leaves the pool at once), removes containers
//! it no longer wants, and at start finds the containers a previous wakeway left running.
//! A [`DockerRuntime`] per service turns that into the [`Runtime`] the controller speaks.
//!
//! Containers are created from the image id their revision pinned (`pin.rs`; kept in the state
//! file when there is one), not the tag, and carry labels (`wakeway.managed`, `wakeway.scope`,
//! `wakeway.service`, `wakeway.revision`, `wakeway.instance`, `wakeway.spec`, `wakeway.image`),
//! which is how a restarted wakeway recognises its own: running ones of a known service at its
//! current revision (the same spec, and the image that revision is pinned to or, without a pin,
//! the same image behind the tag) are adopted, all others in its scope are removed, so a restart
//! neither duplicates nor orphans containers.

mod adopt;
mod backend;
mod container;
mod engine;
mod images;
mod pin;
mod reach;
mod spec;

use crate::config::DockerConfig;
use crate::runtime::engine::adopt::UNKNOWN_STOP_GRACE;
use crate::runtime::engine::client::{
    API_TIMEOUT, connect_and_negotiate, endpoint_or_default, status_of,
};
use crate::runtime::engine::labels::{
    SWARM_SERVICE_ID_LABEL, exit_reason, instance_name, scope_filter,
};

pub use crate::runtime::engine::DEFAULT_ENDPOINT;
pub use container::DockerRuntime;
pub use engine::DockerEngine;
pub use images::check_images;
pub use pin::PinStore;
pub use spec::spec_fingerprint;

/// The engine address in effect: `docker.endpoint`, else `$DOCKER_HOST`, else the local socket.
pub fn resolve_endpoint(cfg: &DockerConfig) -> String {
    endpoint_or_default(cfg.endpoint.as_deref())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{self, DockerConfig, ImageRuntime, ImageSource, Source};

    #[test]
    fn example_config_parses_and_shows_every_docker_key() {
        let text = include_str!("../../../config/docker.toml");
        let cfg = config::parse(text, Some(std::path::Path::new("config/docker.toml"))).unwrap();
        assert_eq!(
            cfg.docker,
            DockerConfig::default(),
            "the example shows the defaults"
        );
        let web = &cfg.services[0];
        assert_eq!(
            web.source,
            Source::Image(ImageSource {
                image: "wakeway-whoami:local".into(),
                port: 8080,
                cpus: Some(0.5),
                memory: Some(256 << 20),
                stop_signal: Some("SIGTERM".into()),
                runtime: ImageRuntime::Docker,
            })
        );
        assert_eq!(web.deploy.stop_grace, Duration::from_secs(10));
        for key in [
            "[docker]",
            "endpoint =",
            "network =",
            "publish_address =",
            "stop_on_exit =",
            "scope =",
            "image =",
            "port =",
            "env =",
            "cpus =",
            "memory =",
            "stop_signal =",
            "stop_grace =",
        ] {
            assert!(text.contains(key), "config/docker.toml lacks {key}");
        }
    }
}
