//! The `swarm` runtime: each instance is the one task of a single-replica swarm service, so
//! the instance stays the unit wakeway controls. wakeway picks the victim of a scale-down,
//! drains it and removes its service; the swarm places tasks on nodes, enforces their limits
//! and runs them on whichever node fits.
//!
//! Requests reach each task exactly, never through the routing mesh or a virtual IP: the task's
//! port is published in host mode on a port its node picks, and wakeway connects to that node
//! (loopback for the node it talks to, the node's swarm address for the others).
//!
//! One [`SwarmEngine`] per wakeway talks to a manager for every swarm service: it follows the
//! local engine's container events (a killed task leaves the pool at once) and polls the tasks
//! (exits on other nodes, missed events), and at start finds the services a previous wakeway
//! left running. Services carry the docker runtime's labels (`wakeway.managed`,
//! `wakeway.scope`, `wakeway.service`, `wakeway.revision`, `wakeway.instance`, `wakeway.spec`)
//! plus `wakeway.image`.

mod adopt;
mod backend;
mod engine;
mod runtime;
pub mod spec;

pub use engine::SwarmEngine;
pub use runtime::SwarmRuntime;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{self, ImageRuntime, Source, SwarmConfig, SwarmPublish};

    #[test]
    fn example_config_parses_and_shows_every_swarm_key() {
        let text = include_str!("../../../config/swarm.toml");
        let cfg = config::parse(text, Some(Path::new("config/swarm.toml"))).unwrap();
        assert_eq!(
            cfg.swarm,
            SwarmConfig {
                constraints: vec!["node.platform.os == linux".into()],
                ..SwarmConfig::default()
            }
        );
        let Source::Image(img) = &cfg.services[0].source else {
            panic!("an image service");
        };
        assert_eq!(img.runtime, ImageRuntime::Swarm);
        assert_eq!(cfg.services[0].source.runtime_name(), "swarm");
        for key in [
            "[swarm]",
            "endpoint =",
            "network =",
            "publish =",
            "constraints =",
            "stop_on_exit =",
            "scope =",
            "runtime = \"swarm\"",
        ] {
            assert!(text.contains(key), "config/swarm.toml lacks {key}");
        }
    }

    const SWARM: &str = r#"[swarm]
endpoint = "tcp://127.0.0.1:2375"
network = "apps"
publish = "host"
constraints = ["node.role == worker"]
scope = "prod"

[[service]]
name = "web"
hosts = ["web.localhost"]
image = "web:1"
runtime = "swarm"
"#;

    #[test]
    fn swarm_keys_parse_and_image_alone_stays_docker() {
        let cfg = config::parse(SWARM, None).unwrap();
        assert_eq!(cfg.swarm.endpoint.as_deref(), Some("tcp://127.0.0.1:2375"));
        assert_eq!(cfg.swarm.network, "apps");
        assert_eq!(cfg.swarm.publish, SwarmPublish::Host);
        assert_eq!(cfg.swarm.scope, "prod");
        let plain = config::parse(&SWARM.replace("runtime = \"swarm\"\n", ""), None).unwrap();
        let Source::Image(img) = &plain.services[0].source else {
            panic!("an image service");
        };
        assert_eq!(img.runtime, ImageRuntime::Docker);
    }

    #[test]
    fn swarm_errors_name_file_line_and_key() {
        let cases = [
            (
                "scope = \"prod\"",
                "scope = \"prod\"\nbogus = 1",
                "swarm.bogus",
                "bogus",
            ),
            (
                "publish = \"host\"",
                "publish = \"ingress\"",
                "swarm.publish",
                "routing mesh",
            ),
            (
                "publish = \"host\"",
                "publish = \"vip\"",
                "swarm.publish",
                "\"host\"",
            ),
            (
                "network = \"apps\"",
                "network = \"ingress\"",
                "swarm.network",
                "overlay",
            ),
            (
                "network = \"apps\"",
                "network = \" apps\"",
                "swarm.network",
                "overlay",
            ),
            (
                "constraints = [\"node.role == worker\"]",
                "constraints = [\"node.role\"]",
                "swarm.constraints[0]",
                "==",
            ),
            (
                "endpoint = \"tcp://127.0.0.1:2375\"",
                "endpoint = \"ssh://m\"",
                "swarm.endpoint",
                "tcp://",
            ),
            (
                "scope = \"prod\"",
                "scope = \"Prod\"",
                "swarm.scope",
                "lower-case",
            ),
            (
                "runtime = \"swarm\"",
                "runtime = \"kubernetes\"",
                "service[0].runtime",
                "kubernetes",
            ),
        ];
        for (from, to, key, says) in cases {
            let text = SWARM.replace(from, to);
            let e = config::parse(&text, Some(Path::new("swarm.toml"))).unwrap_err();
            let last = to.lines().last().unwrap();
            let line = text.lines().position(|l| l == last).unwrap() + 1;
            e.assert_case(to, key, Some(line), says);
            assert!(
                e.to_string().starts_with(&format!("swarm.toml:{line}:")),
                "{e}"
            );
        }
        let e = config::parse(
            "[[service]]\nname = \"a\"\nhosts = [\"a\"]\ncommand = [\"a\"]\nruntime = \"swarm\"\n",
            None,
        )
        .unwrap_err();
        let says = "only to services with an `image`";
        e.assert_case("", "service[0].runtime", Some(5), says);
    }
}
