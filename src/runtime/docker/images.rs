//! `wakeway check`: whether each docker service's image exists locally.

use super::*;
use crate::config::{Config, Source};

/// For `wakeway check`: whether each docker service's image exists locally. Empty when the
/// config has no docker service.
pub async fn check_images(config: &Config) -> String {
    use std::fmt::Write as _;
    let images: Vec<(&str, &str)> = config
        .services
        .iter()
        .filter_map(|s| match &s.source {
            Source::Image(img) => Some((s.name.as_str(), img.image.as_str())),
            _ => None,
        })
        .collect();
    if images.is_empty() {
        return String::new();
    }
    let endpoint = resolve_endpoint(&config.docker);
    let mut out = String::new();
    let docker = match connect_and_negotiate(&endpoint).await {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(
                out,
                "docker engine {endpoint}: unreachable ({e}); cannot check images"
            );
            return out;
        }
    };
    let _ = writeln!(out, "docker engine {endpoint}:");
    let width = images.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    for (service, image) in images {
        let verdict = match docker.inspect_image(image).await {
            Ok(info) => {
                let id = info.id.unwrap_or_default();
                let short = id.trim_start_matches("sha256:");
                format!("present locally ({})", &short[..short.len().min(12)])
            }
            Err(e) if status_of(&e) == Some(404) => {
                "NOT found locally; build or pull it".to_string()
            }
            Err(e) => format!("cannot check: {e}"),
        };
        let _ = writeln!(out, "  {service:<width$}  image {image:?}: {verdict}");
    }
    out
}
