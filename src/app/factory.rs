//! Runtime factories: the engines docker and swarm services share (made when the first such
//! service appears) and the function that turns a revision's source into its instance source.

use std::sync::Arc;

use crate::config::{Config, ServiceConfig, Source as ConfigSource};
use crate::runtime::docker::{DockerEngine, DockerRuntime};
use crate::runtime::process::ProcessRuntime;
use crate::runtime::swarm::{SwarmEngine, SwarmRuntime};
use crate::service::controller::{Source, SourceFactory};

use super::State;

impl State {
    fn docker_engine(&self, config: &Config) -> Option<Arc<DockerEngine>> {
        let mut engine = self.docker.lock().unwrap_or_else(|p| p.into_inner());
        let images: Vec<_> = config
            .services
            .iter()
            .filter(|sc| {
                matches!(&sc.source, ConfigSource::Image(i) if i.runtime == crate::config::ImageRuntime::Docker)
            })
            .collect();
        if engine.is_none() && !images.is_empty() {
            let pins = self
                .state_file
                .clone()
                .map(|f| f as Arc<dyn crate::runtime::docker::PinStore>);
            *engine = Some(DockerEngine::new(config.docker.clone(), &images, pins));
        }
        engine.clone()
    }

    fn swarm_engine(&self, config: &Config) -> Option<Arc<SwarmEngine>> {
        let mut engine = self.swarm.lock().unwrap_or_else(|p| p.into_inner());
        let images: Vec<_> = config
            .services
            .iter()
            .filter(|sc| {
                matches!(&sc.source, ConfigSource::Image(i) if i.runtime == crate::config::ImageRuntime::Swarm)
            })
            .collect();
        if engine.is_none() && !images.is_empty() {
            *engine = Some(SwarmEngine::new(config.swarm.clone(), &images));
        }
        engine.clone()
    }

    /// The factory that makes a revision's instance source.
    pub(super) fn factory(&self, config: &Config) -> SourceFactory {
        let engine = self.docker_engine(config);
        let swarm = self.swarm_engine(config);
        Arc::new(move |sc: &ServiceConfig| make_source(engine.as_ref(), swarm.as_ref(), sc))
    }
}

pub(crate) fn make_source(
    engine: Option<&Arc<DockerEngine>>,
    swarm: Option<&Arc<SwarmEngine>>,
    sc: &ServiceConfig,
) -> Result<Source, String> {
    match &sc.source {
        ConfigSource::Image(img) if img.runtime == crate::config::ImageRuntime::Swarm => {
            let swarm = swarm.ok_or("no swarm manager is configured")?;
            let rt = SwarmRuntime::new(swarm.clone(), sc).ok_or("not a swarm image source")?;
            Ok(Source::Managed(Arc::new(rt)))
        }
        ConfigSource::Command(cmd) => {
            Ok(Source::Managed(Arc::new(ProcessRuntime::new(cmd.clone()))))
        }
        ConfigSource::Image(_) => {
            let engine = engine.ok_or("no docker engine is configured")?;
            let rt = DockerRuntime::new(engine.clone(), sc).ok_or("not an image source")?;
            Ok(Source::Managed(Arc::new(rt)))
        }
        ConfigSource::Upstreams(u) => crate::runtime::fixed::resolve(u)
            .map(Source::Fixed)
            .map_err(|m| format!("service `{}`: {m}", sc.name)),
    }
}
