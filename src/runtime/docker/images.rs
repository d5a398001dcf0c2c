//! `wakeway check`: whether each image service's image exists on the engine that runs it.

use std::fmt::Write as _;

use bollard::models::LocalNodeState;

use super::*;
use crate::config::{Config, ImageRuntime, Source};

/// For `wakeway check`: whether each docker service's image exists locally and, for swarm
/// services, whether the manager is one and has the image. Empty when the config has no image
/// service.
pub async fn check_images(config: &Config) -> String {
    let of = |runtime: ImageRuntime| -> Vec<(&str, &str)> {
        config
            .services
            .iter()
            .filter_map(|s| match &s.source {
                Source::Image(img) if img.runtime == runtime => {
                    Some((s.name.as_str(), img.image.as_str()))
                }
                _ => None,
            })
            .collect()
    };
    let mut out = String::new();
    let docker = of(ImageRuntime::Docker);
    if !docker.is_empty() {
        let endpoint = resolve_endpoint(&config.docker);
        check_on(&mut out, "docker engine", &endpoint, &docker, false).await;
    }
    let swarm = of(ImageRuntime::Swarm);
    if !swarm.is_empty() {
        let endpoint = endpoint_or_default(config.swarm.endpoint.as_deref());
        check_on(&mut out, "swarm manager", &endpoint, &swarm, true).await;
    }
    out
}

async fn check_on(
    out: &mut String,
    what: &str,
    endpoint: &str,
    images: &[(&str, &str)],
    swarm: bool,
) {
    let docker = match connect_and_negotiate(endpoint).await {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(
                out,
                "{what} {endpoint}: unreachable ({e}); cannot check images"
            );
            return;
        }
    };
    if swarm {
        let state = docker.info().await.ok().and_then(|i| i.swarm);
        let manager = state.as_ref().is_some_and(|s| {
            s.local_node_state == Some(LocalNodeState::ACTIVE) && s.control_available == Some(true)
        });
        if manager {
            let _ = writeln!(out, "{what} {endpoint}:");
        } else {
            let _ = writeln!(
                out,
                "{what} {endpoint}: NOT a swarm manager; run `docker swarm init` there, or point [swarm] endpoint at a manager"
            );
        }
    } else {
        let _ = writeln!(out, "{what} {endpoint}:");
    }
    let width = images.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    for (service, image) in images {
        let verdict = match docker.inspect_image(image).await {
            Ok(info) => {
                let id = info.id.unwrap_or_default();
                let short = id.trim_start_matches("sha256:");
                format!("present locally ({})", &short[..short.len().min(12)])
            }
            Err(e) if status_of(&e) == Some(404) && swarm => {
                "NOT on this node; build it here (one node) or push it to a registry every node can pull from".to_string()
            }
            Err(e) if status_of(&e) == Some(404) => {
                "NOT found locally; build or pull it".to_string()
            }
            Err(e) => format!("cannot check: {e}"),
        };
        let _ = writeln!(out, "  {service:<width$}  image {image:?}: {verdict}");
    }
}
